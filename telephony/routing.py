"""Routing a call to an operator: the queue, ringing operators, the bridge. Pure logic plus the
interfaces the composition root implements (no pjsua2 here, no hotline_api import).

Interfaces (implemented over the database by ``hotline_api.sip_routing``; in memory by
:class:`InMemoryRouter` / :class:`FixedHours` for tests and the standalone worker):

* :class:`Router` -- ``claim`` reserves the longest-idle available operator for a call (atomic
  across worker processes), ``answered`` marks them on call, ``release`` ends the reservation or
  the call (``ended`` starts the wrap-up time).
* :class:`OpenHours` -- ``is_open(now)``: the working-hours decision for a UTC instant.

Both may block (database): the agent never calls them on its pjsua2 thread. They run on the
:class:`RoutingClient` helper threads; results are posted back to the owning thread and reach the
flow as signals (``decision``, ``claim``). The flow keeps hold audio playing meanwhile, and waits
at most ``decision_budget_s`` for the open-hours answer after the notice (asked at answer time, so
it is normally there already); past it the call goes to the auto-attendant, which never loses it.

Flow (states of :class:`HotlineFlow`, on top of ``telephony.flow`` and ``telephony.attendant``)::

    notice -> route --open--> queue --operator answers--> connecting --announced--> bridged
                    --closed/holiday/no answer from OpenHours--> attendant (menu...)
    queue: caller hears the "queue" announcement, then hold audio, the announcement again every
           queue_announce_every_s. Operators are claimed longest-idle first and rung one at a
           time for ring_timeout_s; no answer / busy / unreachable -> the next one. Nobody logged
           in -> voicemail_offer; nobody free -> ask again every queue_retry_s; past
           queue_max_wait_s -> voicemail_offer.
    connecting: the operator hears "12388 来电" (operator_announce), the caller still hears hold.
    bridged: caller <-> operator in the worker's conference bridge; the recording goes on
             (channel 0 caller, channel 1 operator + prompts). Operator hangs up -> goodbye
             prompt to the caller -> hang up. Caller hangs up -> the operator leg is ended.
    A caller who hangs up before reaching bridged/voicemail/callback is ``abandoned``.

Signals the agent sends to the flow (``flow.signal(name, now, **data)``): ``decision``
(decision=OpenDecision), ``claim`` (result=ClaimResult), ``leg_ringing`` / ``leg_answered``
(leg=str), ``leg_failed`` (leg, outcome, code), ``leg_ended`` (leg, by).
"""
from __future__ import annotations

import ipaddress
import logging
import re
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Protocol

from telephony.attendant import ATTENDANT_STATES
from telephony.flow import CallFlow, PromptState, State

log = logging.getLogger("telephony.routing")


# ---------------------------------------------------------------------------- data
@dataclass(frozen=True)
class OperatorTarget:
    """An operator to ring: their id and SIP URIs to try in order (a static URI, or their AOR at
    the registrar, e.g. ``sip:op1@127.0.0.1:5060`` through kamailio)."""

    operator_id: str
    uris: tuple[str, ...]
    name: str = ""


@dataclass(frozen=True)
class ClaimResult:
    target: OperatorTarget | None
    logged_in: int  # operators not offline (available, on call, wrap-up, paused)
    available: int  # operators free now (including the ones the call excluded)


@dataclass(frozen=True)
class OpenDecision:
    open: bool
    reason: str = ""  # open / closed_hours / closed_holiday / closed_override / ...
    provisional: bool = False  # holiday data for the date is a fallback


class Router(Protocol):
    def claim(self, call_uuid: str, exclude: frozenset[str]) -> ClaimResult:
        """Reserve the longest-idle available operator not in ``exclude`` for ``call_uuid``
        (atomically: two workers never get the same operator). May block."""

    def answered(self, operator_id: str, call_uuid: str) -> None:
        """The reserved operator answered: they are on call."""

    def release(self, operator_id: str, call_uuid: str, outcome: str) -> None:
        """End the reservation/call. ``outcome``: no_answer / busy / rejected / unreachable /
        cancelled / abandoned (never answered: back to available) or ended (talked: wrap-up)."""


class OpenHours(Protocol):
    def is_open(self, now: datetime) -> OpenDecision: ...


# ---------------------------------------------------------------------------- in-memory fakes
@dataclass
class _Op:
    operator_id: str
    uris: tuple[str, ...]
    state: str = "available"  # available / on_call / wrap_up / paused / offline
    idle_since: float = 0.0
    reserved_by: str | None = None
    wrap_up_until: float = 0.0


