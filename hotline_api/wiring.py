"""Composition root: the only place that wires telephony/, asr/ and recordings/ together with the
database, the API and the scheduler.

The chain of a call::

    telephony worker --events--> CallStore (rows; RecordingCompleted marks recordings.stage = completed)
    pipeline part (services.pipeline, one process): completed --encrypt--> stored --assign to the
        manager on duty--> assigned --transcription.enqueue--> queued      (each step durable, retried)
    ASR worker --TranscriptReady--> cases.on_transcript_completed (draft, duplicates, urgent alert)

During the call, the caller's channel also goes to a live recognizer (:class:`LiveAsr`, one Vosk
model per SIP worker process): telephony agent --LiveTranscript--> CallStore --> live events
``partial`` / ``transcript`` for the operator's console (text masked, see CallStore).
"""
from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Callable

from hotline_api.core.config import Settings

if TYPE_CHECKING:  # the lean SIP worker imports this module: no database stack at import time
    from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger("hotline.wiring")


def prepare(settings: Settings) -> None:
    """Everything that must hold before any part starts: folders, schema, keys, prompts.
    A wrong master key stops here, before any data is touched."""
    from hotline_api.db import migrate
    from hotline_api.db.session import session_factory
    from hotline_api.services import content, storage
    from telephony.prompts import build_prompts
    from telephony.routing import build_extra_prompts

    settings.ensure_dirs()
    migrate.upgrade(settings.db_url)
    storage.open_crypto(settings, session_factory(settings.db_url))
    content.encrypt_plain_values(session_factory(settings.db_url))  # values an earlier version kept in clear
    build_prompts(settings.prompts_dir)
    build_extra_prompts(settings.prompts_dir)


def open_runtime(settings: Settings):
    """(session factory, crypto context) for a part's process; installs log masking and the
    field cipher so confidential columns are encrypted."""
    from hotline_api.db.crypto_types import set_field_cipher
    from hotline_api.db.session import session_factory
    from hotline_api.services import masking, storage

    factory = session_factory(settings.db_url)
    ctx = storage.open_crypto(settings, factory)
    set_field_cipher(storage.load_field_cipher(settings))
    masking.install_log_masking()
    return factory, ctx


# ------------------------------------------------------------------------------ recording chain
def build_call_store(settings: Settings, factory: sessionmaker[Session], ctx=None):
    from hotline_api.core.secrets import caller_hash, caller_salt
    from hotline_api.services.call_store import CallStore

    salt = caller_salt(settings)
    # No completion hooks: a RecordingCompleted marks the row, and the pipeline part takes it on.
    return CallStore(factory, hash_caller=lambda number: caller_hash(number, salt))


def transcript_to_draft(factory: sessionmaker[Session], settings: Settings) -> Callable:
    """ASR completion → draft case (duplicates, urgent alerts, deadlines)."""
    from hotline_api.services import cases

    def on_transcript(ready) -> None:
        with factory() as s:
            cases.on_transcript_completed(s, ready.recording_id, ready.transcript, settings=settings)
            s.commit()

    return on_transcript


# ------------------------------------------------------------------------------ live transcript
class _LiveSession:
    """One call's live recognizer, as the agent sees it (telephony.events.LiveTranscriber)."""

    def __init__(self, model, rate: int, emit: Callable, max_backlog_s: float, replacements, name: str) -> None:
        from asr.live import LiveRecognizer

        self.emit = emit
        self.rate = rate
        self._last_end = 0.0
        self.rec = LiveRecognizer(model, rate, on_partial=self._partial, on_final=self._final,
                                  max_backlog_seconds=max_backlog_s, replacements=replacements, name=name)

    def feed(self, pcm: bytes) -> None:
        self.rec.feed(pcm)

    def close(self) -> None:
        self.rec.close(timeout=15.0)

    # recognizer thread
    def _partial(self, text: str) -> None:
        from telephony.events import LiveText

        st = self.rec.stats
        pos = (st.processed_bytes + st.dropped_bytes) / 2 / self.rate  # about where decoding is
        self.emit(LiveText(False, text, self._last_end, max(pos, self._last_end)))

    def _final(self, seg: dict) -> None:
        from telephony.events import LiveText

        self._last_end = float(seg["end"])
        self.emit(LiveText(True, seg["text"], float(seg["start"]), float(seg["end"])))


