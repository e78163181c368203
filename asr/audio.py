"""Reading recordings for ASR: validation, block-wise streaming reads, per-channel resampling.

Files are read with ``soundfile`` (libsndfile) in blocks so a file of any length is processed in
bounded memory; each channel is resampled with a streaming ``soxr`` resampler to the model's rate.
"""
from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Union

import numpy as np
import soundfile as sf
import soxr

from asr.errors import AsrError, AudioInputError

AudioSource = Union[str, os.PathLike, BinaryIO]

#: Channel layouts we accept. More than 2 channels is refused: recordings are mono (voicemail,
#: imports) or 2-channel (0 = caller, 1 = hotline side); anything else is not ours to guess.
MAX_CHANNELS = 2

_DATA_SHOULD_BE = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


@dataclass(frozen=True)
class AudioInfo:
    frames: int
    sample_rate: int
    channels: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _name(src: AudioSource) -> str:
    if isinstance(src, (str, os.PathLike)):
        return os.path.basename(os.fspath(src))
    return getattr(src, "name", None) and os.path.basename(str(src.name)) or "<stream>"


def open_audio(src: AudioSource) -> sf.SoundFile:
    """Open and validate an audio file; raise :class:`AudioInputError` with a clear message."""
    name = _name(src)
    if isinstance(src, (str, os.PathLike)):
        p = Path(src)
        if not p.exists():
            raise AudioInputError(f"{name}: file not found")
        if p.is_dir():
            raise AudioInputError(f"{name}: is a directory, not an audio file")
        if p.stat().st_size == 0:
            raise AudioInputError(f"{name}: empty file (0 bytes)")
    else:
        pos = src.tell()
        src.seek(0, io.SEEK_END)
        size = src.tell()
        src.seek(pos)
        if size == 0:
            raise AudioInputError(f"{name}: empty file (0 bytes)")
    try:
        f = sf.SoundFile(src)
    except sf.LibsndfileError as e:
        msg = str(e.error_string if hasattr(e, "error_string") else e)
        if "Channel count is zero" in msg:
            raise AudioInputError(f"{name}: the file declares 0 channels") from e
        if "data" in msg.lower() and "chunk" in msg.lower():
            raise AudioInputError(f"{name}: truncated or damaged WAV header ({msg})") from e
        raise AudioInputError(f"{name}: not a readable audio file ({msg})") from e
    except (RuntimeError, TypeError, ValueError) as e:
        raise AudioInputError(f"{name}: not a readable audio file ({e})") from e
    try:
        _check(f, name)
    except Exception:
        f.close()
        raise
    return f


def _check(f: sf.SoundFile, name: str) -> None:
    if f.channels < 1:
        raise AudioInputError(f"{name}: the file declares 0 channels")
    if f.channels > MAX_CHANNELS:
        raise AudioInputError(
            f"{name}: {f.channels} channels; only mono or 2-channel (caller, hotline side) recordings are supported"
        )
    if f.samplerate < 4000:
        raise AudioInputError(f"{name}: sample rate {f.samplerate} Hz is too low for speech")
    m = _DATA_SHOULD_BE.search(f.extra_info or "")
    if m and f.format in ("WAV", "WAVEX", "RF64"):
        declared, present = int(m.group(1)), int(m.group(2))
        # 0 and 0xFFFFFFFF are "unknown length" markers of streaming writers, not truncation.
        if present < declared and declared not in (0, 0xFFFFFFFF, 0xFFFFFFFF - 1):
            raise AudioInputError(
                f"{name}: truncated WAV: the header declares {declared} bytes of audio, the file holds {present}"
            )


def probe(src: AudioSource) -> AudioInfo:
    """Validate and describe an audio file (raises :class:`AudioInputError`)."""
    with open_audio(src) as f:
        return AudioInfo(frames=f.frames, sample_rate=f.samplerate, channels=f.channels, format=f.format, subtype=f.subtype)


#: What libsndfile reports as the frame count of a file whose header does not say (streamed FLAC).
UNKNOWN_FRAMES = 2**63 - 1
#: Bytes of the canonical WAV header written by :func:`convert_to_wav` (RIFF + fmt + data chunk).
WAV_HEADER_BYTES = 44


