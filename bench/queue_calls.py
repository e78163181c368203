#!/usr/bin/env python3
"""bench/queue: many callers queued for a few operators, through the real routing path.

``--callers`` sipp callers (default 50, all placed within a few seconds) reach ``--workers``
agent workers (``python -m hotline_api.sip_routing``: DB router, DB working hours -- the clock is
set to a working-day morning -- and the DB event sink; each worker admits 2 callers, keeping a leg
for the operator), which share ``--operators`` operator softphones (pjsua2 auto-answer clients on
static URIs, default 5) through the database. An operator talks ``--talk`` seconds and hangs up;
the hotline then says goodbye and ends the call. A caller waits at most ``--patience`` seconds
for that, then hangs up (abandoned unless already bridged).

Prints: callers / bridged / abandoned; time to answer (queue entry -> bridged: p50, p90, max);
agent CPU (all workers: CPU seconds, average cores, per bridged call) and RSS.

    .venv/bin/python bench/queue_calls.py                       # 50 callers, 5 operators, 25 workers
    .venv/bin/python bench/queue_calls.py --callers 10 --operators 2 --workers 5 --talk 4   # quick check
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.telephony.sipp_util import (_ACK2XX, _BYE, _HEAD, ANSWER_BYE, _invite, free_even_port_pair,  # noqa: E402
                                      free_port)

PY = sys.executable


def scenario(patience_ms: int) -> str:
    """Wait for the hotline's BYE (operator done); after ``patience_ms`` hang up ourselves."""
    x = _HEAD.format(name="queued caller") + _invite("12388", ["PCMU", "telephone-event"], None)
    x += """  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true" crlf="true" rrs="true"/>
"""
    x += _ACK2XX.format(dialled="12388")
    x += f'  <recv request="BYE" timeout="{patience_ms}" ontimeout="giveup"/>\n' + ANSWER_BYE
    x += """  <nop next="done"/>
  <label id="giveup"/>
"""
    x += _BYE.format(dialled="12388", cseq=2)
    x += '  <label id="done"/>\n'
    return x + "</scenario>\n"


