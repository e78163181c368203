"""Live (streaming) recognition of one audio stream, e.g. the caller channel during a call.

The producer (the call's media thread) calls :meth:`LiveRecognizer.feed` with PCM frames. ``feed``
never blocks on recognition: frames go into a bounded backlog; when recognition falls behind by more
than ``max_backlog_seconds``, the *oldest* frames are dropped (and counted), so live ASR degrades
while the call audio and its recording are never delayed. A consumer thread resamples (soxr) to the
model's rate, runs Vosk and reports results through callbacks:

* ``on_partial(text)``: the current hypothesis changed (display text, CJK spaces removed);
* ``on_final(segment)``: an utterance ended: ``{"start", "end", "text", "words": [...]}``, times in
  seconds of the stream, shifted by the audio dropped before the result, so they stay near call time.

Callbacks run on the consumer thread; exceptions they raise are logged and swallowed.
"""
from __future__ import annotations

import collections
import json
import logging
import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np
import soxr

from asr.engine import LoadedModel
from asr.postprocess import Replacements, display_text

log = logging.getLogger(__name__)


@dataclass
class LiveStats:
    fed_bytes: int = 0
    dropped_bytes: int = 0
    drop_events: int = 0
    processed_bytes: int = 0
    partials: int = 0
    finals: int = 0
    max_backlog_bytes: int = 0
    callback_errors: int = 0

    def seconds(self, nbytes: int, rate: int) -> float:
        return nbytes / 2 / rate


class LiveRecognizer:
    def __init__(
        self,
        model: LoadedModel,
        input_rate: int,
        on_partial: Callable[[str], None] | None = None,
        on_final: Callable[[dict], None] | None = None,
        max_backlog_seconds: float = 2.0,
        replacements: Replacements | None = None,
        step_seconds: float = 0.2,
        name: str = "live",
    ):
        self.model = model
        self.input_rate = int(input_rate)
        self.on_partial = on_partial
        self.on_final = on_final
        self.replacements = replacements
        self.max_backlog_bytes = max(2, int(max_backlog_seconds * self.input_rate) * 2)
        self.step_bytes = max(2, int(step_seconds * self.input_rate) * 2)
        self.stats = LiveStats()
        self._queue: collections.deque[bytes] = collections.deque()
        self._queued = 0
        self._cv = threading.Condition()
        self._closing = False
        self._closed = False
        self._dropped_before_s = 0.0  # input seconds dropped so far (time shift for results)
        self._last_partial = ""
        self._thread = threading.Thread(target=self._run, name=f"asr-{name}", daemon=True)
        import vosk

        self._rec = vosk.KaldiRecognizer(model.model, model.sample_rate)
        self._rec.SetWords(True)
        self._rs = (
            None
            if self.input_rate == model.sample_rate
            else soxr.ResampleStream(self.input_rate, model.sample_rate, 1, dtype="int16", quality="HQ")
        )
        self._thread.start()

    # ------------------------------------------------------------------ producer side
    def feed(self, pcm: bytes | bytearray | memoryview | np.ndarray) -> None:
        """Queue 16-bit little-endian mono PCM at ``input_rate``. Never blocks on recognition."""
        if isinstance(pcm, np.ndarray):
            pcm = np.ascontiguousarray(pcm, dtype="<i2").tobytes()
        else:
            pcm = bytes(pcm)
        if len(pcm) % 2:
            pcm = pcm[:-1]
        if not pcm:
            return
        with self._cv:
            if self._closing:
                return
            self.stats.fed_bytes += len(pcm)
            self._queue.append(pcm)
            self._queued += len(pcm)
            while self._queued > self.max_backlog_bytes and len(self._queue) > 1:
                old = self._queue.popleft()
                self._queued -= len(old)
                self.stats.dropped_bytes += len(old)
                self.stats.drop_events += 1
            if self._queued > self.max_backlog_bytes:  # a single huge frame: keep its newest part
                (only,) = self._queue
                cut = self._queued - self.max_backlog_bytes
                cut -= cut % 2
                self._queue[0] = only[cut:]
                self._queued -= cut
                self.stats.dropped_bytes += cut
                self.stats.drop_events += 1
            self.stats.max_backlog_bytes = max(self.stats.max_backlog_bytes, self._queued)
            self._cv.notify()

    @property
    def backlog_seconds(self) -> float:
        return self._queued / 2 / self.input_rate

    @property
    def dropped_seconds(self) -> float:
        return self.stats.dropped_bytes / 2 / self.input_rate

    # ------------------------------------------------------------------ consumer side
    def _take(self) -> bytes | None:
        with self._cv:
            while not self._queue and not self._closing:
                self._cv.wait(0.5)
            if not self._queue:
                return None
            out = bytearray()
            while self._queue and len(out) < self.step_bytes:
                out += self._queue.popleft()
            self._queued -= len(out)
            self._dropped_before_s = self.stats.dropped_bytes / 2 / self.input_rate
            return bytes(out)

    def _call(self, fn, arg) -> None:
        if fn is None:
            return
        try:
            fn(arg)
        except Exception:  # never let a subscriber kill live ASR
            self.stats.callback_errors += 1
            log.exception("live ASR callback failed")

    def _final(self, result_json: str) -> None:
        res = json.loads(result_json)
        words = res.get("result") or []
        self._last_partial = ""
        if not words:
            return
        shift = self._dropped_before_s
        ws = [
            {"word": w["word"], "start": w["start"] + shift, "end": w["end"] + shift, "conf": w["conf"]}
            for w in words
        ]
        seg = {
            "start": ws[0]["start"],
            "end": ws[-1]["end"],
            "text": display_text([w["word"] for w in ws], self.replacements),
            "words": ws,
        }
        self.stats.finals += 1
        self._call(self.on_final, seg)

    def _accept(self, pcm: bytes) -> None:
        if self._rs is not None:
            pcm = self._rs.resample_chunk(np.frombuffer(pcm, dtype="<i2")).astype("<i2").tobytes()
            if not pcm:
                return
        if self._rec.AcceptWaveform(pcm):
            self._final(self._rec.Result())
        else:
            part = json.loads(self._rec.PartialResult()).get("partial", "")
            text = display_text(part.split(), self.replacements) if part else ""
            if text and text != self._last_partial:
                self._last_partial = text
                self.stats.partials += 1
                self._call(self.on_partial, text)

    def _run(self) -> None:
        try:
            while True:
                pcm = self._take()
                if pcm is None:
                    break
                self._accept(pcm)
                self.stats.processed_bytes += len(pcm)
            if self._rs is not None:
                tail = self._rs.resample_chunk(np.zeros(0, dtype=np.int16), last=True)
                if len(tail):
                    self._rec.AcceptWaveform(tail.astype("<i2").tobytes())
            self._final(self._rec.FinalResult())
        except Exception:
            log.exception("live ASR stopped on an error")
        finally:
            self._closed = True

    def close(self, timeout: float | None = 30.0) -> LiveStats:
        """Stop accepting frames, finish what is queued, emit the last final result, join the thread."""
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        self._thread.join(timeout)
        return self.stats

    def abort(self) -> None:
        """Drop the backlog and stop as soon as possible (e.g. the call ended and nobody watches)."""
        with self._cv:
            self.stats.dropped_bytes += self._queued
            self._queue.clear()
            self._queued = 0
            self._closing = True
            self._cv.notify_all()
