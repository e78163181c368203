"""Bad input is refused with AudioInputError and a message that says what is wrong (no Vosk needed)."""
from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import soundfile as sf

from asr.audio import ChannelFeed, probe
from asr.errors import AudioInputError


def _wav(path, frames=16000, channels=1, rate=16000):
    rng = np.random.default_rng(1)
    sf.write(str(path), (rng.standard_normal((frames, channels)) * 3000).astype(np.int16), rate, subtype="PCM_16")
    return path


def test_valid_file_is_described(tmp_path):
    info = probe(_wav(tmp_path / "ok.wav", frames=8000, channels=2, rate=8000))
    assert (info.frames, info.channels, info.sample_rate) == (8000, 2, 8000)
    assert info.duration == pytest.approx(1.0)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    with pytest.raises(AudioInputError, match="empty file"):
        probe(p)


def test_truncated_wav(tmp_path):
    p = _wav(tmp_path / "full.wav")
    data = p.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioInputError, match="truncated WAV"):
        probe(cut)


def test_wav_cut_inside_header(tmp_path):
    p = _wav(tmp_path / "full.wav")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(p.read_bytes()[:30])
    with pytest.raises(AudioInputError, match="cut.wav"):
        probe(cut)


def test_non_audio_renamed_wav(tmp_path):
    p = tmp_path / "notes.wav"
    p.write_text("这不是音频文件 / this is not audio\n" * 50, encoding="utf-8")
    with pytest.raises(AudioInputError, match="not a readable audio file"):
        probe(p)


def test_zero_channel_wav(tmp_path):
    body = b"\0" * 100
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 0, 16000, 0, 0, 16)
    p = tmp_path / "zero.wav"
    p.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(fmt) + 8 + len(body)) + b"WAVE" + fmt
                  + b"data" + struct.pack("<I", len(body)) + body)
    with pytest.raises(AudioInputError, match="0 channels"):
        probe(p)


def test_six_channel_file_refused(tmp_path):
    p = _wav(tmp_path / "six.wav", channels=6)
    with pytest.raises(AudioInputError, match="6 channels"):
        probe(p)


def test_file_object_source(tmp_path):
    p = _wav(tmp_path / "ok.wav")
    assert probe(io.BytesIO(p.read_bytes())).frames == 16000
    with pytest.raises(AudioInputError, match="empty"):
        probe(io.BytesIO(b""))


def test_channel_feed_rechunks_and_resamples():
    x = (np.sin(np.arange(8000) / 8) * 8000).astype(np.int16)  # 1 s at 8 kHz
    feed = ChannelFeed(8000, 16000, chunk_frames=4000)
    chunks = []
    for part in np.array_split(x, 7):  # odd block sizes
        chunks += list(feed.push(part))
    chunks += list(feed.push(np.zeros(0, dtype=np.int16), last=True))
    assert all(len(c) == 8000 for c in chunks[:-1])
    total = sum(len(c) for c in chunks) // 2
    assert abs(total - 16000) <= 2  # 1 s at 16 kHz, soxr flushes its delay at the end
    same = ChannelFeed(16000, 16000, chunk_frames=4000)
    out = b"".join(same.push(x, last=True))
    assert out == x.astype("<i2").tobytes()  # same rate: bytes untouched