class InMemoryRouter:
    """A :class:`Router` in one process (tests, the standalone worker): same rules as the DB one
    (longest idle first, reservation, wrap-up after a talk). ``clock`` is a monotonic seconds
    callable (injectable)."""

    def __init__(self, operators: list[tuple[str, list[str]]] | None = None, wrap_up_s: float = 0.0,
                 clock: Callable[[], float] | None = None) -> None:
        import time

        self.clock = clock or time.monotonic
        self.wrap_up_s = wrap_up_s
        self._lock = threading.Lock()
        self.ops: dict[str, _Op] = {}
        self.log: list[tuple] = []
        for i, (oid, uris) in enumerate(operators or []):
            self.add(oid, uris, idle_since=self.clock() - 1000 + i)  # listed order = longest idle first

    def add(self, operator_id: str, uris: list[str], state: str = "available", idle_since: float | None = None) -> None:
        with self._lock:
            self.ops[operator_id] = _Op(operator_id, tuple(uris), state,
                                        self.clock() if idle_since is None else idle_since)

    def set_state(self, operator_id: str, state: str) -> None:
        with self._lock:
            self.ops[operator_id].state = state

    def _refresh(self, now: float) -> None:
        for o in self.ops.values():
            if o.state == "wrap_up" and now >= o.wrap_up_until:
                o.state = "available"

    def claim(self, call_uuid: str, exclude: frozenset[str]) -> ClaimResult:
        with self._lock:
            now = self.clock()
            self._refresh(now)
            logged_in = sum(1 for o in self.ops.values() if o.state != "offline")
            free = [o for o in self.ops.values() if o.state == "available" and o.reserved_by is None]
            pick = sorted((o for o in free if o.operator_id not in exclude), key=lambda o: o.idle_since)
            self.log.append(("claim", call_uuid, pick[0].operator_id if pick else None))
            if not pick:
                return ClaimResult(None, logged_in, len(free))
            pick[0].reserved_by = call_uuid
            o = pick[0]
            return ClaimResult(OperatorTarget(o.operator_id, o.uris), logged_in, len(free))

    def answered(self, operator_id: str, call_uuid: str) -> None:
        with self._lock:
            o = self.ops.get(operator_id)
            self.log.append(("answered", call_uuid, operator_id))
            if o is not None and o.reserved_by == call_uuid:
                o.state = "on_call"

    def release(self, operator_id: str, call_uuid: str, outcome: str) -> None:
        with self._lock:
            o = self.ops.get(operator_id)
            self.log.append(("release", call_uuid, operator_id, outcome))
            if o is None or o.reserved_by != call_uuid:
                return
            o.reserved_by = None
            if o.state == "on_call" or outcome == "ended":
                now = self.clock()
                o.idle_since = now
                if self.wrap_up_s > 0:
                    o.state, o.wrap_up_until = "wrap_up", now + self.wrap_up_s
                else:
                    o.state = "available"

    @classmethod
    def from_mapping(cls, data: dict) -> "InMemoryRouter":
        """``{"operators": [{"id": "op1", "uris": ["sip:op1@127.0.0.1:5071"], "state": "available"}],
        "wrap_up_s": 0}``"""
        r = cls(wrap_up_s=float(data.get("wrap_up_s", 0)))
        for i, op in enumerate(data.get("operators", [])):
            uris = op.get("uris") or ([op["uri"]] if op.get("uri") else [])
            r.add(str(op["id"]), list(uris), op.get("state", "available"), idle_since=r.clock() - 1000 + i)
        return r


class FixedHours:
    """An :class:`OpenHours` that always answers the same (tests, the standalone worker)."""

    def __init__(self, open_: bool = True, reason: str = "") -> None:
        self.decision = OpenDecision(open_, reason or ("open" if open_ else "closed_hours"))

    def is_open(self, now: datetime) -> OpenDecision:
        return self.decision


# ---------------------------------------------------------------------------- helper threads
_HOST_RE = re.compile(r"^(?P<scheme>sips?:)(?P<user>[^@]*@)?(?P<host>\[[^\]]+\]|[^:;>?]+)(?P<rest>.*)$")


