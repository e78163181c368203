"""Chunked AES-256-GCM recording encryption: ciphertext hides the audio, any range decrypts to the
same bytes as a full decrypt, and tampering is detected."""
from __future__ import annotations

import io
import math
import os
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings as hsettings, strategies as st

from recordings import crypto


def _wav_bytes(seconds=2.0, rate=8000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    right = 0.3 * np.sin(2 * np.pi * 660 * t)
    buf = io.BytesIO()
    sf.write(buf, np.stack([left, right], axis=1), rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def _entropy(b: bytes) -> float:
    n = len(b)
    return -sum(c / n * math.log2(c / n) for c in Counter(b).values())


def test_ciphertext_has_no_riff_header_or_pcm_and_high_entropy(tmp_path):
    plain = _wav_bytes()
    src, dst = tmp_path / "a.wav", tmp_path / "a.hle"
    src.write_bytes(plain)
    key = crypto.generate_data_key()
    res = crypto.encrypt_file(src, dst, key, "rec-1", chunk_size=4096)
    data = dst.read_bytes()
    assert res.plain_len == len(plain)
    assert b"RIFF" not in data and b"WAVE" not in data and b"fmt " not in data
    # no 32-byte window of the PCM payload appears in the file
    for off in range(44, len(plain) - 32, 997):
        assert plain[off:off + 32] not in data
    body = data[100:]
    assert _entropy(body) > 7.95  # bits per byte (PCM sine would be far lower)
    assert _entropy(plain[44:]) < 7.5
    assert os.stat(dst).st_mode & 0o777 == 0o600


@hsettings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=0, max_size=3000), chunk=st.sampled_from([16, 64, 100, 1024]), r=st.data())
def test_any_range_equals_slice_of_full_decrypt(data, chunk, r):
    key = crypto.generate_data_key()
    blob = crypto.encrypt_bytes(data, key, "k", chunk_size=chunk)
    reader = crypto.EncryptedReader(io.BytesIO(blob), key)
    full = reader.read_all()
    assert full == data
    start = r.draw(st.integers(0, len(data)))
    stop = r.draw(st.integers(start, len(data)))
    assert reader.read(start, stop) == full[start:stop]
    pieces = list(reader.iter_range(start, stop))
    assert all(len(p) <= chunk for p in pieces)
    assert b"".join(pieces) == full[start:stop]


def test_tampered_chunk_is_detected_and_other_chunks_still_read():
    key = crypto.generate_data_key()
    data = os.urandom(1000)
    blob = bytearray(crypto.encrypt_bytes(data, key, "k", chunk_size=100))
    hdr = crypto.read_header(io.BytesIO(bytes(blob)))
    blob[hdr.chunk_offset(3) + 5] ^= 0x01
    reader = crypto.EncryptedReader(io.BytesIO(bytes(blob)), key)
    assert reader.read(0, 300) == data[:300]
    with pytest.raises(crypto.TamperedError, match="chunk 3"):
        reader.read(250, 350)
    with pytest.raises(crypto.TamperedError):
        reader.read_all()


def test_swapped_chunks_and_chunks_from_another_file_are_rejected():
    key = crypto.generate_data_key()
    data = os.urandom(400)
    a = bytearray(crypto.encrypt_bytes(data, key, "k", chunk_size=100))
    b = crypto.encrypt_bytes(os.urandom(400), key, "k", chunk_size=100)  # same key, another file
    h = crypto.read_header(io.BytesIO(bytes(a)))
    n = 100 + crypto.TAG_LEN
    c0, c1 = h.chunk_offset(0), h.chunk_offset(1)
    swapped = bytearray(a)
    swapped[c0:c0 + n], swapped[c1:c1 + n] = a[c1:c1 + n], a[c0:c0 + n]
    with pytest.raises(crypto.TamperedError):
        crypto.EncryptedReader(io.BytesIO(bytes(swapped)), key).read(0, 100)
    mixed = bytearray(a)
    mixed[c1:c1 + n] = b[c1:c1 + n]
    with pytest.raises(crypto.TamperedError):
        crypto.EncryptedReader(io.BytesIO(bytes(mixed)), key).read(100, 200)


def test_header_edit_truncation_and_wrong_key():
    key = crypto.generate_data_key()
    data = os.urandom(500)
    blob = crypto.encrypt_bytes(data, key, "k", chunk_size=100)
    # claim a shorter plaintext: the file length no longer matches / every chunk fails
    edited = bytearray(blob)
    edited[16:24] = (400).to_bytes(8, "big")
    with pytest.raises((crypto.TamperedError, crypto.CorruptFileError)):
        r = crypto.EncryptedReader(io.BytesIO(bytes(edited)), key)
        r.read(0, 10)
    with pytest.raises(crypto.CorruptFileError):
        crypto.EncryptedReader(io.BytesIO(blob[:-10]), key)
    with pytest.raises(crypto.TamperedError):
        crypto.EncryptedReader(io.BytesIO(blob), crypto.generate_data_key()).read(0, 10)
    with pytest.raises(crypto.CorruptFileError):
        crypto.EncryptedReader(io.BytesIO(b"RIFF" + b"\0" * 60), key)


def test_full_read_checks_sha256():
    key = crypto.generate_data_key()
    blob = crypto.encrypt_bytes(b"hello world", key, "k")
    r = crypto.EncryptedReader(io.BytesIO(blob), key)
    import hashlib

    assert r.read_all(hashlib.sha256(b"hello world").hexdigest()) == b"hello world"
    with pytest.raises(crypto.IntegrityError):
        r.read_all("0" * 64)
    with pytest.raises(ValueError):
        list(r.iter_range(5, 100))
