"""The auto-attendant: greeting, DTMF menu, scope information, voicemail. Pure flow states (no
pjsua2, no threads, no clock of their own) plus the voice-activity detector the agent runs on the
caller's audio while a voicemail is recorded.

States (registered by ``telephony.routing.HotlineFlow``)::

    attendant (greeting) -> menu
    menu:  1 -> vm_greeting -> vm_beep -> voicemail -> confirmation -> hang up
           2 -> scope (what 12388 accepts, where other matters go) -> menu
           9 -> menu (repeat)
           no input (menu_timeout_s after the prompt) or an invalid digit -> invalid_input -> menu,
           at most ``menu_max_tries`` times, then straight to vm_greeting -> vm_beep -> voicemail
    voicemail_offer (queue timed out / nobody logged in):
           1 -> vm_greeting ...; 2 -> callback (request recorded) -> hang up;
           no/invalid input: re-offered up to ``menu_max_tries`` times, then vm_greeting ...
    voicemail: ends on '#', ``voicemail_silence_s`` without speech, ``voicemail_max_s``, or hang-up

A digit pressed while a menu/scope/offer prompt plays is taken at once (barge-in).

The voicemail is not a separate file: the call's recording (running since answer, channel 0 the
caller) becomes kind ``voicemail`` (``RoutingControl.start_voicemail``), so it gets the same
governance and completion event as any recording; VoicemailStarted/VoicemailEnded give the beep
and end positions in it.

Prompts used (texts in ``telephony.prompts.PROMPTS`` and ``telephony.routing.EXTRA_PROMPTS``):
``attendant_greeting``, ``menu``, ``scope_info``, ``invalid_input``, ``voicemail_offer``,
``voicemail_greeting``, ``beep``, ``confirmation``, ``callback_confirm``, ``goodbye``.
"""
from __future__ import annotations

import math
from collections import deque

from telephony.flow import PromptState, State

MENU_DIGITS = "129"
OFFER_DIGITS = "12"


# ---------------------------------------------------------------------------- menu states
class _Choice(State):
    """A prompt that waits for one digit (barge-in allowed), with the no/invalid input rule."""

    prompt = ""
    valid = ""

    def enter(self, now: float) -> None:
        self.flow.cancel_timer("input")
        self.flow.play(self.prompt, now)

    def on_prompt_done(self, prompt: str, now: float) -> None:
        self.flow.set_timer("input", now + self.flow.cfg.menu_timeout_s)

    def on_timer(self, key: str, now: float) -> None:
        if key == "input":
            self.retry(now, "no_input")

    def on_dtmf(self, digit: str, now: float) -> None:
        self.flow.cancel_timer("input")
        if digit in self.valid:
            self.flow.stop_prompt()
            self.choose(digit, now)
        else:
            self.retry(now, "invalid_input")

    def retry(self, now: float, why: str) -> None:
        self.flow.cancel_timer("input")
        self.flow.menu_tries += 1
        if self.flow.menu_tries >= self.flow.cfg.menu_max_tries:
            self.flow.vm_reason = "no_input"
            self.flow.goto("vm_greeting", now, detail=f"{why}, {self.flow.menu_tries} tries")
        else:
            self.flow.stop_prompt()
            self.flow.reprompt_to = self.name
            self.flow.goto("invalid_input", now, detail=why)

    def choose(self, digit: str, now: float) -> None: ...


class Greeting(PromptState):
    """After hours / holiday: the attendant's greeting, then the menu."""

    name, prompt, next_state = "attendant", "attendant_greeting", "menu"

    def on_dtmf(self, digit: str, now: float) -> None:  # an early digit is a menu choice
        if digit in MENU_DIGITS:
            self.flow.stop_prompt()
            self.flow.goto("menu", now)
            self.flow.state.on_dtmf(digit, now)


class Menu(_Choice):
    name, prompt, valid = "menu", "menu", MENU_DIGITS

    def choose(self, digit: str, now: float) -> None:
        if digit == "1":
            self.flow.vm_reason = "menu"
            self.flow.goto("vm_greeting", now)
        elif digit == "2":
            self.flow.goto("scope", now)
        else:  # 9: repeat (not a failed try)
            self.flow.goto("menu", now, detail="repeat")


class Scope(State):
    """What 12388 accepts and where other matters go; then back to the menu (a menu digit
    interrupts it)."""

    name = "scope"

    def enter(self, now: float) -> None:
        self.flow.play("scope_info", now)

    def on_prompt_done(self, prompt: str, now: float) -> None:
        self.flow.goto("menu", now)

    def on_dtmf(self, digit: str, now: float) -> None:
        if digit in MENU_DIGITS:
            self.flow.stop_prompt()
            self.flow.goto("menu", now)
            self.flow.state.on_dtmf(digit, now)


class InvalidInput(PromptState):
    name, prompt = "invalid_input", "invalid_input"

    def on_prompt_done(self, prompt: str, now: float) -> None:
        self.flow.goto(self.flow.reprompt_to or "menu", now)

    def on_dtmf(self, digit: str, now: float) -> None:
        self.flow.stop_prompt()
        self.flow.goto(self.flow.reprompt_to or "menu", now)
        self.flow.state.on_dtmf(digit, now)


class VoicemailOffer(_Choice):
    """Nobody free (queue timed out, or no operator logged in): 1 voicemail, 2 callback."""

    name, prompt, valid = "voicemail_offer", "voicemail_offer", OFFER_DIGITS

    def choose(self, digit: str, now: float) -> None:
        if digit == "1":
            self.flow.vm_reason = "offer"
            self.flow.goto("vm_greeting", now)
        else:
            self.flow.goto("callback", now)