def resolve_uri(uri: str) -> str:
    """``uri`` with its host replaced by an IP address (getaddrinfo), so that pjsip never resolves
    a name on the agent's thread. Raises ``ValueError`` (unparseable) or ``OSError`` (unknown
    host)."""
    m = _HOST_RE.match(uri.strip().strip("<>"))
    if not m:
        raise ValueError("not a SIP URI")
    host = m.group("host")
    try:
        ipaddress.ip_address(host.strip("[]"))
        return uri.strip().strip("<>")
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_DGRAM)
    ip = infos[0][4][0]
    return f"{m.group('scheme')}{m.group('user') or ''}{ip}{m.group('rest')}"


class RoutingClient:
    """Runs Router/OpenHours calls and DNS lookups on helper threads; ``post`` (the agent's
    thread-safe ``Agent.post``) carries each result back to the owning thread."""

    def __init__(self, router: Router | None, hours: OpenHours | None, post: Callable[..., None],
                 clock: Callable[[], datetime] | None = None, threads: int = 2) -> None:
        self.router = router
        self.hours = hours
        self.post = post
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="routing")

    def _run(self, fn: Callable, args: tuple, on_done: Callable | None, default) -> None:
        def job():
            try:
                res = fn(*args)
            except Exception:  # noqa: BLE001 - the call must go on: a safe default answer
                log.exception("routing call %s failed", getattr(fn, "__name__", fn))
                res = default
            if on_done is not None:
                self.post(on_done, res)

        try:
            self._pool.submit(job)
        except RuntimeError:  # shut down (worker stopping): do it now, e.g. a last release
            if on_done is None:
                job()

    def decide(self, on_done: Callable[[OpenDecision], None]) -> None:
        now = self.clock()
        self._run(self.hours.is_open, (now,), on_done, OpenDecision(False, "hours_error"))

    def claim(self, call_uuid: str, exclude: frozenset[str], on_done: Callable[[ClaimResult], None]) -> None:
        self._run(self.router.claim, (call_uuid, exclude), on_done, ClaimResult(None, 1, 0))

    def answered(self, operator_id: str, call_uuid: str) -> None:
        self._run(self.router.answered, (operator_id, call_uuid), None, None)

    def release(self, operator_id: str, call_uuid: str, outcome: str) -> None:
        self._run(self.router.release, (operator_id, call_uuid, outcome), None, None)

    def resolve(self, uris: tuple[str, ...], on_done: Callable[[list[tuple[str, str]]], None]) -> None:
        """-> [(dial_uri or "", error)] in order."""

        def res_all():
            out = []
            for u in uris:
                try:
                    out.append((resolve_uri(u), ""))
                except (OSError, ValueError, UnicodeError) as e:
                    out.append(("", f"{type(e).__name__}: {e}"))
            return out

        self._run(res_all, (), on_done, [("", "resolver failed")] * len(uris))

    def close(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait)


# ---------------------------------------------------------------------------- extra prompts
#: Prompts of the routing/attendant flow that ``telephony.prompts.PROMPTS`` does not have
#: (name -> text; ``hold`` is generated music, not speech). Built like the others, only when
#: missing, so an admin may replace them.
EXTRA_PROMPTS: dict[str, str] = {
    # Played to the operator when they pick up, before the caller is connected.
    "operator_announce": "12388来电。",
    # Loops under the queue announcement while the caller waits.
    "hold": "(等待音乐: 柔和的三和弦琶音, 8 秒)",
    # After the caller chose "call me back" in the voicemail offer.
    "callback_confirm": "已记录您的回电请求，工作人员将尽快与您联系。再见。",
    # The operator hung up: said to the caller before the hotline ends the call.
    "operator_left": "接线员已结束通话，感谢您的来电，再见。",
}


def make_hold_music(dest: Path, rate: int = 16000, seconds: float = 8.0) -> Path:
    """Soft arpeggiated major chords (numpy + soundfile), -20 dBFS-ish, seamless loop."""
    import os

    import numpy as np
    import soundfile as sf

    notes = [261.63, 329.63, 392.0, 523.25, 392.0, 329.63, 293.66, 369.99, 440.0, 587.33, 440.0, 369.99]
    step = seconds / len(notes)
    n = int(rate * step)
    out = []
    for f in notes:
        t = np.arange(n) / rate
        env = np.exp(-3.0 * t / step) * np.minimum(1.0, t / 0.01)
        out.append(0.12 * env * (np.sin(2 * np.pi * f * t) + 0.3 * np.sin(4 * np.pi * f * t)))
    x = np.concatenate(out)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    sf.write(str(tmp), (np.clip(x, -1, 1) * 32767).astype(np.int16), rate, subtype="PCM_16", format="WAV")
    os.replace(tmp, dest)
    return dest


