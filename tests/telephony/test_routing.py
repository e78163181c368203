"""The queue/operator flow (telephony.routing.HotlineFlow) with a fake control, the in-memory
router and a fake clock: no SIP, no threads."""
from __future__ import annotations

from telephony.config import WorkerConfig
from telephony.routing import (ClaimResult, FixedHours, HotlineFlow, InMemoryRouter, OpenDecision, OperatorTarget,
                               resolve_uri)

DUR = {"notice": 8.0, "queue": 3.0, "hold": 8.0, "operator_announce": 1.5, "voicemail_offer": 5.0,
       "goodbye": 2.0, "operator_left": 3.0, "too_long": 4.0, "voicemail_greeting": 3.0, "beep": 0.3,
       "confirmation": 3.0, "callback_confirm": 3.0, "attendant_greeting": 4.0, "menu": 5.0,
       "invalid_input": 2.0, "scope_info": 15.0}


class FakeRoutingControl:
    """Records what the flow asks; the test plays the agent's part (signals)."""

    def __init__(self, router: InMemoryRouter | None = None):
        self.router = router
        self.log: list[tuple] = []
        self.playing: str | None = None
        self.hung_up: str | None = None
        self.legs: dict[str, str] = {}  # leg -> operator
        self.cancelled: list[tuple[str, str]] = []
        self.decisions = 0
        self.claims: list[frozenset] = []
        self.released: list[tuple[str, str]] = []
        self.bridged: str | None = None
        self.vm: list[tuple[str, str]] = []

    # FlowControl
    def play(self, prompt):
        self.log.append(("play", prompt))
        self.playing = prompt
        return DUR[prompt]

    def stop_playback(self):
        self.playing = None

    def hangup(self, reason):
        self.hung_up = reason

    def state_changed(self, state, detail=""):
        self.log.append(("state", state, detail))

    # RoutingControl
    def request_decision(self):
        self.decisions += 1

    def request_claim(self, exclude):
        self.claims.append(exclude)

    def dial(self, target: OperatorTarget) -> str:
        leg = f"leg{len(self.legs) + 1}"
        self.legs[leg] = target.operator_id
        self.log.append(("dial", target.operator_id))
        return leg

    def cancel_leg(self, leg, outcome):
        self.cancelled.append((leg, outcome))

    def play_to_leg(self, leg, prompt):
        self.log.append(("play_to_leg", leg, prompt))
        return DUR[prompt]

    def bridge(self, leg):
        self.bridged = leg

    def router_answered(self, operator_id):
        self.log.append(("answered", operator_id))

    def release(self, operator_id, outcome):
        self.released.append((operator_id, outcome))
        if self.router is not None:
            self.router.release(operator_id, "c1", outcome)

    def routing_decided(self, path, reason, provisional):
        self.log.append(("decided", path, reason, provisional))

    def start_voicemail(self, reason):
        self.vm.append(("start", reason))

    def stop_voicemail(self, reason):
        self.vm.append(("stop", reason))

    def states(self):
        return [x[1] for x in self.log if x[0] == "state"]


def cfg(**kw) -> WorkerConfig:
    base = dict(ring_timeout_s=10, queue_max_wait_s=60, queue_announce_every_s=20, queue_retry_s=2,
                decision_budget_s=3, menu_timeout_s=5, menu_max_tries=3, voicemail_max_s=60, voicemail_silence_s=5)
    base.update(kw)
    return WorkerConfig(**base)


def run(flow, t0, t1, step=0.1):
    t = t0
    while t <= t1 + 1e-9:
        flow.tick(t)
        t = round(t + step, 6)
    return t1


def claim_from(router, ctl, flow, now):
    """Answer the flow's last claim request with the router (as RoutingClient would)."""
    res = router.claim("c1", ctl.claims[-1])
    flow.signal("claim", now, result=res)
    return res


def started(c, **kw):
    f = HotlineFlow(c, cfg(**kw))
    f.start(0.0)
    return f


