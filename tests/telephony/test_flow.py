"""The call flow state machine, driven with a fake control and a fake clock."""
from __future__ import annotations

from telephony.flow import CallFlow

DURATIONS = {"notice": 10.0, "speak_after_tone": 7.0, "beep": 0.3, "too_long": 5.0}


class FakeControl:
    def __init__(self):
        self.log: list[tuple] = []
        self.playing: str | None = None
        self.hung_up: str | None = None

    def play(self, prompt):
        self.log.append(("play", prompt))
        self.playing = prompt
        return DURATIONS[prompt]

    def stop_playback(self):
        self.log.append(("stop", self.playing))
        self.playing = None

    def hangup(self, reason):
        self.log.append(("hangup", reason))
        self.hung_up = reason

    def state_changed(self, state, detail=""):
        self.log.append(("state", state))


def _run(flow, start, end, step=0.1):
    t = start
    while t <= end:
        flow.tick(t)
        t = round(t + step, 6)


def test_notice_then_prompt_beep_record():
    c = FakeControl()
    f = CallFlow(c, max_call_seconds=3600)
    f.start(0.0)
    assert f.state.name == "notice" and c.playing == "notice"
    _run(f, 0.0, 9.9)
    assert f.state.name == "notice"  # the notice plays to its end first
    _run(f, 10.0, 16.9)
    assert f.state.name == "speak_prompt"
    _run(f, 17.1, 20.0)
    assert f.state.name == "record"
    plays = [x[1] for x in c.log if x[0] == "play"]
    assert plays == ["notice", "speak_after_tone", "beep"]
    assert f.history == ["notice", "speak_prompt", "beep", "record"]
    f.on_hangup(120.0)
    assert f.ended and f.reached_reporting_state and c.hung_up is None


def test_hangup_during_notice_is_not_a_report():
    c = FakeControl()
    f = CallFlow(c, max_call_seconds=3600)
    f.start(0.0)
    _run(f, 0.0, 2.0)
    f.on_hangup(2.0)
    assert f.ended and not f.reached_reporting_state
    _run(f, 2.0, 30.0)  # nothing more happens after the hang-up
    assert [x for x in c.log if x[0] == "play"] == [("play", "notice")]
    assert f.history == ["notice", "ended"]


def test_max_call_length_closes_with_prompt_then_hangs_up():
    c = FakeControl()
    f = CallFlow(c, max_call_seconds=60)
    f.start(0.0)
    _run(f, 0.0, 59.9)
    assert f.state.name == "record" and c.hung_up is None
    f.tick(60.0)
    assert f.state.name == "closing" and c.playing == "too_long"
    _run(f, 60.1, 64.9)
    assert c.hung_up is None
    _run(f, 65.0, 66.0)
    assert c.hung_up == "max_call_seconds" and f.ended


def test_max_length_interrupts_a_prompt():
    c = FakeControl()
    f = CallFlow(c, max_call_seconds=12)  # shorter than notice + prompt
    f.start(0.0)
    _run(f, 0.0, 12.0)
    assert f.state.name == "closing"
    assert ("stop", "speak_after_tone") in c.log


def test_dtmf_does_not_break_the_record_flow():
    c = FakeControl()
    f = CallFlow(c, max_call_seconds=3600)
    f.start(0.0)
    for d in "123#*9":
        f.on_dtmf(d, 1.0)
    _run(f, 0.0, 20.0)
    assert f.state.name == "record"


def test_routing_plugs_in_as_a_state():
    """A later flow adds a state after the notice without rewriting the machine."""
    from telephony.flow import PromptState

    class Queue(PromptState):
        name, prompt, next_state = "queue", "queue_announce", "record"

    class RoutedFlow(CallFlow):
        states = {**CallFlow.states, "queue": Queue}

        def after_notice(self):
            return "queue"

    DURATIONS["queue_announce"] = 3.0
    c = FakeControl()
    f = RoutedFlow(c, max_call_seconds=3600)
    f.start(0.0)
    _run(f, 0.0, 14.0)
    assert f.history == ["notice", "queue", "record"]
