"""Run one agent worker.

As a library (the composition root wires its own sink, e.g. the database)::

    from telephony.worker import run_worker, WorkerConfig
    run_worker(WorkerConfig(...), sink, stop_event)   # blocks; the calling thread owns pjsua2

As a process (tests, development)::

    python -m telephony.worker --config worker.json --events events.jsonl [--routing routing.json]

``--routing`` switches on the queue and the auto-attendant with in-memory operators
(:class:`telephony.routing.InMemoryRouter`) and fixed hours: ``{"open": true, "wrap_up_s": 0,
"operators": [{"id": "op1", "uris": ["sip:op1@127.0.0.1:5071"]}]}`` (operators listed longest idle
first). The database-backed router and working hours are wired by ``hotline_api.sip_routing``.

``worker.json`` holds :class:`telephony.config.WorkerConfig` fields. Events are appended to the
JSON-lines file (caller identity redacted). SIGTERM/SIGINT shut down gracefully: calls are hung
up, recordings completed, events written. After SIGKILL, the next start recovers the spool.
"""
from __future__ import annotations

import argparse
import logging
import faulthandler
import signal
import sys
import threading

from telephony.config import WorkerConfig
from telephony.events import EventSink

__all__ = ["run_worker", "WorkerConfig", "main"]


def run_worker(cfg: WorkerConfig, sink: EventSink, stop_event: threading.Event | None = None,
               ready: threading.Event | None = None, router=None, hours=None, clock=None,
               live_transcriber=None) -> None:
    """Serve calls until ``stop_event`` is set (blocks). Recovers the worker's spool first.

    ``sink.publish`` is called on this thread and must not block (wrap a slow sink in
    :class:`telephony.sinks.QueuedSink`); LiveTranscript events come from helper threads (the
    sink must be thread-safe). ``ready`` is set once the SIP transports listen.
    ``router`` (telephony.routing.Router) and ``hours`` (OpenHours) switch on the queue and the
    auto-attendant; they are called on helper threads only. ``clock`` (-> aware UTC datetime)
    is the time the working-hours decision uses. ``live_transcriber``
    (telephony.events.LiveTranscriberFactory) switches on the live transcript of the caller's
    channel (LiveTranscript events); it is called on a helper thread per call."""
    from telephony.agent import Agent

    faulthandler.enable(all_threads=True)  # a crash inside pjsip leaves every thread's stack in the log
    if hasattr(signal, "SIGUSR1"):
        # `kill -USR1 <pid>` writes every thread's stack to stderr (the worker's log), even when
        # the owner thread is stuck inside pjsip: the first thing to look at for a hung worker.
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    agent = Agent(cfg, sink, stop_event, router=router, hours=hours, clock=clock, live_transcriber=live_transcriber)
    if ready is not None:
        orig = agent.ready
        agent.ready = ready
        del orig
    agent.run()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m telephony.worker", description="12388 SIP agent worker")
    ap.add_argument("--config", required=True, help="WorkerConfig as JSON")
    ap.add_argument("--events", required=True, help="append events to this JSON-lines file")
    ap.add_argument("--routing", help="in-memory operators and fixed hours as JSON (see module doc)")
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = WorkerConfig.from_json_file(args.config)
    except (OSError, ValueError, TypeError) as e:
        print(f"telephony.worker: bad config {args.config}: {e}", file=sys.stderr)
        return 2
    router = hours = None
    if args.routing:
        import json

        from telephony.routing import FixedHours, InMemoryRouter

        try:
            data = json.loads(open(args.routing, encoding="utf-8").read())
            router = InMemoryRouter.from_mapping(data)
            hours = FixedHours(bool(data.get("open", True)), str(data.get("reason", "")))
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"telephony.worker: bad routing file {args.routing}: {e}", file=sys.stderr)
            return 2
    from telephony.sinks import JsonlSink

    sink = JsonlSink(args.events)
    stop = threading.Event()

    def _stop(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    ready = threading.Event()
    try:
        run_worker(cfg, sink, stop, ready, router=router, hours=hours)
    finally:
        sink.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
