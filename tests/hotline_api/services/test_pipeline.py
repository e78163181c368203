"""The durable recording pipeline (hotline_api.services.pipeline) on a real SQLite file, real WAV
files and the real encrypted store: each recording reaches stored → assigned → queued exactly once,
whatever failed on the way; files nobody reported are found; a corrupt one is quarantined without
blocking the rest; the status names what is stuck."""
from __future__ import annotations

import hashlib
import multiprocessing
import os
import sqlite3
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hotline_api.models.asr import TranscriptionJob
from hotline_api.models.callbacks import CallbackTask
from hotline_api.models.calls import Recording
from hotline_api.models.governance import AuditEntry, RecordingBlob, ReviewAssignment
from hotline_api.services import audit, auth, pipeline, review
from hotline_api.services.call_store import CallStore, QueuedSink
from telephony import events as ev
from tests.hotline_api.services.govtest_util import wav_bytes

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)  # a Monday, 10:00 in Shanghai


@pytest.fixture
def manager(db, ctx):
    with db() as s:
        m, _ = auth.create_user(s, "mgr", "recording_manager", "correct horse battery")
        review.set_roster(s, None, m)
        s.commit()
        return m.id


def incoming_wav(settings, rid: str, seconds: float = 2.0, seed: int = 0) -> Path:
    p = settings.recordings_dir / "incoming" / "2026" / "03" / f"{rid}.wav"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(wav_bytes(seconds, seed=seed))
    return p


def agent_call(store: CallStore, settings, *, seconds: float = 2.0, flow=("notice", "record"), seed: int = 0,
               complete: bool = True) -> tuple[str, str, Path]:
    """A call as the SIP agent reports it (events through the CallStore), its file in incoming/."""
    call, rid = str(uuid.uuid4()), str(uuid.uuid4())
    store.apply(ev.CallStarted(call, f"{call}@t", "sip:13912345678@127.0.0.1", "13912345678", "12388", "w0", T0))
    store.apply(ev.CallAnswered(call, T0, rid, str(settings.spool_dir / f"{rid}.wav"), 8000, 2))
    for state in flow:
        store.apply(ev.FlowChanged(call, state, T0))
    store.apply(ev.CallEnded(call, T0 + timedelta(seconds=seconds), "ended", 200, "BYE", "caller"))
    path = incoming_wav(settings, rid, seconds, seed)
    if complete:
        data = path.read_bytes()
        store.apply(ev.RecordingCompleted(rid, call, str(path), "complete", seconds, 8000, 2,
                                          hashlib.sha256(data).hexdigest(), len(data),
                                          at=T0 + timedelta(seconds=seconds)))
    return call, rid, path


def make_pipeline(settings, db, ctx, **kw) -> pipeline.Pipeline:
    kw.setdefault("calendar", review.weekday_calendar)
    return pipeline.Pipeline(settings, db, ctx, **kw)


def counts(db, rid: str) -> dict:
    with db() as s:
        acts = [e.action for e in s.execute(select(AuditEntry).where(AuditEntry.object_id == rid)).scalars()]
        return {
            "stage": s.get(Recording, rid).stage,
            "blob": s.execute(select(func.count()).where(RecordingBlob.recording_id == rid)).scalar_one(),
            "assignment": s.execute(select(func.count()).where(ReviewAssignment.recording_id == rid)).scalar_one(),
            "job": s.execute(select(func.count()).where(TranscriptionJob.recording_id == rid)).scalar_one(),
            "store_audit": acts.count("recording.store"), "assign_audit": acts.count("review.assign"),
        }


ONCE = {"stage": "queued", "blob": 1, "assignment": 1, "job": 1, "store_audit": 1, "assign_audit": 1}


def test_a_completed_recording_is_stored_assigned_and_queued_once(settings, db, ctx, manager):
    store = CallStore(db)
    _call, rid, path = agent_call(store, settings)
    with db() as s:
        assert s.get(Recording, rid).stage == "completed"  # marked by the SIP side, with the completion
    p = make_pipeline(settings, db, ctx)
    res = p.run_once()
    assert res.steps == 3 and res.failures == 0
    assert counts(db, rid) == ONCE
    assert not path.exists()  # no plain copy left
    with db() as s:
        a = s.execute(select(ReviewAssignment).where(ReviewAssignment.recording_id == rid)).scalar_one()
        assert a.manager_id == manager
        raw = ctx.store.path(rid).read_bytes()
        assert b"RIFF" not in raw
        assert audit.verify(s).ok
    # running again (a restart, a second pipeline process) changes nothing
    assert p.run_once().steps == 0 and make_pipeline(settings, db, ctx).run_once().steps == 0
    assert counts(db, rid) == ONCE
    # a replayed completion event does not move the recording back
    with db() as s:
        rec = s.get(Recording, rid)
    store.apply(ev.RecordingCompleted(rid, rec.call_id, str(path), "complete", 2.0, 8000, 2, rec.sha256, 1, at=T0))
    assert counts(db, rid) == ONCE