class LiveAsr:
    """The live-transcriber factory of one SIP worker process (telephony.events.LiveTranscriberFactory).

    The agent calls it on a helper thread per answered call, never on its pjsua2 thread. The
    Vosk model is loaded lazily, once per process, on a thread of its own, when the first call
    comes: the worker starts and answers calls at once. A call waits (on its helper thread, its
    audio buffered by the agent) at most ``wait_s`` for the model; a call that comes while no
    model is installed, or while it fails to load, has no live transcript (the model's state is
    checked again at the next call, so installing one needs no restart)."""

    def __init__(self, model_dir, max_backlog_s: float = 2.0, wait_s: float = 20.0, replacements=None,
                 retry_s: float = 60.0) -> None:
        from pathlib import Path

        self.model_dir = Path(model_dir)
        self.max_backlog_s = max_backlog_s
        self.wait_s = wait_s
        self.retry_s = retry_s
        self.replacements = replacements
        self.model = None
        self._lock = threading.Lock()
        self._loaded = threading.Event()
        self._loading = False
        self._retry_at = 0.0
        self._said_missing = False

    def _start_loading(self) -> bool:
        """Start the model load unless done or under way; False when no model can be loaded now."""
        import time

        from asr.models import is_ready, model_status

        with self._lock:
            if self.model is not None or self._loading:
                return True
            if time.monotonic() < self._retry_at:
                return False
            if not is_ready(self.model_dir):
                if not self._said_missing:
                    log.warning("no live Vosk model at %s (%s): calls have no live transcript until one is "
                                "installed", self.model_dir, model_status(self.model_dir))
                    self._said_missing = True
                return False
            self._loading = True
            self._loaded.clear()
        threading.Thread(target=self._load, name="live-asr-model", daemon=True).start()
        return True

    def _load(self) -> None:
        import time

        from asr.engine import load_model

        try:
            model = load_model(self.model_dir)
        except Exception as e:  # noqa: BLE001 - ModelError, or anything vosk raises
            log.error("live ASR: %s; calls have no live transcript (retry in %.0f s)", e, self.retry_s)
            model = None
        with self._lock:
            self.model = model
            self._loading = False
            if model is None:
                self._retry_at = time.monotonic() + self.retry_s
            else:
                self._said_missing = False
            self._loaded.set()

    def __call__(self, call_uuid: str, rate: int, emit: Callable):
        if not self._start_loading():
            return None
        if self.model is None and not self._loaded.wait(self.wait_s):
            log.info("call %s: live ASR model still loading: no live transcript for this call", call_uuid)
            return None
        model = self.model
        if model is None:
            return None
        return _LiveSession(model, rate, emit, self.max_backlog_s, self.replacements, call_uuid[:8])


def live_transcriber_for(settings: Settings) -> LiveAsr | None:
    """The SIP worker's live-transcriber factory, or None when ``live_asr`` is off."""
    if not getattr(settings, "live_asr", True):
        log.info("live transcript switched off (live_asr = false)")
        return None
    from asr.postprocess import REPLACEMENTS_FILE, Replacements

    try:
        repl = Replacements.from_file(settings.data_dir / REPLACEMENTS_FILE)
    except Exception as e:  # noqa: BLE001 - a broken admin file must not stop the SIP worker
        log.warning("live ASR: replacements file not used (%s)", e)
        repl = None
    return LiveAsr(settings.live_model_dir, replacements=repl)


# ------------------------------------------------------------------------------------- parts
def run_part(part: str, settings: Settings, stop: threading.Event) -> None:
    runners = {"api": run_api, "sip": run_sip, "pipeline": run_pipeline, "worker": run_asr_worker,
               "scheduler": run_scheduler}
    runners[part](settings, stop)


def run_api(settings: Settings, stop: threading.Event) -> None:
    import uvicorn

    from hotline_api.app import create_app

    _factory, ctx = open_runtime(settings)
    app = create_app(settings)
    app.state.crypto = ctx
    server = uvicorn.Server(uvicorn.Config(app, host=settings.http_host, port=settings.http_port,
                                           log_level=settings.log_level.lower(), proxy_headers=False))
    server.run()