def test_open_hours_queue_rings_longest_idle_then_bridges():
    router = InMemoryRouter([("op1", ["sip:op1@127.0.0.1:5071"]), ("op2", ["sip:op2@127.0.0.1:5072"])])
    c = FakeRoutingControl(router)
    f = started(c)
    assert c.decisions == 1  # asked at answer, while the notice plays
    f.signal("decision", 1.0, decision=OpenDecision(True, "open"))
    run(f, 0, 8.0)
    assert f.state.name == "queue" and ("decided", "queue", "open", False) in c.log
    assert c.playing == "queue"
    res = claim_from(router, c, f, 8.2)
    assert res.target.operator_id == "op1"  # listed first = idle longest
    assert c.legs == {"leg1": "op1"}
    f.signal("leg_answered", 9.0, leg="leg1")
    assert f.state.name == "connecting" and ("play_to_leg", "leg1", "operator_announce") in c.log
    assert c.bridged is None
    run(f, 9.0, 10.6)
    assert f.state.name == "bridged" and c.bridged == "leg1"
    assert router.ops["op1"].state == "on_call" or ("answered", "op1") in c.log
    f.on_hangup(30.0)  # caller hangs up
    assert f.reached_reporting_state
    assert ("leg1", "ended") in c.cancelled and ("op1", "ended") in c.released


def test_no_answer_rings_next_then_both_busy_then_voicemail_offer():
    router = InMemoryRouter([("op1", ["sip:a@127.0.0.1"]), ("op2", ["sip:b@127.0.0.1"])])
    c = FakeRoutingControl(router)
    f = started(c, queue_max_wait_s=40)
    f.signal("decision", 0.5, decision=OpenDecision(True, "open"))
    run(f, 0, 8.0)
    claim_from(router, c, f, 8.0)
    assert c.legs == {"leg1": "op1"}
    run(f, 8.1, 18.1)  # ring timeout (10 s) -> op1 given back, next claim excludes it
    assert ("leg1", "no_answer") in c.cancelled and ("op1", "no_answer") in c.released
    assert c.claims[-1] == frozenset({"op1"})
    claim_from(router, c, f, 18.2)
    assert c.legs["leg2"] == "op2"
    f.signal("leg_failed", 19.0, leg="leg2", outcome="busy", code=486)
    assert ("op2", "busy") in c.released
    # both tried: nobody left this round -> retry later, caller keeps hearing hold / announcement
    res = claim_from(router, c, f, 19.1)
    assert res.target is None and res.available == 2
    assert f.state.name == "queue" and "retry" in f.timers
    run(f, 19.2, 29.0)
    assert c.log.count(("play", "queue")) >= 2  # periodic announcement
    assert c.claims[-1] == frozenset()  # a new round
    assert f.state.name == "queue"
    run(f, 29.1, 49.0)  # max wait (40 s after entering the queue at 8 s)
    assert f.state.name == "voicemail_offer"
    assert ("state", "voicemail_offer", "queue_timeout") in c.log
    # a late claim answer is given back, not rung
    router2 = InMemoryRouter([("op3", ["sip:c@127.0.0.1"])])
    f.signal("claim", 49.5, result=router2.claim("c1", frozenset()))
    assert ("op3", "cancelled") in c.released and "op3" not in c.legs.values()


def test_no_operator_logged_in_offers_voicemail():
    router = InMemoryRouter([("op1", ["sip:a@127.0.0.1"])])
    router.set_state("op1", "offline")
    c = FakeRoutingControl(router)
    f = started(c)
    f.signal("decision", 0.5, decision=OpenDecision(True, "open"))
    run(f, 0, 8.0)
    claim_from(router, c, f, 8.1)
    assert f.state.name == "voicemail_offer"
    assert ("state", "voicemail_offer", "no_operators") in c.log
    f.on_dtmf("1", 9.0)
    assert f.state.name == "vm_greeting"


def test_caller_hangs_up_while_queued_is_abandoned_and_operator_released():
    router = InMemoryRouter([("op1", ["sip:a@127.0.0.1"])])
    c = FakeRoutingControl(router)
    f = started(c)
    f.signal("decision", 0.5, decision=OpenDecision(True, "open"))
    run(f, 0, 8.0)
    claim_from(router, c, f, 8.1)
    f.on_hangup(12.0)
    assert not f.reached_reporting_state
    assert ("leg1", "abandoned") in c.cancelled and ("op1", "abandoned") in c.released
    assert router.ops["op1"].state == "available" and router.ops["op1"].reserved_by is None


