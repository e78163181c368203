"""Supervisor of the agent worker pool behind kamailio.

The composition root (``hotline serve``) decides what a worker process is; this module only
starts, watches and restarts processes::

    from telephony.kamailio import KamailioConfig
    from telephony.pool import Pool, PoolConfig, WorkerLaunch, spool_recovery

    def launch(spec):            # WorkerSpec -> WorkerLaunch (or a plain argv list)
        ...write spec.work_dir / "worker.json" for spec.host:spec.port...
        return WorkerLaunch([sys.executable, "-m", "telephony.worker", "--config", ...])

    pool = Pool(PoolConfig(run_dir=..., workers=4, worker_base_port=15060,
                           kamailio=KamailioConfig(run_dir=..., listen_port=5060, ...)),
                launch, recover=spool_recovery(spool_of, recordings_dir, sink_of))
    pool.run(stop_event)         # blocks until stop_event is set, then shuts everything down

What it does:

* starts N workers (each on its own loopback port, with its own ``work_dir``), waits until they
  answer SIP OPTIONS, then generates kamailio's config (one dispatcher destination per worker)
  and starts kamailio (``kamailio=None``: no front door, e.g. the single-worker development
  mode where the worker itself listens on the public port);
* when a worker exits: tells kamailio at once to stop routing to it (dispatcher state
  inactive+probing, over the ctl socket), runs the spool recovery hook for that worker (its
  unfinished recordings become ``recovered``), then restarts it with exponential backoff
  (reset after it has run ``backoff_reset_s``); once the new process answers OPTIONS kamailio is
  told to use it again (probing would also find it);
* restarts kamailio if it dies (same backoff);
* on stop: disables every destination in kamailio (new calls get 503), sends SIGTERM to the
  workers (they hang up and complete their recordings), SIGKILL after ``stop_timeout_s``, runs
  recovery for any worker that had to be killed, then stops kamailio.

Every state change is reported to ``on_event`` (a ``PoolEvent``) and logged; logs carry worker
ids, pids and ports, never call details.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Callable, Sequence, Union

from telephony.kamailio import (Backend, KamailioConfig, KamailioError, KamailioProcess,
                                sip_options_ping)
from telephony.logfiles import rotate_if_large

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSpec:
    """One worker slot of the pool. ``work_dir`` belongs to this slot only (config, logs; the
    composition root may put the slot's spool there)."""

    index: int
    worker_id: str
    host: str
    port: int
    work_dir: Path


@dataclass
class WorkerLaunch:
    """How to start a worker process: argv, optional env (merged over os.environ) and cwd.
    stdout/stderr go to ``<work_dir>/worker.log`` unless ``log_path`` says otherwise."""

    argv: Sequence[str]
    env: dict[str, str] | None = None
    cwd: str | Path | None = None
    log_path: Path | None = None


WorkerCommandFactory = Callable[[WorkerSpec], Union[WorkerLaunch, Sequence[str]]]
RecoverFn = Callable[[WorkerSpec], object]


@dataclass(frozen=True)
class PoolEvent:
    kind: str  # worker_started / worker_ready / worker_exited / worker_recovered /
    #            recovery_failed / worker_start_failed / worker_dialogs_ended /
    #            kamailio_started / kamailio_exited / pool_stopped
    worker_id: str = ""
    pid: int | None = None
    detail: str = ""
    at: float = field(default_factory=time.time)


@dataclass
class PoolConfig:
    run_dir: Path
    workers: int = 1
    worker_host: str = "127.0.0.1"
    worker_base_port: int = 15060  # worker i listens on base + i (UDP and TCP)
    worker_ports: list[int] | None = None  # explicit ports instead of base + i
    legs_per_worker: int = 4  # pjsua2 wheel cap
    kamailio: KamailioConfig | None = None  # None: no front door (development mode)
    worker_ready_timeout_s: float = 20.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    backoff_reset_s: float = 60.0  # a worker that ran this long restarts after backoff_initial_s
    stop_timeout_s: float = 10.0
    poll_interval_s: float = 0.2
    kamailio_bin: str = "kamailio"
    kamcmd_bin: str = "kamcmd"

    def ports(self) -> list[int]:
        if self.worker_ports is not None:
            if len(self.worker_ports) != self.workers:
                raise ValueError(f"worker_ports has {len(self.worker_ports)} ports for "
                                 f"{self.workers} workers")
            return list(self.worker_ports)
        return [self.worker_base_port + i for i in range(self.workers)]


class _Slot:
    def __init__(self, spec: WorkerSpec, backend: Backend) -> None:
        self.spec = spec
        self.backend = backend
        self.proc: subprocess.Popen | None = None
        self.log_fh: IO | None = None
        self.started_at = 0.0
        self.ready = False
        self.restart_at: float | None = None
        self.backoff = 0.0
        self.restarts = 0
        self.recovering: threading.Thread | None = None
        self.exits: list[int] = []


class Pool:
    def __init__(self, config: PoolConfig, worker_cmd: WorkerCommandFactory, *,
                 recover: RecoverFn | None = None,
                 on_event: Callable[[PoolEvent], None] | None = None) -> None:
        if config.workers < 1:
            raise ValueError("a pool needs at least one worker")
        self.config = config
        self.worker_cmd = worker_cmd
        self.recover = recover
        self.on_event = on_event
        self.events: list[PoolEvent] = []
        self._lock = threading.RLock()
        run = Path(config.run_dir)
        self.slots: list[_Slot] = []
        for i, port in enumerate(config.ports()):
            wid = f"w{i}"
            spec = WorkerSpec(index=i, worker_id=wid, host=config.worker_host, port=port,
                              work_dir=run / "workers" / wid)
            self.slots.append(_Slot(spec, Backend(config.worker_host, port,
                                                  legs=config.legs_per_worker, name=wid)))
        self.kamailio: KamailioProcess | None = None
        self._kam_restart_at: float | None = None
        self._kam_backoff = 0.0
        self._kam_started_at = 0.0
        self._started = False
        self._stopped = False

    # ------------------------------------------------------------------ public
    @property
    def specs(self) -> list[WorkerSpec]:
        return [s.spec for s in self.slots]

    def worker_pid(self, worker_id: str) -> int | None:
        s = self._slot(worker_id)
        return s.proc.pid if s.proc is not None and s.proc.poll() is None else None

    def worker_ready(self, worker_id: str) -> bool:
        return self._slot(worker_id).ready

    def restarts(self, worker_id: str) -> int:
        return self._slot(worker_id).restarts

    def run(self, stop: threading.Event) -> None:
        """Start everything, supervise until ``stop`` is set, then shut down (blocking)."""
        try:
            self.start()
            while not stop.wait(self.config.poll_interval_s):
                self.tick()
        finally:
            self.stop()

    def start(self) -> None:
        """Start the workers, wait for them to answer, then start kamailio."""
        with self._lock:
            if self._started:
                return
            self._started = True
            Path(self.config.run_dir).mkdir(parents=True, exist_ok=True)
            for slot in self.slots:
                self._start_worker(slot)
            deadline = time.monotonic() + self.config.worker_ready_timeout_s
            while time.monotonic() < deadline and not all(s.ready for s in self.slots):
                for slot in self.slots:
                    self._check_ready(slot)
                time.sleep(0.1)
            missing = [s.spec.worker_id for s in self.slots if not s.ready]
            if missing:
                log.warning("workers not answering SIP OPTIONS yet: %s", ", ".join(missing))
            if self.config.kamailio is not None:
                self._start_kamailio()

    def tick(self) -> None:
        """One supervision pass (``run`` calls it every ``poll_interval_s``)."""
        with self._lock:
            if self._stopped:
                return
            now = time.monotonic()
            for slot in self.slots:
                self._tick_slot(slot, now)
            self._tick_kamailio(now)

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            kam = self.kamailio
            if kam is not None and kam.alive():
                for slot in self.slots:  # no new calls while the workers finish theirs
                    try:
                        kam.set_backend_state(slot.backend, "d")
                    except (KamailioError, OSError, subprocess.SubprocessError) as e:
                        log.warning("could not disable %s in kamailio: %s", slot.spec.worker_id, e)
            for slot in self.slots:
                if slot.proc is not None and slot.proc.poll() is None:
                    try:
                        slot.proc.send_signal(signal.SIGTERM)
                    except ProcessLookupError:
                        pass
            deadline = time.monotonic() + self.config.stop_timeout_s
            killed: list[_Slot] = []
            for slot in self.slots:
                if slot.proc is None:
                    continue
                try:
                    slot.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning("worker %s did not stop in %.0f s: killing it",
                                slot.spec.worker_id, self.config.stop_timeout_s)
                    slot.proc.kill()
                    slot.proc.wait(5)
                    killed.append(slot)
            for slot in self.slots:
                if slot.recovering is not None:
                    slot.recovering.join(60)
            for slot in killed:
                self._run_recovery(slot)
            for slot in self.slots:
                self._close_log(slot)
            if kam is not None:
                kam.stop()
            self._emit(PoolEvent("pool_stopped"))

    # ------------------------------------------------------------------ workers
    def _slot(self, worker_id: str) -> _Slot:
        for s in self.slots:
            if s.spec.worker_id == worker_id:
                return s
        raise KeyError(worker_id)

    def _start_worker(self, slot: _Slot) -> None:
        spec = slot.spec
        spec.work_dir.mkdir(parents=True, exist_ok=True)
        launch = self.worker_cmd(spec)
        if not isinstance(launch, WorkerLaunch):
            launch = WorkerLaunch(list(launch))
        env = None
        if launch.env:
            env = dict(os.environ)
            env.update(launch.env)
        self._close_log(slot)
        log_path = launch.log_path or spec.work_dir / "worker.log"
        rotate_if_large(log_path)
        slot.log_fh = open(log_path, "ab")
        slot.proc = subprocess.Popen(
            [str(a) for a in launch.argv], env=env, cwd=launch.cwd, stdin=subprocess.DEVNULL,
            stdout=slot.log_fh, stderr=subprocess.STDOUT, start_new_session=True)
        slot.started_at = time.monotonic()
        slot.ready = False
        slot.restart_at = None
        log.info("worker %s started (pid %d, %s:%d)", spec.worker_id, slot.proc.pid,
                 spec.host, spec.port)
        self._emit(PoolEvent("worker_started", spec.worker_id, slot.proc.pid))

    def _check_ready(self, slot: _Slot) -> None:
        if slot.ready or slot.proc is None or slot.proc.poll() is not None:
            return
        if sip_options_ping(slot.spec.host, slot.spec.port, 0.3) is not None:
            slot.ready = True
            log.info("worker %s answers on %s:%d", slot.spec.worker_id, slot.spec.host,
                     slot.spec.port)
            self._emit(PoolEvent("worker_ready", slot.spec.worker_id, slot.proc.pid))
            if self.kamailio is not None and self.kamailio.alive():
                self._set_state(slot, "ap")

    def _tick_slot(self, slot: _Slot, now: float) -> None:
        if slot.proc is not None:
            rc = slot.proc.poll()
            if rc is None:
                if not slot.ready and now - slot.started_at > 0.3:
                    self._check_ready(slot)
                return
            self._on_worker_exit(slot, rc, now)
            return
        if slot.recovering is not None:
            if slot.recovering.is_alive():
                return
            slot.recovering = None
        if slot.restart_at is not None and now >= slot.restart_at:
            slot.restarts += 1
            try:
                self._start_worker(slot)
            except Exception as e:  # factory or exec failure: keep supervising, retry later
                log.error("worker %s could not be restarted: %s", slot.spec.worker_id, e)
                self._emit(PoolEvent("worker_start_failed", slot.spec.worker_id, None, str(e)))
                slot.proc = None
                slot.backoff = min(max(slot.backoff, self.config.backoff_initial_s) * 2,
                                   self.config.backoff_max_s)
                slot.restart_at = now + slot.backoff

    def _on_worker_exit(self, slot: _Slot, rc: int, now: float) -> None:
        spec = slot.spec
        pid = slot.proc.pid if slot.proc else None
        ran = now - slot.started_at
        slot.proc = None
        slot.ready = False
        slot.exits.append(rc)
        self._close_log(slot)
        log.warning("worker %s (pid %s) exited with %s after %.1f s", spec.worker_id, pid, rc, ran)
        self._emit(PoolEvent("worker_exited", spec.worker_id, pid, f"returncode={rc}"))
        self._set_state(slot, "ip")  # kamailio: stop routing new calls to it now
        self._end_dead_dialogs(slot)
        if ran >= self.config.backoff_reset_s or slot.backoff == 0:
            slot.backoff = self.config.backoff_initial_s
        else:
            slot.backoff = min(slot.backoff * 2, self.config.backoff_max_s)
        slot.restart_at = now + slot.backoff
        if self.recover is not None:
            t = threading.Thread(target=self._run_recovery, args=(slot,),
                                 name=f"recover-{spec.worker_id}", daemon=True)
            slot.recovering = t
            t.start()

    def _end_dead_dialogs(self, slot: _Slot) -> None:
        """The calls a dead worker had answered: kamailio still holds their dialogs (and counts them
        in the worker's call load) while the callers hear silence. Taken now, before the restarted
        worker answers new calls on the same address, and hung up on a helper thread."""
        kam = self.kamailio
        if kam is None or not kam.alive():
            return
        try:
            dialogs = kam.worker_dialogs(slot.backend)
        except (KamailioError, OSError, subprocess.SubprocessError) as e:
            log.warning("dialogs of dead worker %s not listed: %s", slot.spec.worker_id, e)
            return
        if not dialogs:
            return
        worker_id = slot.spec.worker_id

        def _end() -> None:
            try:
                n = kam.end_dialogs(dialogs)
            except OSError as e:
                log.warning("dialogs of dead worker %s not ended: %s", worker_id, e)
                return
            log.warning("worker %s: %d of %d call(s) it held hung up (BYE to the callers)", worker_id, n,
                        len(dialogs))
            self._emit(PoolEvent("worker_dialogs_ended", worker_id, None, f"{n}/{len(dialogs)}"))

        threading.Thread(target=_end, name=f"bye-{worker_id}", daemon=True).start()

    def _run_recovery(self, slot: _Slot) -> None:
        if self.recover is None:
            return
        try:
            result = self.recover(slot.spec)
        except Exception as e:  # the hook must never stop supervision
            log.exception("spool recovery for worker %s failed", slot.spec.worker_id)
            self._emit(PoolEvent("recovery_failed", slot.spec.worker_id, None, str(e)))
            return
        n = len(result) if isinstance(result, (list, tuple)) else None
        self._emit(PoolEvent("worker_recovered", slot.spec.worker_id, None,
                             "" if n is None else f"recordings={n}"))

    def _close_log(self, slot: _Slot) -> None:
        if slot.log_fh is not None:
            try:
                slot.log_fh.close()
            except OSError:
                pass
            slot.log_fh = None

    def _set_state(self, slot: _Slot, state: str) -> None:
        kam = self.kamailio
        if kam is None or not kam.alive():
            return
        try:
            kam.set_backend_state(slot.backend, state)
        except (KamailioError, OSError, subprocess.SubprocessError) as e:
            log.warning("kamailio state %s for %s not set: %s", state, slot.spec.worker_id, e)

    # ------------------------------------------------------------------ kamailio
    def kamailio_config(self) -> KamailioConfig | None:
        base = self.config.kamailio
        if base is None:
            return None
        return replace(base, backends=[s.backend for s in self.slots])

    def _start_kamailio(self) -> None:
        cfg = self.kamailio_config()
        assert cfg is not None
        self.kamailio = KamailioProcess(cfg, kamailio_bin=self.config.kamailio_bin,
                                        kamcmd_bin=self.config.kamcmd_bin)
        self.kamailio.start()
        self._kam_started_at = time.monotonic()
        self._kam_restart_at = None
        for slot in self.slots:  # workers not up yet are taken out until they answer
            if not slot.ready:
                self._set_state(slot, "ip")
        log.info("kamailio started (pid %s) on %s:%d", self.kamailio.pid, cfg.listen_host,
                 cfg.listen_port)
        self._emit(PoolEvent("kamailio_started", "", self.kamailio.pid))

    def _tick_kamailio(self, now: float) -> None:
        kam = self.kamailio
        if kam is None:
            return
        if self._kam_restart_at is None:
            if kam.alive():
                return
            rc = kam.proc.returncode if kam.proc else None
            log.error("kamailio exited with %s; see %s", rc, kam.log_path())
            self._emit(PoolEvent("kamailio_exited", "", kam.pid, f"returncode={rc}"))
            kam.stop()
            ran = now - self._kam_started_at
            if ran >= self.config.backoff_reset_s or self._kam_backoff == 0:
                self._kam_backoff = self.config.backoff_initial_s
            else:
                self._kam_backoff = min(self._kam_backoff * 2, self.config.backoff_max_s)
            self._kam_restart_at = now + self._kam_backoff
            return
        if now >= self._kam_restart_at:
            try:
                self._start_kamailio()
            except KamailioError as e:
                log.error("kamailio restart failed: %s", e)
                self._kam_backoff = min(max(self._kam_backoff, 0.5) * 2, self.config.backoff_max_s)
                self._kam_restart_at = time.monotonic() + self._kam_backoff

    # ------------------------------------------------------------------ events
    def _emit(self, ev: PoolEvent) -> None:
        self.events.append(ev)
        if self.on_event is not None:
            try:
                self.on_event(ev)
            except Exception:
                log.exception("pool event callback failed")


def spool_recovery(spool_dir_of: Callable[[WorkerSpec], Path],
                   recordings_dir: Path | Callable[[WorkerSpec], Path],
                   sink_of: Callable[[WorkerSpec], object]) -> RecoverFn:
    """A recovery hook running the worker package's own spool recovery
    (``telephony.recovery.recover_spool``) on a dead worker's spool before it restarts.

    ``sink_of(spec)`` returns the EventSink that receives the recovered recordings' events
    (e.g. the database sink, or a JSON-lines sink on the worker's events file); if it has a
    ``close()`` method it is closed after the recovery."""

    def _recover(spec: WorkerSpec):
        from telephony.recovery import recover_spool

        rec_dir = recordings_dir(spec) if callable(recordings_dir) else recordings_dir
        sink = sink_of(spec)
        try:
            return recover_spool(Path(spool_dir_of(spec)), Path(rec_dir), sink,
                                 worker_id=spec.worker_id)
        finally:
            close = getattr(sink, "close", None)
            if callable(close):
                close()

    return _recover