class DecodedTooLarge(AsrError):
    """The audio decodes to more bytes than allowed: a few compressed bytes can decode into
    gigabytes (long silence in FLAC), so a limit on the upload alone is no limit on the disk."""

    def __init__(self, message: str, limit_bytes: int, decoded_bytes: int | None = None):
        super().__init__(message)
        self.limit_bytes = limit_bytes
        self.decoded_bytes = decoded_bytes


def pcm16_wav_bytes(frames: int, channels: int) -> int:
    """Size of the 16-bit PCM WAV that ``frames`` frames of ``channels`` channels decode into."""
    return WAV_HEADER_BYTES + int(frames) * int(channels) * 2


def convert_to_wav(src: str | os.PathLike, dst: str | os.PathLike, max_bytes: int,
                   block_frames: int = 65536) -> AudioInfo:
    """Decode ``src`` into a 16-bit PCM WAV ``dst`` of at most ``max_bytes`` bytes.

    The size the header announces (frames x channels x 2) is checked before anything is written,
    and the bytes actually decoded are counted while writing, since a header can lie or say nothing
    (streamed FLAC): past the limit :class:`DecodedTooLarge`. ``dst`` must not exist; it is created
    0600 and removed again on any error, so nothing is left behind. Returns what was written: the
    frames decoded, with the source's format and subtype."""
    dst = Path(dst)
    with open_audio(src) as fin:
        name, rate, ch = _name(src), fin.samplerate, fin.channels
        if fin.frames != UNKNOWN_FRAMES and pcm16_wav_bytes(fin.frames, ch) > max_bytes:
            raise DecodedTooLarge(f"{name}: decodes to {pcm16_wav_bytes(fin.frames, ch)} bytes of audio, more than "
                                  f"the limit of {max_bytes}", max_bytes, pcm16_wav_bytes(fin.frames, ch))
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        frames = 0
        try:
            with sf.SoundFile(fd, "w", samplerate=rate, channels=ch, subtype="PCM_16", format="WAV",
                              closefd=True) as fo:
                while True:
                    try:
                        block = fin.read(block_frames, dtype="int16", always_2d=True)
                    except sf.LibsndfileError as e:
                        raise AudioInputError(f"{name}: cannot read audio data ({e})") from e
                    if len(block) == 0:
                        break
                    if pcm16_wav_bytes(frames + len(block), ch) > max_bytes:
                        raise DecodedTooLarge(f"{name}: decodes to more than the limit of {max_bytes} bytes of audio",
                                              max_bytes)
                    fo.write(block)
                    frames += len(block)
                    if len(block) < block_frames:
                        break
            return AudioInfo(frames=frames, sample_rate=rate, channels=ch, format=fin.format, subtype=fin.subtype)
        except BaseException:
            dst.unlink(missing_ok=True)
            raise


def iter_blocks(f: sf.SoundFile, block_frames: int) -> Iterator[np.ndarray]:
    """int16 blocks of shape (frames, channels) from the current position to the end."""
    while True:
        try:
            block = f.read(block_frames, dtype="int16", always_2d=True)
        except sf.LibsndfileError as e:  # damaged data part
            raise AudioInputError(f"{f.name}: cannot read audio data ({e})") from e
        if len(block) == 0:
            return
        yield block
        if len(block) < block_frames:
            return


class ChannelFeed:
    """Turns one channel's int16 blocks into fixed-size PCM byte chunks at the target rate.

    Resampling (when rates differ) is done with a streaming soxr resampler, so samples are never
    held for more than a block. Fixed chunk sizes make decoding independent of the file's block size.
    """

    def __init__(self, in_rate: int, out_rate: int, chunk_frames: int):
        self.in_rate = int(in_rate)
        self.out_rate = int(out_rate)
        self.chunk_bytes = int(chunk_frames) * 2
        self._rs = None if self.in_rate == self.out_rate else soxr.ResampleStream(
            self.in_rate, self.out_rate, 1, dtype="int16", quality="HQ"
        )
        self._buf = bytearray()

    def push(self, samples: np.ndarray, last: bool = False) -> Iterator[bytes]:
        if self._rs is not None:
            samples = self._rs.resample_chunk(np.ascontiguousarray(samples, dtype=np.int16), last=last)
        self._buf += np.ascontiguousarray(samples, dtype="<i2").tobytes()
        n = self.chunk_bytes
        while len(self._buf) >= n:
            chunk = bytes(self._buf[:n])
            del self._buf[:n]
            yield chunk
        if last and self._buf:
            chunk = bytes(self._buf)
            self._buf.clear()
            yield chunk