class Callback(PromptState):
    """The caller asked to be called back: the request is the call's flow state ``callback``
    (staff see it on the call; the number is in the call's row). Then goodbye."""

    name, prompt = "callback", "callback_confirm"

    def on_prompt_done(self, prompt: str, now: float) -> None:
        self.flow.end_by_hotline("callback_requested", now)


# ---------------------------------------------------------------------------- voicemail states
class VmGreeting(PromptState):
    name, prompt, next_state = "vm_greeting", "voicemail_greeting", "vm_beep"

    def on_dtmf(self, digit: str, now: float) -> None:  # impatient caller: skip to the beep
        if digit == "1":
            self.flow.stop_prompt()
            self.flow.goto("vm_beep", now)


class VmBeep(PromptState):
    name, prompt, next_state = "vm_beep", "beep", "voicemail"


class Voicemail(State):
    """Records the caller (the call's recording, kind voicemail) until '#', silence, max length
    or hang-up."""

    name = "voicemail"

    def enter(self, now: float) -> None:
        cfg = self.flow.cfg
        self.stopped = False
        self.flow.control.start_voicemail(self.flow.vm_reason or "menu")
        self.flow.set_timer("vm_max", now + cfg.voicemail_max_s)
        self.flow.set_timer("vm_silence", now + cfg.voicemail_silence_s)

    def on_audio(self, speech: bool, now: float) -> None:
        if speech:  # silence is counted from the last speech
            self.flow.set_timer("vm_silence", now + self.flow.cfg.voicemail_silence_s)

    def on_dtmf(self, digit: str, now: float) -> None:
        if digit == "#":
            self.finish("hash", now)

    def on_timer(self, key: str, now: float) -> None:
        if key == "vm_max":
            self.finish("max_length", now)
        elif key == "vm_silence":
            self.finish("silence", now)

    def finish(self, reason: str, now: float) -> None:
        self._stop(reason)
        self.flow.goto("confirmation", now, detail=reason)

    def _stop(self, reason: str) -> None:
        if not self.stopped:
            self.stopped = True
            self.flow.cancel_timer("vm_max", "vm_silence")
            self.flow.control.stop_voicemail(reason)

    def exit(self, now: float) -> None:
        self._stop("hangup")


class Confirmation(PromptState):
    name, prompt = "confirmation", "confirmation"

    def on_prompt_done(self, prompt: str, now: float) -> None:
        self.flow.end_by_hotline("voicemail_done", now)


ATTENDANT_STATES: dict[str, type[State]] = {
    "attendant": Greeting,
    "menu": Menu,
    "scope": Scope,
    "invalid_input": InvalidInput,
    "voicemail_offer": VoicemailOffer,
    "callback": Callback,
    "vm_greeting": VmGreeting,
    "vm_beep": VmBeep,
    "voicemail": Voicemail,
    "confirmation": Confirmation,
}


# ---------------------------------------------------------------------------- voice activity
class EnergyVad:
    """A frame is speech when its RMS level is above ``threshold_dbfs``."""

    def __init__(self, threshold_dbfs: float = -45.0) -> None:
        self.threshold = threshold_dbfs

    def is_speech(self, frame: bytes) -> bool:
        import numpy as np

        x = np.frombuffer(frame, dtype="<i2").astype(np.float64)
        if x.size == 0:
            return False
        rms = math.sqrt(float(np.mean(x * x))) / 32768.0
        return rms > 0 and 20 * math.log10(rms) > self.threshold


class WebrtcVad:
    """webrtcvad (``webrtcvad-wheels``) on 10/20/30 ms frames at 8/16/32/48 kHz; frames of
    another size are judged by the energy detector."""

    def __init__(self, rate: int, aggressiveness: int = 2, fallback_dbfs: float = -45.0) -> None:
        import webrtcvad

        self.vad = webrtcvad.Vad(int(aggressiveness))
        self.rate = rate
        self.sizes = {2 * rate * ms // 1000 for ms in (10, 20, 30)}
        self.energy = EnergyVad(fallback_dbfs)

    def is_speech(self, frame: bytes) -> bool:
        if len(frame) in self.sizes and self.rate in (8000, 16000, 32000, 48000):
            # digital silence never counts (webrtcvad may flag a flat signal's first frames)
            return self.energy.is_speech(frame) and self.vad.is_speech(frame, self.rate)
        return self.energy.is_speech(frame)


def make_vad(kind: str, rate: int, aggressiveness: int = 2, energy_dbfs: float = -45.0):
    """``webrtc`` (falls back to ``energy`` if webrtcvad is not installed) or ``energy``."""
    if kind == "webrtc":
        try:
            return WebrtcVad(rate, aggressiveness, fallback_dbfs=-60.0)
        except ImportError:
            pass
    return EnergyVad(energy_dbfs)


class VoiceActivity:
    """Smooths per-frame decisions: speech when at least ``min_speech`` of the last ``window``
    frames were speech (a click or a DTMF burst alone does not count as talking)."""

    def __init__(self, vad, window: int = 10, min_speech: int = 3) -> None:
        self.vad = vad
        self.recent: deque[bool] = deque(maxlen=window)
        self.min_speech = min_speech

    def feed(self, frame: bytes | None) -> bool:
        self.recent.append(bool(frame) and self.vad.is_speech(frame))
        return sum(self.recent) >= self.min_speech
