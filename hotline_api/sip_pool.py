"""Pool mode of the SIP part: kamailio on the public SIP port (trunk ACL, flood limit, registrar for operator softphones) in front of ``sip_workers`` pjsua2
worker processes (``hotline sip-worker``, each with the database sink), supervised by
``telephony.pool.Pool``: a dead worker is taken out of kamailio's routing, its spool is recovered
into the database (recordings marked ``recovered``, then encrypted, assigned and queued like any
other), and it is restarted."""
from __future__ import annotations

import os
import sys
import threading

from hotline_api.core.config import Settings


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


def worker_launch(spec):
    from telephony.pool import WorkerLaunch

    return WorkerLaunch([sys.executable, "-m", "hotline_api.cli", "sip-worker", "--worker-id", spec.worker_id,
                         "--port", str(spec.port), "--behind-proxy",
                         "--parent-pid", str(os.getpid())])


def run_pool(settings: Settings, stop: threading.Event) -> None:
    from hotline_api import wiring
    from hotline_api.services.call_store import QueuedSink
    from hotline_api.sip_routing import RegistrarSync
    from telephony.pool import Pool, spool_recovery

    factory, ctx = wiring.open_runtime(settings)
    store = wiring.build_call_store(settings, factory, ctx)
    recover = spool_recovery(lambda spec: settings.spool_dir / spec.worker_id,
                             settings.recordings_dir / "incoming",
                             lambda spec: QueuedSink(store, name=f"recover-{spec.worker_id}"))
    registrar: RegistrarSync | None = None

    def on_event(ev) -> None:
        if ev.kind == "kamailio_started" and registrar is not None:
            registrar.request_full_sync()  # a (re)started kamailio has an empty credential table

    pool = Pool(pool_config(settings), worker_launch, recover=recover, on_event=on_event)
    registrar = RegistrarSync(factory, lambda *args: pool.kamailio.rpc(*args))
    threading.Thread(target=registrar.run, args=(stop,), name="registrar-sync", daemon=True).start()
    pool.run(stop)
