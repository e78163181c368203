"""Transcription jobs: enqueue, atomic claim across processes, leases, retries, the worker loop.

Wiring (composition root):

* ``CallStore.add_completion_hook(recording_completed_hook)``: every completed recording gets a job
  (same transaction as the recording row).
* ``enqueue_import(path)``: an audio file imported through the CLI (``hotline transcribe --enqueue``)
  or the API gets a ``recordings`` row (kind ``import``) and a job.
* ``subscribe(fn)``: ``fn(TranscriptReady)`` is called in the worker process after a transcript is
  stored (drafting subscribes). Exceptions are logged; the transcript stays stored.
* ``run_worker(...)`` / ``hotline asr worker``: the worker process.

Job life: queued → running (claimed under a lease, heartbeat extends it) → done | failed, or back to
queued for a retry (attempts < ``asr_max_attempts``). A worker killed mid-job leaves the job
``running`` with a lease that expires; any worker then claims it again. When no model is installed,
jobs are parked as ``waiting_for_model`` and resume once a model appears.

Claims are one ``UPDATE ... WHERE id = (SELECT ... LIMIT 1) AND <claimable>`` with a random claim
token, then a read-back by token: atomic on SQLite (one writer at a time) and on PostgreSQL (the
WHERE is re-checked after the row lock, so only one claimer updates the row).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from hotline_api.core.config import Settings, get_settings
from hotline_api.db.base import new_uuid, utcnow
from hotline_api.db.session import make_engine, session_factory
from hotline_api.models.asr import Transcript, TranscriptionJob
from hotline_api.models.calls import Recording

log = logging.getLogger(__name__)

Job = TranscriptionJob
DEFAULT_LEASE_SECONDS = 60.0
from asr.postprocess import REPLACEMENTS_FILE  # noqa: E402 - relative to the data dir; admin-editable


# ====================================================================================== events
@dataclass(frozen=True)
class TranscriptReady:
    """Published after a transcript is stored (the drafting stage subscribes)."""

    recording_id: str
    job_id: str
    call_id: str | None
    kind: str  # call / voicemail / import
    transcript: dict  # the `hotline transcribe --json` document, with "turns"
    text: str


TranscriptSubscriber = Callable[[TranscriptReady], None]
_subscribers: list[TranscriptSubscriber] = []


def subscribe(fn: TranscriptSubscriber) -> None:
    if fn not in _subscribers:
        _subscribers.append(fn)


def unsubscribe(fn: TranscriptSubscriber) -> None:
    with contextlib.suppress(ValueError):
        _subscribers.remove(fn)


def _publish(event: TranscriptReady) -> None:
    for fn in list(_subscribers):
        try:
            fn(event)
        except Exception:
            log.exception("transcript subscriber %r failed for recording %s", fn, event.recording_id)


# ====================================================================================== storage
def store_transcript(session: Session, recording_id: str, job_id: str | None, result: dict) -> Transcript:
    """The one place transcript content is written (governance will encrypt here)."""
    session.execute(delete(Transcript).where(Transcript.recording_id == recording_id))
    t = Transcript(
        recording_id=recording_id,
        job_id=job_id,
        model=result.get("model"),
        duration=result.get("duration"),
        data=json.dumps(result, ensure_ascii=False),
        text=result.get("text", ""),
    )
    session.add(t)
    return t


def load_transcript(session: Session, recording_id: str) -> dict | None:
    """The transcript JSON of a recording (as ``hotline transcribe --json``), or None."""
    t = session.scalar(select(Transcript).where(Transcript.recording_id == recording_id))
    return json.loads(t.data) if t is not None and t.data else None  # no data: its content key was purged


AudioOpener = Callable[[Recording, Settings], "contextlib.AbstractContextManager[BinaryIO]"]
_audio_opener: AudioOpener | None = None


def set_audio_opener(opener: AudioOpener | None) -> None:
    """Replace how recordings are opened (governance: decrypting storage). ``opener(recording,
    settings)`` is a context manager yielding a seekable binary file object (read/seek/tell), e.g.
    ``RangeFile(size, read_range)`` over a decrypting reader. ``None`` restores the plain files."""
    global _audio_opener
    _audio_opener = opener


class RangeFile(io.RawIOBase):
    """A read-only, seekable file object over ``read_range(start, stop) -> bytes`` and a size, so
    soundfile can read a recording held in any storage that serves byte ranges."""

    def __init__(self, size: int, read_range: Callable[[int, int], bytes], name: str = "<recording>"):
        super().__init__()
        self._size, self._read_range, self._pos, self.name = int(size), read_range, 0, name

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, b) -> int:
        n = min(len(b), max(0, self._size - self._pos))
        if n == 0:
            return 0
        data = self._read_range(self._pos, self._pos + n)
        b[: len(data)] = data
        self._pos += len(data)
        return len(data)


def open_recording_audio(recording: Recording, settings: Settings | None = None):
    """A context manager yielding a seekable binary stream of a recording's audio: decrypted from
    recording storage when the recording is stored there (every call, voicemail and import), else
    the plain file at ``recording.path``. ``set_audio_opener`` replaces this (tests)."""
    settings = settings or get_settings()
    if _audio_opener is not None:
        return _audio_opener(recording, settings)
    return _open_stored(recording, settings)


_crypto_lock = threading.Lock()
_crypto_ctx: dict[str, object] = {}


def _crypto_for(settings: Settings, sessions):
    from hotline_api.services import storage

    key = f"{settings.db_url}|{settings.keys_dir.resolve()}"
    with _crypto_lock:
        ctx = _crypto_ctx.get(key)
        if ctx is None:
            ctx = _crypto_ctx[key] = storage.open_crypto(settings, sessions, create=False)
        return ctx


@contextlib.contextmanager
def _open_stored(recording: Recording, settings: Settings) -> Iterator[BinaryIO]:
    from hotline_api.models.governance import RecordingBlob
    from hotline_api.services import storage

    sessions = session_factory(settings.db_url)
    with sessions() as s:
        stored = s.get(RecordingBlob, recording.id) is not None
    if not stored:
        with _open_plain_file(recording, settings) as fh:
            yield fh
        return
    ctx = _crypto_for(settings, sessions)
    with sessions() as s:
        try:
            reader = storage.open_reader(s, ctx, recording.id)
        except storage.StorageError as e:
            raise RecordingUnavailable(f"recording {recording.id}: {e}") from e
    with reader:
        yield RangeFile(reader.size, reader.read, name=f"<recording {recording.id}>")


@contextlib.contextmanager
def _open_plain_file(recording: Recording, settings: Settings) -> Iterator[BinaryIO]:
    if not recording.path:
        raise RecordingUnavailable(f"recording {recording.id} has no audio file")
    p = Path(recording.path)
    if not p.is_absolute():
        p = settings.data_dir / p
    try:
        fh = open(p, "rb")
    except FileNotFoundError as e:
        raise RecordingUnavailable(f"recording {recording.id}: audio file not found") from e
    except OSError as e:
        raise RecordingUnavailable(f"recording {recording.id}: cannot open the audio file ({e.strerror})") from e
    with fh:
        yield fh


class RecordingUnavailable(Exception):
    """The recording's audio cannot be opened now (retried like any transient error)."""