def test_an_empty_recording_is_stored_and_assigned_but_not_transcribed(settings, db, ctx, manager):
    store = CallStore(db)
    call, rid = str(uuid.uuid4()), str(uuid.uuid4())
    store.apply(ev.CallStarted(call, f"{call}@t", "sip:1@127.0.0.1", "1", "12388", "w0", T0))
    path = incoming_wav(settings, rid, seconds=0.0)
    store.apply(ev.RecordingCompleted(rid, call, str(path), "empty", 0.0, 8000, 2,
                                      hashlib.sha256(path.read_bytes()).hexdigest(), 44, at=T0))
    make_pipeline(settings, db, ctx).run_once()
    c = counts(db, rid)
    assert (c["stage"], c["blob"], c["assignment"], c["job"]) == ("done", 1, 1, 0)


def test_a_callback_request_gets_its_task_when_the_recording_is_queued(settings, db, ctx, manager):
    store = CallStore(db)
    call, rid, _ = agent_call(store, settings, flow=("notice", "route", "queue", "voicemail_offer", "callback"))
    with db() as s:  # the task window is relative to now: the call ended a minute ago
        from hotline_api.models.calls import Call

        c = s.get(Call, call)
        c.created_at = datetime.now(timezone.utc) - timedelta(minutes=2)
        c.ended_at = datetime.now(timezone.utc) - timedelta(minutes=1)
        s.commit()
    make_pipeline(settings, db, ctx).run_once()
    with db() as s:
        assert s.execute(select(CallbackTask).where(CallbackTask.call_id == call)).scalar_one_or_none() is not None


def _hold_write_lock(db_path: str, seconds: float, ready) -> None:
    conn = sqlite3.connect(db_path, timeout=1, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    ready.set()
    time.sleep(seconds)
    conn.execute("COMMIT")
    conn.close()


def test_a_locked_database_is_waited_for_or_retried_and_nothing_is_done_twice(settings, db, ctx, manager):
    store = CallStore(db)
    rids = [agent_call(store, settings, seed=i)[1] for i in range(3)]
    db_path = settings.db_url.removeprefix("sqlite:///")
    ready = multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_write_lock, args=(db_path, 3.0, ready))  # another process
    holder.start()
    assert ready.wait(10)
    p = make_pipeline(settings, db, ctx)
    t = time.monotonic()
    p.run_once()
    waited = time.monotonic() - t
    holder.join(10)
    p.run_once()
    for rid in rids:
        assert counts(db, rid) == ONCE
    assert waited > 1.0  # it did meet the lock (and waited for it instead of failing)


def test_a_step_that_fails_is_recorded_and_retried_with_back_off(settings, db, ctx, manager, monkeypatch):
    store = CallStore(db)
    _c, rid, _ = agent_call(store, settings)
    now = [T0 + timedelta(minutes=1)]
    p = make_pipeline(settings, db, ctx, clock=lambda: now[0])
    calls = {"n": 0}
    real = review.assign_at_completion

    def flaky(*a, **kw):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise OSError(28, "No space left on device")
        return real(*a, **kw)

    monkeypatch.setattr(review, "assign_at_completion", flaky)
    res = p.run_once()
    assert res.failures == 1
    with db() as s:
        rec = s.get(Recording, rid)
        assert rec.stage == "stored" and rec.stage_attempts == 1 and "No space left" in rec.stage_error
        first_retry = rec.stage_next_at
    assert p.run_once().steps == 0  # not due yet
    now[0] = first_retry + timedelta(seconds=1)
    p.run_once()
    with db() as s:
        rec = s.get(Recording, rid)
        assert rec.stage_attempts == 2 and rec.stage_next_at - now[0] >= timedelta(seconds=3)  # backs off
        now[0] = rec.stage_next_at + timedelta(seconds=1)
    p.run_once()
    assert counts(db, rid) == ONCE
    with db() as s:
        assert s.get(Recording, rid).stage_error is None


