"""A 2-hour 8 kHz stereo recording (mostly digital silence, speech at three places) is processed in
bounded memory with progress: peak RSS of a `hotline transcribe` subprocess is compared with the same
command on a 10-second file."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.asr import speech as sp

pytestmark = [pytest.mark.vosk, pytest.mark.slow]

RATE = 8000
HOURS2 = 7200.0

_PEAK = (
    "import resource, subprocess, sys\n"
    "p = subprocess.run(sys.argv[1:], capture_output=True)\n"
    "sys.stdout.buffer.write(p.stdout)\n"
    "sys.stderr.buffer.write(p.stderr)\n"
    "print('PEAK_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, 'RC', p.returncode, file=sys.stderr)\n"
)


def _write_long(path: Path, seconds: float, bursts: list[tuple[int, float, np.ndarray]]) -> None:
    """Write block by block (never the whole file in memory)."""
    block = RATE * 60
    total = int(seconds * RATE)
    with sf.SoundFile(str(path), "w", RATE, 2, "PCM_16") as f:
        for a in range(0, total, block):
            b = min(total, a + block)
            out = np.zeros((b - a, 2), dtype=np.int16)
            for ch, start, x in bursts:
                s0 = int(start * RATE)
                lo, hi = max(a, s0), min(b, s0 + len(x))
                if lo < hi:
                    out[lo - a:hi - a, ch] = x[lo - s0:hi - s0]
            f.write(out)


def _run(path: Path, model_dir: Path, tmp: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env["HOTLINE_DATA_DIR"] = str(tmp / "var")
    cmd = [sys.executable, "-c", _PEAK, sys.executable, "-m", "hotline_api.cli", "transcribe", str(path),
           "--model", str(model_dir), "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
    peak_line = [ln for ln in p.stderr.splitlines() if ln.startswith("PEAK_KB")][-1].split()
    assert peak_line[3] == "0", p.stderr[-2000:]
    return json.loads(p.stdout), int(peak_line[1]) * 1024, p.stderr


def test_two_hour_file_bounded_memory_with_progress(ko_model_dir, phrases8k, tmp_path):
    a, b, c = phrases8k[0], phrases8k[1], phrases8k[2]
    bursts = [(0, 600.0, a), (1, 3600.0, b), (0, HOURS2 - 10.0, c)]
    long_path = tmp_path / "long.wav"
    _write_long(long_path, HOURS2, bursts)
    short_path = tmp_path / "short.wav"
    _write_long(short_path, 10.0, [(0, 1.0, a), (1, 5.0, b)])
    assert long_path.stat().st_size > 200e6

    res_s, peak_s, _ = _run(short_path, ko_model_dir, tmp_path)
    res_l, peak_l, err = _run(long_path, ko_model_dir, tmp_path)

    assert res_l["duration"] == pytest.approx(HOURS2)
    progress_lines = [ln for ln in err.splitlines() if ln.startswith("transcribing long.wav:")]
    assert len(progress_lines) >= 10, err[-2000:]
    assert "100%" in progress_lines[-1]
    # the speech is found where it is, on its channel
    for ch, start, x in bursts:
        v0, v1 = sp.voiced_span(x, RATE)
        segs = res_l["channels"][ch]["segments"]
        assert any(start + v0 - 0.5 <= s["start"] <= start + v1 + 0.5 for s in segs), (ch, start, segs)
    for ch in (0, 1):
        for s in res_l["channels"][ch]["segments"]:
            assert any(st - 1 <= s["start"] <= st + 5 for c_, st, _ in bursts if c_ == ch), s
    # bounded memory: the 230 MB file does not add its size (or anything near it) to the peak RSS
    extra = peak_l - peak_s
    print(f"peak RSS: 10 s file {peak_s / 1e6:.0f} MB, 2 h file {peak_l / 1e6:.0f} MB (+{extra / 1e6:.0f} MB)")
    assert extra < 100e6, f"peak RSS grew by {extra / 1e6:.0f} MB for the 2-hour file"
    assert res_s["channels"][0]["segments"]
