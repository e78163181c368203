"""The auto-attendant states and the voice-activity detectors (no SIP)."""
from __future__ import annotations

import numpy as np

from telephony.attendant import EnergyVad, VoiceActivity, make_vad
from telephony.routing import HotlineFlow, OpenDecision
from tests.telephony.test_routing import FakeRoutingControl, cfg, run


def attendant(**kw):
    c = FakeRoutingControl()
    f = HotlineFlow(c, cfg(**kw))
    f.start(0.0)
    f.signal("decision", 0.5, decision=OpenDecision(False, "closed_hours"))
    run(f, 0, 8.0)  # notice
    assert f.state.name == "attendant"
    run(f, 8.1, 12.0)  # greeting
    assert f.state.name == "menu"
    return c, f


def test_menu_2_scope_then_back_then_1_voicemail_until_silence():
    c, f = attendant()
    f.on_dtmf("2", 13.0)  # barge-in during the menu prompt
    assert f.state.name == "scope" and c.playing == "scope_info"
    run(f, 13.0, 28.1)
    assert f.state.name == "menu"
    f.on_dtmf("1", 29.0)
    assert f.state.name == "vm_greeting"
    run(f, 29.0, 32.4)
    assert f.state.name == "voicemail" and c.vm == [("start", "menu")]
    assert [p for p in (x[1] for x in c.log if x[0] == "play")][-2:] == ["voicemail_greeting", "beep"]
    # 4 s of speech: silence is counted from the last speech frame
    t = 32.4
    while t < 36.4:
        f.on_audio(True, t)
        f.tick(t)
        t = round(t + 0.02, 3)
    run(f, 36.4, 41.3)
    assert f.state.name == "voicemail"  # 4.9 s of silence: not yet
    run(f, 41.4, 41.5)
    assert f.state.name == "confirmation" and c.vm[-1] == ("stop", "silence")
    run(f, 41.5, 44.6)
    assert c.hung_up == "voicemail_done" and f.reached_reporting_state
    assert c.states()[:4] == ["notice", "route", "attendant", "menu"]


def test_hash_ends_voicemail_and_max_length_caps_it():
    c, f = attendant(voicemail_max_s=10)
    f.on_dtmf("1", 13.0)
    run(f, 13.0, 16.4)
    assert f.state.name == "voicemail"
    f.on_dtmf("#", 17.0)
    assert c.vm[-1] == ("stop", "hash") and f.state.name == "confirmation"
    c2, f2 = attendant(voicemail_max_s=10)
    f2.on_dtmf("1", 13.0)
    run(f2, 13.0, 16.4)
    t = 16.4
    while t < 27.0:  # talks on and on
        f2.on_audio(True, t)
        f2.tick(t)
        t = round(t + 0.1, 3)
    assert c2.vm[-1] == ("stop", "max_length")


def test_repeat_does_not_count_but_no_input_three_times_goes_to_recording():
    c, f = attendant()
    f.on_dtmf("9", 12.5)
    assert f.state.name == "menu" and f.menu_tries == 0
    run(f, 12.5, 17.5)  # menu prompt ends at 17.5
    run(f, 17.6, 22.6)  # 5 s without input
    assert f.menu_tries == 1 and f.state.name in ("invalid_input", "menu")
    run(f, 22.7, 60.0)
    assert f.menu_tries == 3
    assert "voicemail" in c.states()
    assert c.vm[0] == ("start", "no_input")


def test_dtmf_storm_is_harmless():
    c, f = attendant()
    t = 12.1
    for d in "7*0345678*0#" * 5:
        f.on_dtmf(d, t)
        t += 0.01
    assert f.menu_tries >= 3 and f.state.name in ("vm_greeting", "vm_beep", "voicemail", "confirmation")
    run(f, t, t + 40)
    assert c.hung_up == "voicemail_done"


def test_hangup_during_voicemail_stops_it():
    c, f = attendant()
    f.on_dtmf("1", 13.0)
    run(f, 13.0, 16.4)
    f.on_hangup(18.0)
    assert c.vm[-1] == ("stop", "hangup") and f.reached_reporting_state


def test_offer_2_is_a_callback_request():
    c, f = attendant()
    f.goto("voicemail_offer", 13.0, detail="no_operators")
    f.on_dtmf("2", 14.0)
    assert f.state.name == "callback"
    run(f, 14.0, 17.1)
    assert c.hung_up == "callback_requested" and f.reached_reporting_state


def _tone(rate=16000, ms=20, db=-20.0, seed=0):
    rng = np.random.default_rng(seed)
    n = rate * ms // 1000
    t = np.arange(n) / rate
    x = np.sin(2 * np.pi * 220 * t) * 0.6 + 0.4 * np.sin(2 * np.pi * 660 * t) + 0.1 * rng.standard_normal(n)
    x = x / np.sqrt(np.mean(x ** 2)) * (10 ** (db / 20))
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def test_vad_detectors_on_silence_and_signal():
    silence = bytes(640)
    noise = (np.random.default_rng(1).standard_normal(320) * 10).astype("<i2").tobytes()  # about -70 dBFS
    loud = _tone()
    e = EnergyVad(-45)
    assert not e.is_speech(silence) and not e.is_speech(noise) and e.is_speech(loud)
    w = make_vad("webrtc", 16000, 2)
    assert not w.is_speech(silence)
    va = VoiceActivity(EnergyVad(-45))
    assert not any(va.feed(silence) for _ in range(20))
    assert not va.feed(loud) and not va.feed(loud)  # two frames alone are a click, not speech
    assert va.feed(loud)
    assert not VoiceActivity(EnergyVad(-45)).feed(None)
