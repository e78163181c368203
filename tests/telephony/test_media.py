"""Frame pairing into stereo and the writer thread (no pjsua2)."""
from __future__ import annotations

import threading

import numpy as np
import soundfile as sf

from telephony.media import RecordingWriter, StereoMixer
from telephony.recorder import SpoolRecorder


def _frame(value: int, spf: int = 320) -> bytes:
    return np.full(spf, value, dtype="<i2").tobytes()


def test_pairs_frames_and_fills_missing_with_silence():
    m = StereoMixer(320)
    for i in range(5):
        m.push(0, _frame(i + 1))
        m.push(1, None if i % 2 else _frame(100 + i))
    out = m.drain()
    assert out.shape == (1600, 2) and out.dtype == np.int16
    assert list(out[::320, 0]) == [1, 2, 3, 4, 5]
    assert list(out[::320, 1]) == [100, 0, 102, 0, 104]


def test_waits_for_the_lagging_channel_then_pads():
    m = StereoMixer(320, max_skew_frames=3)
    for i in range(2):
        m.push(0, _frame(1))
    assert m.drain().shape[0] == 0  # channel 1 may still come
    for i in range(4):
        m.push(0, _frame(1))
    out = m.drain()  # 6 vs 0 frames: beyond the skew, 3 frames are written padded
    assert out.shape[0] == 3 * 320 and not out[:, 1].any()
    out = m.drain(final=True)
    assert out.shape[0] == 3 * 320


def test_writer_thread_writes_and_finishes(tmp_path):
    w = RecordingWriter(interval_s=0.02)
    w.start()
    rec = SpoolRecorder(tmp_path / "s", tmp_path / "r", "rec-w", "call-w")
    m = StereoMixer(320)
    w.add(rec, m)

    def clock():  # the media clock thread
        for i in range(150):
            m.push(0, _frame(1000))
            m.push(1, _frame(-1000))

    t = threading.Thread(target=clock)
    t.start()
    t.join()
    got = []
    done = threading.Event()
    w.finish("rec-w", lambda res, err: (got.append((res, err)), done.set()))
    assert done.wait(5)
    w.stop()
    res, err = got[0]
    assert err == "" and res.status == "complete" and res.frames == 150 * 320
    data, _ = sf.read(res.path, dtype="int16")
    assert (data[:, 0] == 1000).all() and (data[:, 1] == -1000).all()