def build_extra_prompts(prompts_dir: Path, force: bool = False) -> dict[str, str]:
    """Write the missing routing prompts (espeak-ng via telephony.prompts.synthesize; ``hold``
    generated). Returns name -> written/kept."""
    from telephony.prompts import synthesize

    prompts_dir = Path(prompts_dir)
    out = {}
    for name, text in EXTRA_PROMPTS.items():
        dest = prompts_dir / f"{name}.wav"
        if dest.exists() and not force:
            out[name] = "kept"
            continue
        if name == "hold":
            make_hold_music(dest)
        else:
            synthesize(text, dest)
        out[name] = "written"
    return out


# ---------------------------------------------------------------------------- flow states
class RoutingControl(Protocol):
    """What the routing/attendant flow asks of the agent, beyond ``telephony.flow.FlowControl``.
    Results come back as flow signals (see module doc)."""

    def request_decision(self) -> None: ...

    def request_claim(self, exclude: frozenset[str]) -> None: ...

    def dial(self, target: OperatorTarget) -> str:
        """Start ringing the operator (tries their URIs in order); returns a leg id."""

    def cancel_leg(self, leg: str, outcome: str) -> None:
        """Stop ringing / hang up a leg (no leg_failed/leg_ended signal follows for it)."""

    def play_to_leg(self, leg: str, prompt: str) -> float: ...

    def bridge(self, leg: str) -> None: ...

    def router_answered(self, operator_id: str) -> None: ...

    def release(self, operator_id: str, outcome: str) -> None: ...

    def routing_decided(self, path: str, reason: str, provisional: bool) -> None: ...

    def start_voicemail(self, reason: str) -> None: ...

    def stop_voicemail(self, reason: str) -> None: ...


class Route(State):
    """Waits (briefly) for the open-hours decision asked at answer time."""

    name = "route"

    def enter(self, now: float) -> None:
        if self.flow.decision is not None:
            self._go(self.flow.decision, now)
        else:
            self.flow.play("hold", now)
            self.flow.set_timer("decision", now + self.flow.cfg.decision_budget_s)

    def on_prompt_done(self, prompt: str, now: float) -> None:
        self.flow.play("hold", now)

    def on_signal(self, name: str, data: dict, now: float) -> None:
        if name == "decision":
            self.flow.cancel_timer("decision")
            self.flow.stop_prompt()
            self._go(data["decision"], now)

    def on_timer(self, key: str, now: float) -> None:
        if key == "decision":
            self.flow.stop_prompt()
            self._go(OpenDecision(False, "decision_timeout"), now)

    def _go(self, d: OpenDecision, now: float) -> None:
        path = "queue" if d.open else "attendant"
        self.flow.control.routing_decided(path, d.reason, d.provisional)
        self.flow.goto(path, now, detail=d.reason)


class Queue(State):
    """The caller waits (announcement + hold audio) while operators are rung one at a time."""

    name = "queue"

    def enter(self, now: float) -> None:
        f = self.flow
        cfg = f.cfg
        if f.queued_at is None:
            f.queued_at = now
            f.set_timer("max_wait", now + cfg.queue_max_wait_s)
        f.play("queue", now)
        f.set_timer("announce", now + cfg.queue_announce_every_s)
        if f.leg is None and not f.claim_pending:
            f.next_operator(now)

    def on_prompt_done(self, prompt: str, now: float) -> None:
        self.flow.play("hold", now)

    def on_timer(self, key: str, now: float) -> None:
        f = self.flow
        if key == "announce":
            f.play("queue", now)
            f.set_timer("announce", now + f.cfg.queue_announce_every_s)
        elif key == "retry":
            f.next_operator(now)
        elif key == "ring_timeout":
            f.drop_leg("no_answer")
            f.next_operator(now)
        elif key == "max_wait":
            f.leave_queue()
            f.goto("voicemail_offer", now, detail="queue_timeout")

    def on_signal(self, name: str, data: dict, now: float) -> None:
        f = self.flow
        if name == "claim":
            f.claim_pending = False
            res: ClaimResult = data["result"]
            if res.target is not None:
                f.ring(res.target, now)
            elif res.logged_in == 0:
                f.leave_queue()
                f.goto("voicemail_offer", now, detail="no_operators")
            else:
                if res.available == 0 or f.tried:
                    # everyone free was tried (or nobody is free): start a new round later
                    f.tried.clear()
                f.set_timer("retry", now + f.cfg.queue_retry_s)
        elif name == "leg_failed" and data.get("leg") == f.leg:
            f.cancel_timer("ring_timeout")
            f.control.release(f.leg_operator, data.get("outcome", "no_answer"))
            f.leg = f.leg_operator = None
            f.next_operator(now)
        elif name == "leg_answered" and data.get("leg") == f.leg:
            f.cancel_timer("ring_timeout")
            f.control.router_answered(f.leg_operator)
            f.leg_answered = True
            f.goto("connecting", now)


