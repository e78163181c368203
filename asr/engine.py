"""Batch transcription with Vosk: one ``Model`` per process (cached by path, shared by threads),
one ``KaldiRecognizer`` per channel and file.

The output is the JSON of ``hotline transcribe --json`` (see CONTRACT.md), plus per-channel
``text`` and a merged, time-ordered ``turns`` list.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from asr.audio import AudioSource, ChannelFeed, iter_blocks, open_audio
from asr.errors import Cancelled, ModelError, ModelNotInstalled
from asr.postprocess import Replacements, display_text, join_texts

log = logging.getLogger(__name__)

DEFAULT_MODEL_RATE = 16000
#: Bytes fed to the recognizer per call (in model-rate frames). Vosk's own examples use 4000.
DEFAULT_CHUNK_FRAMES = 4000
#: Frames read from the file per block (per second of source audio: ``block_seconds * rate``).
DEFAULT_BLOCK_SECONDS = 10.0
#: Runs of digital silence (exact zero samples: muted line, one-sided channel, RTP gaps) at least this
#: long are not decoded: the utterance is closed, the run skipped, later word times shifted by it.
DEFAULT_SKIP_SILENCE_SECONDS = 2.0

ProgressFn = Callable[[float, float], None]  # (seconds done, total seconds)

_models: dict[str, "LoadedModel"] = {}
_models_lock = threading.Lock()
_vosk_log_set = False


@dataclass(frozen=True)
class LoadedModel:
    path: Path
    model: Any  # vosk.Model
    sample_rate: int

    @property
    def name(self) -> str:
        return self.path.name


def model_sample_rate(model_dir: str | Path) -> int:
    """The model's rate: ``--sample-frequency`` of conf/mfcc.conf, else 16000 (Kaldi's default)."""
    conf = Path(model_dir) / "conf" / "mfcc.conf"
    try:
        text = conf.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return DEFAULT_MODEL_RATE
    m = re.search(r"^\s*--sample-frequency\s*=\s*([0-9.]+)", text, re.MULTILINE)
    return int(float(m.group(1))) if m else DEFAULT_MODEL_RATE


def load_model(model_dir: str | Path) -> LoadedModel:
    """Load (once per process and path) a Vosk model; raise :class:`ModelError` clearly."""
    global _vosk_log_set
    path = Path(model_dir).resolve()
    key = str(path)
    with _models_lock:
        if key in _models:
            return _models[key]
        from asr.models import check_structure  # local: models imports nothing from here

        if not path.is_dir():
            raise ModelNotInstalled(f"no Vosk model at {path}")
        missing = check_structure(path)
        if missing:
            raise ModelNotInstalled(f"the Vosk model at {path} is incomplete: missing {', '.join(missing)}")
        import vosk

        if not _vosk_log_set:
            vosk.SetLogLevel(-1)
            _vosk_log_set = True
        t0 = time.monotonic()
        try:
            model = vosk.Model(str(path))
        except Exception as e:  # vosk raises a bare Exception("Failed to create a model")
            raise ModelError(f"Vosk could not load the model at {path}: {e}") from e
        loaded = LoadedModel(path=path, model=model, sample_rate=model_sample_rate(path))
        log.info("loaded Vosk model %s (%d Hz) in %.1f s", path.name, loaded.sample_rate, time.monotonic() - t0)
        _models[key] = loaded
        return loaded


def reseed_dither(seed: int = 0) -> None:
    """Kaldi dithers the features with libc ``rand()`` (mfcc.conf has no ``--dither=0``), so two
    decodes of the same audio differ slightly unless the generator is reseeded. For reproducible
    results (tests, benchmarks, the fidelity check) call this before each decode, one at a time."""
    import ctypes

    ctypes.CDLL(None).srand(ctypes.c_uint(seed))


def default_speakers(channels: int, kind: str | None = None) -> list[str]:
    """Speaker names per channel: 2-ch calls → caller, operator; mono → caller; voicemail →
    voicemail (channel 1 of a 2-channel voicemail is the hotline side, i.e. prompts: ``operator``)."""
    first = "voicemail" if kind == "voicemail" else "caller"
    second = "operator"
    return [first, second][:channels] if channels <= 2 else [first] + [f"channel{i}" for i in range(1, channels)]


def _segment(result_json: str, replacements: Replacements | None, offset: float = 0.0) -> dict | None:
    res = json.loads(result_json)
    words = res.get("result") or []
    if not words:
        return None
    if offset:
        ws = [{"word": w["word"], "start": round(w["start"] + offset, 6), "end": round(w["end"] + offset, 6),
               "conf": w["conf"]} for w in words]
    else:  # exactly Vosk's numbers
        ws = [{"word": w["word"], "start": w["start"], "end": w["end"], "conf": w["conf"]} for w in words]
    return {
        "start": ws[0]["start"],
        "end": ws[-1]["end"],
        "text": display_text([w["word"] for w in ws], replacements),
        "words": ws,
    }


def merge_turns(channels: Sequence[dict]) -> list[dict]:
    """Time-ordered turns: segments of all channels sorted by start; consecutive segments of the
    same speaker are merged into one turn."""
    segs = sorted(
        ((s["start"], s["end"], ch["speaker"], s["text"]) for ch in channels for s in ch["segments"]),
        key=lambda t: (t[0], t[1]),
    )
    turns: list[dict] = []
    for start, end, speaker, text in segs:
        if turns and turns[-1]["speaker"] == speaker:
            t = turns[-1]
            t["end"] = max(t["end"], end)
            t["text"] = join_texts(t["text"], text)
        else:
            turns.append({"speaker": speaker, "start": start, "end": end, "text": text})
    return turns


class _ChannelDecoder:
    """One channel: resample + rechunk (ChannelFeed), Vosk recognizer, digital-silence skipping."""

    def __init__(self, owner: "Transcriber", rate: int, out: list[dict]):
        self.owner = owner
        self.rate = rate
        self.out = out
        self.rec = owner._recognizer()
        self.feed = ChannelFeed(rate, owner.model.sample_rate, owner.chunk_frames)
        self.offset = 0.0  # seconds of skipped silence before the recognizer's current position
        self.pending_zeros = 0  # zero samples seen but neither fed nor skipped yet
        sk = owner.skip_silence_seconds
        self.skip_min = int(sk * rate) if sk else 0

    def _accept(self, samples: np.ndarray, last: bool = False) -> None:
        rec = self.rec
        for chunk in self.feed.push(samples, last=last):
            if rec.AcceptWaveform(chunk):
                seg = _segment(rec.Result(), self.owner.replacements, self.offset)
                if seg:
                    self.out.append(seg)

    def _flush_zeros(self, final: bool = False) -> None:
        n = self.pending_zeros
        if not n:
            return
        self.pending_zeros = 0
        if self.skip_min and n >= self.skip_min:
            # close the utterance, drop the resampler's state, skip the run
            self._accept(np.zeros(0, dtype=np.int16), last=True)
            seg = _segment(self.rec.FinalResult(), self.owner.replacements, self.offset)
            if seg:
                self.out.append(seg)
            self.offset += n / self.rate
            self.feed = ChannelFeed(self.rate, self.owner.model.sample_rate, self.owner.chunk_frames)
        else:
            self._accept(np.zeros(n, dtype=np.int16))

    def push(self, x: np.ndarray) -> None:
        if not self.skip_min:
            self._accept(x)
            return
        nz = np.flatnonzero(x)
        if len(nz) == 0:
            self.pending_zeros += len(x)
            return
        self.pending_zeros += int(nz[0])
        self._flush_zeros()
        # long zero runs inside the block
        gaps = np.flatnonzero(np.diff(nz) - 1 >= self.skip_min)
        pos = int(nz[0])
        for g in gaps:
            a, b = int(nz[g]) + 1, int(nz[g + 1])  # zeros in [a, b)
            self._accept(x[pos:a])
            self.pending_zeros = b - a
            self._flush_zeros()
            pos = b
        last_nz = int(nz[-1])
        self._accept(x[pos:last_nz + 1])
        self.pending_zeros = len(x) - 1 - last_nz

    def finish(self) -> None:
        self._flush_zeros()
        self._accept(np.zeros(0, dtype=np.int16), last=True)
        seg = _segment(self.rec.FinalResult(), self.owner.replacements, self.offset)
        if seg:
            self.out.append(seg)


class Transcriber:
    """Transcribes files with a loaded model. Thread-safe: every call makes its own recognizers."""

    def __init__(
        self,
        model: LoadedModel,
        replacements: Replacements | None = None,
        chunk_frames: int = DEFAULT_CHUNK_FRAMES,
        block_seconds: float = DEFAULT_BLOCK_SECONDS,
        skip_silence_seconds: float | None = DEFAULT_SKIP_SILENCE_SECONDS,
    ):
        self.model = model
        self.replacements = replacements
        self.chunk_frames = int(chunk_frames)
        self.block_seconds = float(block_seconds)
        self.skip_silence_seconds = skip_silence_seconds

    def _recognizer(self):
        import vosk

        rec = vosk.KaldiRecognizer(self.model.model, self.model.sample_rate)
        rec.SetWords(True)
        return rec

    def transcribe(
        self,
        src: AudioSource,
        speakers: Sequence[str] | None = None,
        kind: str | None = None,
        progress: ProgressFn | None = None,
        cancel: Callable[[], bool] | threading.Event | None = None,
        progress_interval: float = 1.0,
    ) -> dict:
        """Transcribe every channel of ``src`` (a path or a seekable binary file object).

        Raises :class:`AudioInputError` for bad input and :class:`Cancelled` when ``cancel`` fires.
        """
        t0 = time.monotonic()
        is_cancelled = cancel.is_set if isinstance(cancel, threading.Event) else cancel
        with open_audio(src) as f:
            rate, nch, total_frames = f.samplerate, f.channels, f.frames
            names = list(speakers) if speakers else default_speakers(nch, kind)
            if len(names) < nch:
                names += default_speakers(nch, kind)[len(names):]
            total = total_frames / rate if rate else 0.0
            segments: list[list[dict]] = [[] for _ in range(nch)]
            decoders = [
                _ChannelDecoder(self, rate, segments[ch]) for ch in range(nch)
            ]
            block = max(1, int(self.block_seconds * rate))
            done = 0
            last_report = 0.0
            last_done = 0
            if progress:
                progress(0.0, total)
            for data in iter_blocks(f, block):
                if is_cancelled and is_cancelled():
                    raise Cancelled("transcription cancelled")
                for ch in range(nch):
                    decoders[ch].push(data[:, ch])
                done += len(data)
                now = time.monotonic()
                # report every progress_interval seconds, and at every 1 % of the file
                if progress and (now - last_report >= progress_interval or done - last_done >= total_frames / 100):
                    last_report, last_done = now, done
                    progress(done / rate, total)
            for dec in decoders:
                dec.finish()
            if progress:
                progress(done / rate, total)
        channels = []
        for ch in range(nch):
            text = ""
            for s in segments[ch]:
                text = join_texts(text, s["text"])
            channels.append({"channel": ch, "speaker": names[ch], "text": text, "segments": segments[ch]})
        turns = merge_turns(channels)
        elapsed = time.monotonic() - t0
        duration = done / rate if rate else 0.0
        return {
            "duration": round(duration, 3),
            "sample_rate": rate,
            "channels": channels,
            "turns": turns,
            "text": channels[0]["text"] if nch == 1 else "\n".join(t["text"] for t in turns),
            "rtf": round(elapsed / duration, 4) if duration else 0.0,
            "model": self.model.name,
        }


def transcribe_file(
    path: AudioSource,
    model_dir: str | Path,
    speakers: Sequence[str] | None = None,
    kind: str | None = None,
    replacements: Replacements | None = None,
    progress: ProgressFn | None = None,
) -> dict:
    """One-off convenience: load (cached) model and transcribe one file."""
    return Transcriber(load_model(model_dir), replacements=replacements).transcribe(
        path, speakers=speakers, kind=kind, progress=progress
    )
