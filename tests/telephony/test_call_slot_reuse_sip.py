"""A BYE and the next caller's INVITE handled in one ``libHandleEvents``: pjsua frees the ended
call's slot and gives it to the new call at once. The agent must have let go of the old call
object by then (``pj::Call::~Call`` hangs up whatever call holds its slot id).

Set-up, with real sipp peers: pjsua hands out its 4 call slots round robin, so call A takes
slot 0 and three wrong-number INVITEs take slots 1-3; the next INVITE is offered slot 0 again. The
worker is stopped (SIGSTOP) while A's BYE and B's INVITE arrive, so both wait in its socket and
are read in one poll when it continues.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.telephony.sipp_util import call_scenario, reject_scenario, run_sipp, sipp_errors, wait_for


def _sent(tmp: Path, name: str, start_line: str) -> bool:
    """sipp's -trace_msg log of run ``name`` shows a sent request starting with ``start_line``."""
    for log in (tmp / f"sipp-{name}").glob("*_messages.log"):
        text = log.read_text(errors="replace")
        if f"UDP message sent" in text and f"\n{start_line}" in text:
            return True
    return False


def test_bye_and_next_invite_in_one_poll_leave_the_next_caller_alone(make_worker, tmp_path):
    w = make_worker()
    a = run_sipp(call_scenario(None, hold_ms=6000), w.target, tmp_path, "a", background=True,
                 extra=["-trace_msg"])
    b = None
    try:
        w.wait_events("CallAnswered")
        for i in range(3):  # slots 1-3
            r = run_sipp(reject_scenario(404, dialled="99999"), w.target, tmp_path, f"r{i}")
            assert r.returncode == 0, sipp_errors(tmp_path, f"r{i}")
        assert w.wait_events("CallRejected", 3)
        assert not _sent(tmp_path, "a", "BYE sip:"), "set-up too slow: A hung up before the worker was stopped"
        os.kill(w.proc.pid, signal.SIGSTOP)
        try:
            wait_for(lambda: _sent(tmp_path, "a", "BYE sip:"), 15, what="A's BYE")
            b = run_sipp(call_scenario(None, hold_ms=1500), w.target, tmp_path, "b", background=True,
                         extra=["-trace_msg"])
            wait_for(lambda: _sent(tmp_path, "b", "INVITE sip:"), 15, what="B's INVITE")
        finally:
            os.kill(w.proc.pid, signal.SIGCONT)
        assert a.wait(40) == 0, sipp_errors(tmp_path, "a")
        # B is neither declined nor sent a BYE by the hotline: it hangs up itself, after 1.5 s
        assert b.wait(40) == 0, sipp_errors(tmp_path, "b")
        done = w.wait_events("RecordingCompleted", 2)
        assert [d["status"] for d in done] == ["complete", "complete"]
        ended = w.events("CallEnded")
        assert len(ended) == 2 and {e["hung_up_by"] for e in ended} == {"caller"}
        assert 1.0 < done[1]["duration"] < 3.0
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(5)
