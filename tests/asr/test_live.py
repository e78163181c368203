"""Live recognizer with real Vosk: partial/final results, and degradation (drops, never blocking)."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from asr.live import LiveRecognizer
from tests.asr import speech as sp

pytestmark = pytest.mark.vosk


def _frames(x: np.ndarray, rate: int, ms: int = 20):
    n = rate * ms // 1000
    for i in range(0, len(x), n):
        yield x[i:i + n].astype("<i2").tobytes()


def test_live_8k_partials_and_finals(ko_model, phrases8k):
    a, b = phrases8k[0], phrases8k[1]
    x = sp.timeline(8000, 9.0, [(0, 0.5, a), (0, 5.0, b)], 1)[:, 0]
    partials, finals = [], []
    live = LiveRecognizer(ko_model, 8000, on_partial=partials.append, on_final=finals.append,
                          max_backlog_seconds=60)  # large: nothing may be dropped here
    for fr in _frames(x, 8000):
        live.feed(fr)
    stats = live.close()
    assert stats.dropped_bytes == 0 and stats.drop_events == 0
    assert stats.processed_bytes == stats.fed_bytes == len(x) * 2
    assert partials and all(isinstance(p, str) and p for p in partials)
    assert finals, "no final result"
    words = [w for f in finals for w in f["words"]]
    assert words
    spans = [(0.5 + sp.voiced_span(a, 8000)[0], 0.5 + sp.voiced_span(a, 8000)[1]),
             (5.0 + sp.voiced_span(b, 8000)[0], 5.0 + sp.voiced_span(b, 8000)[1])]
    for w in words:
        assert any(s - 0.5 <= w["start"] <= w["end"] <= e + 0.5 for s, e in spans), (w, spans)
    assert any(w["start"] >= 4.5 for w in words) and any(w["start"] < 4.0 for w in words)
    for f in finals:
        assert f["text"] and f["start"] == f["words"][0]["start"]
    live.feed(b"\x00\x00" * 160)  # after close: ignored, no error
    assert live.stats.fed_bytes == len(x) * 2


def test_live_degrades_by_dropping_oldest_never_blocking(ko_model, phrases16k):
    """A producer much faster than real time: the backlog stays bounded, the oldest audio is dropped
    and counted, every feed() returns, and recognition still runs on what is kept."""
    x = np.concatenate([phrases16k[i % 4] for i in range(12)])  # ~40 s of speech at 16 kHz
    finals = []
    live = LiveRecognizer(ko_model, 16000, on_final=finals.append, max_backlog_seconds=0.5)
    cap = live.max_backlog_bytes
    backlog_seen = []
    n = 0
    for fr in _frames(x, 16000):
        live.feed(fr)  # as fast as possible: ~40 s of audio in a fraction of that
        n += 1
        backlog_seen.append(live._queued)
    stats = live.close()
    assert n == len(backlog_seen)
    assert max(backlog_seen) <= cap and stats.max_backlog_bytes <= cap
    assert stats.dropped_bytes > 0 and stats.drop_events > 0
    assert stats.processed_bytes + stats.dropped_bytes == stats.fed_bytes == len(x) * 2
    assert live.dropped_seconds > 0


def test_live_callback_errors_do_not_stop_recognition(ko_model, phrases8k):
    def bad(_):
        raise RuntimeError("subscriber bug")

    got = []
    live = LiveRecognizer(ko_model, 8000, on_partial=bad, on_final=lambda s: got.append(s), max_backlog_seconds=60)
    x = sp.timeline(8000, 4.0, [(0, 0.2, phrases8k[3])], 1)[:, 0]
    t = threading.Thread(target=lambda: [live.feed(f) for f in _frames(x, 8000)])
    t.start()
    t.join()
    stats = live.close()
    assert stats.callback_errors >= 1 and got
