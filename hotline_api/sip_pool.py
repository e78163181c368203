"""Pool mode of the SIP part: kamailio on the public SIP port (trunk ACL, flood limit, registrar for operator softphones) in front of ``sip_workers`` pjsua2
worker processes (``hotline sip-worker --ipc``), supervised by
``telephony.pool.Pool``. The workers are lean: they report their events and ask their routing
questions over a Unix socket to this process (``telephony.ipc``), which alone writes the database. A dead worker is taken out of kamailio's routing, its spool is recovered
into the database (recordings marked ``recovered``, then encrypted, assigned and queued like any
other), and it is restarted."""
from __future__ import annotations

import logging
import os
import sys
import threading

from hotline_api.core.config import Settings

log = logging.getLogger("hotline.sip_pool")


def kamailio_config(settings: Settings):
    from telephony.kamailio import KamailioConfig
    from telephony.routing import registrar_extension

    return KamailioConfig(
        run_dir=settings.run_dir / "sip" / "kamailio", listen_host=settings.sip_host, listen_port=settings.sip_port,
        trunk_allow=settings.trunk_allow, hotline_numbers=[settings.hotline_number],
        max_concurrent_calls=settings.max_concurrent_calls, max_call_seconds=settings.max_call_seconds,
        pike_reqs_per_interval=settings.pike_reqs_per_interval, pike_interval_s=settings.pike_interval_s,
        reserved_legs=settings.sip_reserved_legs,
        extensions=[registrar_extension(settings.sip_registrar_realm)],  # operator softphones REGISTER here
    )


def pool_config(settings: Settings):
    from telephony.pool import PoolConfig

    return PoolConfig(run_dir=settings.run_dir / "sip", workers=settings.sip_workers,
                      worker_base_port=settings.sip_worker_base_port, kamailio=kamailio_config(settings))


def ipc_path(settings: Settings):
    """The supervisor's socket for its workers' events and routing questions (owner-only)."""
    return settings.run_dir / "sip" / "workers.sock"


def worker_launch(spec, ipc: str):
    from telephony.pool import WorkerLaunch

    return WorkerLaunch([sys.executable, "-m", "hotline_api.cli", "sip-worker", "--worker-id", spec.worker_id,
                         "--port", str(spec.port), "--behind-proxy", "--ipc", ipc,
                         "--parent-pid", str(os.getpid())])


def run_pool(settings: Settings, stop: threading.Event) -> None:
    from hotline_api import wiring
    from hotline_api.services import operators as ops
    from hotline_api.services.call_store import QueuedSink
    from hotline_api.sip_routing import RegistrarSync, routing_for
    from telephony.ipc import IpcServer, RoutingHandler
    from telephony.pool import Pool, spool_recovery
    from telephony.recovery import recover_orphan_spools

    factory, ctx = wiring.open_runtime(settings)
    store = wiring.build_call_store(settings, factory, ctx)
    # The workers' events and routing questions come over one socket; this process alone writes
    # them to the database (one writer thread, in each worker's order).
    events = QueuedSink(store, name="call-store")
    router, hours = routing_for(settings, factory)
    for w in ops.holiday_warnings():
        log.warning("holiday data: %s", w)
    server = IpcServer(ipc_path(settings), events, RoutingHandler(router, hours))
    recover = spool_recovery(lambda spec: settings.spool_dir / spec.worker_id,
                             settings.recordings_dir / "incoming",
                             lambda spec: QueuedSink(store, name=f"recover-{spec.worker_id}"))
    registrar: RegistrarSync | None = None

    def on_event(ev) -> None:
        if ev.kind == "kamailio_started" and registrar is not None:
            registrar.request_full_sync()  # a (re)started kamailio has an empty credential table

    pool = Pool(pool_config(settings), lambda spec: worker_launch(spec, str(ipc_path(settings))), recover=recover,
                on_event=on_event)
    # spools of workers this pool no longer has (HOTLINE_SIP_WORKERS lowered): nobody else recovers them
    recover_orphan_spools(settings.spool_dir, {spec.worker_id for spec in pool.specs},
                          settings.recordings_dir / "incoming", events)
    registrar = RegistrarSync(factory, lambda *args: pool.kamailio.rpc(*args))
    threading.Thread(target=registrar.run, args=(stop,), name="registrar-sync", daemon=True).start()
    try:
        pool.run(stop)
    finally:
        server.close()
        events.close()
