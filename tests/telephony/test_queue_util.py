"""Helpers for the queue/attendant SIP tests (no tests here): a short prompt set, operator
softphone processes, a routing worker launcher, sipp scenarios with delayed audio."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import REPO, shared_path
from tests.telephony.sipp_util import _ACK2XX, _BYE, _HEAD, ANSWER_BYE, _invite, stop_process, wait_for

PY = sys.executable
OPCLIENT = REPO / "tests" / "telephony" / "test_queue_opclient.py"
CALLER = REPO / "tests" / "telephony" / "test_attendant_caller.py"

#: prompt lengths in the test prompt set (seconds): admin-replaced prompts, shortened so the tests
#: do not sit through the full texts. Content stays distinct (each is the start of the real one).
SHORT = {"notice": 1.5, "attendant_greeting": 2.0, "menu": 4.0, "scope_info": 4.0, "voicemail_greeting": 2.0,
         "confirmation": 2.0, "queue": 2.0, "voicemail_offer": 3.0, "invalid_input": 1.0, "operator_left": 1.5,
         "callback_confirm": 2.0}


@pytest.fixture(scope="session")
def quick_prompts(prompts_dir, tmp_path_factory) -> Path:
    from telephony.routing import build_extra_prompts

    d = tmp_path_factory.mktemp("quick_prompts")
    for p in prompts_dir.glob("*.wav"):
        shutil.copy(p, d / p.name)
    build_extra_prompts(d)
    for name, secs in SHORT.items():
        x, rate = sf.read(str(d / f"{name}.wav"), dtype="int16")
        n = int(secs * rate)
        fade = np.linspace(1.0, 0.0, int(0.05 * rate))
        y = x[:n].astype(np.float64)
        y[-len(fade):] *= fade
        sf.write(str(d / f"{name}.wav"), y.astype(np.int16), rate, subtype="PCM_16")
    return d


def prompt_audio(d: Path, name: str) -> np.ndarray:
    x, _ = sf.read(str(d / f"{name}.wav"), dtype="float32")
    return x


# ---------------------------------------------------------------------------- operators
class Operator:
    def __init__(self, proc: subprocess.Popen, log_path: Path):
        self.proc = proc
        self.log_path = log_path
        self.lines: list[dict] = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()
        ready = wait_for(lambda: next((e for e in self.lines if e.get("event") == "ready"), None), 20,
                         what="operator client ready")
        self.port = ready["port"]

    def _read(self):
        for line in self.proc.stdout:
            line = line.strip()
            if line.startswith("{"):
                try:
                    self.lines.append(json.loads(line))
                except ValueError:
                    pass

    @property
    def uri(self) -> str:
        return f"sip:operator@127.0.0.1:{self.port}"

    def events(self, kind: str) -> list[dict]:
        return [e for e in self.lines if e.get("event") == kind]

    def stop(self):
        stop_process(self.proc, timeout=10)


@pytest.fixture
def operators(tmp_path):
    """Factory: operators(mode="answer", play=WAV, record=PATH, ...) -> Operator (stopped at teardown)."""
    started: list[Operator] = []

    def factory(mode="answer", answer_after=0.5, play="", record="", hangup_after=0.0, register="", user="",
                password="") -> Operator:
        n = len(started)
        log = tmp_path / f"operator{n}.log"
        argv = [PY, str(OPCLIENT), "--port", "0", "--mode", mode, "--answer-after", str(answer_after),
                "--hangup-after", str(hangup_after)]
        if play:
            argv += ["--play", str(play)]
        if record:
            argv += ["--record", str(record)]
        if register:
            argv += ["--register", register, "--user", user, "--password", password]
        p = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=open(log, "wb"), text=True,
                             start_new_session=True)
        op = Operator(p, log)
        started.append(op)
        return op

    try:
        yield factory
    finally:
        for op in started:
            op.stop()


# ---------------------------------------------------------------------------- workers
def start_routing_worker(make_worker, prompts: Path, routing: dict, **cfg):
    """A worker (conftest's make_worker paths and teardown) started with ``--routing``."""
    w = make_worker(start=False, prompts_dir=str(prompts), **cfg)
    rpath = w.dir / "routing.json"
    rpath.write_text(json.dumps(routing), encoding="utf-8")
    cfg_path = w.dir / "worker.json"
    cfg_path.write_text(json.dumps(w.cfg), encoding="utf-8")
    log = open(w.log_path, "ab")
    w.proc = subprocess.Popen([PY, "-m", "telephony.worker", "--config", str(cfg_path), "--events",
                               str(w.events_path), "--routing", str(rpath)],
                              cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    log.close()
    w.history.append(w.proc)

    def listening():
        if w.proc.poll() is not None:
            raise AssertionError(f"worker exited early:\n{w.log_text()[-3000:]}")
        return "listening on" in w.log_text()

    wait_for(listening, 30, what="worker to listen")
    return w


def call_events(w, call_uuid: str | None = None) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for e in w.events():
        if call_uuid is None or e.get("call_uuid") == call_uuid:
            out.setdefault(e["type"], []).append(e)
    return out


def states(w, call_uuid: str) -> list[str]:
    return [e["state"] for e in w.events("FlowChanged") if e["call_uuid"] == call_uuid]


def run_caller(uri: str, script: list[tuple[float, str, str]], timeout: float = 60, background=False):
    argv = [PY, str(CALLER), uri, "--timeout", str(timeout)]
    for t, a, v in script:
        argv += ["--at", str(t), a, str(v)]
    if background:
        return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    r = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout + 30)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    assert lines, r.stdout + r.stderr
    return json.loads(lines[-1])


# ---------------------------------------------------------------------------- sipp scenarios
def delayed_audio_scenario(audio: Path | None, delay_ms: int, hold_ms: int, loop: bool = False) -> str:
    """Answered call; RTP stream of ``audio`` starts ``delay_ms`` after the ACK (loops with
    ``loop``); BYE from the caller at ``hold_ms`` after the ACK."""
    x = _HEAD.format(name="delayed caller") + _invite("12388", ["PCMU", "telephone-event"], None)
    x += """  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true" crlf="true" rrs="true"/>
"""
    x += _ACK2XX.format(dialled="12388")
    if audio is not None:
        x += f'  <pause milliseconds="{delay_ms}"/>\n'
        x += f'  <nop><action><exec rtp_stream="{audio},{-1 if loop else 1},0"/></action></nop>\n'
        x += f'  <pause milliseconds="{max(0, hold_ms - delay_ms)}"/>\n'
    else:
        x += f'  <pause milliseconds="{hold_ms}"/>\n'
    x += _BYE.format(dialled="12388", cseq=2)
    return x + "</scenario>\n"


def through_proxy(xml: str) -> str:
    """A scenario whose in-dialog requests follow the Record-Route set (calls through kamailio).
    The sipp_util templates already send ACK/BYE to ``[next_url]`` with ``[routes]``; this checks
    that the 200 OK's routes are stored (``rrs``)."""
    assert 'rrs="true"' in xml and "[routes]" in xml
    return xml


def hotline_hangs_up_scenario(audio: Path | None = None, delay_ms: int = 0) -> str:
    """Answered call that waits for the hotline's BYE (optionally streaming ``audio``)."""
    x = _HEAD.format(name="wait for BYE") + _invite("12388", ["PCMU", "telephone-event"], None)
    x += """  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true" crlf="true" rrs="true"/>
"""
    x += _ACK2XX.format(dialled="12388")
    if audio is not None:
        x += f'  <pause milliseconds="{delay_ms}"/>\n'
        x += f'  <nop><action><exec rtp_stream="{audio},1,0"/></action></nop>\n'
    x += '  <recv request="BYE" timeout="90000"/>\n' + ANSWER_BYE
    return x + "</scenario>\n"


def ulaw(src: Path, dest: Path) -> Path:
    from tests.telephony.conftest import _ulaw_file

    return _ulaw_file(src, dest)


def speech(name: str = "BAC009S0724W0121.wav", rate: str = "8k") -> Path:
    return shared_path("audio", "zh", rate, name)


def resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    import soxr

    return soxr.resample(x, src, dst)


def wait_done(w, call_uuid: str | None = None, timeout: float = 60) -> dict:
    def done():
        evs = [e for e in w.events("RecordingCompleted") if call_uuid is None or e["call_uuid"] == call_uuid]
        return evs[0] if evs else None

    return wait_for(done, timeout, what="recording completed")


def sleep(s: float) -> None:
    time.sleep(s)
