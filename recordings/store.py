"""Where encrypted recordings live on disk: ``root/<first two hex chars>/<uuid>.hle``.

File names are derived only from the random recording UUID (validated, so no path traversal and
no confidential data in names)."""
from __future__ import annotations

import os
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path

from recordings.crypto import DEFAULT_CHUNK_SIZE, EncryptResult, EncryptedReader, encrypt_file

SUFFIX = ".hle"


class BadRecordingId(ValueError):
    """Not a canonical UUID (rejects path traversal and anything else)."""


def check_recording_id(recording_id: str) -> str:
    if not isinstance(recording_id, str) or len(recording_id) != 36:
        raise BadRecordingId("recording id must be a UUID")
    try:
        canonical = str(uuid.UUID(recording_id))
    except ValueError as e:
        raise BadRecordingId("recording id must be a UUID") from e
    if canonical != recording_id.lower():
        raise BadRecordingId("recording id must be a UUID")
    return canonical


@dataclass(frozen=True)
class WavLayout:
    """Where the sample data sits inside a WAV plaintext (for listening coverage)."""

    data_offset: int
    data_size: int


def wav_layout(head: bytes, total_len: int) -> WavLayout:
    """Find the ``data`` chunk by walking the RIFF chunk list; whole file when it is not a WAV."""
    if len(head) >= 12 and head[:4] in (b"RIFF", b"RIFX") and head[8:12] == b"WAVE":
        fmt = "<I" if head[:4] == b"RIFF" else ">I"
        pos = 12
        while pos + 8 <= len(head):
            cid = head[pos : pos + 4]
            (size,) = struct.unpack(fmt, head[pos + 4 : pos + 8])
            if cid == b"data":
                start = pos + 8
                size = min(size, total_len - start) if size not in (0, 0xFFFFFFFF) else total_len - start
                return WavLayout(start, max(0, size))
            pos += 8 + size + (size & 1)
    return WavLayout(0, total_len)


class EncryptedStore:
    def __init__(self, root: Path, chunk_size: int = DEFAULT_CHUNK_SIZE):
        self.root = Path(root)
        self.chunk_size = chunk_size

    def rel_path(self, recording_id: str) -> str:
        rid = check_recording_id(recording_id)
        return f"{rid[:2]}/{rid}{SUFFIX}"

    def path(self, recording_id: str) -> Path:
        return self.root / self.rel_path(recording_id)

    def put(self, recording_id: str, src_path: Path, data_key: bytes) -> EncryptResult:
        rid = check_recording_id(recording_id)
        return encrypt_file(Path(src_path), self.path(rid), data_key, key_id=rid, chunk_size=self.chunk_size)

    def open(self, recording_id: str, data_key: bytes) -> EncryptedReader:
        rid = check_recording_id(recording_id)
        return EncryptedReader.open(self.path(rid), data_key, expected_key_id=rid)

    def exists(self, recording_id: str) -> bool:
        return self.path(recording_id).is_file()

    def delete(self, recording_id: str) -> bool:
        p = self.path(recording_id)
        try:
            os.unlink(p)
            return True
        except FileNotFoundError:
            return False
