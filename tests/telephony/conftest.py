"""Fixtures for the agent tests: generated prompts, worker subprocesses, caller audio."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REPO, shared_path
from tests.telephony.sipp_util import free_port, stop_process, wait_for

PY = sys.executable


@pytest.fixture(scope="session")
def prompts_dir(tmp_path_factory) -> Path:
    """The default prompt set, generated once per test session (espeak-ng + sox)."""
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        pytest.skip("espeak-ng and sox are needed to generate prompts")
    from telephony.prompts import build_prompts

    d = tmp_path_factory.mktemp("prompts")
    build_prompts(d)
    return d


@dataclass
class WorkerProc:
    cfg: dict
    dir: Path
    events_path: Path
    log_path: Path
    proc: subprocess.Popen | None = None
    history: list = field(default_factory=list)

    @property
    def target(self) -> str:
        return f"{self.cfg['sip_host']}:{self.cfg['sip_port']}"

    @property
    def uri(self) -> str:
        return f"sip:{self.cfg['hotline_number']}@{self.target}"

    def start(self, timeout: float = 20) -> "WorkerProc":
        cfg_path = self.dir / "worker.json"
        cfg_path.write_text(json.dumps(self.cfg), encoding="utf-8")
        log = open(self.log_path, "ab")
        mark = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.proc = subprocess.Popen(
            [PY, "-m", "telephony.worker", "--config", str(cfg_path), "--events", str(self.events_path)],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        self.history.append(self.proc)

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log_text()[-3000:]}")
            return "listening on" in self.log_path.read_text(errors="replace")[mark:]

        wait_for(listening, timeout, what="worker to listen")
        return self

    def stop(self, sig=signal.SIGTERM, timeout: float = 20) -> int | None:
        if self.proc is not None:
            stop_process(self.proc, sig, timeout)
            return self.proc.returncode
        return None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def events(self, kind: str | None = None) -> list[dict]:
        from telephony.sinks import read_jsonl

        evs = read_jsonl(self.events_path)
        return [e for e in evs if kind is None or e["type"] == kind]

    def wait_events(self, kind: str, n: int = 1, timeout: float = 20) -> list[dict]:
        try:
            return wait_for(lambda: (lambda evs: evs if len(evs) >= n else None)(self.events(kind)), timeout,
                            what=f"{n} {kind} event(s)")
        except AssertionError as e:  # say what the worker did instead: a CI failure must be readable
            kinds = [ev["type"] for ev in self.events()]
            raise AssertionError(f"{e}\nevents so far: {kinds}\nworker log (tail):\n"
                                 f"{self.log_text()[-4000:]}") from None

    @property
    def recordings_dir(self) -> Path:
        return Path(self.cfg["recordings_dir"])

    @property
    def spool_dir(self) -> Path:
        return Path(self.cfg["spool_dir"])


@pytest.fixture
def make_worker(tmp_path, prompts_dir):
    """Factory: make_worker(**WorkerConfig overrides) -> started WorkerProc; all stopped at teardown."""
    workers: list[WorkerProc] = []

    def factory(start: bool = True, **overrides) -> WorkerProc:
        n = len(workers)
        d = tmp_path / f"worker{n}"
        d.mkdir()
        cfg = {
            "worker_id": f"t{n}",
            "sip_host": "127.0.0.1",
            "sip_port": free_port(),
            "hotline_number": "12388",
            "trunk_allow": ["127.0.0.0/8"],
            "spool_dir": str(d / "var" / "spool" / f"t{n}"),
            "recordings_dir": str(d / "var" / "recordings"),
            "prompts_dir": str(prompts_dir),
            "pjsip_log_level": 1,
        }
        cfg.update(overrides)
        w = WorkerProc(cfg, d, d / "events.jsonl", d / "worker.log")
        workers.append(w)
        if start:
            w.start()
        return w

    try:
        yield factory
    finally:
        for w in workers:
            for p in w.history:
                stop_process(p, signal.SIGTERM, 15)


def _ulaw_file(src: Path, dest: Path) -> Path:
    """8 kHz mu-law raw file for sipp's rtp_stream: whole 20 ms packets, 0.5 s of silence after
    (sipp 3.6 pads a short last packet with stray bytes, so the length is made exact)."""
    raw = dest.with_suffix(".tmp.ul")
    subprocess.run(["sox", str(src), "-t", "raw", "-r", "8000", "-c", "1", "-e", "u-law", str(raw)], check=True)
    data = raw.read_bytes()
    raw.unlink()
    pad = (-len(data)) % 160
    dest.write_bytes(data + b"\xff" * (pad + 4000))
    return dest


@pytest.fixture
def caller_audio(tmp_path):
    """(sipp stream file, reference samples float32 8 kHz, rate) for a Mandarin utterance."""
    import soundfile as sf

    src = shared_path("audio", "zh", "8k", "BAC009S0724W0121.wav")
    if not shutil.which("sox"):
        pytest.skip("sox is needed")
    stream = _ulaw_file(src, tmp_path / "caller.ul")
    ref, rate = sf.read(str(src), dtype="float32")
    return stream, ref, rate
