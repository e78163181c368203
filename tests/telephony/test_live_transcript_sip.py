"""The agent's live-transcript tap under a bad transcriber: a real worker process answering a real
sipp call, with a live-transcriber factory whose ``feed`` raises or blocks (what is under test
is the agent's isolation of live ASR from the call and its recording, so a fake transcriber is
used here; the real Vosk path is tests/hotline_api/services/test_live_transcript_sip.py)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import REPO
from tests.telephony.audio_util import active_span, best_ncc
from tests.telephony.conftest import _ulaw_file
from tests.telephony.sipp_util import SIPP, call_scenario, free_port, run_sipp, sipp_errors, stop_process, wait_for

pytestmark = [pytest.mark.sip, pytest.mark.slow,
              pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) not installed")]

# A worker process (telephony.worker.run_worker, JSONL events) with a fake live transcriber.
WORKER = r'''
import logging, signal, sys, threading, time
from telephony.config import WorkerConfig
from telephony.events import LiveText
from telephony.sinks import JsonlSink
from telephony.worker import run_worker

cfg_path, events_path, mode = sys.argv[1:4]
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


class Fake:
    def __init__(self, rate, emit):
        self.rate, self.emit, self.n, self.calls = rate, emit, 0, 0

    def feed(self, pcm):
        self.calls += 1
        if mode == "raise":
            raise RuntimeError("transcriber broke")
        if mode == "block":
            time.sleep(2.0)  # a transcriber that cannot keep up at all
            self.emit(LiveText(False, "feed %d" % self.calls))
        self.n += len(pcm)

    def close(self):
        if mode == "block":
            time.sleep(3.0)
        self.emit(LiveText(True, "bytes=%d calls=%d" % (self.n, self.calls), 0.0, self.n / 2 / self.rate))


def factory(call_uuid, rate, emit):
    if mode == "late":
        time.sleep(2.5)  # e.g. a model still loading: the call's first audio waits or is dropped
    return Fake(rate, emit)


stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: stop.set())
sink = JsonlSink(events_path, include_content=True)
try:
    run_worker(WorkerConfig.from_json_file(cfg_path), sink, stop, threading.Event(), live_transcriber=factory)
finally:
    sink.close()
'''


def korean_stream(tmp: Path, n_phrases: int, lead_s: float = 0.5, gap_s: float = 0.6):
    """(sipp mu-law stream file, reference samples float32 at 8 kHz) of espeak-ng Korean phrases."""
    from tests.asr import speech

    if not speech.have_tools():
        pytest.skip("espeak-ng and sox are needed to make test speech")
    parts = [np.zeros(int(lead_s * 8000), dtype=np.int16)]
    for text in speech.PHRASES[:n_phrases]:
        parts += [speech.speech_array(text, tmp, 8000), np.zeros(int(gap_s * 8000), dtype=np.int16)]
    x = np.concatenate(parts)
    wav = speech.write(tmp / "caller.wav", x, 8000)
    return _ulaw_file(wav, tmp / "caller.ul"), x.astype(np.float32) / 32768.0


def assert_caller_channel_complete(path: str, ref8k: np.ndarray, duration: float) -> np.ndarray:
    """Acceptance 1 of the agent: channel 0 holds the whole streamed speech: the same span (within
    0.3 s), and every quarter second of it is found there unchanged (a correlation per window, so
    that a 20 ms frame the jitter buffer inserts on a loaded machine does not count as a loss,
    while losing audio does)."""
    import soxr

    audio, rate = sf.read(path, dtype="float32")
    assert audio.ndim == 2 and audio.shape[1] == 2 and rate == 16000
    assert abs(duration - len(audio) / rate) < 1e-6
    ref = soxr.resample(ref8k, 8000, rate)
    s0, e0 = active_span(audio[:, 0], rate)
    rs, re_ = active_span(ref, rate)
    assert abs((e0 - s0) - (re_ - rs)) <= 0.3, ((s0, e0), (rs, re_))
    w = rate // 4
    nccs = [best_ncc(audio[:, 0], ref[i:i + w])[0] for i in range(0, len(ref) - w, w)
            if np.abs(ref[i:i + w]).max() > 0.02]
    good = sum(n > 0.9 for n in nccs)
    assert len(nccs) >= 10 and good >= 0.9 * len(nccs), [round(n, 2) for n in nccs]
    return audio


@pytest.fixture
def fake_worker(tmp_path, prompts_dir):
    procs = []

    def start(mode: str, **cfg):
        d = tmp_path / f"w{len(procs)}"
        d.mkdir()
        conf = {"worker_id": f"lt{len(procs)}", "sip_host": "127.0.0.1", "sip_port": free_port(),
                "spool_dir": str(d / "spool"), "recordings_dir": str(d / "recordings"),
                "prompts_dir": str(prompts_dir), **cfg}
        (d / "worker.json").write_text(json.dumps(conf), encoding="utf-8")
        (d / "worker.py").write_text(WORKER, encoding="utf-8")
        log = d / "worker.log"
        p = subprocess.Popen([sys.executable, str(d / "worker.py"), str(d / "worker.json"), str(d / "events.jsonl"),
                              mode], cwd=REPO, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                             env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"},
                             start_new_session=True)
        procs.append(p)

        def listening():
            if p.poll() is not None:
                raise AssertionError(log.read_text(errors="replace")[-3000:])
            return "listening on" in log.read_text(errors="replace")

        wait_for(listening, 30, what="worker to listen")
        return conf, d / "events.jsonl", log, p

    try:
        yield start
    finally:
        for p in procs:
            stop_process(p, timeout=20)


def _events(path: Path, kind: str) -> list[dict]:
    from telephony.sinks import read_jsonl

    return [e for e in read_jsonl(path) if e["type"] == kind]


def _call(fake_worker, tmp_path, mode: str, n_phrases: int = 2, **cfg):
    stream, ref = korean_stream(tmp_path, n_phrases)
    conf, events, log, proc = fake_worker(mode, **cfg)
    hold = int(len(ref) / 8000 * 1000) + 1500
    r = run_sipp(call_scenario(stream, hold_ms=hold), f"127.0.0.1:{conf['sip_port']}", tmp_path, mode)
    assert r.returncode == 0, sipp_errors(tmp_path, mode)
    (done,) = wait_for(lambda: _events(events, "RecordingCompleted") or None, 30, what="recording")
    (ended,) = _events(events, "CallEnded")
    assert (ended["hung_up_by"], ended["hangup_cause"]) == ("caller", 200)  # (still in the notice: "abandoned")
    assert done["status"] == "complete" and done["channels"] == 2
    audio = assert_caller_channel_complete(done["path"], ref, done["duration"])
    return conf, events, log, proc, done, audio


def _closed_line(log: Path) -> tuple[str, float, float, int]:
    text = wait_for(lambda: (lambda t: t if "live transcription ended" in t else None)(
        log.read_text(errors="replace")), 30, what="live transcription to end")
    m = re.search(r"live transcription ended \((\w+); ([\d.]+) s fed, ([\d.]+) s dropped, (\d+) feed error", text)
    assert m, text[-2000:]
    return m.group(1), float(m.group(2)), float(m.group(3)), int(m.group(4))


def test_feed_that_raises_switches_live_asr_off_not_the_call(fake_worker, tmp_path):
    conf, events, log, proc, done, _ = _call(fake_worker, tmp_path, "raise")
    state, fed, dropped, errors = _closed_line(log)
    assert state == "failed" and errors == 5
    (last,) = wait_for(lambda: _events(events, "LiveTranscript") or None, 15, what="close result")
    assert last["text"] == "bytes=0 calls=5" and last["final"] is True
    assert "transcriber broke" not in log.read_text(errors="replace")  # a type name only, no content
    assert proc.poll() is None  # the worker keeps serving
    # ... and takes the next call normally
    stream, _ = korean_stream(tmp_path, 1)
    r = run_sipp(call_scenario(stream, hold_ms=4500), f"127.0.0.1:{conf['sip_port']}", tmp_path, "again")
    assert r.returncode == 0, sipp_errors(tmp_path, "again")
    wait_for(lambda: len(_events(events, "RecordingCompleted")) == 2 or None, 30, what="second recording")
    assert all(e["status"] == "complete" for e in _events(events, "RecordingCompleted"))


def test_blocked_transcriber_loses_live_audio_never_the_recording(fake_worker, tmp_path):
    # each feed takes 2 s and only 1 s of caller audio may wait: live ASR must drop audio
    conf, events, log, proc, done, _ = _call(fake_worker, tmp_path, "block", live_buffer_s=1.0)
    state, fed, dropped, errors = _closed_line(log)
    assert state == "closed" and errors == 0
    assert dropped > 1.0, (fed, dropped)
    assert abs(fed + dropped - done["duration"]) < 0.5, (fed, dropped, done["duration"])
    evs = wait_for(lambda: [e for e in _events(events, "LiveTranscript") if e["final"]] or None, 20,
                   what="close result")
    partials = [e for e in _events(events, "LiveTranscript") if not e["final"]]
    assert partials and all(e["call_uuid"] == done["call_uuid"] for e in partials)
    assert evs[0]["call_uuid"] == done["call_uuid"]


def test_live_stream_runs_in_call_time_even_when_the_transcriber_starts_late(fake_worker, tmp_path):
    # the factory takes 2.5 s (a model loading); 1 s of audio is buffered, the rest dropped, and the
    # results are shifted so that they stay in seconds since the answer (= recording position)
    conf, events, log, proc, done, audio = _call(fake_worker, tmp_path, "late", live_buffer_s=1.0)
    (final,) = wait_for(lambda: _events(events, "LiveTranscript") or None, 20, what="close result")
    n = int(re.match(r"bytes=(\d+)", final["text"]).group(1))
    assert n > 0
    fed_s = n / 2 / 16000
    assert fed_s < done["duration"] - 1.0  # the first seconds never reached the transcriber
    assert abs(final["end"] - done["duration"]) < 0.3, (final, done["duration"])
    state, fed, dropped, errors = _closed_line(log)
    assert state == "closed" and dropped > 1.0