def test_closed_goes_to_attendant_and_slow_decision_falls_back():
    c = FakeRoutingControl()
    f = started(c)
    f.signal("decision", 2.0, decision=OpenDecision(False, "closed_holiday"))
    run(f, 0, 8.1)
    assert f.state.name == "attendant" and ("decided", "attendant", "closed_holiday", False) in c.log
    # no answer from OpenHours within the budget -> attendant (never a dead call)
    c2 = FakeRoutingControl()
    f2 = started(c2)
    run(f2, 0, 8.0)
    assert f2.state.name == "route" and c2.playing == "hold"
    run(f2, 8.1, 11.2)
    assert f2.state.name == "attendant" and ("decided", "attendant", "decision_timeout", False) in c2.log


def test_operator_hangs_up_during_announce_back_to_queue_and_after_bridge_goodbye():
    router = InMemoryRouter([("op1", ["sip:a@127.0.0.1"]), ("op2", ["sip:b@127.0.0.1"])])
    c = FakeRoutingControl(router)
    f = started(c)
    f.signal("decision", 0.5, decision=OpenDecision(True, "open"))
    run(f, 0, 8.0)
    claim_from(router, c, f, 8.0)
    f.signal("leg_answered", 9.0, leg="leg1")
    f.signal("leg_ended", 9.5, leg="leg1", by="operator")
    assert f.state.name == "queue" and ("op1", "rejected") in c.released
    claim_from(router, c, f, 9.6)
    assert c.legs["leg2"] == "op2"
    f.signal("leg_answered", 10.0, leg="leg2")
    run(f, 10.0, 11.6)
    assert f.state.name == "bridged"
    f.signal("leg_ended", 40.0, leg="leg2", by="operator")
    assert f.state.name == "operator_left" and ("op2", "ended") in c.released
    run(f, 40.0, 43.1)
    assert c.hung_up == "operator_hangup" and f.reached_reporting_state


def test_signals_for_stale_legs_are_ignored():
    router = InMemoryRouter([("op1", ["sip:a@127.0.0.1"]), ("op2", ["sip:b@127.0.0.1"])])
    c = FakeRoutingControl(router)
    f = started(c)
    f.signal("decision", 0.5, decision=OpenDecision(True, "open"))
    run(f, 0, 8.0)
    claim_from(router, c, f, 8.0)
    run(f, 8.1, 18.1)  # leg1 timed out
    f.signal("leg_answered", 18.2, leg="leg1")  # too late: that leg was cancelled
    assert f.state.name == "queue"


def test_in_memory_router_longest_idle_wrap_up_and_atomic_claims():
    t = [100.0]
    r = InMemoryRouter([("a", ["sip:a@h"]), ("b", ["sip:b@h"])], wrap_up_s=30, clock=lambda: t[0])
    x = r.claim("c1", frozenset())
    y = r.claim("c2", frozenset())
    z = r.claim("c3", frozenset())
    assert (x.target.operator_id, y.target.operator_id, z.target) == ("a", "b", None)
    r.answered("a", "c1")
    r.release("a", "c1", "ended")
    assert r.ops["a"].state == "wrap_up"
    assert r.claim("c4", frozenset()).target is None
    t[0] += 31
    r.release("b", "c2", "no_answer")  # never answered: back at once, still the longest idle
    assert r.claim("c5", frozenset()).target.operator_id == "b"
    assert r.claim("c6", frozenset()).target.operator_id == "a"


def test_fixed_hours_and_claim_result():
    assert FixedHours(False).is_open(None).open is False
    assert ClaimResult(None, 0, 0).logged_in == 0


def test_resolve_uri_keeps_ip_and_resolves_names():
    assert resolve_uri("sip:op1@127.0.0.1:5071") == "sip:op1@127.0.0.1:5071"
    assert resolve_uri("sip:op1@localhost:5071;transport=udp").startswith("sip:op1@127.0.0.1:5071;transport=udp")
    import pytest

    with pytest.raises(OSError):
        resolve_uri("sip:op1@no-such-host.invalid:5071")
    with pytest.raises(ValueError):
        resolve_uri("mailto:x")
