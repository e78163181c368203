"""Acceptance 1 with registration: kamailio (generated config + the registrar extension) fronts a
worker; two pjsua2 softphones REGISTER with digest credentials pushed over kamailio's RPC; a sipp
call through kamailio is answered by the longest-idle operator, dialled via lookup("location")."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import soundfile as sf

from tests.telephony.audio_util import assert_speech_present, best_ncc
from tests.telephony.sipp_util import SIPP, free_port, run_sipp, sipp_errors, wait_for
from tests.telephony.test_queue_util import (call_events, delayed_audio_scenario, operators,  # noqa: F401
                                             quick_prompts, resample, speech, start_routing_worker, through_proxy, ulaw,
                                             wait_done)

pytestmark = [pytest.mark.sip, pytest.mark.slow,
              pytest.mark.skipif(SIPP is None or not shutil.which("kamailio"), reason="sipp and kamailio needed")]


def _ha1(user, pw, realm="12388"):
    import hashlib

    return hashlib.md5(f"{user}:{realm}:{pw}".encode()).hexdigest()


@pytest.fixture
def front(make_worker, quick_prompts):
    from telephony.kamailio import Backend, KamailioConfig, KamailioProcess
    from telephony.routing import push_credentials, registrar_extension

    run = Path(tempfile.mkdtemp(prefix="kq", dir="/tmp"))
    kport = free_port()
    holder = {}

    def start(routing: dict):
        w = start_routing_worker(make_worker, quick_prompts, routing, ring_timeout_s=5)
        cfg = KamailioConfig(run_dir=run / "run", listen_port=kport, ping_interval_s=1,
                             backends=[Backend("127.0.0.1", w.cfg["sip_port"], legs=4, name="w0")], reserved_legs=2,
                             extensions=[registrar_extension("12388")])
        kam = KamailioProcess(cfg)
        kam.start()
        holder["kam"] = kam
        wait_for(lambda: all(s.startswith("A") for s in kam.backend_states().values()), 15, what="worker active")
        push_credentials(kam.rpc, {"op1": _ha1("op1", "op1-secret"), "op2": _ha1("op2", "op2-secret")})
        return w, kam

    try:
        yield kport, start
    finally:
        if "kam" in holder:
            holder["kam"].stop()
        shutil.rmtree(run, ignore_errors=True)


def test_registered_softphones_longest_idle_answers_through_kamailio(front, operators, tmp_path):
    kport, start = front
    aor = lambda u: f"sip:{u}@127.0.0.1:{kport}"  # noqa: E731
    routing = {"open": True, "operators": [{"id": "op1", "uris": [aor("op1")]}, {"id": "op2", "uris": [aor("op2")]}]}
    w, kam = start(routing)
    op_src = speech("BAC009S0724W0124.wav", "16k")
    o1 = operators(play=op_src, register=aor("op1"), user="op1", password="op1-secret")
    o2 = operators(play=op_src, register=aor("op2"), user="op2", password="op2-secret")
    bad = operators(register=aor("op2"), user="op2", password="wrong-password")
    wait_for(lambda: any(e["code"] == 200 for e in o1.events("registered")), 15, what="op1 registered")
    wait_for(lambda: any(e["code"] == 200 for e in o2.events("registered")), 15, what="op2 registered")
    wait_for(lambda: bad.events("registered"), 15, what="bad password answered")
    assert all(e["code"] != 200 for e in bad.events("registered"))
    assert "op1" in kam.rpc("ul.dump") and "op2" in kam.rpc("ul.dump")

    caller_src = speech("BAC009S0724W0121.wav")
    stream = ulaw(caller_src, tmp_path / "caller.ul")
    r = run_sipp(through_proxy(delayed_audio_scenario(stream, delay_ms=7000, hold_ms=15000)), f"127.0.0.1:{kport}", tmp_path, "reg")
    assert r.returncode == 0, sipp_errors(tmp_path, "reg")
    done = wait_done(w)
    evs = call_events(w, done["call_uuid"])
    assert evs["CallBridged"][0]["operator_id"] == "op1"  # listed first = idle longest
    assert o1.events("answered") and not o2.events("incoming")
    audio, rate = sf.read(done["path"], dtype="float32")
    ref, rr = sf.read(str(caller_src), dtype="float32")
    assert_speech_present(audio[:, 0], resample(ref, rr, rate), rate)
    opref, orate = sf.read(str(op_src), dtype="float32")
    assert best_ncc(audio[:, 1], resample(opref, orate, rate)[: 2 * rate])[0] > 0.6

    # op1 just talked, so op2 is now the longest idle; op2's softphone goes away (unregisters):
    # kamailio answers 404 to the worker's INVITE and the next operator (op1) is rung
    o2.stop()
    wait_for(lambda: "op2" not in kam.rpc("ul.dump"), 10, what="op2 unregistered")
    r = run_sipp(through_proxy(delayed_audio_scenario(None, 0, 9000)), f"127.0.0.1:{kport}", tmp_path, "reg2")
    assert r.returncode == 0, sipp_errors(tmp_path, "reg2")
    wait_for(lambda: len(w.events("RecordingCompleted")) >= 2, 30, what="second call done")
    second = w.events("RecordingCompleted")[1]["call_uuid"]
    evs = call_events(w, second)
    assert evs["OperatorFailed"][0]["operator_id"] == "op2" and evs["OperatorFailed"][0]["code"] == 404
    assert evs["CallBridged"][0]["operator_id"] == "op1"
