"""The auto-attendant with real peers: a scripted pjsua2 caller (RFC 2833 DTMF, speech from
../shared/audio/zh) and sipp, against a worker whose hours say "closed"."""
from __future__ import annotations

import pytest
import soundfile as sf

from tests.telephony.audio_util import active_span, assert_speech_present, best_ncc
from tests.telephony.sipp_util import SIPP, call_scenario, run_sipp, sipp_errors, wait_for
from tests.telephony.test_queue_util import (call_events, hotline_hangs_up_scenario, prompt_audio,  # noqa: F401
                                             quick_prompts, resample, run_caller, speech, start_routing_worker,
                                             states, wait_done)

pytestmark = [pytest.mark.sip, pytest.mark.slow]

CLOSED = {"open": False, "reason": "closed_holiday", "operators": []}


def test_menu_scope_then_voicemail_ended_by_silence(make_worker, quick_prompts):
    talk = speech("BAC009S0724W0121.wav", "16k")
    w = start_routing_worker(make_worker, quick_prompts, CLOSED)
    # notice 1.5 s, greeting 2 s, menu (4 s) from 3.5 s: "2" at 5.5 s -> scope (4 s) -> menu from
    # 9.5 s: "1" at 11.5 s -> voicemail greeting (2 s), beep, recording from ~13.8 s; speech at 15 s
    out = run_caller(w.uri, [(5.5, "dtmf", "2"), (11.5, "dtmf", "1"), (15.0, "play", talk)], timeout=60)
    assert out["answered"] and [d for d, _ in out["sent"]] == ["2", "1"]
    assert out["ended_by"] == "hotline"  # after the confirmation prompt
    done = wait_done(w)
    cu = done["call_uuid"]
    evs = call_events(w, cu)
    assert evs["RoutingDecided"][0]["path"] == "attendant"
    assert states(w, cu) == ["notice", "route", "attendant", "menu", "scope", "menu", "vm_greeting", "vm_beep",
                             "voicemail", "confirmation", "ended"]
    assert [(e["digit"], e["method"]) for e in evs["DtmfReceived"]] == [("2", "rfc2833"), ("1", "rfc2833")]
    vs, ve = evs["VoicemailStarted"][0], evs["VoicemailEnded"][0]
    assert vs["reason"] == "menu" and ve["reason"] == "silence"
    assert done["kind"] == "voicemail" and done["status"] == "complete"
    assert done["extra"]["voicemail_start_s"] == vs["offset_s"]
    assert evs["CallEnded"][0]["status"] == "ended" and evs["CallEnded"][0]["hung_up_by"] == "hotline"

    audio, rate = sf.read(done["path"], dtype="float32")
    # the scope prompt was played (channel 1), before the voicemail
    ncc_s, off_s = best_ncc(audio[:, 1], prompt_audio(quick_prompts, "scope_info"))
    assert ncc_s > 0.8 and off_s / rate < vs["offset_s"]
    # the voicemail part: about 4 s of the caller's speech on channel 0, ended by 5 s of silence
    part = audio[int(vs["offset_s"] * rate): int(ve["offset_s"] * rate), 0]
    s, e = active_span(part, rate)
    ref, rr = sf.read(str(talk), dtype="float32")
    rs, re_ = active_span(ref, rr)
    assert abs((e - s) - (re_ - rs)) < 0.5, ((s, e), (rs, re_))
    assert_speech_present(part, resample(ref, rr, rate), rate)
    assert 4.5 <= (ve["offset_s"] - vs["offset_s"]) - e <= 6.0  # silence after the speech ended it


def test_caller_sending_no_audio_goes_to_voicemail_after_three_tries(make_worker, quick_prompts, tmp_path):
    if SIPP is None:
        pytest.skip("sipp not installed")
    w = start_routing_worker(make_worker, quick_prompts, CLOSED, menu_timeout_s=1.0)
    r = run_sipp(hotline_hangs_up_scenario(None), w.target, tmp_path, "silent", timeout=90)
    assert r.returncode == 0, sipp_errors(tmp_path, "silent")
    done = wait_done(w)
    cu = done["call_uuid"]
    st = states(w, cu)
    assert st.count("menu") == 3 and st.count("invalid_input") == 2
    evs = call_events(w, cu)
    assert evs["VoicemailStarted"][0]["reason"] == "no_input"
    assert evs["VoicemailEnded"][0]["reason"] == "silence"
    assert done["kind"] == "voicemail"
    assert evs["CallEnded"][0]["hung_up_by"] == "hotline"


def test_long_voicemail_is_capped_at_the_maximum(make_worker, quick_prompts):
    talk = speech("BAC009S0724W0124.wav", "16k")
    w = start_routing_worker(make_worker, quick_prompts, CLOSED, voicemail_max_s=3.0)
    # "1" during the menu, then talk without end (a looped file: a "30 minute" message)
    out = run_caller(w.uri, [(5.0, "dtmf", "1"), (7.5, "loop", talk)], timeout=60)
    assert out["ended_by"] == "hotline" and out["duration"] < 25
    done = wait_done(w)
    evs = call_events(w, done["call_uuid"])
    vs, ve = evs["VoicemailStarted"][0], evs["VoicemailEnded"][0]
    assert ve["reason"] == "max_length"
    assert 2.8 <= ve["offset_s"] - vs["offset_s"] <= 3.6
    assert done["kind"] == "voicemail"


def test_dtmf_storm_then_next_call_served(make_worker, quick_prompts, tmp_path):
    w = start_routing_worker(make_worker, quick_prompts, CLOSED, menu_timeout_s=1.0, voicemail_silence_s=2.0)
    storm = "73*0458*06" * 4
    out = run_caller(w.uri, [(3.6, "dtmf", storm)], timeout=60)
    assert out["answered"] and out["ended_by"] == "hotline"
    done = wait_done(w)
    evs = call_events(w, done["call_uuid"])
    assert len(evs["DtmfReceived"]) >= 10
    assert "voicemail" in states(w, done["call_uuid"])
    assert evs["CallEnded"][0]["status"] == "ended"
    if SIPP is not None:  # the worker keeps serving
        r = run_sipp(call_scenario(None, hold_ms=2500), w.target, tmp_path, "after")
        assert r.returncode == 0, sipp_errors(tmp_path, "after")
        # sipp is done at the 200 to its BYE; the worker writes CallEnded a moment later
        wait_for(lambda: len(w.events("CallEnded")) == 2, 15, what="second call ended")


def test_worker_killed_during_voicemail_recovers_it_as_voicemail(make_worker, quick_prompts):
    talk = speech("BAC009S0724W0124.wav", "16k")
    w = start_routing_worker(make_worker, quick_prompts, CLOSED)
    caller = run_caller(w.uri, [(4.0, "dtmf", "1"), (6.5, "loop", talk)], timeout=40, background=True)
    try:
        w.wait_events("VoicemailStarted", timeout=30)
        import time

        time.sleep(2.0)
        w.kill()  # SIGKILL mid-voicemail
    finally:
        caller.kill()
        caller.wait(10)
    w.start()  # the next start recovers the spool (no routing needed for that)
    done = wait_done(w)
    assert done["status"] == "recovered" and done["kind"] == "voicemail"
    assert done["duration"] > 7.0
    ended = [e for e in w.events("CallEnded") if e["call_uuid"] == done["call_uuid"]]
    assert ended and ended[0]["status"] == "recovered"