# ====================================================================================== enqueue
def _model_ready(settings: Settings) -> bool:
    from asr.models import is_ready

    return is_ready(settings.batch_model_dir)


def enqueue(session: Session, recording_id: str, settings: Settings | None = None) -> TranscriptionJob:
    """Create the recording's job (idempotent: an existing job is returned). Flushes, does not commit."""
    settings = settings or get_settings()
    existing = session.scalar(select(Job).where(Job.recording_id == recording_id))
    if existing is not None:
        return existing
    status = "queued" if _model_ready(settings) else "waiting_for_model"
    job = Job(recording_id=recording_id, status=status, attempts=0)
    try:
        with session.begin_nested():
            session.add(job)
    except IntegrityError:  # a concurrent enqueue won
        existing = session.scalar(select(Job).where(Job.recording_id == recording_id))
        if existing is None:
            raise
        return existing
    log.info("transcription job %s queued for recording %s (%s)", job.id, recording_id, status)
    return job


def recording_completed_hook(session: Session, recording: Recording, event=None) -> None:
    """``CallStore`` completion hook: queue transcription of every completed recording."""
    enqueue(session, recording.id)


def enqueue_import(
    path: str | os.PathLike,
    settings: Settings | None = None,
    sessions: sessionmaker[Session] | None = None,
    kind: str = "import",
) -> tuple[str, str]:
    """Import an audio file: encrypt it into recording storage (no plain copy is kept), create a
    ``recordings`` row (kind ``import``), assign it for review and queue a job. Returns
    (recording_id, job_id). Files that are not valid audio are imported too: their job fails with a
    clear error, and nothing is lost."""
    from asr.audio import probe
    from asr.errors import AudioInputError
    from hotline_api.services import review, storage

    settings = settings or get_settings()
    sessions = sessions or session_factory(settings.db_url)
    src = Path(path)
    if not src.is_file():
        raise FileNotFoundError(f"not a file: {src}")
    ctx = storage.open_crypto(settings, sessions)
    rec_id = new_uuid()
    info, error = None, None
    try:
        info = probe(src)
    except AudioInputError as e:
        error = str(e)
    now = utcnow()
    with sessions() as s:
        try:
            rec = Recording(
                id=rec_id, kind=kind, status="complete" if info else "failed",
                duration=info.duration if info else None, sample_rate=info.sample_rate if info else None,
                channels=info.channels if info else None, error=error, created_at=now, completed_at=now, stage="queued", stage_at=now,
            )
            s.add(rec)
            s.flush()
            storage.ingest_recording(s, ctx, rec_id, src, now=now)
            if info is not None:
                review.assign_at_completion(s, rec_id, call_id=None, kind=kind, completed_at=now, settings=settings)
            job = enqueue(s, rec_id, settings)
            s.commit()
        except Exception:
            s.rollback()
            ctx.store.delete(rec_id)
            raise
        return rec_id, job.id


