"""Job queue semantics on a real (SQLite) database: enqueue, atomic claims, leases, retries."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

import hotline_api.models.asr  # noqa: F401 - registers the tables until models/__init__ imports it
from hotline_api.db.base import utcnow
from hotline_api.db.session import make_engine
from hotline_api.models.asr import TranscriptionJob as Job
from hotline_api.models.calls import Recording
from hotline_api.services import transcription as tr


def _recording(sessions, path="recordings/x.wav", kind="call") -> str:
    with sessions() as s:
        r = Recording(kind=kind, path=path, status="complete")
        s.add(r)
        s.commit()
        return r.id


def _install_fake_ready_model(settings):
    """A directory with the structure of a model, so enqueue sees a model (no decoding here)."""
    d = settings.batch_model_dir
    for rel in ("am/final.mdl", "conf/mfcc.conf", "conf/model.conf", "graph/HCLG.fst"):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(b"x")


def test_enqueue_is_idempotent_and_waits_without_model(db, settings):
    rid = _recording(db)
    with db() as s:
        job = tr.enqueue(s, rid)
        s.commit()
        assert job.status == "waiting_for_model" and job.attempts == 0
        again = tr.enqueue(s, rid)
        s.commit()
        assert again.id == job.id
    _install_fake_ready_model(settings)
    rid2 = _recording(db)
    with db() as s:
        assert tr.enqueue(s, rid2).status == "queued"
        s.commit()
    eng = make_engine(settings.db_url)
    assert tr.resume_waiting(eng) == 1
    assert tr.job_counts(eng) == {"queued": 2}


def test_claim_is_exclusive_under_concurrency(db, settings):
    _install_fake_ready_model(settings)
    ids = []
    with db() as s:
        for _ in range(30):
            r = Recording(kind="call", path="x.wav", status="complete")
            s.add(r)
            s.flush()
            ids.append(tr.enqueue(s, r.id).id)
        s.commit()
    eng = make_engine(settings.db_url)
    claimed: list[str] = []
    lock = threading.Lock()

    def worker(n):
        while True:
            j = tr.claim(eng, f"w{n}", lease_seconds=60)
            if j is None:
                return
            with lock:
                claimed.append(j.id)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(ids)  # every job once, none twice
    with db() as s:
        assert all(j.attempts == 1 and j.status == "running" for j in s.scalars(select(Job)))


def test_expired_lease_is_reclaimed_and_old_owner_loses_it(db, settings):
    _install_fake_ready_model(settings)
    rid = _recording(db)
    with db() as s:
        tr.enqueue(s, rid)
        s.commit()
    eng = make_engine(settings.db_url)
    first = tr.claim(eng, "w1", lease_seconds=60)
    assert first and tr.claim(eng, "w2", lease_seconds=60) is None  # leased: not claimable
    assert tr.heartbeat(eng, first, 60, progress=0.5)
    with eng.begin() as c:  # the worker died: its lease runs out
        c.execute(update(Job).values(lease_until=utcnow() - timedelta(seconds=1)))
    second = tr.claim(eng, "w2", lease_seconds=60)
    assert second and second.id == first.id and second.attempts == 2
    assert not tr.heartbeat(eng, first, 60)  # the old owner cannot extend or finish it
    assert not tr._finish(eng, first, status="done")
    assert tr._finish(eng, second, status="done")


def test_dead_worker_attempts_exhausted_fail_the_job(db, settings):
    _install_fake_ready_model(settings)
    rid = _recording(db)
    with db() as s:
        tr.enqueue(s, rid)
        s.commit()
    eng = make_engine(settings.db_url)
    for _ in range(settings.asr_max_attempts):
        assert tr.claim(eng, "w", lease_seconds=60)
        with eng.begin() as c:
            c.execute(update(Job).values(lease_until=utcnow() - timedelta(seconds=1)))
    assert tr.expire_dead_jobs(eng, settings.asr_max_attempts) == 1
    with db() as s:
        j = s.scalar(select(Job))
        assert j.status == "failed" and j.attempts == 3 and "lease expired" in j.last_error
    assert tr.claim(eng, "w", lease_seconds=60) is None


def test_transient_errors_retry_then_fail(db, settings, tmp_path):
    """A recording whose file is missing: retried, then failed after asr_max_attempts with the error."""
    _install_fake_ready_model(settings)
    rid = _recording(db, path="recordings/does-not-exist.wav")
    with db() as s:
        tr.enqueue(s, rid)
        s.commit()
    w = tr.Worker(settings, exit_when_idle=True, poll_interval=0.05)

    class _NoDecode:  # the file cannot even be opened, so no decoder is reached
        def transcribe(self, *a, **k):
            raise AssertionError("not reached")

    w._transcriber = _NoDecode()
    w.run()
    with db() as s:
        j = s.scalar(select(Job))
        assert j.status == "failed" and j.attempts == settings.asr_max_attempts
        assert "audio file not found" in j.last_error


def test_open_recording_audio_paths(db, settings, tmp_path):
    (settings.data_dir / "recordings").mkdir(parents=True, exist_ok=True)
    rel = settings.data_dir / "recordings" / "a.wav"
    rel.write_bytes(b"RIFF")
    absolute = tmp_path / "b.wav"
    absolute.write_bytes(b"RIFX")
    with tr.open_recording_audio(Recording(id="r1", path="recordings/a.wav"), settings) as f:
        assert f.read() == b"RIFF"
    with tr.open_recording_audio(Recording(id="r2", path=str(absolute)), settings) as f:
        assert f.read() == b"RIFX"
    with pytest.raises(tr.RecordingUnavailable):
        with tr.open_recording_audio(Recording(id="r3", path=None), settings):
            pass


def test_recording_completed_hook_enqueues(db, settings):
    rid = _recording(db)
    with db() as s:
        rec = s.get(Recording, rid)
        tr.recording_completed_hook(s, rec, None)
        s.commit()
        assert s.scalar(select(Job.recording_id)) == rid


def test_range_file_serves_soundfile(tmp_path):
    """A recording held elsewhere (e.g. decrypting storage) is read through byte ranges."""
    import numpy as np
    import soundfile as sf

    from asr.audio import iter_blocks, open_audio

    x = (np.random.default_rng(2).standard_normal((12345, 2)) * 3000).astype(np.int16)
    p = tmp_path / "a.wav"
    sf.write(str(p), x, 8000, subtype="PCM_16")
    blob = p.read_bytes()
    calls = []

    def read_range(a, b):
        calls.append((a, b))
        return blob[a:b]

    with open_audio(tr.RangeFile(len(blob), read_range)) as f:
        got = np.concatenate(list(iter_blocks(f, 1000)))
    assert np.array_equal(got, x) and calls


def test_set_audio_opener_is_used(db, settings):
    import contextlib
    import io

    seen = []

    @contextlib.contextmanager
    def opener(rec, st):
        seen.append(rec.id)
        yield io.BytesIO(b"")

    tr.set_audio_opener(opener)
    try:
        with tr.open_recording_audio(Recording(id="r9", path="x"), settings) as f:
            assert f.read() == b""
    finally:
        tr.set_audio_opener(None)
    assert seen == ["r9"]


def test_cli_enqueue_imports_file(db, settings, tmp_path, capsys):
    import json

    from hotline_api.cli import main

    src = tmp_path / "来电 13800000000.wav"  # the original name never reaches the data dir
    src.write_bytes(b"RIFF....not really")
    assert main(["transcribe", "--enqueue", str(src), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    with db() as s:
        rec = s.get(Recording, out["recording_id"])
        job = s.get(Job, out["job_id"])
    assert rec.kind == "import" and rec.status == "failed" and "not a readable audio file" in rec.error
    # stored encrypted under its random id: the original name and the plain bytes never reach the data dir
    from hotline_api.services import storage

    assert "13800000000" not in rec.path and rec.id in rec.path
    assert (settings.data_dir / rec.path).read_bytes() != src.read_bytes()
    assert not any(p.is_file() and b"not really" in p.read_bytes() for p in settings.recordings_dir.rglob("*"))
    with db() as s, storage.open_reader(s, storage.open_crypto(settings, db), rec.id) as reader:
        assert reader.read_all() == src.read_bytes()
    assert job.recording_id == rec.id and job.status == "waiting_for_model"
    assert main(["asr", "jobs"]) == 0
    assert "waiting_for_model: 1" in capsys.readouterr().out
