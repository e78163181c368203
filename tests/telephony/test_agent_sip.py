"""The agent worker against real SIP peers on 127.0.0.1 (sipp, a pjsua2 client process)."""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import REPO
from tests.telephony.audio_util import active_span, assert_speech_present, best_ncc
from tests.telephony.sipp_util import (SIPP, call_scenario, cancel_scenario, hold_scenario, reject_scenario, run_sipp,
                                       sipp_errors, stop_process, wait_for)

pytestmark = [pytest.mark.sip, pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) not installed")]


def _one_call_events(w, call_uuid: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for e in w.events():
        if e.get("call_uuid") == call_uuid:
            out.setdefault(e["type"], []).append(e)
    return out


def _assert_closed(w, call_uuid: str) -> dict[str, list[dict]]:
    """Every call gets exactly one CallEnded; every answered call's recording is completed."""
    evs = _one_call_events(w, call_uuid)
    assert len(evs.get("CallEnded", [])) == 1, evs
    if "CallAnswered" in evs:
        rec_id = evs["CallAnswered"][0]["recording_id"]
        done = [e for e in evs.get("RecordingCompleted", []) if e["recording_id"] == rec_id]
        assert len(done) == 1, evs
        assert Path(done[0]["path"]).is_file()
    return evs


def _resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    import soxr

    return soxr.resample(x, src, dst)


# ---------------------------------------------------------------- acceptance 1
def test_answered_call_is_recorded_on_two_channels(make_worker, caller_audio, tmp_path, prompts_dir):
    stream, ref, ref_rate = caller_audio
    w = make_worker()
    r = run_sipp(call_scenario(stream, hold_ms=7000), w.target, tmp_path, "a1")
    assert r.returncode == 0, sipp_errors(tmp_path, "a1")
    done = w.wait_events("RecordingCompleted")[0]
    started = w.events("CallStarted")[0]
    answered = w.events("CallAnswered")[0]
    ended = w.wait_events("CallEnded")[0]
    call_uuid = started["call_uuid"]
    evs = _assert_closed(w, call_uuid)
    # events are complete
    assert started["dialled"] == "12388" and started["sip_call_id"]
    assert started["caller_uri"] == "<redacted>"  # the JSONL file never holds the caller
    assert answered["sample_rate"] == 16000 and answered["channels"] == 2
    assert ended["hung_up_by"] == "caller" and ended["hangup_cause"] == 200
    assert [e["state"] for e in evs["FlowChanged"]][0] == "notice"
    assert done["status"] == "complete" and done["channels"] == 2 and done["sample_rate"] == 16000
    path = Path(done["path"])
    assert path.parent.parent.parent == w.recordings_dir.resolve()
    assert path.stem == done["recording_id"]
    import hashlib

    assert hashlib.sha256(path.read_bytes()).hexdigest() == done["sha256"]
    assert not list(w.spool_dir.glob("*.wav")) and not list(w.spool_dir.glob("*.json"))

    audio, rate = sf.read(str(path), dtype="float32")
    assert audio.ndim == 2 and audio.shape[1] == 2 and rate == 16000
    assert abs(done["duration"] - len(audio) / rate) < 1e-6
    assert 6.5 < done["duration"] < 8.5
    ref16 = _resample(ref, ref_rate, rate)
    # channel 0: the caller's speech, as long as the streamed audio, and the same signal
    s0, e0 = active_span(audio[:, 0], rate)
    rs, re_ = active_span(ref16, rate)
    assert abs((e0 - s0) - (re_ - rs)) <= 0.3, ((s0, e0), (rs, re_))
    assert_speech_present(audio[:, 0], ref16, rate)
    # channel 1: the notice prompt (played from the start), not the caller
    notice, prate = sf.read(str(prompts_dir / "notice.wav"), dtype="float32")
    assert prate == rate
    head = notice[: 5 * rate]
    ncc1, off1 = best_ncc(audio[:, 1], head)
    assert ncc1 > 0.8 and off1 < rate, (ncc1, off1)
    assert best_ncc(audio[:, 0], head)[0] < 0.3  # no echo of the prompt on the caller's channel
    assert best_ncc(audio[:, 1], ref16)[0] < 0.3


def test_recording_survives_hold_and_reinvite(make_worker, caller_audio, tmp_path):
    stream, ref, ref_rate = caller_audio
    w = make_worker()
    r = run_sipp(hold_scenario(stream, hold_at_ms=1500, hold_for_ms=1500, total_ms=7000), w.target, tmp_path, "hold")
    assert r.returncode == 0, sipp_errors(tmp_path, "hold")
    done = w.wait_events("RecordingCompleted")[0]
    assert done["status"] == "complete" and 6.5 < done["duration"] < 8.5
    audio, rate = sf.read(done["path"], dtype="float32")
    ref16 = _resample(ref, ref_rate, rate)
    # the whole utterance (streamed across hold and resume) is on channel 0, uninterrupted
    assert_speech_present(audio[:, 0], ref16, rate, max_spread_s=0.2)
    assert len(w.events("CallEnded")) == 1


# ---------------------------------------------------------------- acceptance 2
def test_rfc2833_dtmf_from_pjsua2_client(make_worker):
    w = make_worker()
    r = subprocess.run([sys.executable, str(REPO / "tests" / "telephony" / "pjclient.py"), w.uri,
                        "--dtmf", "123#", "--before", "1.0", "--gap", "0.5", "--hold", "0.5"],
                       capture_output=True, text=True, timeout=60)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert lines, r.stdout + r.stderr
    client = json.loads(lines[-1])
    assert client["answered"] and [d for d, _ in client["sent"]] == list("123#")
    dtmf = w.wait_events("DtmfReceived", 4)
    assert [e["digit"] for e in dtmf] == list("123#")
    assert all(e["method"] == "rfc2833" for e in dtmf)
    offs = [e["offset_s"] for e in dtmf]
    assert offs == sorted(offs) and offs[0] > 0.5
    # the spacing the client used is what was stored (both measured from the answer)
    for (d, sent_at), e in zip(client["sent"], dtmf):
        assert abs(e["offset_s"] - sent_at) < 0.4, (client["sent"], offs)
    w.wait_events("RecordingCompleted")
    _assert_closed(w, dtmf[0]["call_uuid"])


def test_sip_info_dtmf(make_worker, tmp_path):
    w = make_worker()
    r = run_sipp(call_scenario(None, hold_ms=3000, info_dtmf="123#", info_after_ms=800, info_gap_ms=300),
                 w.target, tmp_path, "info")
    assert r.returncode == 0, sipp_errors(tmp_path, "info")
    dtmf = w.wait_events("DtmfReceived", 4)
    assert [e["digit"] for e in dtmf] == list("123#")
    assert all(e["method"] == "sip_info" for e in dtmf)
    offs = [e["offset_s"] for e in dtmf]
    assert offs == sorted(offs) and 0.5 < offs[0] < offs[-1] < 3.5
    w.wait_events("RecordingCompleted")
    _assert_closed(w, dtmf[0]["call_uuid"])


# ---------------------------------------------------------------- acceptance 4
def test_acl_forbidden_and_trusted_proxy_header(make_worker, tmp_path):
    w = make_worker(trunk_allow=["127.0.0.1/32"], trusted_proxies=["127.0.0.3/32"])
    # from 127.0.0.2 (loopback, but outside the ACL) -> 403
    r = run_sipp(reject_scenario(403), w.target, tmp_path, "acl", local_ip="127.0.0.2")
    assert r.returncode == 0, sipp_errors(tmp_path, "acl")
    # an untrusted sender cannot smuggle an allowed address in the header
    r = run_sipp(reject_scenario(403, headers={"X-Hotline-Source": "127.0.0.1"}), w.target, tmp_path, "spoof",
                 local_ip="127.0.0.2")
    assert r.returncode == 0, sipp_errors(tmp_path, "spoof")
    # the trusted proxy's header decides: a caller outside the ACL -> 403 ...
    r = run_sipp(reject_scenario(403, headers={"X-Hotline-Source": "192.0.2.7"}), w.target, tmp_path, "px1",
                 local_ip="127.0.0.3")
    assert r.returncode == 0, sipp_errors(tmp_path, "px1")
    # ... a caller inside it is answered
    r = run_sipp(call_scenario(None, hold_ms=500, headers={"X-Hotline-Source": "127.0.0.1"}), w.target, tmp_path,
                 "px2", local_ip="127.0.0.3")
    assert r.returncode == 0, sipp_errors(tmp_path, "px2")
    rejected = w.wait_events("CallRejected", 3)
    assert [e["code"] for e in rejected] == [403, 403, 403]
    assert len(w.wait_events("RecordingCompleted")) == 1


def test_wrong_number_404_and_no_common_codec_488(make_worker, tmp_path):
    w = make_worker()
    r = run_sipp(reject_scenario(404, dialled="12345"), w.target, tmp_path, "n404")
    assert r.returncode == 0, sipp_errors(tmp_path, "n404")
    r = run_sipp(reject_scenario(488, codecs=("GSM",)), w.target, tmp_path, "gsm")
    assert r.returncode == 0, sipp_errors(tmp_path, "gsm")
    r = run_sipp(reject_scenario(488, codecs=("speex", "telephone-event")), w.target, tmp_path, "speex")
    assert r.returncode == 0, sipp_errors(tmp_path, "speex")
    # PCMA alone is fine
    r = run_sipp(call_scenario(None, hold_ms=500, codecs=("PCMA",)), w.target, tmp_path, "pcma")
    assert r.returncode == 0, sipp_errors(tmp_path, "pcma")
    w.wait_events("RecordingCompleted")
    # 404 is the agent's decision (event); 488 is sent by pjsua's own offer check, before the
    # application sees the INVITE, because only G722/PCMA/PCMU are enabled (no event, no call row)
    assert [e["code"] for e in w.events("CallRejected")] == [404]
    started = w.events("CallStarted")
    assert len(started) == 1  # only the PCMA call started


def test_cancel_before_answer_is_marked_abandoned(make_worker, tmp_path):
    w = make_worker(answer_delay_s=3.0)
    r = run_sipp(cancel_scenario(wait_ms=300), w.target, tmp_path, "cancel")
    assert r.returncode == 0, sipp_errors(tmp_path, "cancel")
    ended = w.wait_events("CallEnded")[0]
    assert ended["status"] == "abandoned" and ended["hangup_cause"] == 487 and ended["hung_up_by"] == "caller"
    time.sleep(3.5)  # past the answer delay: the cancelled call must not be answered or recorded
    assert not w.events("CallAnswered") and not w.events("RecordingCompleted")
    assert not list(w.spool_dir.iterdir()) or not [p for p in w.spool_dir.iterdir() if p.suffix in (".wav", ".json", ".call")]


def test_bye_during_notice_keeps_recording(make_worker, caller_audio, tmp_path):
    stream, _, _ = caller_audio
    w = make_worker()
    r = run_sipp(call_scenario(stream, hold_ms=2000), w.target, tmp_path, "byenotice")
    assert r.returncode == 0, sipp_errors(tmp_path, "byenotice")
    done = w.wait_events("RecordingCompleted")[0]
    ended = w.events("CallEnded")[0]
    assert ended["status"] == "abandoned" and ended["hung_up_by"] == "caller"
    assert done["status"] == "complete" and 1.5 < done["duration"] < 3.0
    states = [e["state"] for e in w.events("FlowChanged")]
    assert states == ["notice", "ended"]
    info = sf.info(done["path"])
    assert info.channels == 2 and info.frames > 0


def test_garbage_and_truncated_sip_do_not_disturb_the_worker(make_worker, tmp_path):
    w = make_worker()
    host, port = w.cfg["sip_host"], w.cfg["sip_port"]
    rng = np.random.default_rng(7)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for n in (1, 7, 100, 1400, 4000):
        s.sendto(rng.integers(0, 256, n, dtype=np.uint8).tobytes(), (host, port))
    truncated = (f"INVITE sip:12388@{host}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-x\r\n"
                 "From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:12388@127.0.0.1>\r\nCall-ID: trunc-1\r\nCSeq: 1 INV")
    s.sendto(truncated.encode(), (host, port))
    s.sendto(b"INVITE sip:12388@127.0.0.1 SIP/2.0\r\nContent-Length: 999\r\n\r\nv=0", (host, port))
    s.sendto(b"\r\n\r\n", (host, port))
    s.close()
    t = socket.create_connection((host, port), timeout=5)  # TCP: a half message, then close
    t.sendall(truncated.encode())
    t.close()
    time.sleep(0.5)
    assert w.proc.poll() is None
    r = run_sipp(call_scenario(None, hold_ms=1000), w.target, tmp_path, "after")
    assert r.returncode == 0, sipp_errors(tmp_path, "after")
    assert w.wait_events("RecordingCompleted")[0]["status"] == "complete"


# ---------------------------------------------------------------- capacity
def test_four_concurrent_calls_then_busy(make_worker, caller_audio, tmp_path):
    stream, _, _ = caller_audio
    w = make_worker()
    procs = [run_sipp(call_scenario(stream, hold_ms=6000), w.target, tmp_path, f"c{i}", background=True)
             for i in range(4)]
    try:
        wait_for(lambda: len(w.events("CallAnswered")) >= 4, 20, what="4 answered calls")
        r = run_sipp(reject_scenario(486), w.target, tmp_path, "busy")
        assert r.returncode == 0, sipp_errors(tmp_path, "busy")
        for i, p in enumerate(procs):
            assert p.wait(60) == 0, sipp_errors(tmp_path, f"c{i}")
    finally:
        for p in procs:
            stop_process(p)
    done = w.wait_events("RecordingCompleted", 4)
    assert all(d["status"] == "complete" and d["duration"] > 5.0 for d in done)
    assert len({d["recording_id"] for d in done}) == 4 and len({d["path"] for d in done}) == 4
    assert len({d["call_uuid"] for d in done}) == 4
    for d in done:
        audio, rate = sf.read(d["path"], dtype="float32")
        assert np.sqrt(np.mean(audio[:, 0] ** 2)) > 1e-3  # caller audio on every call
    # with all 4 pjsua call slots in use, pjsua itself answers the 5th INVITE 486 (no event)


def test_configured_call_limit_gives_486(make_worker, tmp_path):
    w = make_worker(max_calls=1)
    p = run_sipp(call_scenario(None, hold_ms=4000), w.target, tmp_path, "first", background=True)
    try:
        w.wait_events("CallAnswered")
        r = run_sipp(reject_scenario(486), w.target, tmp_path, "second")
        assert r.returncode == 0, sipp_errors(tmp_path, "second")
        assert p.wait(30) == 0, sipp_errors(tmp_path, "first")
    finally:
        stop_process(p)
    assert [e["code"] for e in w.events("CallRejected")] == [486]
    assert w.wait_events("RecordingCompleted")[0]["status"] == "complete"


# ---------------------------------------------------------------- graceful stop and crash
def test_sigterm_mid_call_closes_call_and_recording(make_worker, caller_audio, tmp_path):
    stream, _, _ = caller_audio
    w = make_worker()
    p = run_sipp(call_scenario(stream, hold_ms=20000), w.target, tmp_path, "term", background=True)
    try:
        w.wait_events("CallAnswered")
        time.sleep(2.0)
        assert w.stop(signal.SIGTERM) == 0, w.log_text()[-2000:]
    finally:
        stop_process(p)
    ended = w.events("CallEnded")[0]
    assert ended["hung_up_by"] == "system"
    done = w.events("RecordingCompleted")[0]
    assert done["status"] == "complete" and done["duration"] >= 1.5
    assert not [q for q in w.spool_dir.iterdir() if q.suffix in (".wav", ".json", ".call")]


@pytest.mark.slow
def test_sigkill_mid_call_recovers_recording_on_restart(make_worker, caller_audio, tmp_path):
    stream, _, _ = caller_audio
    w = make_worker()
    p = run_sipp(call_scenario(stream, hold_ms=30000), w.target, tmp_path, "crash", background=True)
    try:
        answered = w.wait_events("CallAnswered")[0]
        time.sleep(3.0)
        w.kill()  # SIGKILL: nothing is cleaned up
    finally:
        stop_process(p)
    spool_wav = Path(answered["recording_path"])
    assert spool_wav.exists() and spool_wav.with_suffix(".json").exists()
    assert not w.events("RecordingCompleted")
    w.start()  # the same worker again: it recovers its spool before serving
    done = w.wait_events("RecordingCompleted")[0]
    assert done["recording_id"] == answered["recording_id"] and done["status"] == "recovered"
    assert done["duration"] >= 2.0
    audio, rate = sf.read(done["path"], dtype="float32")  # playable
    assert audio.shape[1] == 2 and rate == 16000 and abs(len(audio) / rate - done["duration"]) < 1e-6
    assert np.sqrt(np.mean(audio[:, 0] ** 2)) > 1e-3 and np.sqrt(np.mean(audio[:, 1] ** 2)) > 1e-3
    ended = [e for e in w.events("CallEnded") if e["call_uuid"] == answered["call_uuid"]]
    assert len(ended) == 1 and ended[0]["status"] == "recovered"
    assert not spool_wav.exists()
    assert not [q for q in w.spool_dir.iterdir() if q.suffix in (".wav", ".json", ".call")]
    # and it serves again
    r = run_sipp(call_scenario(None, hold_ms=500), w.target, tmp_path, "again")
    assert r.returncode == 0, sipp_errors(tmp_path, "again")