def test_a_corrupt_file_is_quarantined_encrypted_and_does_not_block_the_rest(settings, db, ctx, manager):
    store = CallStore(db)
    _c, bad, bad_path = agent_call(store, settings, seed=1)
    bad_path.write_bytes(os.urandom(5000))  # overwritten after hang-up: not a WAV, hash differs
    good = [agent_call(store, settings, seed=i)[1] for i in range(2, 4)]
    p = make_pipeline(settings, db, ctx)
    res = p.run_once()
    assert res.quarantined == 1
    for rid in good:
        assert counts(db, rid) == ONCE
    c = counts(db, bad)
    assert (c["stage"], c["blob"], c["assignment"], c["job"]) == ("quarantined", 1, 0, 0)
    assert not bad_path.exists() and b"" != ctx.store.path(bad).read_bytes()  # kept, encrypted only
    st = pipeline.status(db, settings)
    assert [q["recording_id"] for q in st["quarantined"]] == [bad]
    assert "WAV" in st["quarantined"][0]["error"] and not st["healthy"]
    assert st["stages"]["queued"]["count"] == 2 and st["stages"]["quarantined"]["count"] == 1
    with db() as s:
        assert [e.action for e in s.execute(select(AuditEntry).where(AuditEntry.object_id == bad)).scalars()] \
            == ["recording.quarantine"]


def test_a_missing_file_is_retried_then_quarantined_and_shown_as_stuck(settings, db, ctx, manager):
    store = CallStore(db)
    _c, rid, path = agent_call(store, settings)
    path.unlink()
    now = [T0 + timedelta(minutes=1)]
    p = make_pipeline(settings, db, ctx, clock=lambda: now[0])
    p.run_once()
    with db() as s:
        assert s.get(Recording, rid).stage == "completed"
    st = pipeline.status(db, settings, now=now[0] + timedelta(minutes=11))
    assert [(r["recording_id"], r["stage"]) for r in st["stuck"]] == [(rid, "completed")]
    assert st["stuck"][0]["age_s"] >= 600 and "not found" in st["stuck"][0]["error"]
    for _ in range(pipeline.MISSING_ATTEMPTS):
        now[0] += timedelta(minutes=10)
        p.run_once()
    with db() as s:
        rec = s.get(Recording, rid)
        assert rec.stage == "quarantined" and "不存在" in rec.stage_error


def test_the_scan_completes_files_whose_completion_never_reached_the_database(settings, db, ctx, manager):
    store = CallStore(db)
    # 1. the worker died at hang-up: the call and recording rows exist, RecordingCompleted never came
    _c, lost, lost_path = agent_call(store, settings, complete=False)
    # 2. nothing reached the database at all
    orphan = str(uuid.uuid4())
    orphan_path = incoming_wav(settings, orphan, seed=5)
    # 3. a crash between commit and delete left the plain copy of a stored recording
    _c, done, done_path = agent_call(store, settings, seed=6)
    copy = done_path.read_bytes()
    p = make_pipeline(settings, db, ctx, scan_min_age_s=0)
    p.run_once()
    done_path.write_bytes(copy)
    # 3b. the same crash, the pipeline stopped right after storing (assignment still to come)
    _c, half, half_path = agent_call(store, settings, seed=7)
    half_copy = half_path.read_bytes()
    assert p._store(half)
    half_path.write_bytes(half_copy)
    # 4. a file that is not named by a recording id is left alone
    stray = settings.recordings_dir / "incoming" / "notes.wav"
    stray.write_bytes(b"x")
    out = p.scan()
    assert (out["adopted"], out["removed_plain_copy"], out["not_a_recording"]) == (2, 2, 1)
    p.run_once()
    for rid in (lost, orphan, done, half):
        assert counts(db, rid) == ONCE, rid
    assert not lost_path.exists() and not orphan_path.exists() and not done_path.exists() and stray.exists()
    assert not half_path.exists()
    with db() as s:
        assert s.get(Recording, lost).status == "recovered" and s.get(Recording, lost).duration == pytest.approx(2.0)


def test_a_young_file_is_left_to_its_completion_event(settings, db, ctx, manager):
    store = CallStore(db)
    _c, rid, _ = agent_call(store, settings, complete=False)
    out = make_pipeline(settings, db, ctx, scan_min_age_s=30).scan()
    assert out["skipped_young"] == 1 and out["adopted"] == 0


