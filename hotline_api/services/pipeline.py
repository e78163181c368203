"""The durable recording chain: every finished recording is stored (encrypted, plain file deleted),
assigned to the recording manager on duty, and queued for transcription, exactly once, whatever
crashed, whatever was locked.

The source of truth is the recording's row (``recordings.stage``), written by the SIP side in the
same transaction as the recording's completion (``CallStore``). This module, run by one process
of the service (the ``pipeline`` part of ``hotline serve``), derives each next step from that
state::

    recording ──(agent: RecordingCompleted)──▶ completed ──encrypt──▶ stored ──▶ assigned ──▶ queued
                                                    │                                       (or done: empty)
                                                    └──(the file cannot be stored)──▶ quarantined

* **Steps are idempotent, retried, resumed.** Each step ends with one short write transaction that
  moves the stage on only if it is still the stage the step started from (a conditional
  ``UPDATE``), together with the step's own rows (blob and ``recording.store`` audit entry;
  assignment and ``review.assign`` audit entry; transcription job). A step that failed (database
  locked, disk full, key missing) is recorded on the row and retried with back-off; after a
  restart the rows still say where every recording is.
* **No write transaction is held while a file is encrypted.** The store step claims the row under
  a lease (``claim_token``, ``claim_until``), encrypts with no transaction open, then commits. Two
  pipeline processes (several machines) therefore never encrypt the same recording at once.
* **Files nobody reported are found.** :meth:`Pipeline.scan` walks ``recordings/incoming`` at start
  and every ``pipeline_scan_seconds``: a WAV whose completion event never reached the database (a
  SIP worker killed at hang-up, a lost event) gets its row completed from the file itself; a plain
  copy of a recording that is already stored (a crash between commit and delete) is deleted.
* **A file that cannot be stored is quarantined**, never retried forever and never blocking the
  rest: a file that is not a readable WAV or whose hash differs from the one taken at hang-up is
  encrypted as it is (no plain copy stays on disk), kept, and marked ``quarantined`` with the
  reason; it is not assigned or transcribed. ``hotline pipeline status`` and the admin's status
  page list it. A file that is missing is retried (shared storage may come back) and quarantined
  after ``MISSING_ATTEMPTS`` tries.
* **Visible state.** :func:`status` counts the recordings in each stage with the oldest; a
  recording in an unfinished stage for longer than ``pipeline_stuck_minutes`` is *stuck* and is
  logged as a warning.

The transcript and the draft follow from the queued job (``hotline_api.services.transcription``
worker, then ``cases.on_transcript_completed``; the scheduler's draft sweep catches a transcript
left without a draft).
"""
from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from hotline_api.db.session import write_session
from hotline_api.models.calls import Call, Recording
from hotline_api.models.governance import RecordingBlob
from hotline_api.services import storage
from recordings.store import BadRecordingId, check_recording_id

log = logging.getLogger(__name__)

#: stages the pipeline moves on, in order
ACTIVE = ("completed", "stored", "assigned")
#: stages where the pipeline's work is finished (``done``: nothing to transcribe, e.g. an empty file)
FINISHED = ("queued", "done")
STAGES = ("recording",) + ACTIVE + FINISHED + ("quarantined", "failed")
#: Chinese labels for the console
STAGE_LABELS = {"recording": "录音中", "completed": "待加密保存", "stored": "待分配审听", "assigned": "待转写排队",
                "queued": "已排队转写", "done": "已完成（无需转写）", "quarantined": "已隔离", "failed": "录音失败"}
MISSING_ATTEMPTS = 5
MAX_BACKOFF_S = 300.0


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class CorruptRecording(Exception):
    """The file can never be stored as a recording (quarantined with this message)."""


class MissingFile(Exception):
    """The recording's file is not on disk (yet): retried, then quarantined."""


