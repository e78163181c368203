"""Leak scan (issue 11): one complete chain through `hotline serve` -- a sipp call from a known
number through kamailio and the pool, stored by the pipeline; a transcript in which the reporter
says a known name (injected: no Mandarin model can be installed here); the draft, a registered
case, a closed case whose result names the reporter -- then the raw bytes of the database (file
and WAL), every log, every event file and every file under the data dir are searched. Neither
the number nor the name may appear in clear, in UTF-8, GBK or UTF-16."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.telephony.conftest import caller_audio  # noqa: F401 - fixture
from tests.telephony.sipp_util import SIPP, call_scenario, free_port, run_sipp, sipp_errors, stop_process, wait_for

pytestmark = [pytest.mark.sip, pytest.mark.slow,
              pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) not installed")]

NUMBER = "15967382041"  # the caller's number, as sipp sends it in From
NAME = "郁清禾"  # the reporter's name, said in the call


def _forms(secret: str) -> dict[str, bytes]:
    out = {"utf-8": secret.encode("utf-8"), "utf-16-le": secret.encode("utf-16-le"),
           "utf-16-be": secret.encode("utf-16-be")}
    try:
        out["gbk"] = secret.encode("gbk")
    except UnicodeEncodeError:  # pragma: no cover - every name used here is in GBK
        pass
    return out


def _scan(paths: list[Path]) -> list[str]:
    found = []
    for p in paths:
        try:
            data = p.read_bytes()
        except OSError:
            continue
        for secret in (NUMBER, NAME):
            for enc, needle in _forms(secret).items():
                if needle in data:
                    found.append(f"{p} holds {secret!r} in {enc}")
    return found


def test_no_caller_number_or_reporter_name_in_clear_anywhere(settings, db, caller_audio, tmp_path):  # noqa: F811
    from hotline_api.models.calls import Call, Recording
    from hotline_api.services import auth, cases, storage, transcription

    port, base, http = free_port(), free_port(), free_port("tcp")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env.update(HOTLINE_DATA_DIR=str(settings.data_dir), HOTLINE_SIP_PORT=str(port), HOTLINE_SIP_USE_KAMAILIO="1",
               HOTLINE_SIP_WORKERS="2", HOTLINE_SIP_WORKER_BASE_PORT=str(base), HOTLINE_HTTP_PORT=str(http),
               HOTLINE_LOG_LEVEL="DEBUG")
    logs = tmp_path / "logs"
    logs.mkdir()
    out = open(logs / "serve.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "hotline_api.cli", "serve", "--only", "sip,api,pipeline"],
                            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: proc.poll() is not None or b"kamailio started" in (logs / "serve.log").read_bytes(), 120,
                 what="serve to start")
        assert proc.poll() is None, (logs / "serve.log").read_text(errors="replace")[-3000:]
        time.sleep(2)
        stream, _ref, _rate = caller_audio
        xml = call_scenario(stream, hold_ms=3000).replace("13800000000", NUMBER)
        r = run_sipp(xml, f"127.0.0.1:{port}", tmp_path, "leak")
        assert r.returncode == 0, sipp_errors(tmp_path, "leak")

        def stored():
            with db() as s:
                rec = s.query(Recording).filter(Recording.stage.in_(("queued", "done"))).one_or_none()
                return rec.id if rec is not None else None

        wait_for(stored, 60, what="recording stored and queued")
        rid = stored()
        with db() as s:  # the service knows the number (encrypted), so masking has something to mask
            call = s.query(Call).one()
            assert call.caller_number == NUMBER
        # the transcript the ASR worker would write, the draft, the case through its life
        ctx = storage.open_crypto(settings, db)
        assert ctx is not None
        words = f"你好，我叫{NAME}，我的电话是{NUMBER}，我要实名举报县水务局局长贪污公款八万元"
        with db() as s:
            transcription.store_transcript(s, rid, None, {"text": words, "turns": [{"speaker": "caller",
                                                                                   "text": words}]})
            s.commit()
            d = cases.on_transcript_completed(s, rid, {"turns": [{"speaker": "caller", "text": words}]},
                                              settings=settings)
            s.commit()
            assert d is not None and d.real_name
            auth.create_user(s, "sup", "supervisor", "a-long-password-1")
            s.commit()
        c = cases.register_draft(db, d.id, "sup", settings=settings)
        with db() as s:
            cases.start_handling(s, c.id, "自办", "第一纪检监察室", "sup", note=f"联系举报人{NAME}核实")
            cases.close_case(s, c.id, "sup", result=f"经核实，{NAME}反映的问题属实，已立案")
            cases.record_feedback(s, c.id, "result_sent", "sup", note=f"已电话告知{NAME}（{NUMBER}）")
        with db() as s:  # the service still reads it all back
            assert NAME in s.get(type(c), c.id).result
    finally:
        stop_process(proc, signal.SIGTERM, 40)
        out.close()
    from hotline_api.db.session import dispose_all

    dispose_all()
    files = [p for p in settings.data_dir.rglob("*") if p.is_file()]
    files += [p for p in logs.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".db") for p in files)
    assert any(p.suffix == ".log" for p in files if settings.run_dir in p.parents)  # kamailio's, the workers'
    leaks = _scan(files)
    assert leaks == [], "\n".join(leaks)
