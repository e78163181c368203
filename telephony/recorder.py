"""Dual-channel call recordings: incremental writing, completion, and crash repair.

Format: WAV, 16-bit PCM, 2 channels, at the media bridge's clock rate (:data:`DEFAULT_RATE`,
16000 Hz: G.722 is 16 kHz wide-band; G.711 calls are upsampled by the bridge).
Channel 0 is the caller, channel 1 the hotline side (prompts, later the operator).

Life of a recording (all files named by the random ``recording_id``; no caller number or URI is
ever written to disk here):

1. :class:`SpoolRecorder` opens ``<spool>/<recording_id>.wav`` with soundfile (libsndfile) and writes
   a sidecar ``<spool>/<recording_id>.json`` holding ``call_uuid``, ``recording_id``, ``state``
   (``recording`` / ``finalizing``), ``started_at``, ``sample_rate``, ``channels``.
2. Frames are appended as the call goes on. libsndfile writes with plain ``write(2)`` calls, so every
   written frame is in the kernel's page cache at once and survives a SIGKILL of the process;
   :meth:`SpoolRecorder.flush` (``sf_write_sync``, also called every ``sync_every_s``) additionally
   forces it to the disk.
3. :meth:`SpoolRecorder.finish` closes the file (libsndfile writes the true length into the
   header), computes the sha256, moves it atomically to ``<recordings>/<YYYY>/<MM>/<id>.wav`` and
   removes the sidecar.
4. After a crash, :func:`repair` rewrites a spool file whose header is stale (finds the data chunk,
   keeps whole frames only, writes a valid WAV with soundfile, atomic rename), and
   :func:`recover_spool` (telephony.recovery) completes it with status ``recovered``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import soundfile as sf

DEFAULT_RATE = 16000
CHANNELS = 2
SIDECAR_SUFFIX = ".json"


class RecordingError(Exception):
    """A recording file cannot be written or repaired; the message names the file."""


@dataclass(frozen=True)
class RecordingResult:
    recording_id: str
    call_uuid: str
    path: str  # final absolute path
    status: str  # complete / recovered / empty
    duration: float
    frames: int
    sample_rate: int
    channels: int
    sha256: str
    size_bytes: int
    started_at: str = ""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def sha256_file(path: Path, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


#: Mode of every file the recorder creates: calls in progress are plain PCM of a reporter's voice.
FILE_MODE = 0o600


def _create_private(path: Path, *, truncate: bool = True) -> int:
    """A file descriptor of ``path`` opened for writing, created 0600 whatever the process umask
    (an existing file is also set to 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if truncate else 0), FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except OSError:
        pass
    return fd


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with os.fdopen(_create_private(tmp), "w", encoding="utf-8") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def final_path(recordings_dir: Path, recording_id: str, when: datetime | None = None) -> Path:
    when = when or utcnow()
    return Path(recordings_dir) / f"{when:%Y}" / f"{when:%m}" / f"{recording_id}.wav"