def backoff_s(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failures: 2, 4, 8 ... up to 5 minutes."""
    return min(MAX_BACKOFF_S, 2.0 ** max(1, attempts))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def wav_facts(path: Path) -> dict:
    """Duration, rate and channels of a WAV; ``CorruptRecording`` when it is not a readable one."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as e:  # noqa: BLE001 - libsndfile says "Format not recognised" and the like
        raise CorruptRecording(f"不是可读的 WAV 文件（{e}）") from None
    if info.format not in ("WAV", "WAVEX") or info.samplerate <= 0 or info.channels <= 0:
        raise CorruptRecording(f"不是可读的 WAV 文件（格式 {info.format}）")
    return {"duration": info.frames / float(info.samplerate), "sample_rate": info.samplerate,
            "channels": info.channels, "frames": info.frames}


# ==================================================================================== the steps
@dataclass
class PassResult:
    steps: int = 0  # stage transitions made
    failures: int = 0  # step failures recorded for a retry
    quarantined: int = 0


class Pipeline:
    """Moves recordings through the chain. One instance per process; :meth:`run` loops until
    ``stop``; :meth:`run_once` takes every due recording as far as it goes (tests, the CLI).

    ``calendar`` (day -> (is working day, provisional)) and ``clock`` are for tests; by default
    the working-day calendar comes from the database (holidays, overrides) at each pass."""

    def __init__(self, settings: Any, factory: sessionmaker[Session], ctx: storage.CryptoContext, *,
                 calendar: Callable | None = None, clock: Callable[[], datetime] = utcnow,
                 lease_s: float = 120.0, batch: int = 50, scan_min_age_s: float = 30.0,
                 on_queued: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.factory = factory
        self.ctx = ctx
        self._calendar = calendar
        self.clock = clock
        self.lease_s = lease_s
        self.batch = batch
        self.scan_min_age_s = scan_min_age_s
        self.on_queued = on_queued
        self.owner = f"{socket.gethostname()[:16]}:{os.getpid()}"
        self.incoming = Path(settings.recordings_dir) / "incoming"
        self.quarantine_dir = Path(settings.recordings_dir) / "quarantine"
        self.stuck_after = timedelta(minutes=float(getattr(settings, "pipeline_stuck_minutes", 10)))
        self._warned_at = 0.0
        self._pass_calendar: Callable | None = None

    # ---------------------------------------------------------------------------- loop
    def run(self, stop: threading.Event, idle_s: float = 0.5) -> None:
        scan_every = float(getattr(self.settings, "pipeline_scan_seconds", 60))
        next_scan = 0.0
        next_report = time.monotonic() + 60
        log.info("recording pipeline started (owner %s)", self.owner)
        try:
            self.release_dead_claims()
        except Exception:  # noqa: BLE001 - their leases expire anyway
            log.warning("could not release dead claims", exc_info=True)
        while not stop.is_set():
            try:
                if time.monotonic() >= next_scan:
                    self.scan()
                    next_scan = time.monotonic() + scan_every
                res = self.run_once(stop)
                if time.monotonic() >= next_report:
                    self.report()
                    next_report = time.monotonic() + 60
            except Exception:  # noqa: BLE001 - e.g. the database unreachable: the rows keep the state
                log.exception("recording pipeline pass failed; retrying")
                res = PassResult()
                stop.wait(5.0)
            if res.steps == 0:
                stop.wait(idle_s)
        log.info("recording pipeline stopped")

    def due(self, limit: int | None = None) -> list[str]:
        now = self.clock()
        with self.factory() as s:
            q = (select(Recording.id)
                 .where(Recording.stage.in_(ACTIVE),
                        or_(Recording.stage_next_at.is_(None), Recording.stage_next_at <= now),
                        or_(Recording.claim_until.is_(None), Recording.claim_until < now))
                 .order_by(Recording.stage_at, Recording.id).limit(limit or self.batch))
            return list(s.execute(q).scalars())

    def run_once(self, stop: threading.Event | None = None,
                 progress: Callable[[int], None] | None = None) -> PassResult:
        """Take every due recording as far as it goes now. ``progress(n)`` after each recording."""
        res = PassResult()
        seen = 0
        self._pass_calendar = None  # an admin's calendar change applies from the next pass
        while stop is None or not stop.is_set():
            ids = self.due()
            if not ids:
                break
            progressed = 0
            for rid in ids:
                if stop is not None and stop.is_set():
                    break
                progressed += self.advance(rid, res)
                seen += 1
                if progress is not None:
                    progress(seen)
            res.steps += progressed
            if progressed == 0:
                break  # only failures this round: they wait for their back-off
        return res

    def advance(self, rid: str, res: PassResult | None = None) -> int:
        """Every step of one recording that can be done now; returns the transitions made."""
        res = res or PassResult()
        steps = {"completed": self._store, "stored": self._assign, "assigned": self._queue}
        made = 0
        for _ in range(len(steps)):
            with self.factory() as s:
                stage = s.execute(select(Recording.stage).where(Recording.id == rid)).scalar_one_or_none()
            step = steps.get(stage or "")
            if step is None:
                break
            try:
                moved = step(rid)
            except CorruptRecording as e:
                self._quarantine(rid, str(e))
                res.quarantined += 1
                break
            except Exception as e:  # noqa: BLE001 - transient: locked database, full disk, missing key ...
                self._failed(rid, stage, e)
                res.failures += 1
                break
            if not moved:
                break
            made += 1
        return made

    # ---------------------------------------------------------------------------- store
    def _source(self, rec_path: str | None, rid: str) -> Path | None:
        """The recording's plain file: where the row says, else anywhere under incoming/."""
        if rec_path:
            p = Path(rec_path)
            if not p.is_absolute():
                p = Path(self.settings.data_dir) / p
            if p.is_file():
                return p
        for p in self.incoming.rglob(f"{rid}.wav"):
            return p
        return None

    def release_dead_claims(self) -> int:
        """Claims held by a pipeline process of this host that is no longer alive (``kill -9``
        in the middle of an ingest): released at once instead of after their lease."""
        host = socket.gethostname()[:16]
        now = self.clock()
        with self.factory() as s:
            held = s.execute(select(Recording.id, Recording.claim_token)
                             .where(Recording.claim_token.is_not(None), Recording.claim_until >= now)).all()
        dead = []
        for rid, token in held:
            h, _, rest = (token or "").partition(":")
            pid = rest.split(":", 1)[0]
            if h == host and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                dead.append((rid, token))
        if not dead:
            return 0
        with write_session(self.factory) as s:
            for rid, token in dead:
                s.execute(update(Recording).where(Recording.id == rid, Recording.claim_token == token)
                          .values(claim_token=None, claim_until=None))
            s.commit()
        log.warning("released %d claim(s) of a pipeline process that died mid-step", len(dead))
        return len(dead)

    def _claim(self, rid: str, stage: str) -> str | None:
        token = f"{self.owner}:{uuid.uuid4().hex[:8]}"[:36]
        now = self.clock()
        with write_session(self.factory) as s:
            r = s.execute(update(Recording)
                          .where(Recording.id == rid, Recording.stage == stage,
                                 or_(Recording.claim_until.is_(None), Recording.claim_until < now))
                          .values(claim_token=token, claim_until=now + timedelta(seconds=self.lease_s)))
            s.commit()
        return token if r.rowcount == 1 else None

    def _store(self, rid: str) -> bool:
        token = self._claim(rid, "completed")
        if token is None:
            return False
        with self.factory() as s:
            rec = s.get(Recording, rid)
            rec_path, expected, status = rec.path, rec.sha256, rec.status
            stored = s.get(RecordingBlob, rid) is not None
        src = self._source(rec_path, rid)
        enc = None
        if not stored:  # (a blob without the stage moved on cannot be committed; kept for safety)
            if src is None:
                raise MissingFile(f"recording {rid}: file not found ({rec_path})")
            wav_facts(src)  # CorruptRecording when it is not a readable WAV (an empty one is)
            try:
                enc = storage.encrypt_into_store(self.ctx, rid, src, expected_sha256=expected or None)
            except storage.IntegrityError as e:
                raise CorruptRecording(f"文件内容与挂机时记录的哈希不一致（{e}）") from None
        from hotline_api.services import audit

        now = self.clock()
        with write_session(self.factory) as s:
            r = s.execute(update(Recording)
                          .where(Recording.id == rid, Recording.stage == "completed", Recording.claim_token == token)
                          .values(stage="stored", stage_at=now, stage_attempts=0, stage_error=None,
                                  stage_next_at=None, claim_token=None, claim_until=None))
            if r.rowcount != 1:
                s.rollback()
                log.warning("recording %s: claim lost while storing (lease %.0f s); left to its new owner",
                            rid, self.lease_s)
                return False
            if enc is not None:
                storage.register_blob(s, self.ctx, enc, now)
                audit.record(s, "recording.store", actor_name="system", object_type="recording", object_id=rid,
                             detail={"sha256": enc.sha256, "size": enc.plain_size, "status": status})
            s.commit()
        self._remove_plain(src, rid)
        return True

    def _remove_plain(self, src: Path | None, rid: str) -> None:
        """Delete the plain file once its encrypted copy is committed (never the encrypted one)."""
        if src is not None and src.exists() and src.resolve() != self.ctx.store.path(rid).resolve():
            storage.secure_unlink(src)

    # ---------------------------------------------------------------------------- assign
    def calendar(self) -> Callable:
        """The working-day calendar (holidays, 调休, admin overrides), read once per pass."""
        if self._calendar is not None:
            return self._calendar
        if self._pass_calendar is None:
            from hotline_api.services.calendar import WorkCalendar

            with self.factory() as s:
                self._pass_calendar = WorkCalendar.from_db(s).is_workday
        return self._pass_calendar

    def _assign(self, rid: str) -> bool:
        from hotline_api.services import review

        calendar = self.calendar()
        now = self.clock()
        with write_session(self.factory) as s:
            rec = s.get(Recording, rid, with_for_update=True)
            if rec is None or rec.stage != "stored":
                return False
            review.assign_at_completion(s, rid, call_id=rec.call_id, kind=rec.kind or "call",
                                        completed_at=rec.completed_at or now, calendar=calendar,
                                        settings=self.settings)
            _move(rec, "assigned", now)
            s.commit()
        return True

    # ---------------------------------------------------------------------------- queue
    def _queue(self, rid: str) -> bool:
        from hotline_api.services import transcription

        now = self.clock()
        with write_session(self.factory) as s:
            rec = s.get(Recording, rid, with_for_update=True)
            if rec is None or rec.stage != "assigned":
                return False
            if rec.status == "empty" or not (rec.duration or 0) > 0:
                _move(rec, "done", now)
            else:
                transcription.enqueue(s, rid, self.settings)
                _move(rec, "queued", now)
            call_id = rec.call_id
            s.commit()
        self._callback_task(call_id)
        if self.on_queued is not None:
            self.on_queued(rid)
        return True

    def _callback_task(self, call_id: str | None) -> None:
        """A caller who chose "call me back": the task is made now (the scheduler's minute job is
        the safety net when this fails)."""
        if not call_id:
            return
        from hotline_api.services import callbacks

        try:
            with self.factory() as s:
                call = s.get(Call, call_id)
                wanted = call is not None and call.ended_at is not None and callbacks.requested_callback(call.flow_path)
            if wanted:
                callbacks.ensure_tasks_job(self.factory, self.settings)
        except Exception:  # noqa: BLE001 - the scheduler job retries within a minute
            log.warning("callback task for call %s not made now; the scheduler will", call_id, exc_info=True)

    # ---------------------------------------------------------------------------- failures
    def _failed(self, rid: str, stage: str | None, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}"[:500]
        try:
            with write_session(self.factory) as s:
                rec = s.get(Recording, rid, with_for_update=True)
                if rec is None or rec.stage != stage:
                    return
                rec.stage_attempts = (rec.stage_attempts or 0) + 1
                rec.stage_error = reason
                rec.claim_token = rec.claim_until = None
                if isinstance(exc, MissingFile) and rec.stage_attempts >= MISSING_ATTEMPTS:
                    s.commit()
                    self._quarantine(rid, f"录音文件不存在（已重试 {rec.stage_attempts} 次）")
                    return
                rec.stage_next_at = self.clock() + timedelta(seconds=backoff_s(rec.stage_attempts))
                attempts = rec.stage_attempts
                s.commit()
            log.warning("recording %s: step after %s failed (try %d), retry in %.0f s: %s",
                        rid, stage, attempts, backoff_s(attempts), reason)
        except Exception:  # noqa: BLE001 - cannot even write the failure down: the next pass retries
            log.warning("recording %s: step after %s failed (%s); could not record it either", rid, stage, reason)

    def _quarantine(self, rid: str, reason: str) -> None:
        """Keep the file encrypted (no plain copy on disk), take it out of the chain, say why."""
        from hotline_api.services import audit

        with self.factory() as s:
            rec = s.get(Recording, rid)
            rec_path = rec.path if rec else None
            stored = s.get(RecordingBlob, rid) is not None
        src = self._source(rec_path, rid)
        enc = None
        if src is not None and not stored:
            try:
                enc = storage.encrypt_into_store(self.ctx, rid, src)
            except Exception as e:  # noqa: BLE001 - cannot encrypt: move it aside, owner-only
                self.quarantine_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                dest = self.quarantine_dir / f"{rid}.wav"
                src.replace(dest)
                dest.chmod(0o600)
                reason = f"{reason}；加密失败，文件移至隔离目录（{e}）"
                src = None
        now = self.clock()
        with write_session(self.factory) as s:
            rec = s.get(Recording, rid, with_for_update=True)
            if rec is None or rec.stage not in ACTIVE:
                return
            if enc is not None:
                storage.register_blob(s, self.ctx, enc, now)
            _move(rec, "quarantined", now)
            rec.stage_error = reason[:1000]
            audit.record(s, "recording.quarantine", actor_name="system", object_type="recording", object_id=rid,
                         detail={"reason": reason[:300]})
            s.commit()
        self._remove_plain(src, rid)
        log.error("recording %s quarantined: %s", rid, reason)

    # ---------------------------------------------------------------------------- scan
    def scan(self) -> dict:
        """Find what a crash left in ``recordings/incoming``. Returns counts by outcome."""
        out = {"found": 0, "adopted": 0, "removed_plain_copy": 0, "skipped_young": 0, "not_a_recording": 0}
        if not self.incoming.is_dir():
            return out
        now_wall = time.time()
        for wav in sorted(self.incoming.rglob("*.wav")):
            if wav.name.startswith(".") or not wav.is_file():
                continue
            out["found"] += 1
            try:
                rid = check_recording_id(wav.stem)
            except BadRecordingId:
                out["not_a_recording"] += 1
                log.warning("incoming: %s is not named by a recording id; left alone", wav.name)
                continue
            try:
                age = now_wall - wav.stat().st_mtime
            except FileNotFoundError:
                continue
            with self.factory() as s:
                rec = s.get(Recording, rid)
                blob = s.get(RecordingBlob, rid)
                stage = rec.stage if rec else None
                blob_sha = blob.sha256 if blob else None
            if blob_sha is not None and stage != "completed":  # the encrypted copy is committed
                if sha256_file(wav) == blob_sha or stage == "quarantined":
                    storage.secure_unlink(wav)
                    out["removed_plain_copy"] += 1
                    log.info("incoming: removed the plain copy of stored recording %s", rid)
                continue
            if stage not in (None, "recording"):
                continue  # the pipeline has it
            if age < self.scan_min_age_s:
                out["skipped_young"] += 1  # its completion event may be on its way
                continue
            self._adopt(rid, wav)
            out["adopted"] += 1
        if out["adopted"] or out["removed_plain_copy"]:
            log.warning("incoming scan: %s", out)
        return out

    def _adopt(self, rid: str, wav: Path) -> None:
        """A finished file whose completion never reached the database: complete its row from the file."""
        from hotline_api.services import audit

        try:
            facts = wav_facts(wav)
        except CorruptRecording:
            facts = {}
        digest = sha256_file(wav)
        size = wav.stat().st_size
        ended = datetime.fromtimestamp(wav.stat().st_mtime, timezone.utc)
        now = self.clock()
        with write_session(self.factory) as s:
            rec = s.get(Recording, rid, with_for_update=True)
            if rec is None:
                rec = Recording(id=rid, call_id=None, kind="call", created_at=ended)
                s.add(rec)
            elif rec.stage not in (None, "recording"):
                return
            frames = facts.get("frames", 0)
            rec.status = "recovered" if frames > 0 or not facts else "empty"
            rec.path = str(wav.resolve())
            rec.duration = facts.get("duration", 0.0)
            rec.sample_rate = facts.get("sample_rate", rec.sample_rate)
            rec.channels = facts.get("channels", rec.channels)
            rec.sha256, rec.size_bytes, rec.completed_at = digest, size, ended
            _move(rec, "completed", now)
            audit.record(s, "recording.recovered", actor_name="system", object_type="recording", object_id=rid,
                         detail={"source": "incoming scan", "size": size})
            s.commit()
        log.warning("incoming: recording %s had no completion in the database; completed from its file", rid)

    # ---------------------------------------------------------------------------- report
    def report(self) -> dict:
        st = status(self.factory, self.settings, now=self.clock())
        backlog = {k: v["count"] for k, v in st["stages"].items() if k in ACTIVE and v["count"]}
        if backlog:
            log.info("pipeline backlog: %s", backlog)
        if st["stuck"]:
            oldest = max(st["stuck"], key=lambda r: r["age_s"])
            log.warning("pipeline: %d recording(s) stuck longer than %.0f min; oldest %s in %s for %.0f s (%s)",
                        len(st["stuck"]), self.stuck_after.total_seconds() / 60, oldest["recording_id"],
                        oldest["stage"], oldest["age_s"], oldest.get("error") or "no error recorded")
        return st


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _move(rec: Recording, stage: str, now: datetime) -> None:
    rec.stage, rec.stage_at = stage, now
    rec.stage_attempts, rec.stage_error, rec.stage_next_at = 0, None, None
    rec.claim_token = rec.claim_until = None


# ===================================================================================== status
def status(factory: sessionmaker[Session], settings: Any, now: datetime | None = None, limit: int = 50) -> dict:
    """Counts per stage with the oldest, the stuck recordings and the quarantined ones (no content,
    no caller identity: ids, stages, ages, reasons)."""
    now = now or utcnow()
    stuck_after = timedelta(minutes=float(getattr(settings, "pipeline_stuck_minutes", 10)))
    recording_stuck_after = timedelta(seconds=float(getattr(settings, "max_call_seconds", 3600)) + 600)
    with factory() as s:
        rows = s.execute(select(Recording.stage, func.count(), func.min(func.coalesce(Recording.stage_at,
                                                                                      Recording.created_at)))
                         .group_by(Recording.stage)).all()
        stages: dict[str, dict] = {k: {"count": 0, "oldest_at": None, "oldest_age_s": None, "label": STAGE_LABELS[k]}
                                   for k in STAGES}
        for stage, n, oldest in rows:
            d = stages.setdefault(stage, {"label": stage})
            d["count"] = n
            if oldest is not None and stage not in FINISHED:
                oldest = _aware(oldest)
                d["oldest_at"] = oldest.isoformat()
                d["oldest_age_s"] = round((now - oldest).total_seconds(), 1)
        when = func.coalesce(Recording.stage_at, Recording.created_at)
        stuck_q = (select(Recording.id, Recording.stage, when, Recording.stage_attempts, Recording.stage_error)
                   .where(or_(and_(Recording.stage.in_(ACTIVE), when < now - stuck_after),
                              and_(Recording.stage == "recording", when < now - recording_stuck_after)))
                   .order_by(when).limit(limit))
        stuck = [_item(r, now) for r in s.execute(stuck_q).all()]
        quarantined = [_item(r, now) for r in s.execute(
            select(Recording.id, Recording.stage, when, Recording.stage_attempts, Recording.stage_error)
            .where(Recording.stage == "quarantined").order_by(when.desc()).limit(limit)).all()]
        retrying = s.execute(select(func.count()).where(Recording.stage.in_(ACTIVE),
                                                       Recording.stage_attempts > 0)).scalar_one()
    return {"at": now.isoformat(), "stages": stages, "stuck": stuck, "quarantined": quarantined,
            "retrying": retrying, "stuck_after_minutes": stuck_after.total_seconds() / 60,
            "healthy": not stuck and not quarantined}


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _item(row, now: datetime) -> dict:
    rid, stage, at, attempts, error = row
    at = _aware(at)
    return {"recording_id": rid, "stage": stage, "label": STAGE_LABELS.get(stage, stage), "since": at.isoformat(),
            "age_s": round((now - at).total_seconds(), 1), "attempts": attempts or 0, "error": error}


# ============================================================================ one-shot helpers
def on_recording_completed(factory: sessionmaker[Session], ctx: storage.CryptoContext, event: Any, *,
                           calendar: Callable | None = None, now: datetime | None = None,
                           settings: Any = None) -> storage.IngestResult | None:
    """Run the chain for one ``RecordingCompleted``-like event at once, in this process (tests,
    seeding): the event's row is completed if the SIP side has not done it, then stored and
    assigned (not queued for transcription: callers that want a job call ``transcription.enqueue``).
    Safe to call again for the same recording. Returns what was stored, or None for a failed one."""
    if getattr(event, "status", "") == "failed":
        return None
    settings = settings or ctx.settings
    at = getattr(event, "at", None) or now or utcnow()
    clock = (lambda: now) if now is not None else utcnow
    with write_session(factory) as s:
        rec = s.get(Recording, event.recording_id)
        if rec is None:
            call_id = getattr(event, "call_uuid", None)
            rec = Recording(id=event.recording_id, call_id=call_id if call_id and s.get(Call, call_id) else None,
                            kind=getattr(event, "kind", "call") or "call", created_at=at)
            s.add(rec)
        if rec.stage in (None, "recording"):
            rec.path = str(event.path)
            rec.status = getattr(event, "status", None) or "complete"
            rec.kind = getattr(event, "kind", None) or rec.kind
            rec.sha256 = getattr(event, "sha256", None) or rec.sha256
            rec.duration = getattr(event, "duration", rec.duration)
            rec.completed_at = at
            _move(rec, "completed", now or utcnow())
        s.commit()
    p = Pipeline(settings, factory, ctx, calendar=calendar, clock=clock)
    created = False
    with factory() as s:
        stage = s.get(Recording, event.recording_id).stage
    if stage == "completed":
        try:
            p._store(event.recording_id)
        except CorruptRecording as e:
            p._quarantine(event.recording_id, str(e))
            raise storage.IntegrityError(str(e)) from None
        created = True
    with factory() as s:
        if s.get(Recording, event.recording_id).stage == "stored":
            p._assign(event.recording_id)
        blob = s.get(RecordingBlob, event.recording_id)
        if blob is None:
            raise storage.StorageError(f"recording {event.recording_id}: not stored")
        return storage.IngestResult(blob.recording_id, blob.rel_path, blob.sha256, blob.plain_size, blob.data_offset,
                                    blob.data_size, created)