class Connecting(State):
    """The operator answered: they hear "12388 来电" while the caller still hears hold audio."""

    name = "connecting"

    def enter(self, now: float) -> None:
        f = self.flow
        f.cancel_timer("max_wait", "announce", "retry")
        if f.cfg.operator_announce:
            d = f.control.play_to_leg(f.leg, "operator_announce")
            f.set_timer("announced", now + max(0.0, d))
        else:
            f.set_timer("announced", now)

    def on_prompt_done(self, prompt: str, now: float) -> None:
        self.flow.play("hold", now)

    def on_timer(self, key: str, now: float) -> None:
        if key == "announced":
            self.flow.goto("bridged", now, detail=self.flow.leg_operator or "")

    def on_signal(self, name: str, data: dict, now: float) -> None:
        f = self.flow
        if name == "leg_ended" and data.get("leg") == f.leg:
            f.cancel_timer("announced")
            f.control.release(f.leg_operator, "rejected")
            f.tried.add(f.leg_operator)
            f.leg = f.leg_operator = None
            f.leg_answered = False
            f.goto("queue", now, detail="operator_left")


class Bridged(State):
    name = "bridged"

    def enter(self, now: float) -> None:
        f = self.flow
        f.stop_prompt()
        f.control.bridge(f.leg)
        f.bridged_at = now

    def on_signal(self, name: str, data: dict, now: float) -> None:
        f = self.flow
        if name == "leg_ended" and data.get("leg") == f.leg:
            f.control.release(f.leg_operator, "ended")
            f.leg = None  # released: nothing left to clean up
            f.goto("operator_left", now)


class OperatorLeft(PromptState):
    name, prompt = "operator_left", "operator_left"

    def on_prompt_done(self, prompt: str, now: float) -> None:
        self.flow.end_by_hotline("operator_hangup", now)


ROUTING_STATES: dict[str, type[State]] = {
    "route": Route,
    "queue": Queue,
    "connecting": Connecting,
    "bridged": Bridged,
    "operator_left": OperatorLeft,
}


class HotlineFlow(CallFlow):
    """The full flow: notice, then working-hours routing to the queue or the auto-attendant.
    ``control`` implements FlowControl + :class:`RoutingControl`; ``cfg`` is the worker's
    ``WorkerConfig`` (timers, menu rules)."""

    states = {**CallFlow.states, **ROUTING_STATES, **ATTENDANT_STATES}
    reporting_states = frozenset({"record", "closing", "bridged", "operator_left", "voicemail", "confirmation",
                                  "callback"})

    def __init__(self, control, cfg, max_call_seconds: float | None = None) -> None:
        super().__init__(control, cfg.max_call_seconds if max_call_seconds is None else max_call_seconds)
        self.cfg = cfg
        self.decision: OpenDecision | None = None
        # queue
        self.queued_at: float | None = None
        self.claim_pending = False
        self.tried: set[str] = set()
        self.leg: str | None = None
        self.leg_operator: str | None = None
        self.leg_answered = False
        self.attempts = 0
        self.bridged_at: float | None = None
        # attendant
        self.menu_tries = 0
        self.vm_reason = ""
        self.reprompt_to = ""

    def after_notice(self) -> str:
        return "route"

    def start(self, now: float) -> None:
        if self.started_at is None:
            self.control.request_decision()  # answered while the notice plays
        super().start(now)

    def signal(self, name: str, now: float, **data) -> None:
        if name == "decision":
            self.decision = data["decision"]
        if name == "claim" and (self.ended or not isinstance(self.state, Queue)):
            # the call left the queue (or ended) while the claim ran: give the operator back
            self.claim_pending = False
            res: ClaimResult = data["result"]
            if res.target is not None:
                self.control.release(res.target.operator_id, "cancelled")
            return
        super().signal(name, now, **data)

    # -- queue helpers (used by the states)
    def stop_prompt(self) -> None:
        self._clear_prompt()

    def next_operator(self, now: float) -> None:
        self.cancel_timer("retry")
        if self.claim_pending or self.leg is not None:
            return
        self.claim_pending = True
        self.control.request_claim(frozenset(self.tried))

    def ring(self, target: OperatorTarget, now: float) -> None:
        self.attempts += 1
        self.tried.add(target.operator_id)
        self.leg_operator = target.operator_id
        self.leg_answered = False
        self.leg = self.control.dial(target)
        self.set_timer("ring_timeout", now + self.cfg.ring_timeout_s)

    def drop_leg(self, outcome: str) -> None:
        """Stop ringing the current operator and give them back."""
        if self.leg is not None:
            self.control.cancel_leg(self.leg, outcome)
            self.control.release(self.leg_operator, outcome)
        self.leg = self.leg_operator = None
        self.leg_answered = False
        self.cancel_timer("ring_timeout")

    def leave_queue(self) -> None:
        self.drop_leg("cancelled")
        self.cancel_timer("max_wait", "announce", "retry", "ring_timeout")

    def cleanup(self, now: float) -> None:
        if self.leg is not None:
            talked = self.leg_answered
            self.control.cancel_leg(self.leg, "ended" if talked else "abandoned")
            self.control.release(self.leg_operator, "ended" if talked else "abandoned")
            self.leg = self.leg_operator = None


