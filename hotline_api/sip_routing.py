"""Composition root for call routing: the telephony Router / OpenHours interfaces implemented over
the database, and a worker entry that runs one agent worker with the DB event sink.

Wiring (what ``hotline serve`` does for each worker process)::

    from hotline_api.sip_routing import routing_for, run_db_worker
    router, hours = routing_for(settings)            # DbRouter, DbOpenHours
    run_worker(cfg, sink, stop, ready, router=router, hours=hours)

or, as a process (the pool's launch function can use it as the worker argv)::

    python -m hotline_api.sip_routing --config worker.json [--events mirror.jsonl]
        [--clock-start 2026-02-17T10:00:00+08:00]    # tests: the time the hours decision sees

Both adapters are called by the agent on its routing helper threads only (never on the pjsua2
thread), so their database calls may block; each call uses its own short session.

Settings read (with defaults until they exist in ``Settings``): ``operator_wrap_up_seconds`` (30),
``queue_ring_timeout_seconds`` (20), ``queue_max_wait_seconds`` (120),
``queue_announce_every_seconds`` (20), ``attendant_menu_timeout_seconds`` (6),
``voicemail_max_seconds`` (300), ``voicemail_silence_seconds`` (5), ``voicemail_vad`` ("webrtc"),
``sip_registrar_realm`` ("12388"). Registered operator contacts are dialled as
``sip:<sip_username>@<sip_host>:<sip_port>`` (kamailio, which looks up the registration).

Registrar: kamailio's config gets ``telephony.routing.registrar_extension(realm)`` in
``KamailioConfig.extensions`` (digest auth against an in-memory htable of HA1 values, usrloc in
memory, lookup("location") for the workers' INVITEs); :class:`RegistrarSync` keeps that htable
equal to the operators' credentials in the DB over kamailio's RPC.
"""
from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Callable

from sqlalchemy.orm import Session, sessionmaker

from hotline_api.services import operators as ops
from telephony.routing import ClaimResult, OpenDecision, OperatorTarget

log = logging.getLogger("hotline.sip_routing")


def _setting(settings, name: str, default):
    return getattr(settings, name, default) if settings is not None else default


class DbRouter:
    """:class:`telephony.routing.Router` over the ``operators`` table (atomic claims across
    worker processes: see hotline_api.services.operators)."""

    def __init__(self, sessions: sessionmaker[Session], registrar: str = "", wrap_up_s: float = 30.0,
                 lease_s: float = 90.0) -> None:
        self.sessions = sessions
        self.registrar = registrar
        self.wrap_up_s = wrap_up_s
        self.lease_s = lease_s

    def claim(self, call_uuid: str, exclude: frozenset[str]) -> ClaimResult:
        with self.sessions() as s:
            c = ops.claim_longest_idle(s, call_uuid, exclude, lease_s=self.lease_s)
            if c.operator is None:
                return ClaimResult(None, c.logged_in, c.available)
            uris = tuple(ops.contact_uris(c.operator, self.registrar))
            return ClaimResult(OperatorTarget(c.operator.id, uris), c.logged_in, c.available)

    def answered(self, operator_id: str, call_uuid: str) -> None:
        with self.sessions() as s:
            ops.mark_answered(s, operator_id, call_uuid)

    def release(self, operator_id: str, call_uuid: str, outcome: str) -> None:
        with self.sessions() as s:
            ops.release(s, operator_id, call_uuid, outcome, wrap_up_s=self.wrap_up_s)


class DbOpenHours:
    """:class:`telephony.routing.OpenHours` over the weekly schedule, the open overrides and the
    holiday calendar (read at each decision: admin changes apply without restart)."""

    def __init__(self, sessions: sessionmaker[Session], default_tz: str = ops.DEFAULT_TZ) -> None:
        self.sessions = sessions
        self.default_tz = default_tz

    def is_open(self, now: datetime) -> OpenDecision:
        with self.sessions() as s:
            d = ops.is_open(s, now, self.default_tz)
        return OpenDecision(d.open, d.reason, d.provisional)


def registrar_credentials(sessions: sessionmaker[Session]) -> dict[str, str]:
    """SIP user -> digest HA1 of every operator with credentials."""
    from sqlalchemy import select

    from hotline_api.models.operators import Operator

    with sessions() as s:
        rows = s.execute(select(Operator.sip_username, Operator.sip_ha1)
                         .where(Operator.sip_username.is_not(None), Operator.sip_ha1.is_not(None))).all()
    return {u: h for u, h in rows}


