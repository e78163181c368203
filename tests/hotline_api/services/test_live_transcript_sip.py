"""Live transcript end to end with real peers: a worker process with the database
(``python -m hotline_api.sip_routing``, the stand-in Vosk model as its live model) answers a sipp
call streaming espeak-ng Korean speech; the caller's channel is decoded while the call runs and
the results reach the console's live events, while the recording stays complete."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from sqlalchemy import select

import hotline_api.models.governance  # noqa: F401
import hotline_api.models.operators  # noqa: F401
from hotline_api.models.calls import Call, Recording
from hotline_api.models.operators import CallEvent
from tests.asr.conftest import ko_model_dir  # noqa: F401 - fixture
from tests.conftest import REPO
from tests.telephony.conftest import prompts_dir  # noqa: F401 - fixture
from tests.telephony.sipp_util import SIPP, call_scenario, free_port, run_sipp, sipp_errors, stop_process, wait_for
from tests.telephony.test_live_transcript_sip import assert_caller_channel_complete, korean_stream
from tests.telephony.test_queue_util import quick_prompts  # noqa: F401 - fixture

pytestmark = [pytest.mark.sip, pytest.mark.vosk, pytest.mark.slow,
              pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) not installed")]

HANGUL = re.compile(r"[\uac00-\ud7a3]")


@pytest.fixture
def live_worker(settings, db, quick_prompts, ko_model_dir, tmp_path):  # noqa: F811
    procs = []

    def start(**env_extra):
        port = free_port()
        conf = {"worker_id": "lv0", "sip_host": "127.0.0.1", "sip_port": port,
                "spool_dir": str(settings.spool_dir / "lv0"), "recordings_dir": str(settings.recordings_dir),
                "prompts_dir": str(quick_prompts)}
        path = tmp_path / "worker.json"
        path.write_text(json.dumps(conf), encoding="utf-8")
        log = tmp_path / "worker.log"
        env = {**os.environ, "HOTLINE_DATA_DIR": str(settings.data_dir), "HOTLINE_VOSK_MODEL": str(ko_model_dir),
               "PYTHONUNBUFFERED": "1", **env_extra}
        # 春节 (a holiday): the auto-attendant answers, no operator needed; the call is recorded throughout
        p = subprocess.Popen([sys.executable, "-m", "hotline_api.sip_routing", "--config", str(path),
                              "--clock-start", "2026-02-17T10:00:00+08:00"], cwd=REPO, env=env,
                             stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(p)

        def listening():
            if p.poll() is not None:
                raise AssertionError(log.read_text(errors="replace")[-3000:])
            return "listening on" in log.read_text(errors="replace")

        wait_for(listening, 30, what="worker to listen")
        return f"127.0.0.1:{port}", log, p

    try:
        yield start
    finally:
        for p in procs:
            stop_process(p, timeout=30)


def _stored_call(db) -> Call:
    def done():
        with db() as s:
            calls = s.execute(select(Call)).scalars().all()
            fin = [c for c in calls if c.ended_at is not None and c.recordings
                   and all(r.status != "recording" for r in c.recordings)]
            return fin[0] if fin else None

    return wait_for(done, 60, what="the call stored")


def _live_text(db, call_id: str, type_: str) -> list[dict]:
    with db() as s:
        rows = s.execute(select(CallEvent).where(CallEvent.call_id == call_id, CallEvent.type == type_)
                         .order_by(CallEvent.id)).scalars()
        return [e.data | {"operator_id": e.operator_id} for e in rows]


def test_caller_speech_is_transcribed_live_and_the_recording_is_complete(db, live_worker, tmp_path):
    stream, ref = korean_stream(tmp_path, 3)
    target, log, proc = live_worker()
    hold = int(len(ref) / 8000 * 1000) + 2000
    r = run_sipp(call_scenario(stream, hold_ms=hold), target, tmp_path, "live")
    assert r.returncode == 0, sipp_errors(tmp_path, "live")
    call = _stored_call(db)
    with db() as s:
        rec = s.execute(select(Recording).where(Recording.call_id == call.id)).scalar_one()
    assert rec.status == "complete" and rec.channels == 2
    assert call.hung_up_by == "caller" and call.hangup_cause == 200
    # the recording is whole: the live tap took nothing from it
    assert_caller_channel_complete(rec.path, ref, rec.duration)

    finals = wait_for(lambda: _live_text(db, call.id, "transcript") or None, 60, what="live transcript events")
    wait_for(lambda: "live transcription ended" in log.read_text(errors="replace") or None, 60,
             what="live transcription to close")
    finals = _live_text(db, call.id, "transcript")
    assert finals and all(f["text"].strip() for f in finals)
    assert all(HANGUL.search(f["text"]) for f in finals), finals  # real decoding by the Korean stand-in model
    assert all(f["speaker"] == "caller" and f["operator_id"] is None for f in finals)  # never bridged
    # times are seconds since the answer, i.e. positions in the recording, where the speech is
    speech_from, speech_to = 0.5 - 0.3, len(ref) / 8000 + 0.5
    for f in finals:
        assert 0 <= f["start"] <= f["end"] <= rec.duration + 0.5, f
        assert f["end"] > speech_from and f["start"] < speech_to, f
    assert [f["start"] for f in finals] == sorted(f["start"] for f in finals)
    partials = _live_text(db, call.id, "partial")
    assert partials and all(HANGUL.search(p["text"]) for p in partials)

    text = log.read_text(errors="replace")
    # the worker listened before the model was loaded (the first call triggered the load)
    assert text.index("listening on") < text.index("loaded Vosk model")
    for f in finals + partials:  # report content never reaches the log
        assert f["text"] not in text
    assert proc.poll() is None


def test_live_asr_off_by_setting(db, live_worker, tmp_path):
    stream, ref = korean_stream(tmp_path, 1)
    target, log, _ = live_worker(HOTLINE_LIVE_ASR="false")
    r = run_sipp(call_scenario(stream, hold_ms=int(len(ref) / 8000 * 1000) + 1500), target, tmp_path, "off")
    assert r.returncode == 0, sipp_errors(tmp_path, "off")
    call = _stored_call(db)
    with db() as s:
        rec = s.execute(select(Recording).where(Recording.call_id == call.id)).scalar_one()
    assert rec.status == "complete"
    assert _live_text(db, call.id, "transcript") == [] and _live_text(db, call.id, "partial") == []
    text = log.read_text(errors="replace")
    assert "live transcript switched off" in text and "loaded Vosk model" not in text