def routing_worker_overrides(settings) -> dict:
    """WorkerConfig fields that come from the project settings (queue and attendant timings)."""
    return {
        "ring_timeout_s": float(settings.queue_ring_timeout_seconds),
        "queue_max_wait_s": float(settings.queue_max_wait_seconds),
        "queue_announce_every_s": float(settings.queue_announce_every_seconds),
        "menu_timeout_s": float(settings.attendant_menu_timeout_seconds),
        "voicemail_max_s": float(settings.voicemail_max_seconds),
        "voicemail_silence_s": float(settings.voicemail_silence_seconds),
        "vad": str(settings.voicemail_vad),
    }


def worker_config(settings: Settings, worker_id: str, port: int, behind_proxy: bool):
    from telephony.config import WorkerConfig

    return WorkerConfig(**routing_worker_overrides(settings),
        worker_id=worker_id, sip_host=settings.sip_host, sip_port=port,
        public_address=settings.sip_public_address, hotline_number=settings.hotline_number,
        trunk_allow=settings.trunk_allow, trusted_proxies=["127.0.0.1/32"] if behind_proxy else [],
        max_call_seconds=settings.max_call_seconds, clock_rate=settings.sip_clock_rate, spool_dir=str(settings.spool_dir / worker_id),
        recordings_dir=str(settings.recordings_dir / "incoming"), prompts_dir=str(settings.prompts_dir),
    )


def run_sip_worker(settings: Settings, worker_id: str, port: int, behind_proxy: bool,
                   stop: threading.Event) -> None:
    """One pjsua2 agent worker with the database sink; this thread owns pjsua2."""
    from hotline_api.services.call_store import QueuedSink
    from hotline_api.sip_routing import routing_for
    from telephony.worker import run_worker

    factory, ctx = open_runtime(settings)
    sink = QueuedSink(build_call_store(settings, factory, ctx), name=f"call-store-{worker_id}")
    router, hours = routing_for(settings, factory)  # operators and working hours from the DB
    try:
        run_worker(worker_config(settings, worker_id, port, behind_proxy), sink, stop, router=router, hours=hours,
                   live_transcriber=live_transcriber_for(settings))
    finally:
        sink.close()


def run_ipc_sip_worker(settings: Settings, worker_id: str, port: int, behind_proxy: bool, ipc_path: str,
                       stop: threading.Event) -> None:
    """One pjsua2 agent worker of the pool, lean: its events and routing questions go over the
    supervisor's socket (``telephony.ipc``), which alone writes the database; this process loads no
    database stack (about the bare worker's memory). This thread owns pjsua2."""
    from hotline_api.services import masking
    from telephony.ipc import IpcClient, IpcOpenHours, IpcRouter
    from telephony.worker import run_worker

    masking.install_log_masking()
    client = IpcClient(ipc_path, name=f"ipc-{worker_id}")
    try:
        run_worker(worker_config(settings, worker_id, port, behind_proxy), client, stop, router=IpcRouter(client),
                   hours=IpcOpenHours(client), live_transcriber=live_transcriber_for(settings))
    finally:
        client.close(timeout=5.0)  # within the pool's stop timeout; what is left, the pipeline's scan finds


def run_sip(settings: Settings, stop: threading.Event) -> None:
    """Single worker on the public port (development), or kamailio in front of a worker pool."""
    if not settings.sip_use_kamailio:
        run_sip_worker(settings, "w0", settings.sip_port, False, stop)
        return
    from hotline_api.sip_pool import run_pool

    run_pool(settings, stop)


def run_pipeline(settings: Settings, stop: threading.Event) -> None:
    """The recording pipeline: stores, assigns and queues every finished recording (one process
    writes these steps; several may run on several machines, claims keep them apart)."""
    from hotline_api.services.pipeline import Pipeline

    factory, ctx = open_runtime(settings)
    Pipeline(settings, factory, ctx).run(stop)


def run_asr_worker(settings: Settings, stop: threading.Event) -> None:
    from hotline_api.services import transcription

    factory, _ctx = open_runtime(settings)  # recordings are read through decrypting storage
    transcription.subscribe(transcript_to_draft(factory, settings))
    worker = transcription.Worker(settings, threads=settings.asr_workers)
    threading.Thread(target=lambda: (stop.wait(), worker.stop()), daemon=True).start()
    worker.run()


def run_scheduler(settings: Settings, stop: threading.Event) -> None:
    from hotline_api.scheduler import build_scheduler

    factory, _ctx = open_runtime(settings)
    sched = build_scheduler(settings, factory)
    sched.start()
    log.info("scheduler started with %d jobs", len(sched.get_jobs()))
    stop.wait()
    sched.shutdown(wait=True)
