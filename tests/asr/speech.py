"""Test audio made at test time: espeak-ng Korean speech (the stand-in model is Korean), resampled
with sox, placed on a timeline with numpy and written with soundfile."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

PHRASES = [
    "안녕하세요 저는 서울에 살고 있습니다",
    "오늘 날씨가 아주 좋습니다 감사합니다",
    "회사에서 돈을 받았다고 들었습니다",
    "내일 다시 전화 드리겠습니다",
]


def have_tools() -> bool:
    return bool(shutil.which("espeak-ng") and shutil.which("sox"))


def speak(text: str, out: Path, rate: int, voice: str = "ko") -> Path:
    """espeak-ng → WAV at ``rate`` Hz, mono 16-bit."""
    raw = out.with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", str(rate), "-c", "1", "-b", "16", str(out)], check=True, capture_output=True)
    raw.unlink()
    return out


def speech_array(text: str, tmp: Path, rate: int) -> np.ndarray:
    p = speak(text, tmp / f"s{abs(hash((text, rate)))}.wav", rate)
    data, sr = sf.read(p, dtype="int16")
    assert sr == rate
    return data


def voiced_span(x: np.ndarray, rate: int, thresh: int = 300) -> tuple[float, float]:
    """First and last sample above ``thresh`` in seconds (where the speech really is)."""
    idx = np.flatnonzero(np.abs(x.astype(np.int32)) > thresh)
    return idx[0] / rate, (idx[-1] + 1) / rate


def timeline(rate: int, seconds: float, placements: list[tuple[int, float, np.ndarray]], channels: int) -> np.ndarray:
    """A (frames, channels) int16 array: each (channel, start_s, samples) is placed on silence."""
    out = np.zeros((int(seconds * rate), channels), dtype=np.int16)
    for ch, start, x in placements:
        a = int(start * rate)
        out[a:a + len(x), ch] = x[: len(out) - a]
    return out


def write(path: Path, data: np.ndarray, rate: int) -> Path:
    sf.write(str(path), data, rate, subtype="PCM_16")
    return path
