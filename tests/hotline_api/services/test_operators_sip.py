"""The worker entry with the database (hotline_api.sip_routing): working hours decided over the DB
with an injected clock, operators claimed from the DB, events stored by the real CallStore.
Real peers: sipp / pjsua2 callers and pjsua2 operator softphones on 127.0.0.1."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone

import pytest
import soundfile as sf
from sqlalchemy import select

import hotline_api.models.governance  # noqa: F401
import hotline_api.models.operators  # noqa: F401
from hotline_api.models.calls import Call, Recording
from hotline_api.models.operators import CallEvent, Operator
from hotline_api.services import operators as ops
from hotline_api.services.auth import create_user
from tests.conftest import REPO
from tests.telephony.audio_util import active_span, assert_speech_present
from tests.telephony.conftest import prompts_dir  # noqa: F401 - fixture
from tests.telephony.sipp_util import SIPP, free_port, run_sipp, sipp_errors, stop_process, wait_for
from tests.telephony.test_queue_util import (delayed_audio_scenario, operators, quick_prompts,  # noqa: F401
                                             resample, run_caller, speech)

pytestmark = [pytest.mark.sip, pytest.mark.slow,
              pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) not installed")]


@pytest.fixture
def db_worker(settings, db, quick_prompts, tmp_path):
    procs = []

    def start(clock_start: str, **cfg):
        port = free_port()
        conf = {"worker_id": f"d{len(procs)}", "sip_host": "127.0.0.1", "sip_port": port,
                "spool_dir": str(settings.spool_dir / f"d{len(procs)}"), "recordings_dir": str(settings.recordings_dir),
                "prompts_dir": str(quick_prompts), "ring_timeout_s": 5, **cfg}
        path = tmp_path / f"worker{len(procs)}.json"
        path.write_text(json.dumps(conf), encoding="utf-8")
        log = tmp_path / f"worker{len(procs)}.log"
        env = {**os.environ, "HOTLINE_DATA_DIR": str(settings.data_dir), "PYTHONUNBUFFERED": "1"}
        p = subprocess.Popen([sys.executable, "-m", "hotline_api.sip_routing", "--config", str(path),
                              "--clock-start", clock_start], cwd=REPO, env=env, stdout=open(log, "wb"),
                             stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(p)

        def listening():
            if p.poll() is not None:
                raise AssertionError(log.read_text(errors="replace")[-3000:])
            return "listening on" in log.read_text(errors="replace")

        wait_for(listening, 30, what="worker to listen")
        return f"127.0.0.1:{port}", log

    try:
        yield start
    finally:
        for p in procs:
            stop_process(p, timeout=20)


def add_operator(db, name: str, uri: str, state: str = "available") -> str:
    with db() as s:
        u, _ = create_user(s, name, "operator", "correct-horse-battery")
        op = ops.ensure_operator(s, u, contacts=[{"kind": "static", "uri": uri}])
        if state != "offline":
            ops.set_state(s, op, state)
        s.commit()
        return op.id


def wait_call(db, n: int = 1, timeout: float = 60) -> list[Call]:
    def done():
        with db() as s:
            calls = s.execute(select(Call)).scalars().all()
            finished = [c for c in calls if c.ended_at is not None and c.recordings
                        and all(r.status != "recording" for r in c.recordings)]
            return finished if len(finished) >= n else None

    return wait_for(done, timeout, what=f"{n} call(s) stored")


def live_types(db, call_id: str) -> list[tuple[str, str | None, dict]]:
    with db() as s:
        rows = s.execute(select(CallEvent).where(CallEvent.call_id == call_id).order_by(CallEvent.id)).scalars()
        return [(e.type, e.operator_id, e.data) for e in rows]


def test_spring_festival_goes_to_the_attendant_even_with_operators(db, db_worker, operators, tmp_path):
    op = operators()
    add_operator(db, "alice", op.uri)
    target, _ = db_worker("2026-02-17T10:00:00+08:00")  # 春节 (Tuesday), office hours
    r = run_sipp(delayed_audio_scenario(None, 0, 5000), target, tmp_path, "sf")
    assert r.returncode == 0, sipp_errors(tmp_path, "sf")
    (call,) = wait_call(db)
    assert "attendant" in call.flow_path and "queue" not in call.flow_path
    routed = [d for t, _, d in live_types(db, call.id) if t == "routed"][0]
    assert routed == {"path": "attendant", "reason": "closed_holiday", "provisional": False}
    assert not op.events("incoming")


def test_tiaoxiu_saturday_goes_to_the_queue_and_an_operator(db, db_worker, operators, tmp_path):
    op = operators()
    oid = add_operator(db, "alice", op.uri)
    target, _ = db_worker("2026-02-14T10:00:00+08:00")  # a Saturday that is a 调休 workday
    r = run_sipp(delayed_audio_scenario(None, 0, 9000), target, tmp_path, "tx")
    assert r.returncode == 0, sipp_errors(tmp_path, "tx")
    (call,) = wait_call(db)
    assert call.flow_path.startswith("notice>route>queue>connecting>bridged"), call.flow_path
    with db() as s:  # calls.operator_id is the operator's user id (what the access rules compare)
        assert call.operator_id == s.get(Operator, oid).user_id and call.status == "ended"
    types = [(t, o) for t, o, _ in live_types(db, call.id)]
    assert types == [("routed", None), ("ringing", oid), ("answered", oid), ("bridged", oid), ("hangup", oid),
                     ("call_ended", None)]
    def released():  # the release runs on the worker's routing thread, beside the event writer
        with db() as s:
            o = s.get(Operator, oid)
            return o if o.last_call_ended_at is not None and o.current_call_id is None else None

    o = wait_for(released, 30, what="operator released")
    assert o.reserved_call_id is None and o.wrap_up_until is not None
    # wrap-up of the configured 30 s from the hang-up (under heavy load it may be over already)
    assert abs((o.wrap_up_until - o.last_call_ended_at).total_seconds() - 30) < 1
    assert o.state == "wrap_up" or (o.state == "available" and o.wrap_up_until <= datetime.now(timezone.utc))
    assert call.caller_number == "13800000000"  # the number is in the DB row only
    events = json.dumps(live_types(db, call.id))
    assert "13800000000" not in events


def test_2027_date_uses_the_fallback_with_a_console_warning(db, db_worker, operators, tmp_path):
    op = operators()
    add_operator(db, "alice", op.uri)
    target, log = db_worker("2027-02-08T10:00:00+08:00")  # Monday; chinese_calendar 1.11 has no 2027 data
    text = log.read_text(errors="replace")
    assert "WARNING: 节假日数据缺失：2027年" in text
    r = run_sipp(delayed_audio_scenario(None, 0, 8000), target, tmp_path, "y27")
    assert r.returncode == 0, sipp_errors(tmp_path, "y27")
    (call,) = wait_call(db)
    routed = [d for t, _, d in live_types(db, call.id) if t == "routed"][0]
    assert routed == {"path": "queue", "reason": "open", "provisional": True}
    assert "holiday data for 2027" in log.read_text(errors="replace")


def test_menu_scope_voicemail_row_with_caller_speech(db, db_worker, quick_prompts):
    talk = speech("BAC009S0724W0121.wav", "16k")
    target, _ = db_worker("2026-02-17T21:00:00+08:00")  # holiday evening: the attendant
    out = run_caller(f"sip:12388@{target}", [(5.5, "dtmf", "2"), (11.5, "dtmf", "1"), (15.0, "play", talk)],
                     timeout=60)
    assert out["answered"] and out["ended_by"] == "hotline", out
    (call,) = wait_call(db)
    assert call.channel == "voicemail", call.flow_path
    assert "scope" in call.flow_path.split(">") and "voicemail" in call.flow_path, call.flow_path
    with db() as s:
        assert [d.digit for d in s.get(Call, call.id).dtmf] == ["2", "1"]
        rec = s.execute(select(Recording).where(Recording.call_id == call.id)).scalar_one()
    assert rec.kind == "voicemail" and rec.status == "complete" and rec.channels == 2
    ev = {t: d for t, _, d in live_types(db, call.id)}
    start, end = ev["voicemail_started"]["offset_s"], ev["voicemail_ended"]["offset_s"]
    assert ev["voicemail_ended"]["reason"] == "silence"
    audio, rate = sf.read(rec.path, dtype="float32")
    part = audio[int(start * rate): int(end * rate), 0]
    s0, e0 = active_span(part, rate)
    ref, rr = sf.read(str(talk), dtype="float32")
    rs, re_ = active_span(ref, rr)
    assert abs((e0 - s0) - (re_ - rs)) < 0.5, ((s0, e0), (rs, re_))  # about 4 s of the caller's speech
    assert_speech_present(part, resample(ref, rr, rate), rate)
