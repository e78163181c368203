"""Recorder, crash repair and spool recovery (real files, real libsndfile)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import REPO
from telephony.events import CallEnded, ListSink, RecordingCompleted
from telephony.recorder import RecordingError, SpoolRecorder, recover_file, repair, unfinished
from telephony.recovery import recover_spool, write_call_marker


def _tone(n: int, rate: int = 16000) -> np.ndarray:
    t = np.arange(n) / rate
    a = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    b = (0.2 * np.sin(2 * np.pi * 1000 * t) * 32767).astype(np.int16)
    return np.stack([a, b], axis=1)


def test_write_and_finish(tmp_path):
    spool, recs = tmp_path / "spool", tmp_path / "recs"
    r = SpoolRecorder(spool, recs, "rec-1", "call-1")
    side = json.loads((spool / "rec-1.json").read_text())
    assert side["state"] == "recording" and side["call_uuid"] == "call-1" and side["recording_id"] == "rec-1"
    assert set(side) == {"recording_id", "call_uuid", "state", "started_at", "sample_rate", "channels", "kind"}
    data = _tone(16000 * 2)
    for i in range(0, len(data), 320):
        r.write(data[i:i + 320])
    res = r.finish()
    assert res.status == "complete" and res.frames == 32000 and res.duration == 2.0
    assert res.sample_rate == 16000 and res.channels == 2
    out, rate = sf.read(res.path, dtype="int16")
    assert np.array_equal(out, data)
    assert hashlib.sha256(open(res.path, "rb").read()).hexdigest() == res.sha256
    assert not list(spool.iterdir())
    assert res.path.endswith("rec-1.wav") and str(recs) in res.path


def test_empty_recording(tmp_path):
    r = SpoolRecorder(tmp_path / "s", tmp_path / "r", "rec-e", "c")
    res = r.finish()
    assert res.status == "empty" and res.frames == 0
    assert sf.info(res.path).channels == 2


def test_write_rejects_wrong_shape(tmp_path):
    r = SpoolRecorder(tmp_path / "s", tmp_path / "r", "rec-x", "c")
    with pytest.raises(ValueError):
        r.write(np.zeros((10, 1), dtype=np.int16))
    with pytest.raises(ValueError):
        r.write(np.zeros((10, 2), dtype=np.float32))


KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys, numpy as np
    from telephony.recorder import SpoolRecorder
    r = SpoolRecorder(sys.argv[1], sys.argv[2], "rec-k", "call-k", sync_every_s=0.0)
    t = np.arange(320) / 16000
    block = np.stack([(np.sin(2*np.pi*440*t)*9000).astype(np.int16)]*2, axis=1)
    for i in range(int(sys.argv[3])):
        r.write(block)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_sigkilled_writer_is_repaired(tmp_path):
    spool, recs = tmp_path / "spool", tmp_path / "recs"
    frames = 50 * 3  # 3 s of 20 ms frames
    p = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(spool), str(recs), str(frames)],
                       cwd=REPO, capture_output=True)
    assert p.returncode == -9
    wav = spool / "rec-k.wav"
    assert wav.exists() and (spool / "rec-k.json").exists()
    rep = repair(wav)
    assert rep.frames == frames * 320 and rep.channels == 2 and rep.sample_rate == 16000
    data, rate = sf.read(str(wav), dtype="int16")
    assert len(data) == frames * 320 and abs(rep.duration - 3.0) < 1e-9
    # repairing again changes nothing
    assert repair(wav).rewritten is False


def test_repair_stale_header_and_partial_frame(tmp_path):
    wav = tmp_path / "x.wav"
    data = _tone(8000)
    sf.write(str(wav), data, 16000, subtype="PCM_16", format="WAV")
    raw = bytearray(wav.read_bytes())
    # simulate a writer killed early: header says 0 data bytes; append half a frame of junk
    idx = raw.find(b"data")
    raw[idx + 4: idx + 8] = (0).to_bytes(4, "little")
    raw[4:8] = (36).to_bytes(4, "little")
    raw += b"\x01\x02\x03"
    wav.write_bytes(bytes(raw))
    rep = repair(wav)
    assert rep.rewritten and rep.frames == 8000 and rep.dropped_bytes == 3
    out, _ = sf.read(str(wav), dtype="int16")
    assert np.array_equal(out, data)


def test_repair_errors_name_the_file(tmp_path):
    with pytest.raises(RecordingError, match="missing.wav"):
        repair(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all")
    with pytest.raises(RecordingError, match="junk.wav"):
        repair(junk)


def test_recover_spool_emits_events(tmp_path):
    spool, recs = tmp_path / "spool", tmp_path / "recs"
    r = SpoolRecorder(spool, recs, "rec-a", "call-a")
    r.write(_tone(16000 * 3))
    r.flush()
    # the process "dies": the SoundFile is never closed; copy the spool as it is on disk
    dead = tmp_path / "dead"
    shutil.copytree(spool, dead)
    write_call_marker(dead, "call-a", "w9", __import__("datetime").datetime.now())
    write_call_marker(dead, "call-b", "w9", __import__("datetime").datetime.now())  # ringing, no audio
    sink = ListSink()
    done = recover_spool(dead, recs, sink, "w9")
    assert len(done) == 1
    rc = sink.of(RecordingCompleted)[0]
    assert rc.status == "recovered" and rc.recording_id == "rec-a" and rc.call_uuid == "call-a"
    assert abs(rc.duration - 3.0) < 1e-9 and rc.channels == 2
    out, _ = sf.read(rc.path, dtype="int16")
    assert len(out) == 48000
    ended = {e.call_uuid: e for e in sink.of(CallEnded)}
    assert set(ended) == {"call-a", "call-b"} and all(e.status == "recovered" for e in ended.values())
    assert not list(dead.iterdir())
    # idempotent
    sink2 = ListSink()
    assert recover_spool(dead, recs, sink2) == [] and sink2.events == []


def test_recover_sidecar_without_audio_is_closed_as_empty(tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "rec-z.json").write_text(json.dumps({"recording_id": "rec-z", "call_uuid": "c", "state": "recording",
                                                  "started_at": "2026-01-01T00:00:00+00:00",
                                                  "sample_rate": 16000, "channels": 2}))
    assert unfinished(spool)
    res = recover_file(spool / "rec-z.json", tmp_path / "recs")
    assert res.status == "empty" and res.frames == 0 and sf.info(res.path).channels == 2
    assert "2026/01" in res.path


def test_spools_of_workers_no_longer_in_the_pool_are_recovered(tmp_path):
    """HOTLINE_SIP_WORKERS lowered from 10 to 2 after a crash: w9's unfinished recording would wait
    for a worker that never starts; a spool that changed moments ago (a live worker) is left alone."""
    import os
    import time

    from telephony.recovery import recover_orphan_spools

    root, recs = tmp_path / "spool", tmp_path / "recs"
    for wid, rid in (("w0", "rec-live0"), ("w9", "rec-orphan"), ("w7", "rec-busy")):
        r = SpoolRecorder(root / wid, recs, rid, f"call-{rid}")
        r.write(_tone(16000))
        r.flush()
    old = time.time() - 600
    for f in list((root / "w9").iterdir()) + list((root / "w0").iterdir()):
        os.utime(f, (old, old))
    sink = ListSink()
    done = recover_orphan_spools(root, {"w0", "w1"}, recs, sink)
    assert [d.recording_id for d in done] == ["rec-orphan"]
    assert not list((root / "w9").iterdir())
    assert {p.stem for p in (root / "w7").glob("*.wav")} == {"rec-busy"}  # recently written: not touched
    assert {p.stem for p in (root / "w0").glob("*.wav")} == {"rec-live0"}  # its worker recovers it