def cpu_seconds(pid: int) -> float:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        tck = os.sysconf("SC_CLK_TCK")
        return (int(f[11]) + int(f[12])) / tck
    except (OSError, IndexError, ValueError):
        return 0.0


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--callers", type=int, default=50)
    ap.add_argument("--operators", type=int, default=5)
    ap.add_argument("--workers", type=int, default=0, help="default: callers / 2")
    ap.add_argument("--talk", type=float, default=8.0, help="seconds an operator talks")
    ap.add_argument("--patience", type=float, default=150.0, help="seconds a caller waits before giving up")
    ap.add_argument("--spread", type=float, default=5.0, help="callers arrive over this many seconds")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    ap.add_argument("--no-write", action="store_true", help="do not append to bench/RESULTS.md")
    args = ap.parse_args()
    workers = args.workers or (args.callers + 1) // 2
    if not shutil.which("sipp"):
        print("sipp (Debian sip-tester) is needed", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="bench-queue-"))
    data = tmp / "var"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}, "HOTLINE_DATA_DIR": str(data),
           "PYTHONUNBUFFERED": "1"}
    procs: list[subprocess.Popen] = []
    try:
        from hotline_api.core.config import Settings, set_settings

        settings = Settings.load(env={"HOTLINE_DATA_DIR": str(data)})
        settings.ensure_dirs()
        set_settings(settings)
        from hotline_api.db import migrate
        from hotline_api.db.session import session_factory

        migrate.upgrade(settings.db_url)
        sessions = session_factory(settings.db_url)
        print(f"[bench] {args.callers} callers, {args.operators} operators, {workers} workers, talk {args.talk} s",
              file=sys.stderr)
        from telephony.prompts import build_prompts
        from telephony.routing import build_extra_prompts

        build_prompts(settings.prompts_dir)
        build_extra_prompts(settings.prompts_dir)
        # operators
        import hotline_api.models.governance  # noqa: F401
        import hotline_api.models.operators  # noqa: F401
        from hotline_api.services import operators as ops
        from hotline_api.services.auth import create_user

        op_ports = []
        for i in range(args.operators):
            p = subprocess.Popen([PY, str(REPO / "tests/telephony/test_queue_opclient.py"), "--port", "0",
                                  "--mode", "answer", "--answer-after", "0.3", "--hangup-after", str(args.talk)],
                                 cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                 start_new_session=True)
            procs.append(p)
            while True:
                raw = p.stdout.readline()
                if not raw:
                    raise RuntimeError("operator client did not start")
                if raw.startswith("{"):
                    op_ports.append(json.loads(raw)["port"])
                    break
            threading.Thread(target=lambda s=p.stdout: [None for _ in s], daemon=True).start()
        with sessions() as s:
            for i, port in enumerate(op_ports):
                u, _ = create_user(s, f"bench_op{i}", "operator", "correct-horse-battery")
                op = ops.ensure_operator(s, u, contacts=[{"kind": "static", "uri": f"sip:op@127.0.0.1:{port}"}])
                ops.set_state(s, op, "available")
            s.commit()
        # workers
        wprocs, targets = [], []
        for i in range(workers):
            port = free_port()
            cfg = {"worker_id": f"b{i}", "sip_host": "127.0.0.1", "sip_port": port,
                   "spool_dir": str(settings.spool_dir / f"b{i}"), "recordings_dir": str(settings.recordings_dir),
                   "prompts_dir": str(settings.prompts_dir), "ring_timeout_s": 10, "queue_max_wait_s": 3600,
                   "transports": ["udp"]}
            cp = tmp / f"w{i}.json"
            cp.write_text(json.dumps(cfg))
            p = subprocess.Popen([PY, "-m", "hotline_api.sip_routing", "--config", str(cp), "--wrap-up-seconds", "0",
                                  "--events", str(tmp / f"w{i}.events.jsonl"),
                                  "--clock-start", "2026-03-10T09:30:00+08:00", "--log-level", "WARNING"],
                                 cwd=REPO, env=env, stdout=open(tmp / f"w{i}.log", "wb"), stderr=subprocess.STDOUT,
                                 start_new_session=True)
            procs.append(p)
            wprocs.append(p)
            targets.append(f"127.0.0.1:{port}")
        from telephony.kamailio import sip_options_ping

        deadline = time.monotonic() + 120
        for p, t in zip(wprocs, targets):  # every worker answers SIP before the callers come
            host, port = t.split(":")
            while sip_options_ping(host, int(port), 0.5) is None:
                if p.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker on {t} did not start")
                time.sleep(0.2)
        print(f"[bench] {workers} workers ready", file=sys.stderr)
        cpu0 = {p.pid: cpu_seconds(p.pid) for p in wprocs}
        # callers: one sipp per caller, spread over --spread seconds
        sx = tmp / "caller.xml"
        sx.write_text(scenario(int(args.patience * 1000)))
        t0 = time.monotonic()
        callers = []
        for i in range(args.callers):
            at = t0 + args.spread * i / max(1, args.callers)
            time.sleep(max(0.0, at - time.monotonic()))
            d = tmp / f"sipp{i}"
            d.mkdir()
            target = targets[i % len(targets)]
            callers.append(subprocess.Popen(
                ["sipp", target, "-sf", str(sx), "-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", str(free_port("udp")),
                 "-mp", str(free_even_port_pair()), "-m", "1", "-l", "1", "-nostdin", "-timeout",
                 f"{int(args.patience + 120)}s", "-recv_timeout", f"{int(args.patience * 1000 + 60000)}"],
                cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        peak_rss = 0.0
        while any(c.poll() is None for c in callers):
            peak_rss = max(peak_rss, sum(rss_mb(p.pid) for p in wprocs))
            time.sleep(1.0)
            el = time.monotonic() - t0
            if int(el) % 15 == 0:
                left = sum(1 for c in callers if c.poll() is None)
                print(f"[bench] {el:.0f} s: {left} caller(s) still on the line", file=sys.stderr)
        wall = time.monotonic() - t0
        cpu = sum(cpu_seconds(p.pid) - cpu0[p.pid] for p in wprocs)
        from sqlalchemy import select

        from hotline_api.models.calls import Call
        from hotline_api.models.operators import CallEvent

        end = time.monotonic() + 30
        while time.monotonic() < end:  # last events reach the DB
            with sessions() as s:
                calls = s.execute(select(Call)).scalars().all()
            if len(calls) >= args.callers and all(c.ended_at for c in calls):
                break
            time.sleep(1.0)
        with sessions() as s:
            calls = s.execute(select(Call)).scalars().all()
            bridged = s.execute(select(CallEvent).where(CallEvent.type == "bridged")).scalars().all()
        # the agents' own event streams (JSON lines beside the DB sink) are the reference
        from telephony.sinks import read_jsonl

        evs = [e for i in range(workers) for e in read_jsonl(tmp / f"w{i}.events.jsonl")]
        ended = [e for e in evs if e["type"] == "CallEnded"]
        waits = [e["wait_s"] for e in evs if e["type"] == "CallBridged"]
        abandoned = sum(1 for e in ended if e["status"] == "abandoned")
        statuses: dict[str, int] = {}
        for e in ended:
            statuses[e["status"]] = statuses.get(e["status"], 0) + 1
        failed_sipp = sum(1 for c in callers if c.returncode != 0)
        lines = [
            f"callers: {args.callers}, calls ended: {len(ended)} ({', '.join(f'{k} {v}' for k, v in sorted(statuses.items()))}), "
            f"bridged to an operator: {len(waits)}, abandoned (hung up before an operator): {abandoned}, "
            f"sipp calls failed: {failed_sipp}",
            f"DB sink (CallStore, SQLite): {len(calls)} call rows, {len(bridged)} 'bridged' live events stored "
            f"of {len(ended)} calls / {len(waits)} bridges",
            f"time to answer (queue -> bridged) s: p50 {pct(waits, 0.5):.1f}, p90 {pct(waits, 0.9):.1f}, "
            f"max {max(waits) if waits else float('nan'):.1f}",
            f"agent CPU ({workers} workers): {cpu:.1f} s over {wall:.0f} s = {cpu / wall:.2f} cores; "
            f"{cpu / max(1, len(calls)):.2f} CPU s per call; peak RSS {peak_rss:.0f} MB",
        ]
        for ln in lines:
            print(ln)
        res = REPO / "bench" / "RESULTS.md"
        if args.no_write:
            return 0
        with open(res, "a", encoding="utf-8") as f:
            f.write(f"\n## bench/queue_calls.py — {args.callers} callers, {args.operators} operators "
                    f"({time.strftime('%Y-%m-%d %H:%M')})\n\n")
            f.write(f"{workers} workers (2 callers each), talk {args.talk} s, patience {args.patience} s, "
                    f"arrivals over {args.spread} s; {platform.node()}, {os.cpu_count()} cores; "
                    f"load before: {os.getloadavg()[0]:.1f}\n\n")
            for ln in lines:
                f.write(f"- {ln}\n")
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, 15)
                except ProcessLookupError:
                    pass
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"[bench] data kept in {tmp}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
