"""`hotline serve --only sip` in pool mode: kamailio on the public port, two `hotline sip-worker`
processes with the database sink, and `hotline serve --only pipeline` beside it. A call is stored; a
worker killed mid-call is restarted and its recording reaches the database as `recovered` (then
encrypted and assigned by the pipeline like any other)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from telephony.kamailio import find_blocks, parse_rpc_records
from tests.telephony.conftest import caller_audio  # noqa: F401 - fixture
from tests.telephony.test_queue_util import operators  # noqa: F401 - fixture
from tests.telephony.sipp_util import (SIPP, call_scenario, cmdline, descendants, free_port, hung_up_by_hotline_scenario,
                                      ppid, run_sipp, sipp_errors, stop_process, wait_for)

pytestmark = [pytest.mark.sip, pytest.mark.slow,
              pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) not installed")]




def _worker_pids(parent: int) -> list[int]:
    return [p for p in descendants(parent) if "sip-worker" in cmdline(p) and "--worker-id w" in cmdline(p)]


def _logs(tmp_path, settings) -> str:
    out = [(tmp_path / "serve.log").read_text(errors="replace")[-4000:]]
    for f in sorted(settings.run_dir.glob("sip/**/*.log")):
        out.append(f"--- {f.name}\n" + f.read_text(errors="replace")[-1500:])
    return "\n".join(out)


def _start_serve(env, tmp_path, settings, name="serve.log"):
    log = open(tmp_path / name, "ab")
    proc = subprocess.Popen([sys.executable, "-m", "hotline_api.cli", "serve", "--only", "sip"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: proc.poll() is not None or len(_worker_pids(proc.pid)) == 2
                 and b"kamailio started" in (tmp_path / name).read_bytes(), 120, what="pool to start")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{_logs(tmp_path, settings)}") from None
    assert proc.poll() is None, _logs(tmp_path, settings)
    return proc, log


def test_pool_mode_stores_calls_and_recovers_a_killed_worker(settings, db, caller_audio, tmp_path):  # noqa: F811
    from hotline_api.models.calls import Call, Recording
    from hotline_api.models.governance import RecordingBlob

    port, base = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env.update(HOTLINE_DATA_DIR=str(settings.data_dir), HOTLINE_SIP_PORT=str(port), HOTLINE_SIP_USE_KAMAILIO="1",
               HOTLINE_SIP_WORKERS="2", HOTLINE_SIP_WORKER_BASE_PORT=str(base))
    proc, log = _start_serve(env, tmp_path, settings)
    plog = open(tmp_path / "pipeline.log", "ab")  # stores, assigns and queues what the pool records
    pipe = subprocess.Popen([sys.executable, "-m", "hotline_api.cli", "serve", "--only", "pipeline"], env=env,
                            stdout=plog, stderr=subprocess.STDOUT, start_new_session=True)
    kam: list[int] = []
    try:
        time.sleep(2)  # kamailio's first OPTIONS probes
        stream, _ref, _rate = caller_audio
        r = run_sipp(call_scenario(stream, hold_ms=4000), f"127.0.0.1:{port}", tmp_path, "one")
        assert r.returncode == 0, sipp_errors(tmp_path, "one") + (tmp_path / "serve.log").read_text(errors="replace")[-3000:]

        # a long call, then its worker is killed 3 s in: the caller must get a BYE (not silence)
        bg = run_sipp(hung_up_by_hotline_scenario(stream, wait_bye_ms=60000), f"127.0.0.1:{port}", tmp_path, "long",
                      background=True)

        def answered_calls():
            with db() as s:
                return s.query(Call).filter(Call.answered_at.is_not(None)).count()

        wait_for(lambda: answered_calls() == 2, 30, what="second call answered")
        time.sleep(3)
        with db() as s:
            live = s.query(Call).filter(Call.ended_at.is_(None)).one()
            victim = live.worker_id
        pids = [p for p in _worker_pids(proc.pid)
                if f"--worker-id {victim}" in open(f"/proc/{p}/cmdline").read().replace("\0", " ")]
        assert len(pids) == 1
        os.kill(pids[0], signal.SIGKILL)

        def recovered():
            with db() as s:
                rec = s.query(Recording).filter_by(call_id=live.id).one_or_none()
                return (rec is not None and rec.status == "recovered" and s.get(RecordingBlob, rec.id) is not None
                        and s.get(Call, live.id).status == "recovered")

        wait_for(recovered, 60, what="recovered recording in the database")
        # kamailio hung the dead worker's call up: the caller got a BYE and answered it...
        assert bg.wait(30) == 0, sipp_errors(tmp_path, "long") + _logs(tmp_path, settings)
        assert b"hung up (BYE to the callers)" in (tmp_path / "serve.log").read_bytes()
        # ... and no longer counts it against the worker (else the restarted worker looks busy)
        ctl = settings.run_dir / "sip" / "kamailio" / "kamailio_ctl"

        def rpc(*args):
            out = subprocess.run(["kamcmd", "-s", f"unix:{ctl}", *args], capture_output=True, text=True, timeout=10)
            return parse_rpc_records(out.stdout)

        wait_for(lambda: not rpc("dlg.list"), 10, what="no dialog left in kamailio")
        loads = {d["URI"]: d["RUNTIME"]["DLGLOAD"] for rec in rpc("dispatcher.list")
                 for d in find_blocks(rec, "DEST")}
        assert loads and set(loads.values()) == {"0"}, loads
        with db() as s:
            rec = s.query(Recording).filter_by(call_id=live.id).one()
            assert rec.duration >= 2.0
            assert s.get(Call, live.id).status == "recovered"
        wait_for(lambda: len(_worker_pids(proc.pid)) == 2, 60, what="killed worker restarted")

        # the supervisor itself is killed: its workers notice and stop on their own (no orphans),
        # and the next start stops the kamailio the dead supervisor left on the public port
        workers = _worker_pids(proc.pid)
        kam = [p for p in descendants(proc.pid) if "kamailio" in cmdline(p).split(" ")[0]]
        assert workers and kam
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        wait_for(lambda: not any(os.path.exists(f"/proc/{p}") and ppid(p) not in (None, 0) and "sip-worker"
                                 in cmdline(p) for p in workers), 30, what="orphaned workers to stop")
        assert any(os.path.exists(f"/proc/{p}") for p in kam)  # still there: nobody stopped it yet
        log.close()
        proc, log = _start_serve(env, tmp_path, settings, "serve2.log")
        assert b"stale kamailio" in (tmp_path / "serve2.log").read_bytes()
        wait_for(lambda: not any(os.path.exists(f"/proc/{p}") and cmdline(p) for p in kam), 10,
                 what="stale kamailio gone")
        time.sleep(2)
        r = run_sipp(call_scenario(stream, hold_ms=3000), f"127.0.0.1:{port}", tmp_path, "after")
        assert r.returncode == 0, sipp_errors(tmp_path, "after") + _logs(tmp_path, settings)
    finally:
        stop_process(proc, signal.SIGTERM, 40)
        stop_process(pipe, signal.SIGTERM, 20)
        log.close()
        plog.close()
        for p in kam:  # only if the test failed between the kill and the restart
            if "kamailio" in cmdline(p):
                os.kill(p, signal.SIGKILL)


def test_pool_workers_route_to_an_operator_through_the_supervisor(settings, db, operators, tmp_path):  # noqa: F811
    """The pool's workers hold no database: the operator claim, answer and release of a routed call
    go over the supervisor's socket to the database router, and the call's events come back the
    same way (ringing, answered, bridged, hangup, in order, with the operator)."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from sqlalchemy import select

    from hotline_api.models.calls import Call
    from hotline_api.models.operators import CallEvent, Operator
    from hotline_api.services import operators as ops
    from hotline_api.services.auth import create_user
    from tests.telephony.test_queue_util import delayed_audio_scenario

    op = operators()
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    with db() as s:
        u, _ = create_user(s, "alice", "operator", "correct-horse-battery")
        o = ops.ensure_operator(s, u, contacts=[{"kind": "static", "uri": op.uri}])
        ops.set_state(s, o, "available")
        for d in (today, today + timedelta(days=1)):  # staffed all day, whenever this runs (an open override
            ops.set_open_override(s, d, True, "00:00", "23:59", note="test")  # without hours means standard hours)
        s.commit()
        oid, uid = o.id, u.id
    port, base = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env.update(HOTLINE_DATA_DIR=str(settings.data_dir), HOTLINE_SIP_PORT=str(port), HOTLINE_SIP_USE_KAMAILIO="1",
               HOTLINE_SIP_WORKERS="2", HOTLINE_SIP_WORKER_BASE_PORT=str(base), HOTLINE_QUEUE_RING_TIMEOUT_SECONDS="5")
    proc, log = _start_serve(env, tmp_path, settings)
    try:
        for p in _worker_pids(proc.pid):  # lean: no database stack in a pool worker (its C extensions unmapped)
            assert "--ipc" in cmdline(p)
            assert "sqlalchemy" not in open(f"/proc/{p}/maps").read()
        time.sleep(2)
        r = run_sipp(delayed_audio_scenario(None, 0, 25000), f"127.0.0.1:{port}", tmp_path, "op", timeout=90)
        assert r.returncode == 0, sipp_errors(tmp_path, "op") + _logs(tmp_path, settings)

        def stored():
            with db() as s:
                c = s.execute(select(Call)).scalars().first()
                return c if c is not None and c.ended_at is not None else None

        call = wait_for(stored, 30, what="call stored")
        assert "bridged" in call.flow_path, call.flow_path
        assert call.operator_id == uid
        with db() as s:
            types = [(e.type, e.operator_id) for e in s.execute(select(CallEvent).where(CallEvent.call_id == call.id)
                                                                 .order_by(CallEvent.id)).scalars()]
        assert types == [("routed", None), ("ringing", oid), ("answered", oid), ("bridged", oid), ("hangup", oid),
                         ("call_ended", None)]

        def released():
            with db() as s:
                o = s.get(Operator, oid)
                return o if o.last_call_ended_at is not None and o.current_call_id is None else None

        o = wait_for(released, 30, what="operator released through the supervisor")
        assert o.reserved_call_id is None and o.wrap_up_until is not None
        assert op.events("incoming")
    finally:
        stop_process(proc, signal.SIGTERM, 40)
        log.close()
