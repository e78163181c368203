"""Sink ports are reused, never destroyed while the worker runs (telephony.agent._PortPool), and a
worker survives a churn of short calls under way at once.

pjsip 2.15.1's bridge removes a port at its next tick while ``AudioMediaPort``'s destructor frees
it at once: destroying one per call crashed workers (SIGSEGV on the media clock thread) after a
few hundred calls under load. bench/call_churn.py runs the long version of the churn below.
"""
from __future__ import annotations

import re
from datetime import datetime

import pytest

from tests.telephony.sipp_util import call_scenario, run_sipp, sipp_errors


class FakePort:
    def __init__(self) -> None:
        self.sink = None
        self.quiet = 0


def _pool():
    pytest.importorskip("pjsua2")
    from telephony.agent import _PortPool

    return _PortPool(lambda: None, quiet_frames=10)


def test_a_returned_port_is_reused_only_once_no_source_transmits_to_it():
    pool = _pool()
    port = FakePort()
    port.sink = print
    pool.put(port)
    assert port.sink is None and port.quiet == 0
    spare = FakePort()
    pool._free.append(spare)  # something to hand out without a pjsua2 endpoint
    port.quiet = 3  # still receiving audio recently: a source is connected
    assert pool.get(len) is spare and spare.sink is len
    assert port in pool._quarantine
    port.quiet = 10  # ten empty frames in a row: no source any more
    got = pool.get(abs)
    assert got is port and got.sink is abs and not pool._quarantine


def test_sequential_calls_reuse_the_same_sink_ports(make_worker, tmp_path):
    w = make_worker()
    for i in range(8):
        r = run_sipp(call_scenario(None, hold_ms=300), w.target, tmp_path, f"c{i}")
        assert r.returncode == 0, sipp_errors(tmp_path, f"c{i}")
    done = w.wait_events("RecordingCompleted", 8)
    assert all(d["status"] == "complete" for d in done)
    w.stop()
    m = re.search(r"(\d+) sink port\(s\) served its calls", w.log_text())
    assert m, w.log_text()[-2000:]
    assert 2 <= int(m.group(1)) <= 4  # 16 without reuse (2 per call)


def test_a_churn_of_short_calls_is_all_answered_ended_and_recorded(make_worker, tmp_path):
    w = make_worker()
    n = 120
    scenario = call_scenario(None, hold_ms=500)
    scenario = re.sub(r'<pause milliseconds="\d+"/>', '<pause distribution="uniform" min="0" max="1000"/>',
                      scenario)
    r = run_sipp(scenario, w.target, tmp_path, "churn", timeout=120,
                 extra=["-m", str(n), "-l", "3", "-r", "10"])
    assert r.returncode == 0, sipp_errors(tmp_path, "churn")
    done = w.wait_events("RecordingCompleted", n, timeout=30)
    answered = {e["call_uuid"]: e["at"] for e in w.events("CallAnswered")}
    ended = {e["call_uuid"]: e["at"] for e in w.events("CallEnded")}
    assert len(answered) == len(ended) == n
    for d in done:  # "empty" only for a caller who hung up before the first frame
        span = (datetime.fromisoformat(ended[d["call_uuid"]]) - datetime.fromisoformat(answered[d["call_uuid"]]))
        assert d["status"] == "complete" or (d["status"] == "empty" and span.total_seconds() < 0.3), (d, span)
    assert w.proc.poll() is None and "Fatal Python error" not in w.log_text()
