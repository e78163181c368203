"""`hotline serve [--only sip,api,pipeline,worker,scheduler]`.

Without ``--only`` the command supervises one child process per part (``hotline serve --only X``),
restarting a part that dies. With ``--only`` it runs the named parts in this process (one part) or
supervises them (several). Parts share the database and the data dir, so they can also run on
separate machines.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time

from hotline_api.cli import CliError
from hotline_api.core.config import get_settings

log = logging.getLogger("hotline.serve")
PARTS = ("sip", "api", "pipeline", "worker", "scheduler")


def register(sub) -> None:
    p = sub.add_parser("serve", help="run the service (SIP agent, API, recording pipeline, ASR worker, scheduler)")
    p.add_argument("--only", default="", help="comma-separated parts to run: " + ",".join(PARTS))
    p.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)  # set by the supervisor
    p.set_defaults(func=_serve)
    w = sub.add_parser("sip-worker", help="one pjsua2 agent worker (started by `hotline serve` behind kamailio)")
    sip_worker_arguments(w)


def sip_worker_arguments(w: argparse.ArgumentParser) -> argparse.ArgumentParser:
    w.add_argument("--worker-id", required=True)
    w.add_argument("--port", type=int, required=True, help="loopback SIP port of this worker")
    w.add_argument("--behind-proxy", action="store_true", help="trust X-Hotline-Source from kamailio on 127.0.0.1")
    w.add_argument("--parent-pid", type=int, default=None,
                   help="stop (gracefully, finishing the recordings) when this supervising process is gone")
    w.add_argument("--ipc", default=None, metavar="SOCKET",
                   help="report events and ask routing questions over the supervisor's socket (no database "
                        "stack in this process); without it the worker writes the database itself")
    w.set_defaults(func=_sip_worker)
    return w


def sip_worker_main(argv: list[str]) -> int:
    """`hotline sip-worker ...` without building the whole CLI (which imports every command's
    modules): a pool worker starts small and fast."""
    import logging as _logging

    args = sip_worker_arguments(argparse.ArgumentParser(prog="hotline sip-worker")).parse_args(argv)
    _logging.basicConfig(level=_logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return _sip_worker(args)


def _install_stop_signals(stop: threading.Event) -> None:
    def _on_signal(signum, _frame):
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)


def watch_parent(parent_pid: int | None, stop: threading.Event, interval_s: float = 1.0) -> None:
    """A child started by a supervisor (the SIP pool, `hotline serve`) must not outlive it: when the
    supervisor is killed (SIGKILL, OOM) nobody would stop the child, and an orphaned SIP worker or
    part keeps ports, calls and spool files nobody supervises. Re-parenting (getppid() changes) is the
    sign; the child then stops the way SIGTERM would stop it, finishing its recordings."""
    if not parent_pid:
        return

    def _watch() -> None:
        while not stop.wait(interval_s):
            if os.getppid() != parent_pid:
                log.warning("supervising process %d is gone: stopping", parent_pid)
                stop.set()
                return

    threading.Thread(target=_watch, name="parent-watch", daemon=True).start()


def _sip_worker(args) -> int:
    from hotline_api import wiring

    stop = threading.Event()
    _install_stop_signals(stop)
    watch_parent(args.parent_pid, stop)
    if args.ipc:
        wiring.run_ipc_sip_worker(get_settings(), args.worker_id, args.port, args.behind_proxy, args.ipc, stop)
    else:
        wiring.run_sip_worker(get_settings(), args.worker_id, args.port, args.behind_proxy, stop)
    return 0


def _parts(only: str) -> list[str]:
    if not only:
        return list(PARTS)
    parts = [p.strip() for p in only.split(",") if p.strip()]
    bad = [p for p in parts if p not in PARTS]
    if bad:
        raise CliError(f"unknown part(s) {', '.join(bad)}; choose from {', '.join(PARTS)}")
    return parts


def _serve(args) -> int:
    from hotline_api import wiring

    settings = get_settings()
    parts = _parts(args.only)
    if args.only and "sip" in parts and "pipeline" not in parts and args.parent_pid is None:
        log.warning("--only %s has no pipeline part: recordings are stored, assigned and queued only where a "
                    "`pipeline` part runs (on this or another machine sharing the database); add it to --only, "
                    "`hotline pipeline status` shows what waits", args.only)
    from hotline_api.core.runlock import hold_service_lock

    settings.ensure_dirs()
    hold_service_lock(settings)  # `keys rotate --field-key` refuses while any serve process lives
    wiring.prepare(settings)  # dirs, migrations, keys check, prompts: fails fast before any part starts
    stop = threading.Event()
    _install_stop_signals(stop)
    watch_parent(args.parent_pid, stop)
    if len(parts) == 1:
        wiring.run_part(parts[0], settings, stop)
        return 0
    return _supervise(parts, stop)


def _supervise(parts: list[str], stop: threading.Event) -> int:
    """Run each part as `hotline serve --only PART`; restart a part that exits, with backoff."""
    children: dict[str, subprocess.Popen] = {}
    backoff: dict[str, float] = {p: 1.0 for p in parts}
    started: dict[str, float] = {}

    def start(part: str) -> None:
        cmd = [sys.executable, "-m", "hotline_api.cli", "serve", "--only", part, "--parent-pid", str(os.getpid())]
        children[part] = subprocess.Popen(cmd)
        started[part] = time.monotonic()
        log.info("started part %s (pid %d)", part, children[part].pid)

    for p in parts:
        start(p)
    try:
        while not stop.wait(0.5):
            for part, proc in list(children.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                ran = time.monotonic() - started[part]
                backoff[part] = 1.0 if ran > 30 else min(backoff[part] * 2, 30.0)
                log.error("part %s exited with %s after %.0f s; restarting in %.0f s", part, rc, ran, backoff[part])
                if stop.wait(backoff[part]):
                    break
                start(part)
    finally:
        for proc in children.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 15
        for proc in children.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0