# ---------------------------------------------------------------------------- registrar (kamailio)
REGISTRAR_HTABLE = "subs"


def registrar_extension(realm: str = "12388"):
    """The operator registrar for kamailio's generated config (a ``telephony.kamailio.CfgExtension``
    filling the REGISTRAR and FROM_WORKER extension points):

    * REGISTER from operator softphones: digest authentication (``auth`` module,
      ``pv_www_authenticate`` against the HA1 stored in the in-memory htable ``subs``: user ->
      md5(user:realm:password)), then ``save("location")`` in usrloc (memory only).
    * Credentials are pushed by the service over kamailio's RPC, no restart:
      ``htable.sets subs <user> <ha1>`` / ``htable.delete subs <user>`` (see
      :func:`push_credentials`); the composition root pushes every credential after (re)starting
      kamailio and on each admin change.
    * INVITEs that agent workers send to ``sip:<user>@<kamailio>`` are looked up in the location
      table (``lookup("location")``, 404 when the operator has no registered softphone) and relayed
      record-routed; the in-dialog requests then follow the default WITHINDLG route.
    """
    from telephony.kamailio import CfgExtension

    register = f"""
\tif (!is_present_hf("Authorization") || $sht({REGISTRAR_HTABLE}=>$au) == $null) {{
\t\twww_challenge("{realm}", "0");
\t\texit;
\t}}
\tif (!pv_www_authenticate("{realm}", "$sht({REGISTRAR_HTABLE}=>$au)", "1")) {{
\t\txlog("L_NOTICE", "REGISTER from $si: authentication failed\\n");
\t\twww_challenge("{realm}", "0");
\t\texit;
\t}}
\tif ($au != $tU) {{
\t\tsl_send_reply("403", "Forbidden");
\t\texit;
\t}}
\tconsume_credentials();
\tif (!save("location")) {{
\t\tsl_reply_error();
\t}}
\texit;
"""
    from_worker = """
\tif (!is_method("INVITE")) {
\t\tsl_send_reply("405", "Method Not Allowed");
\t\texit;
\t}
\tif (!lookup("location")) {
\t\tsl_send_reply("404", "Not Registered");
\t\texit;
\t}
\trecord_route();
\troute(RELAY);
"""
    return CfgExtension(
        modules=["usrloc", "registrar", "auth"],
        modparams=[("usrloc", "db_mode", 0), ("usrloc", "use_domain", 0),
                   ("registrar", "max_expires", 600), ("registrar", "default_expires", 300),
                   ("auth", "nonce_expire", 300),
                   ("htable", "htable", f"{REGISTRAR_HTABLE}=>size=8;")],
        routes={"REGISTRAR": register, "FROM_WORKER": from_worker},
    )


def push_credentials(rpc, creds: dict[str, str | None]) -> None:
    """Set (HA1) or remove (None) operator credentials in a running kamailio through its RPC
    (``rpc`` = ``KamailioProcess.rpc``)."""
    for user, ha1 in creds.items():
        if ha1:
            rpc("htable.sets", REGISTRAR_HTABLE, user, ha1)
        else:
            try:
                rpc("htable.delete", REGISTRAR_HTABLE, user)
            except Exception:  # noqa: BLE001 - not there
                pass
