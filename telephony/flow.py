"""The call flow after answer, as explicit states. Pure logic: no pjsua2, no threads, no clock of
its own (times are passed in), so it is unit-tested with a fake :class:`FlowControl`.

Base flow (a worker without Router/OpenHours: record until hang-up)::

    notice --prompt done--> speak_prompt --prompt done--> beep --prompt done--> record
       any state --max_call_seconds--> closing (too_long prompt) --prompt done--> hang up
       any state --caller hangs up--> ended

Routing and the auto-attendant plug in as further :class:`State` subclasses registered in
:attr:`CallFlow.states` (``notice -> route -> queue -> connecting -> bridged``, ``notice -> route ->
attendant -> menu -> voicemail``) by overriding :meth:`CallFlow.after_notice`: see
``telephony.routing.HotlineFlow`` (queue, operator legs) and ``telephony.attendant`` (menu, scope,
voicemail). The agent only calls the ``on_*``/``signal`` entry points below and implements
:class:`FlowControl` (plus, for routing, ``telephony.routing.RoutingControl``).

Besides prompts ending, a state reacts to named timers (:meth:`CallFlow.set_timer`, fired by
:meth:`CallFlow.tick` through :meth:`State.on_timer`), to signals from the agent
(:meth:`CallFlow.signal` -> :meth:`State.on_signal`: operator leg progress, routing answers) and to
the caller's voice activity (:meth:`CallFlow.on_audio`, only while a state asked for it).
"""
from __future__ import annotations

from typing import Protocol


class FlowControl(Protocol):
    """What a flow may ask of the call it runs (implemented by the agent)."""

    def play(self, prompt: str) -> float:
        """Start playing ``prompt`` to the caller (and into the hotline channel); returns its
        duration in seconds. Replaces any prompt playing."""

    def stop_playback(self) -> None: ...

    def hangup(self, reason: str) -> None:
        """End the call from the hotline side (BYE)."""

    def state_changed(self, state: str, detail: str = "") -> None:
        """Report the new state (the agent emits FlowChanged)."""


class State:
    name = "state"

    def __init__(self, flow: "CallFlow") -> None:
        self.flow = flow

    def enter(self, now: float) -> None: ...

    def on_prompt_done(self, prompt: str, now: float) -> None: ...

    def on_dtmf(self, digit: str, now: float) -> None: ...

    def on_timer(self, key: str, now: float) -> None: ...

    def on_signal(self, name: str, data: dict, now: float) -> None: ...

    def on_audio(self, speech: bool, now: float) -> None: ...

    def exit(self, now: float) -> None:
        """Leaving this state (before the next one's ``enter``)."""


class PromptState(State):
    """Plays one prompt, then goes to ``next_state``."""

    prompt = ""
    next_state = ""

    def enter(self, now: float) -> None:
        self.flow.play(self.prompt, now)

    def on_prompt_done(self, prompt: str, now: float) -> None:
        self.flow.goto(self.next_state, now)


class Notice(PromptState):
    name, prompt = "notice", "notice"

    def on_prompt_done(self, prompt: str, now: float) -> None:
        self.flow.goto(self.flow.after_notice(), now)


class SpeakPrompt(PromptState):
    name, prompt, next_state = "speak_prompt", "speak_after_tone", "beep"


class Beep(PromptState):
    name, prompt, next_state = "beep", "beep", "record"


class Record(State):
    """The caller speaks; the recording (running since answer) goes on until hang-up."""

    name = "record"


class Closing(PromptState):
    """The call is too long: a closing prompt, then the hotline hangs up."""

    name, prompt = "closing", "too_long"

    def on_prompt_done(self, prompt: str, now: float) -> None:
        self.flow.end_by_hotline("max_call_seconds", now)


class Ended(State):
    name = "ended"