def _move_into_place(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(src, dest)
    except OSError:  # other file system: copy then rename inside the destination
        tmp = dest.with_name(f".{dest.name}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
        os.unlink(src)


class SpoolRecorder:
    """One recording being written. Not thread-safe: one writer thread calls write/flush/finish."""

    def __init__(self, spool_dir: Path, recordings_dir: Path, recording_id: str, call_uuid: str,
                 sample_rate: int = DEFAULT_RATE, channels: int = CHANNELS, kind: str = "call",
                 sync_every_s: float = 1.0) -> None:
        self.spool_dir = Path(spool_dir)
        self.recordings_dir = Path(recordings_dir)
        self.recording_id = recording_id
        self.call_uuid = call_uuid
        self.sample_rate = sample_rate
        self.channels = channels
        self.kind = kind
        self.sync_every_s = sync_every_s
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.spool_dir / f"{recording_id}.wav"
        self.sidecar = self.spool_dir / f"{recording_id}{SIDECAR_SUFFIX}"
        self.started_at = utcnow()
        self.frames = 0
        self._meta = {
            "recording_id": recording_id,
            "call_uuid": call_uuid,
            "state": "recording",
            "started_at": self.started_at.isoformat(),
            "sample_rate": sample_rate,
            "channels": channels,
            "kind": kind,
        }
        # Sidecar first: a crash between the two leaves a sidecar without audio, which recovery
        # completes as an empty recording rather than an orphan file.
        _write_json_atomic(self.sidecar, self._meta)
        try:
            # created 0600 by us (libsndfile would use the umask), then written by libsndfile
            self._sf = sf.SoundFile(_create_private(self.path), "w", samplerate=sample_rate, channels=channels,
                                    subtype="PCM_16", format="WAV", closefd=True)
        except Exception as e:
            raise RecordingError(f"cannot create recording {self.path}: {e}") from e
        self._last_sync = time.monotonic()

    @property
    def duration(self) -> float:
        return self.frames / float(self.sample_rate)

    def write(self, block: np.ndarray) -> None:
        """Append interleaved int16 frames, shape (n, channels)."""
        if block.size == 0:
            return
        if block.dtype != np.int16 or block.ndim != 2 or block.shape[1] != self.channels:
            raise ValueError(f"expected int16 array of shape (n, {self.channels}), got {block.dtype} {block.shape}")
        self._sf.write(block)
        self.frames += block.shape[0]
        now = time.monotonic()
        if now - self._last_sync >= self.sync_every_s:
            self.flush()
            self._last_sync = now

    def flush(self) -> None:
        self._sf.flush()

    def finish(self, status: str | None = None) -> RecordingResult:
        """Close, hash and move the file into the recordings directory; remove the sidecar.

        ``status``: ``complete`` by default, ``empty`` when no frame was written."""
        self._sf.close()
        self._meta["state"] = "finalizing"
        dest = final_path(self.recordings_dir, self.recording_id, self.started_at)
        self._meta["final_path"] = str(dest)
        _write_json_atomic(self.sidecar, self._meta)
        status = status or ("complete" if self.frames > 0 else "empty")
        return _complete(self.path, dest, self.sidecar, self._meta, status)


def _complete(src: Path, dest: Path, sidecar: Path, meta: dict, status: str) -> RecordingResult:
    info = sf.info(str(src))
    digest = sha256_file(src)
    size = src.stat().st_size
    _move_into_place(src, dest)
    try:
        sidecar.unlink()
    except FileNotFoundError:
        pass
    return RecordingResult(
        recording_id=meta["recording_id"], call_uuid=meta.get("call_uuid", ""), path=str(dest.resolve()),
        status=status, duration=info.frames / float(info.samplerate), frames=info.frames,
        sample_rate=info.samplerate, channels=info.channels, sha256=digest, size_bytes=size,
        started_at=meta.get("started_at", ""),
    )


# ---------------------------------------------------------------- crash repair
@dataclass(frozen=True)
class RepairResult:
    path: str
    frames: int
    duration: float
    sample_rate: int
    channels: int
    dropped_bytes: int  # partial frame bytes cut off the end
    rewritten: bool  # False when the header was already right


def _parse_riff(head: bytes, file_size: int) -> tuple[dict | None, int | None]:
    """Returns (fmt, data_offset) from a (possibly stale) RIFF/WAVE header."""
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
        return None, None
    pos, fmt = 12, None
    while pos + 8 <= len(head):
        cid = head[pos:pos + 4]
        (size,) = struct.unpack_from("<I", head, pos + 4)
        body = pos + 8
        if cid == b"fmt " and body + 16 <= len(head):
            tag, ch, rate, _bps, align, bits = struct.unpack_from("<HHIIHH", head, body)
            fmt = {"tag": tag, "channels": ch, "rate": rate, "block_align": align, "bits": bits}
        elif cid == b"data":
            return fmt, body
        if size in (0, 0xFFFFFFFF):
            break
        pos = body + size + (size & 1)
    return fmt, None


def repair(path: Path, sample_rate: int | None = None, channels: int | None = None) -> RepairResult:
    """Make ``path`` a valid PCM16 WAV holding all the whole frames that reached the disk.

    The header written at open time tells where the data starts and the format; its lengths may be
    stale (the writer was killed). The data runs from the data chunk to the end of the file; a
    partial last frame is dropped. The result is written with soundfile to a temporary file and
    renamed over ``path`` (atomic). ``sample_rate``/``channels`` (from the sidecar) are used when
    the header is unreadable."""
    path = Path(path)
    if not path.is_file():
        raise RecordingError(f"cannot repair {path}: file not found")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(min(size, 1 << 16))
    fmt, data_off = _parse_riff(head, size)
    if fmt is None:
        if not (sample_rate and channels):
            raise RecordingError(f"cannot repair {path}: no WAV header and no format given")
        fmt = {"tag": 1, "channels": channels, "rate": sample_rate, "block_align": 2 * channels, "bits": 16}
    if data_off is None:
        data_off = 44 if size >= 44 and head[:4] == b"RIFF" else (0 if head[:4] != b"RIFF" else size)
    if fmt["tag"] not in (1, 0xFFFE) or fmt["bits"] != 16:
        raise RecordingError(f"cannot repair {path}: not 16-bit PCM (format tag {fmt['tag']}, {fmt['bits']} bits)")
    ch, rate = fmt["channels"], fmt["rate"]
    align = 2 * ch
    data_bytes = max(0, size - data_off)
    frames = data_bytes // align
    dropped = data_bytes - frames * align
    # Already valid and complete? (libsndfile agrees on the frame count)
    try:
        info = sf.info(str(path))
        if info.frames == frames and info.channels == ch and info.samplerate == rate:
            return RepairResult(str(path), frames, frames / float(rate), rate, ch, dropped, False)
    except Exception:
        pass
    tmp = path.with_name(f".{path.name}.repair")
    block = 16000 * 10  # frames per copy step: bounded memory for long calls
    with open(path, "rb") as src, sf.SoundFile(_create_private(tmp), "w", samplerate=rate, channels=ch,
                                                 subtype="PCM_16", format="WAV", closefd=True) as out:
        src.seek(data_off)
        remaining = frames
        while remaining > 0:
            n = min(block, remaining)
            buf = src.read(n * align)
            got = len(buf) // align
            if got == 0:
                break
            out.write(np.frombuffer(buf[: got * align], dtype="<i2").reshape(-1, ch))
            remaining -= got
        out.flush()
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return RepairResult(str(path), frames, frames / float(rate), rate, ch, dropped, True)


def read_sidecar(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def recover_file(sidecar: Path, recordings_dir: Path) -> RecordingResult:
    """Complete one unfinished recording found in a spool (its sidecar): repair, hash, move,
    status ``recovered``. A sidecar whose audio is gone yields an ``empty`` valid file so that
    the recording row is closed, never left orphaned."""
    sidecar = Path(sidecar)
    meta = read_sidecar(sidecar) or {}
    rec_id = meta.get("recording_id") or sidecar.stem
    meta.setdefault("recording_id", rec_id)
    wav = sidecar.with_name(f"{rec_id}.wav")
    rate = int(meta.get("sample_rate") or DEFAULT_RATE)
    ch = int(meta.get("channels") or CHANNELS)
    started = meta.get("started_at")
    try:
        when = datetime.fromisoformat(started) if started else utcnow()
    except ValueError:
        when = utcnow()
    dest = Path(meta["final_path"]) if meta.get("final_path") else final_path(recordings_dir, rec_id, when)
    if not wav.exists() and dest.exists():
        # Crashed after the move, before the sidecar was removed: already complete.
        info = sf.info(str(dest))
        sidecar.unlink(missing_ok=True)
        return RecordingResult(rec_id, meta.get("call_uuid", ""), str(dest.resolve()), "recovered",
                               info.frames / float(info.samplerate), info.frames, info.samplerate,
                               info.channels, sha256_file(dest), dest.stat().st_size, started or "")
    if not wav.exists():
        with sf.SoundFile(_create_private(wav), "w", samplerate=rate, channels=ch, subtype="PCM_16",
                          format="WAV", closefd=True):
            pass
    rep = repair(wav, sample_rate=rate, channels=ch)
    status = "recovered" if rep.frames > 0 else "empty"
    return _complete(wav, dest, sidecar, meta, status)


def unfinished(spool_dir: Path) -> list[Path]:
    """Sidecars of recordings left unfinished in a spool directory, oldest first."""
    d = Path(spool_dir)
    if not d.is_dir():
        return []
    return sorted((p for p in d.glob(f"*{SIDECAR_SUFFIX}") if not p.name.startswith(".")),
                  key=lambda p: p.stat().st_mtime)


def result_dict(r: RecordingResult) -> dict:
    return asdict(r)