def test_a_claim_of_a_dead_pipeline_process_is_released_at_start(settings, db, ctx, manager):
    store = CallStore(db)
    _c, rid, _ = agent_call(store, settings)
    dead = multiprocessing.Process(target=time.sleep, args=(0,))
    dead.start()
    dead.join()
    with db() as s:  # as a pipeline killed (-9) in the middle of encrypting this recording left it
        rec = s.get(Recording, rid)
        rec.claim_token = f"{pipeline.socket.gethostname()[:16]}:{dead.pid}:deadbeef"
        rec.claim_until = datetime.now(timezone.utc) + timedelta(minutes=2)
        s.commit()
    (ctx.store.path(rid).parent).mkdir(parents=True, exist_ok=True)
    ctx.store.path(rid).with_name(ctx.store.path(rid).name + ".tmp").write_bytes(b"half-written")
    p = make_pipeline(settings, db, ctx)
    assert p.run_once().steps == 0  # claimed by someone: not touched
    assert p.release_dead_claims() == 1
    p.run_once()
    assert counts(db, rid) == ONCE


def test_the_event_writer_keeps_trying_while_the_database_is_locked(settings, db, ctx, monkeypatch):
    """A SIP worker's events wait out a lock longer than the busy timeout (each try then fails with
    "database is locked") instead of being dropped after a few tries, and stay in order."""
    from sqlalchemy.exc import OperationalError

    from hotline_api.models.calls import Call

    store = CallStore(db)
    real = store.apply
    fails = {"n": 12}  # more than the old 5 tries

    def locked_for_a_while(event):
        if fails["n"] > 0:
            fails["n"] -= 1
            raise OperationalError("BEGIN IMMEDIATE", {}, sqlite3.OperationalError("database is locked"))
        return real(event)

    monkeypatch.setattr(store, "apply", locked_for_a_while)
    monkeypatch.setattr(QueuedSink, "RETRY_STEP_S", 0.001)  # no real back-off sleeps
    monkeypatch.setattr(QueuedSink, "BATCH", 1)  # one event per transaction: each try goes through apply
    sink = QueuedSink(store, name="t")
    call = str(uuid.uuid4())
    sink.publish(ev.CallStarted(call, f"{call}@t", "sip:1@127.0.0.1", "1", "12388", "w0", T0))
    sink.publish(ev.FlowChanged(call, "notice", T0))
    deadline = time.monotonic() + 20
    while fails["n"] and time.monotonic() < deadline:
        time.sleep(0.05)
    sink.close(10)
    with db() as s:
        c = s.get(Call, call)
        assert c is not None and c.flow_path == "notice"


def test_queued_events_are_written_in_batches_and_a_bad_one_costs_only_itself(settings, db, ctx, monkeypatch):
    """Under load the writer drains the queue into one transaction; an event for an unknown call is
    dropped alone, and the others (before and after it) are stored, in order."""
    from hotline_api.models.calls import Call

    store = CallStore(db)
    commits = []
    real = store.apply_batch
    monkeypatch.setattr(store, "apply_batch", lambda evs: (commits.append(len(evs)), real(evs))[1])
    sink = QueuedSink(store, name="t")
    gate = threading.Event()
    monkeypatch.setattr(store, "apply", lambda e, _real=store.apply: (gate.wait(10), _real(e))[1])
    calls = [str(uuid.uuid4()) for _ in range(30)]
    sink.publish(ev.CallStarted(calls[0], "first@t", "sip:1@127.0.0.1", "1", "12388", "w0", T0))  # held at the gate
    time.sleep(0.2)
    for c in calls[1:]:
        sink.publish(ev.CallStarted(c, f"{c}@t", "sip:1@127.0.0.1", "1", "12388", "w0", T0))
        sink.publish(ev.FlowChanged(c, "notice", T0))
    sink.publish(ev.FlowChanged("no-such-call", "notice", T0))
    sink.publish(ev.FlowChanged(calls[1], "record", T0))
    gate.set()
    sink.close(20)
    assert commits and max(commits) >= 50  # batched, not one commit per event
    with db() as s:
        assert all(s.get(Call, c) is not None for c in calls)
        assert s.get(Call, calls[1]).flow_path == "notice>record" and s.get(Call, calls[2]).flow_path == "notice"