class CallFlow:
    """One call's flow. Entry points: :meth:`start` (media up after answer), :meth:`tick`,
    :meth:`on_dtmf`, :meth:`on_hangup`."""

    states: dict[str, type[State]] = {
        "notice": Notice,
        "speak_prompt": SpeakPrompt,
        "beep": Beep,
        "record": Record,
        "closing": Closing,
        "ended": Ended,
    }
    #: states in which the caller had the chance to speak (a hang-up before = abandoned)
    reporting_states = frozenset({"record", "closing"})

    def __init__(self, control: FlowControl, max_call_seconds: float) -> None:
        self.control = control
        self.max_call_seconds = max_call_seconds
        self.state: State | None = None
        self.started_at: float | None = None
        self.history: list[str] = []
        self._prompt: str | None = None
        self._prompt_ends: float | None = None
        self.ended = False
        self.end_reason = ""
        self.timers: dict[str, float] = {}

    # -- hooks for later issues
    def after_notice(self) -> str:
        """The state after the recording notice (routing/attendant override this)."""
        return "speak_prompt"

    # -- actions used by states
    def goto(self, name: str, now: float, detail: str = "") -> None:
        if self.ended and name != "ended":
            return
        if self.state is not None:
            self.state.exit(now)
        self.state = self.states[name](self)
        self.history.append(name)
        self.control.state_changed(name, detail) if detail else self.control.state_changed(name)
        self.state.enter(now)

    def play(self, prompt: str, now: float) -> None:
        duration = self.control.play(prompt)
        self._prompt = prompt
        self._prompt_ends = now + max(0.0, duration)

    def set_timer(self, key: str, at: float) -> None:
        """Fire ``state.on_timer(key)`` at ``at`` (replaces a timer of the same key). Timers
        outlive state changes: a state cancels the ones it no longer wants."""
        self.timers[key] = at

    def cancel_timer(self, *keys: str) -> None:
        for k in keys:
            self.timers.pop(k, None)

    def cleanup(self, now: float) -> None:
        """The call is ending (either side): release what the flow holds (overridden)."""

    def end_by_hotline(self, reason: str, now: float) -> None:
        if self.ended:
            return
        self.end_reason = reason
        self.cleanup(now)
        self.timers.clear()
        self._clear_prompt()
        self.goto("ended", now)
        self.ended = True
        self.control.hangup(reason)

    def _clear_prompt(self) -> None:
        if self._prompt is not None:
            self.control.stop_playback()
        self._prompt = None
        self._prompt_ends = None

    # -- entry points
    def start(self, now: float) -> None:
        if self.started_at is not None:
            return
        self.started_at = now
        self.goto("notice", now)

    def tick(self, now: float) -> None:
        if self.ended or self.started_at is None:
            return
        if (now - self.started_at >= self.max_call_seconds and self.state
                and self.state.name not in ("closing", "ended")):
            self._clear_prompt()
            self.goto("closing", now)
            return
        if self._prompt_ends is not None and now >= self._prompt_ends:
            prompt = self._prompt
            self._prompt = None
            self._prompt_ends = None
            self.state.on_prompt_done(prompt, now)
        for key, at in sorted(self.timers.items(), key=lambda kv: kv[1]):
            if self.ended:
                break
            if at <= now and self.timers.get(key) == at:
                del self.timers[key]
                self.state.on_timer(key, now)

    def signal(self, name: str, now: float, **data) -> None:
        """An event from the agent or the routing back-end (see telephony.routing)."""
        if self.state and not self.ended:
            self.state.on_signal(name, data, now)

    def on_audio(self, speech: bool, now: float) -> None:
        """One frame of the caller's audio was (not) speech (sent while a state listens)."""
        if self.state and not self.ended:
            self.state.on_audio(speech, now)

    def on_dtmf(self, digit: str, now: float) -> None:
        if self.state and not self.ended:
            self.state.on_dtmf(digit, now)

    def on_hangup(self, now: float) -> None:
        """The call is gone (caller hung up, or it failed): stop everything."""
        if self.ended:
            return
        self.end_reason = self.end_reason or "hangup"
        if self.state is not None:
            self.state.exit(now)
        self.cleanup(now)
        self.timers.clear()
        self._prompt = None
        self._prompt_ends = None
        self.reached_reporting = self.reached_reporting_state
        self.ended = True
        self.state = Ended(self)
        self.history.append("ended")
        self.control.state_changed("ended")

    @property
    def reached_reporting_state(self) -> bool:
        return any(s in self.reporting_states for s in self.history)
