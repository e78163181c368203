"""The end of a call, on the agent's own thread, with in-memory stand-ins for the pjsua2 call.

What is real: the Agent's end-of-call logic, the RecordingWriter thread, the StereoMixer and the
SpoolRecorder writing a WAV. What is fake: the pjsua2 call object (only ``isActive``/``getInfo``
are asked). The SIP tests (test_agent_sip.py) cover the same path with real peers; these cover
the failures a peer cannot provoke on demand.
"""
from __future__ import annotations

import threading
import time
import uuid
import wave
from pathlib import Path

import pytest

pj = pytest.importorskip("pjsua2")

from telephony.agent import Agent, CallCtx  # noqa: E402
from telephony.config import WorkerConfig  # noqa: E402
from telephony.media import StereoMixer  # noqa: E402
from telephony.recorder import SpoolRecorder  # noqa: E402


class ListSink:
    def __init__(self) -> None:
        self.events: list = []

    def publish(self, event) -> None:
        self.events.append(event)

    def of(self, kind: str) -> list:
        return [e for e in self.events if type(e).__name__ == kind]


class FakeCall:
    """Stands in for telephony.agent._Call: pjsua has (or no longer has) the call."""

    def __init__(self, active: bool = True, info_error: bool = False) -> None:
        self.active = active
        self.info_error = info_error
        self.ctx = None

    def isActive(self) -> bool:
        return self.active

    def getInfo(self):
        if self.info_error:
            raise pj.Error(70009, "Invalid call", "call gone", "pjsua_call_get_info", 0)
        raise AssertionError("not expected in these tests")


class RaisingFlow:
    reached_reporting_state = True

    def on_hangup(self, now: float) -> None:
        raise RuntimeError("flow broke while ending")


@pytest.fixture
def agent_sink(tmp_path: Path):
    cfg = WorkerConfig(spool_dir=str(tmp_path / "spool"), recordings_dir=str(tmp_path / "rec"),
                       prompts_dir=str(tmp_path / "prompts"))
    sink = ListSink()
    agent = Agent(cfg, sink)
    agent._owner = threading.get_ident()  # this test thread plays the owner's part
    agent.writer.start()
    try:
        yield agent, sink
    finally:
        agent.writer.stop()


def _answered_call(agent: Agent, tmp_path: Path, call: FakeCall, seconds: float = 1.0) -> CallCtx:
    spf = 320
    rec = SpoolRecorder(tmp_path / "spool", tmp_path / "rec", str(uuid.uuid4()), "call-1", sample_rate=16000)
    mixer = StereoMixer(spf)
    ctx = CallCtx(call_uuid="call-1", sip_call_id="sip-1", call=call, started_mono=time.monotonic(),
                  state="answered", answered_mono=time.monotonic())
    ctx.recorder, ctx.mixer = rec, mixer
    call.ctx = ctx
    agent._calls[0] = ctx
    agent.writer.add(rec, mixer)
    tone = (b"\x10\x20" * spf)
    for _ in range(int(seconds * 50)):
        mixer.push(0, tone)
        mixer.push(1, None)
    return ctx


def _run_until(agent: Agent, pred, timeout: float = 10.0) -> None:
    """Drain what the writer posts back, as the owner's loop does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        while True:
            try:
                fn, args = agent._cmds.get_nowait()
            except Exception:
                break
            fn(*args)
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


def _check_complete(sink: ListSink, seconds: float) -> None:
    done = sink.of("RecordingCompleted")
    assert len(done) == 1 and done[0].status == "complete", sink.events
    with wave.open(done[0].path) as w:
        assert w.getnchannels() == 2
        assert w.getnframes() == int(seconds * 16000)


def test_call_pjsua_lost_without_a_disconnect_is_ended_and_its_recording_finished(agent_sink, tmp_path):
    agent, sink = agent_sink
    call = FakeCall(active=True)
    _answered_call(agent, tmp_path, call)
    agent._sweep_lost_calls()
    assert not sink.of("CallEnded")  # still active: left alone
    call.active = False
    agent._sweep_lost_calls()
    ended = sink.of("CallEnded")
    assert len(ended) == 1 and ended[0].hangup_reason == "call lost"
    assert not agent._calls
    _run_until(agent, lambda: sink.of("RecordingCompleted"))
    _check_complete(sink, 1.0)
    agent._sweep_lost_calls()  # nothing twice
    assert len(sink.of("CallEnded")) == 1


def test_state_callback_without_call_info_ends_a_call_pjsua_no_longer_has(agent_sink, tmp_path):
    agent, sink = agent_sink
    call = FakeCall(active=False, info_error=True)
    _answered_call(agent, tmp_path, call)
    agent._on_call_state(call)
    assert len(sink.of("CallEnded")) == 1
    _run_until(agent, lambda: sink.of("RecordingCompleted"))
    _check_complete(sink, 1.0)


def test_state_callback_without_info_leaves_an_active_call_alone(agent_sink, tmp_path):
    agent, sink = agent_sink
    call = FakeCall(active=True, info_error=True)
    _answered_call(agent, tmp_path, call)
    agent._on_call_state(call)
    assert not sink.of("CallEnded") and agent._calls


def test_a_failure_while_releasing_the_call_still_finishes_the_recording(agent_sink, tmp_path):
    agent, sink = agent_sink
    call = FakeCall(active=False)
    ctx = _answered_call(agent, tmp_path, call, seconds=0.6)
    ctx.flow = RaisingFlow()
    agent._end_call(ctx, 200, "Normal call clearing")
    ended = sink.of("CallEnded")
    assert len(ended) == 1 and ended[0].status == "ended" and ended[0].hung_up_by == "caller"
    _run_until(agent, lambda: sink.of("RecordingCompleted"))
    _check_complete(sink, 0.6)
