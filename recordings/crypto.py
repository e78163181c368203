"""Chunked AES-256-GCM encryption of recording files, with random access to byte ranges.

File layout (all integers big-endian)::

    magic        8 bytes  b"HLRECENC"
    version      1 byte   1
    reserved     3 bytes  zero
    chunk_size   u32      plaintext bytes per chunk (last chunk may be shorter)
    plain_len    u64      plaintext length
    file_id     16 bytes  random, names this file in every chunk's associated data
    file_nonce   8 bytes  random; chunk nonce = file_nonce || u32(chunk index)
    key_id_len   u16
    key_id       key_id_len bytes (UTF-8): id of the data key (the recording id)
    chunks       n x (ciphertext of the chunk || 16-byte GCM tag)

Every chunk's associated data binds magic, version, file id, chunk index, plaintext length, chunk
size and key id, so chunks cannot be reordered, truncated, or swapped between files, and any edit
of the header makes every chunk fail. A zero-length plaintext still has one (empty) chunk, so the
header is always authenticated. No part of the plaintext (RIFF header, PCM) is stored in clear.

Each file has its own random 256-bit data key; wrapping it with a master key is ``keys.py``'s job.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from recordings.keys import fsync_dir

MAGIC = b"HLRECENC"
VERSION = 1
DEFAULT_CHUNK_SIZE = 64 * 1024
TAG_LEN = 16
DATA_KEY_LEN = 32
_FIXED = struct.Struct(">8sB3xIQ16s8sH")
MAX_CHUNK_SIZE = 16 * 1024 * 1024


class CryptoError(Exception):
    """Base class of this module's errors."""


class CorruptFileError(CryptoError):
    """The file is not an encrypted recording, or its structure is damaged."""


class TamperedError(CryptoError):
    """A chunk failed authentication (tampered data, wrong key, or swapped chunk)."""


class IntegrityError(CryptoError):
    """The decrypted plaintext does not match the recorded sha256."""


def generate_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