class RegistrarSync:
    """Keeps kamailio's credential htable equal to the operators' SIP credentials in the DB, over
    kamailio's RPC (no restart): :meth:`sync` pushes what changed (``full=True``: everything, e.g.
    after kamailio was (re)started). Run :meth:`run` in a thread of the supervisor with the pool's
    ``KamailioProcess.rpc``; an admin's change reaches the registrar within ``interval_s``."""

    def __init__(self, sessions: sessionmaker[Session], rpc: Callable[..., str], interval_s: float = 5.0) -> None:
        self.sessions = sessions
        self.rpc = rpc
        self.interval_s = interval_s
        self._pushed: dict[str, str] = {}
        self._full = threading.Event()

    def request_full_sync(self) -> None:
        """Push every credential at the next turn (kamailio was restarted)."""
        self._full.set()

    def sync(self, full: bool = False) -> int:
        from telephony.routing import push_credentials

        want = registrar_credentials(self.sessions)
        have = {} if full else self._pushed
        delta: dict[str, str | None] = {u: h for u, h in want.items() if have.get(u) != h}
        delta.update({u: None for u in have if u not in want})
        if delta:
            push_credentials(self.rpc, delta)
            log.info("registrar: %d credential change(s) pushed to kamailio", len(delta))
        self._pushed = dict(want)
        return len(delta)

    def run(self, stop: threading.Event) -> None:
        full = True
        while not stop.is_set():
            full = full or self._full.is_set()
            self._full.clear()
            try:
                self.sync(full=full)
                full = False
            except Exception as e:  # noqa: BLE001 - kamailio restarting: push everything next time
                log.warning("registrar sync failed (%s); retrying", e)
                full = True
            self._full.wait(self.interval_s)  # a full-sync request (kamailio restarted) wakes it early


def registrar_address(settings) -> str:
    return f"{settings.sip_host}:{settings.sip_port}"


def routing_for(settings, sessions: sessionmaker[Session] | None = None) -> tuple[DbRouter, DbOpenHours]:
    from hotline_api.db.session import session_factory

    sessions = sessions or session_factory(settings.db_url)
    router = DbRouter(sessions, registrar_address(settings),
                      wrap_up_s=float(_setting(settings, "operator_wrap_up_seconds", 30)))
    return router, DbOpenHours(sessions, _setting(settings, "timezone", ops.DEFAULT_TZ))


def offset_clock(start: datetime) -> Callable[[], datetime]:
    """A clock that starts at ``start`` and runs at the wall clock's pace (tests)."""
    t0 = time.monotonic()
    start = start.astimezone(timezone.utc)
    return lambda: start + timedelta(seconds=time.monotonic() - t0)


class _Tee:
    def __init__(self, *sinks) -> None:
        self.sinks = sinks

    def publish(self, event) -> None:
        for s in self.sinks:
            try:
                s.publish(event)
            except Exception:  # noqa: BLE001 - one sink failing must not stop the other
                log.exception("event sink failed on %s", type(event).__name__)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hotline_api.sip_routing",
                                 description="12388 agent worker with DB routing, working hours and the DB event sink")
    ap.add_argument("--config", required=True, help="telephony WorkerConfig as JSON")
    ap.add_argument("--events", help="also append events to this JSON-lines file (caller and live text redacted)")
    ap.add_argument("--clock-start", help="ISO time the working-hours decision starts from (tests)")
    ap.add_argument("--wrap-up-seconds", type=float, help="override operator_wrap_up_seconds")
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import signal

    from hotline_api.core.config import get_settings
    from hotline_api.db.session import session_factory
    from hotline_api.services.call_store import CallStore, QueuedSink
    from telephony.config import WorkerConfig
    from telephony.worker import run_worker

    settings = get_settings()
    try:
        cfg = WorkerConfig.from_json_file(args.config)
        clock = offset_clock(datetime.fromisoformat(args.clock_start)) if args.clock_start else None
    except (OSError, ValueError, TypeError) as e:
        print(f"sip_routing: bad arguments: {e}", file=sys.stderr)
        return 2
    sessions = session_factory(settings.db_url)
    router, hours = routing_for(settings, sessions)
    if args.wrap_up_seconds is not None:
        router.wrap_up_s = max(0.0, args.wrap_up_seconds)
    # holiday data warnings for the admins, on the console and in the log
    today = (clock or (lambda: datetime.now(timezone.utc)))().date()
    for w in ops.holiday_warnings(today=today):
        print(f"WARNING: {w}", file=sys.stderr)
        log.warning("holiday data: %s", w)
    store_sink = QueuedSink(CallStore(sessions))
    sinks = [store_sink]
    jsonl = None
    if args.events:
        from telephony.sinks import JsonlSink

        jsonl = JsonlSink(args.events)
        sinks.append(jsonl)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    try:
        from hotline_api.wiring import live_transcriber_for

        run_worker(cfg, _Tee(*sinks), stop, threading.Event(), router=router, hours=hours, clock=clock,
                   live_transcriber=live_transcriber_for(settings))
    finally:
        store_sink.close()
        if jsonl is not None:
            jsonl.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