# ====================================================================================== claiming
@contextlib.contextmanager
def _tx(engine: Engine) -> Iterator:
    """A write transaction; on SQLite it begins IMMEDIATE (takes the write lock up front)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.info["begin_mode"] = "IMMEDIATE"
        with conn.begin():
            yield conn


@dataclass
class ClaimedJob:
    id: str
    recording_id: str
    token: str
    attempts: int


def _claimable(now):
    return or_(Job.status == "queued", and_(Job.status == "running", Job.lease_until < now))


def expire_dead_jobs(engine: Engine, max_attempts: int) -> int:
    """Jobs whose worker died (lease expired) and that have used all their attempts → failed."""
    now = utcnow()
    with _tx(engine) as conn:
        r = conn.execute(
            update(Job)
            .where(Job.status == "running", Job.lease_until < now, Job.attempts >= max_attempts)
            .values(
                status="failed", finished_at=now, updated_at=now, claim_token=None,
                last_error=func.coalesce(Job.last_error + " / ", "")
                + f"worker stopped or was killed during each of {max_attempts} attempts (lease expired)",
            )
        )
        return r.rowcount or 0


def claim(engine: Engine, worker_id: str, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> ClaimedJob | None:
    """Atomically claim the oldest claimable job (queued, or running with an expired lease)."""
    token = str(uuid.uuid4())
    for _ in range(5):
        now = utcnow()
        cond = _claimable(now)
        # FOR UPDATE SKIP LOCKED lets concurrent PostgreSQL claimers pass each other; SQLite ignores it
        # (there the UPDATE holds the only write lock).
        sub = (
            select(Job.id).where(cond).order_by(Job.created_at, Job.id).limit(1)
            .with_for_update(skip_locked=True).scalar_subquery()
        )
        with _tx(engine) as conn:
            r = conn.execute(
                update(Job)
                .where(Job.id == sub, cond)
                .values(
                    status="running", claim_token=token, claimed_by=worker_id[:128], attempts=Job.attempts + 1,
                    lease_until=now + timedelta(seconds=lease_seconds), heartbeat_at=now, started_at=now,
                    updated_at=now, progress=0.0,
                )
            )
            if r.rowcount == 1:
                row = conn.execute(
                    select(Job.id, Job.recording_id, Job.attempts).where(Job.claim_token == token)
                ).one()
                return ClaimedJob(id=row.id, recording_id=row.recording_id, token=token, attempts=row.attempts)
            # 0 rows: nothing claimable, or (PostgreSQL) another claimer took the row first
            more = conn.execute(select(func.count()).select_from(Job).where(cond)).scalar()
        if not more:
            return None
    return None


def heartbeat(engine: Engine, job: ClaimedJob, lease_seconds: float, progress: float | None = None) -> bool:
    """Extend the lease. False when the job is no longer ours (lease lost to another worker)."""
    now = utcnow()
    values = dict(lease_until=now + timedelta(seconds=lease_seconds), heartbeat_at=now, updated_at=now)
    if progress is not None:
        values["progress"] = progress
    with _tx(engine) as conn:
        r = conn.execute(
            update(Job).where(Job.id == job.id, Job.claim_token == job.token, Job.status == "running").values(**values)
        )
        return r.rowcount == 1


def _finish(engine: Engine, job: ClaimedJob, **values) -> bool:
    now = utcnow()
    values.setdefault("updated_at", now)
    with _tx(engine) as conn:
        r = conn.execute(
            update(Job).where(Job.id == job.id, Job.claim_token == job.token, Job.status == "running").values(**values)
        )
        return r.rowcount == 1


def park_for_model(engine: Engine) -> int:
    with _tx(engine) as conn:
        return conn.execute(
            update(Job).where(Job.status == "queued").values(status="waiting_for_model", updated_at=utcnow())
        ).rowcount or 0


def resume_waiting(engine: Engine) -> int:
    with _tx(engine) as conn:
        return conn.execute(
            update(Job).where(Job.status == "waiting_for_model").values(status="queued", updated_at=utcnow())
        ).rowcount or 0


def pending_count(engine: Engine) -> int:
    """Jobs not yet finished (queued, running, waiting_for_model)."""
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(Job).where(Job.status.in_(("queued", "running", "waiting_for_model")))
        ).scalar() or 0


def job_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(select(Job.status, func.count()).group_by(Job.status)).all()
    return {s: n for s, n in rows}


# ====================================================================================== the worker
class Worker:
    """Claims and runs transcription jobs. One Vosk model per process, shared by ``threads``
    job threads (each decodes with its own recognizers)."""

    def __init__(
        self,
        settings: Settings | None = None,
        worker_id: str | None = None,
        threads: int = 1,
        poll_interval: float = 2.0,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        exit_when_idle: bool = False,
        on_progress: Callable[[str, float, float], None] | None = None,
    ):
        self.settings = settings or get_settings()
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.threads = max(1, int(threads))
        self.poll_interval = poll_interval
        self.lease_seconds = lease_seconds
        self.exit_when_idle = exit_when_idle
        self.on_progress = on_progress
        self.engine = make_engine(self.settings.db_url)
        self.sessions = session_factory(self.settings.db_url)
        self.stop_event = threading.Event()
        self._transcriber = None
        self._model_lock = threading.Lock()
        self._model_error_until = 0.0
        self._waiting_logged = False
        self.jobs_done = 0
        self.jobs_failed = 0

    # -------------------------------------------------------------- model
    def _get_transcriber(self):
        """The process-wide transcriber, or None when no usable model is installed (yet)."""
        from asr.engine import Transcriber, load_model
        from asr.errors import ModelError
        from asr.models import model_status
        from asr.postprocess import Replacements

        with self._model_lock:
            if self._transcriber is not None:
                return self._transcriber
            model_dir = self.settings.batch_model_dir
            status = model_status(model_dir)
            if status not in ("installed", "external") or time.monotonic() < self._model_error_until:
                if not self._waiting_logged:
                    log.warning(
                        "no usable Vosk model at %s (%s): jobs wait as waiting_for_model; install one with "
                        "`hotline models install`", model_dir, status,
                    )
                    self._waiting_logged = True
                return None
            try:
                model = load_model(model_dir)
            except ModelError as e:
                log.error("%s; retrying in 60 s", e)
                self._model_error_until = time.monotonic() + 60
                return None
            repl = Replacements.from_file(self.settings.data_dir / REPLACEMENTS_FILE)
            self._transcriber = Transcriber(model, replacements=repl)
            if self._waiting_logged:
                log.info("Vosk model %s is available: resuming jobs", model_dir)
            return self._transcriber

    # -------------------------------------------------------------- loop
    def run(self) -> None:
        threads = [
            threading.Thread(target=self._loop, args=(i,), name=f"asr-job-{i}", daemon=True) for i in range(self.threads)
        ]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.5)

    def stop(self) -> None:
        self.stop_event.set()

    def _loop(self, index: int) -> None:
        wid = self.worker_id if self.threads == 1 else f"{self.worker_id}/{index}"
        max_attempts = self.settings.asr_max_attempts
        while not self.stop_event.is_set():
            try:
                transcriber = self._get_transcriber()
                if transcriber is None:
                    n = park_for_model(self.engine)
                    if n:
                        log.info("%d job(s) waiting for a model", n)
                    if self.exit_when_idle and pending_count(self.engine) == 0:
                        return
                    self.stop_event.wait(self.poll_interval)
                    continue
                if resume_waiting(self.engine):
                    log.info("model present: waiting jobs queued again")
                expire_dead_jobs(self.engine, max_attempts)
                job = claim(self.engine, wid, self.lease_seconds)
                if job is None:
                    if self.exit_when_idle and pending_count(self.engine) == 0:
                        return
                    self.stop_event.wait(self.poll_interval)
                    continue
                self._process(job, transcriber, max_attempts)
            except Exception:  # the DB was unreachable, etc.: keep serving
                log.exception("transcription worker loop error")
                self.stop_event.wait(self.poll_interval)

    def _process(self, job: ClaimedJob, transcriber, max_attempts: int) -> None:
        from asr.errors import AudioInputError, Cancelled, ModelError

        t0 = time.monotonic()
        cancel = threading.Event()
        state = {"progress": 0.0, "logged": -1.0, "log_t": 0.0}
        hb_stop = threading.Event()

        def beat() -> None:
            every = max(0.2, self.lease_seconds / 3)
            while not hb_stop.wait(every):
                try:
                    if not heartbeat(self.engine, job, self.lease_seconds, state["progress"]):
                        log.warning("job %s: lease lost, abandoning it", job.id)
                        cancel.set()
                        return
                except Exception:
                    log.exception("job %s: heartbeat failed", job.id)

        def progress(done: float, total: float) -> None:
            frac = (done / total) if total else 1.0
            state["progress"] = frac
            now = time.monotonic()
            if frac - state["logged"] >= 0.1 or now - state["log_t"] >= 30:
                state["logged"], state["log_t"] = frac, now
                log.info("job %s: %3.0f%% of %.0f s of audio", job.id, frac * 100, total)
            if self.on_progress:
                self.on_progress(job.id, done, total)

        def cancelled() -> bool:
            return cancel.is_set() or self.stop_event.is_set()

        hb = threading.Thread(target=beat, name=f"hb-{job.id[:8]}", daemon=True)
        hb.start()
        log.info("job %s: claimed (attempt %d) for recording %s", job.id, job.attempts, job.recording_id)
        try:
            with self.sessions() as s:  # closed before decoding: no DB transaction held for hours
                rec = s.get(Recording, job.recording_id)
            if rec is None:
                raise AudioInputError(f"recording {job.recording_id} does not exist")
            kind = rec.kind
            call_id = rec.call_id
            with open_recording_audio(rec, self.settings) as fh:
                result = transcriber.transcribe(fh, kind=kind, progress=progress, cancel=cancelled)
        except Cancelled:
            hb_stop.set()
            # not the job's fault: give the attempt back
            _finish(self.engine, job, status="queued", attempts=Job.attempts - 1, claim_token=None, lease_until=None)
            log.info("job %s: stopped before completion, re-queued", job.id)
            return
        except AudioInputError as e:
            hb_stop.set()
            self._fail(job, str(e), permanent=True, max_attempts=max_attempts)
            return
        except ModelError as e:
            hb_stop.set()
            _finish(self.engine, job, status="waiting_for_model", attempts=Job.attempts - 1,
                    claim_token=None, lease_until=None, last_error=str(e))
            with self._model_lock:
                self._transcriber = None
            return
        except Exception as e:  # transient or unknown: retried up to max_attempts
            hb_stop.set()
            log.exception("job %s failed", job.id)
            self._fail(job, f"{type(e).__name__}: {e}", permanent=False, max_attempts=max_attempts)
            return
        finally:
            hb_stop.set()
        if cancel.is_set():
            return  # lease lost: another worker owns the job now
        now = utcnow()
        with self.sessions() as s:
            r = s.execute(
                update(Job)
                .where(Job.id == job.id, Job.claim_token == job.token, Job.status == "running")
                .values(status="done", progress=1.0, finished_at=now, updated_at=now, lease_until=None,
                        last_error=None, model=result.get("model"))
            )
            if r.rowcount != 1:
                s.rollback()
                log.warning("job %s: finished but no longer ours; result dropped", job.id)
                return
            store_transcript(s, job.recording_id, job.id, result)
            s.commit()
        self.jobs_done += 1
        log.info("job %s: done in %.1f s (%.1f s of audio, rtf %.3f)", job.id, time.monotonic() - t0,
                 result["duration"], result["rtf"])
        _publish(TranscriptReady(recording_id=job.recording_id, job_id=job.id, call_id=call_id, kind=kind,
                                 transcript=result, text=result.get("text", "")))

    def _fail(self, job: ClaimedJob, error: str, permanent: bool, max_attempts: int) -> None:
        now = utcnow()
        if permanent or job.attempts >= max_attempts:
            _finish(self.engine, job, status="failed", last_error=error, finished_at=now, claim_token=None,
                    lease_until=None)
            self.jobs_failed += 1
            log.error("job %s: failed after %d attempt(s): %s", job.id, job.attempts, error)
        else:
            _finish(self.engine, job, status="queued", last_error=error, claim_token=None, lease_until=None)
            log.warning("job %s: attempt %d failed, will retry: %s", job.id, job.attempts, error)


def run_worker(settings: Settings | None = None, install_signals: bool = True, **kwargs) -> Worker:
    """Run a worker until stopped (SIGTERM/SIGINT: the running job is re-queued and the process exits)."""
    import signal

    w = Worker(settings, **kwargs)
    if install_signals:
        def _stop(signum, _frame):
            log.info("signal %d: stopping the transcription worker", signum)
            w.stop()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    log.info("transcription worker %s started (%d thread(s), model dir %s)", w.worker_id, w.threads,
             w.settings.batch_model_dir)
    w.run()
    log.info("transcription worker %s stopped (%d done, %d failed)", w.worker_id, w.jobs_done, w.jobs_failed)
    return w