@dataclass(frozen=True)
class Header:
    chunk_size: int
    plain_len: int
    file_id: bytes
    file_nonce: bytes
    key_id: str
    header_len: int

    @property
    def n_chunks(self) -> int:
        return max(1, -(-self.plain_len // self.chunk_size))

    @property
    def file_len(self) -> int:
        return self.header_len + self.plain_len + self.n_chunks * TAG_LEN

    def encode(self) -> bytes:
        kid = self.key_id.encode("utf-8")
        return _FIXED.pack(MAGIC, VERSION, self.chunk_size, self.plain_len, self.file_id, self.file_nonce, len(kid)) + kid

    def nonce(self, index: int) -> bytes:
        return self.file_nonce + struct.pack(">I", index)

    def aad(self, index: int) -> bytes:
        return (
            MAGIC
            + bytes([VERSION])
            + self.file_id
            + struct.pack(">QQI", index, self.plain_len, self.chunk_size)
            + self.key_id.encode("utf-8")
        )

    def chunk_offset(self, index: int) -> int:
        return self.header_len + index * (self.chunk_size + TAG_LEN)

    def chunk_plain_len(self, index: int) -> int:
        return max(0, min(self.chunk_size, self.plain_len - index * self.chunk_size))


def read_header(f: BinaryIO) -> Header:
    f.seek(0)
    fixed = f.read(_FIXED.size)
    if len(fixed) < _FIXED.size or not fixed.startswith(MAGIC):
        raise CorruptFileError("not an encrypted recording (bad magic)")
    magic, version, chunk_size, plain_len, file_id, file_nonce, kid_len = _FIXED.unpack(fixed)
    if version != VERSION:
        raise CorruptFileError(f"unsupported encrypted recording version {version}")
    if not 16 <= chunk_size <= MAX_CHUNK_SIZE:
        raise CorruptFileError(f"bad chunk size {chunk_size}")
    kid = f.read(kid_len)
    if len(kid) != kid_len:
        raise CorruptFileError("truncated header")
    try:
        key_id = kid.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorruptFileError("bad key id in header") from e
    return Header(chunk_size, plain_len, file_id, file_nonce, key_id, _FIXED.size + kid_len)


@dataclass(frozen=True)
class EncryptResult:
    plain_len: int
    sha256: str  # of the plaintext
    file_len: int
    file_id: str  # hex


def encrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    data_key: bytes,
    key_id: str,
    plain_len: int,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> EncryptResult:
    """Encrypt exactly ``plain_len`` bytes of ``src`` into ``dst``; returns the plaintext's sha256."""
    if len(data_key) != DATA_KEY_LEN:
        raise ValueError("data key must be 32 bytes")
    if not 16 <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError("bad chunk size")
    hdr = Header(chunk_size, plain_len, os.urandom(16), os.urandom(8), key_id, 0)
    encoded = hdr.encode()
    hdr = Header(chunk_size, plain_len, hdr.file_id, hdr.file_nonce, key_id, len(encoded))
    dst.write(encoded)
    aes = AESGCM(data_key)
    digest = hashlib.sha256()
    total = 0
    for index in range(hdr.n_chunks):
        want = hdr.chunk_plain_len(index)
        block = _read_exact(src, want)
        if len(block) != want:
            raise CryptoError(f"source shrank while encrypting: expected {plain_len} bytes, got {total + len(block)}")
        digest.update(block)
        total += len(block)
        dst.write(aes.encrypt(hdr.nonce(index), block, hdr.aad(index)))
    if src.read(1):
        raise CryptoError(f"source grew while encrypting (more than {plain_len} bytes)")
    return EncryptResult(plain_len, digest.hexdigest(), hdr.file_len, hdr.file_id.hex())


def encrypt_file(src_path: Path, dst_path: Path, data_key: bytes, key_id: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> EncryptResult:
    """Encrypt ``src_path`` to ``dst_path`` atomically (temp file, fsync, rename)."""
    src_path, dst_path = Path(src_path), Path(dst_path)
    dst_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst_path.with_name(dst_path.name + ".tmp")
    with open(src_path, "rb") as src:
        plain_len = os.fstat(src.fileno()).st_size
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as dst:
                result = encrypt_stream(src, dst, data_key, key_id, plain_len, chunk_size)
                dst.flush()
                os.fsync(dst.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    os.replace(tmp, dst_path)
    fsync_dir(dst_path.parent)
    return result


def encrypt_bytes(data: bytes, data_key: bytes, key_id: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> bytes:
    import io

    out = io.BytesIO()
    encrypt_stream(io.BytesIO(data), out, data_key, key_id, len(data), chunk_size)
    return out.getvalue()


class EncryptedReader:
    """Random-access plaintext view of an encrypted recording. Only the chunks covering a requested
    range are read and decrypted; every chunk is authenticated (GCM tag) before its bytes are used."""

    def __init__(self, f: BinaryIO, data_key: bytes, expected_key_id: str | None = None):
        self._f = f
        self.header = read_header(f)
        if expected_key_id is not None and self.header.key_id != expected_key_id:
            raise CorruptFileError("file belongs to another data key (key id mismatch)")
        f.seek(0, os.SEEK_END)
        actual = f.tell()
        if actual != self.header.file_len:
            raise CorruptFileError(f"file length {actual} does not match its header ({self.header.file_len}): truncated or padded")
        self._aes = AESGCM(data_key)

    @classmethod
    def open(cls, path: Path, data_key: bytes, expected_key_id: str | None = None) -> "EncryptedReader":
        f = open(path, "rb")
        try:
            return cls(f, data_key, expected_key_id)
        except BaseException:
            f.close()
            raise

    @property
    def size(self) -> int:
        return self.header.plain_len

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "EncryptedReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def decrypt_chunk(self, index: int) -> bytes:
        h = self.header
        if not 0 <= index < h.n_chunks:
            raise IndexError(index)
        n = h.chunk_plain_len(index) + TAG_LEN
        self._f.seek(h.chunk_offset(index))
        blob = self._f.read(n)
        if len(blob) != n:
            raise CorruptFileError(f"chunk {index} truncated")
        try:
            return self._aes.decrypt(h.nonce(index), blob, h.aad(index))
        except InvalidTag as e:
            raise TamperedError(f"chunk {index} failed authentication (tampered, swapped or wrong key)") from e

    def iter_range(self, start: int, stop: int) -> Iterator[bytes]:
        """Plaintext bytes [start, stop) as a sequence of pieces (at most one chunk each)."""
        if not 0 <= start <= stop <= self.size:
            raise ValueError(f"range [{start}, {stop}) outside 0..{self.size}")
        if start == stop:
            return
        cs = self.header.chunk_size
        first, last = start // cs, (stop - 1) // cs
        for index in range(first, last + 1):
            plain = self.decrypt_chunk(index)
            base = index * cs
            lo = max(start - base, 0)
            hi = min(stop - base, len(plain))
            yield plain[lo:hi] if (lo, hi) != (0, len(plain)) else plain

    def read(self, start: int, stop: int) -> bytes:
        return b"".join(self.iter_range(start, stop))

    def read_all(self, expected_sha256: str | None = None) -> bytes:
        data = self.read(0, self.size)
        if expected_sha256 is not None and not hmac.compare_digest(hashlib.sha256(data).hexdigest(), expected_sha256):
            raise IntegrityError("plaintext sha256 does not match the value recorded at ingest")
        return data

    def sha256(self) -> str:
        """Decrypt everything (chunk by chunk, constant memory) and hash it."""
        d = hashlib.sha256()
        for piece in self.iter_range(0, self.size):
            d.update(piece)
        return d.hexdigest()

    def verify(self, expected_sha256: str) -> None:
        if not hmac.compare_digest(self.sha256(), expected_sha256):
            raise IntegrityError("plaintext sha256 does not match the value recorded at ingest")


def _read_exact(f: BinaryIO, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        b = f.read(n - got)
        if not b:
            break
        parts.append(b)
        got += len(b)
    return b"".join(parts)
