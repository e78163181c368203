"""From media frames to the recording file, without blocking the media clock. No pjsua2 here.

Threads:
- The media clock thread (pjmedia's, see telephony.agent) calls :meth:`StereoMixer.push` once per
  frame and per channel. ``push`` only appends the frame's bytes to a ``collections.deque``
  (atomic under the GIL): no lock, no I/O, no pjsua2 call.
- One :class:`RecordingWriter` thread per worker drains every active mixer every
  ``interval_s``, interleaves the two channels into stereo int16 frames and writes them with
  :class:`telephony.recorder.SpoolRecorder`. Finishing a recording (close, sha256, move) also
  runs on this thread; the result is handed to a callback (the agent posts it to its own thread).

Channel alignment: the conference bridge ticks every port once per clock period, sending an empty
(``NONE``) frame to a port with no source connected; both channels therefore advance together and
are paired frame by frame. A missing frame becomes silence. If one channel stops ticking (port
removed) while the other continues, the lagging one is padded with silence after
``max_skew_frames`` so the recording never stalls.
"""
from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np

from telephony.recorder import RecordingResult, SpoolRecorder

log = logging.getLogger(__name__)


class StereoMixer:
    def __init__(self, samples_per_frame: int, channels: int = 2, max_skew_frames: int = 50) -> None:
        self.spf = samples_per_frame
        self.channels = channels
        self.max_skew = max_skew_frames
        self._q: list[deque] = [deque() for _ in range(channels)]
        self._silence = bytes(2 * samples_per_frame)
        self.frames_in = [0] * channels

    def push(self, channel: int, data: bytes | None) -> None:
        """Called on the media clock thread: append one frame (``None`` = no audio this tick)."""
        self._q[channel].append(data)
        self.frames_in[channel] += 1

    def _take(self, ch: int) -> bytes:
        try:
            d = self._q[ch].popleft()
        except IndexError:
            return self._silence
        if not d:
            return self._silence
        if len(d) != 2 * self.spf:  # odd size (should not happen): fit to the frame
            d = (d + self._silence)[: 2 * self.spf]
        return d

    def drain(self, final: bool = False) -> np.ndarray:
        """Frames ready for writing, shape (n * samples_per_frame, channels), int16."""
        lens = [len(q) for q in self._q]
        n = min(lens)
        hi = max(lens)
        if final or hi - n > self.max_skew:
            n = hi if final else hi - self.max_skew
        if n <= 0:
            return np.zeros((0, self.channels), dtype=np.int16)
        cols = []
        for ch in range(self.channels):
            buf = b"".join(self._take(ch) for _ in range(n))
            cols.append(np.frombuffer(buf, dtype="<i2"))
        return np.stack(cols, axis=1).astype(np.int16, copy=False)


@dataclass
class _Active:
    mixer: StereoMixer
    recorder: SpoolRecorder
    failed: str = ""


class RecordingWriter(threading.Thread):
    """The one thread that writes recordings of a worker."""

    def __init__(self, interval_s: float = 0.1) -> None:
        super().__init__(name="recording-writer", daemon=True)
        self.interval_s = interval_s
        self._active: dict[str, _Active] = {}
        self._lock = threading.Lock()
        self._requests: "queue.Queue[tuple]" = queue.Queue()
        self._stop_evt = threading.Event()

    # -- called from the agent's thread
    def add(self, recorder: SpoolRecorder, mixer: StereoMixer) -> None:
        with self._lock:
            self._active[recorder.recording_id] = _Active(mixer, recorder)

    def finish(self, recording_id: str, on_done: Callable[[RecordingResult | None, str], None]) -> None:
        """Write what is left, close and complete the recording, then ``on_done(result, error)``
        (on this writer thread)."""
        self._requests.put(("finish", recording_id, on_done))

    def stop(self, timeout: float = 10.0) -> None:
        self._stop_evt.set()
        self.join(timeout)

    @property
    def active_count(self) -> int:
        with self._lock:
            return len(self._active)

    # -- writer thread
    def run(self) -> None:
        while True:
            stopping = self._stop_evt.wait(self.interval_s)
            self._write_all()
            self._handle_requests()
            if stopping and self._requests.empty():
                break

    def _write_all(self) -> None:
        with self._lock:
            items = list(self._active.values())
        for a in items:
            self._write(a, final=False)

    def _write(self, a: _Active, final: bool) -> None:
        if a.failed:
            a.mixer.drain(final=True)  # keep memory bounded; the error is reported at finish
            return
        try:
            a.recorder.write(a.mixer.drain(final=final))
        except Exception as e:  # disk full, I/O error: keep the worker alive, report at finish
            a.failed = f"{type(e).__name__}: {e}"
            log.error("recording %s: write failed: %s", a.recorder.recording_id, a.failed)

    def _handle_requests(self) -> None:
        while True:
            try:
                kind, rec_id, cb = self._requests.get_nowait()
            except queue.Empty:
                return
            with self._lock:
                a = self._active.pop(rec_id, None)
            if a is None:
                cb(None, f"unknown recording {rec_id}")
                continue
            self._write(a, final=True)
            try:
                res = a.recorder.finish()
                cb(res, a.failed)
            except Exception as e:
                log.exception("recording %s: finishing failed", rec_id)
                cb(None, f"{type(e).__name__}: {e}")
