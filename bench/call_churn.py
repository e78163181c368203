#!/usr/bin/env python3
"""bench/call_churn: one worker, many short calls in a row (up to 3 at once), optionally with the
CPU loaded by busy loops. Prints calls answered / ended / completely recorded, whether the worker
is still alive, how many sink ports it created, and the wall time.

This is the long version of tests/telephony/test_port_pool_sip.py. Before the fixes recorded in
bench/RESULTS.md ("Call churn"), a worker under load lost a call or two per few hundred (the next
caller was hung up when a BYE and an INVITE were read in one poll) and crashed after 700-800
calls (an AudioMediaPort destroyed while the bridge still delivered frames to it).

    .venv/bin/python bench/call_churn.py                 # 1000 calls, 2 busy loops
    .venv/bin/python bench/call_churn.py --calls 200 --busy 0
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from telephony.prompts import build_prompts  # noqa: E402
from telephony.sinks import read_jsonl  # noqa: E402
from tests.telephony.sipp_util import SIPP, call_scenario, free_even_port_pair, free_port  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--busy", type=int, default=2, help="busy-loop processes loading the CPU meanwhile")
    ap.add_argument("--rate", type=float, default=8.0, help="call setups per second")
    args = ap.parse_args()
    if SIPP is None:
        print("sipp is not installed", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="churn-"))
    prompts = base / "prompts"
    prompts.mkdir()
    build_prompts(prompts)
    port = free_port()
    cfg = {"worker_id": "churn", "sip_host": "127.0.0.1", "sip_port": port, "hotline_number": "12388",
           "trunk_allow": ["127.0.0.0/8"], "spool_dir": str(base / "spool"), "recordings_dir": str(base / "rec"),
           "prompts_dir": str(prompts), "pjsip_log_level": 1}
    (base / "worker.json").write_text(json.dumps(cfg))
    events, log_path = base / "events.jsonl", base / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "telephony.worker", "--config", str(base / "worker.json"),
                                   "--events", str(events)], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    while "listening on" not in log_path.read_text(errors="replace"):
        if worker.poll() is not None:
            print(log_path.read_text(errors="replace")[-2000:], file=sys.stderr)
            return 1
        time.sleep(0.2)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    scenario = re.sub(r'<pause milliseconds="\d+"/>', '<pause distribution="uniform" min="0" max="1200"/>',
                      call_scenario(None, hold_ms=500))
    (base / "churn.xml").write_text(scenario)
    t0 = time.monotonic()
    sipp = subprocess.Popen([SIPP, f"127.0.0.1:{port}", "-sf", str(base / "churn.xml"), "-i", "127.0.0.1",
                             "-mi", "127.0.0.1", "-p", str(free_port()), "-mp", str(free_even_port_pair("127.0.0.1")),
                             "-m", str(args.calls), "-l", "3", "-r", str(args.rate), "-nostdin", "-trace_err",
                             "-error_file", str(base / "sipp_errors.log"), "-timeout", "900s",
                             "-recv_timeout", "20s"], cwd=base, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        while sipp.poll() is None:
            time.sleep(5)
            evs = read_jsonl(events)
            print(f"  {time.monotonic() - t0:5.0f} s: {sum(e['type'] == 'CallEnded' for e in evs)} calls ended",
                  flush=True)
    finally:
        for b in busy:
            b.kill()
    deadline = time.monotonic() + 30
    while True:
        evs = read_jsonl(events)
        answered = sum(e["type"] == "CallAnswered" for e in evs)
        ended = sum(e["type"] == "CallEnded" for e in evs)
        done = [e for e in evs if e["type"] == "RecordingCompleted"]
        complete = sum(e["status"] == "complete" for e in done)
        empty = sum(e["status"] == "empty" for e in done)  # hung up before the first frame (pause 0)
        if len(done) >= answered or time.monotonic() > deadline:
            break
        time.sleep(1)
    wall = time.monotonic() - t0
    alive = worker.poll() is None
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(30)
    except subprocess.TimeoutExpired:
        worker.kill()
    text = log_path.read_text(errors="replace")
    m = re.search(r"(\d+) sink port\(s\) served", text)
    print(f"machine: {platform.node()} {platform.machine()}, {platform.processor() or 'cpu'}")
    print(f"calls: {args.calls} (3 at once, {args.rate} setups/s, {args.busy} busy loops); sipp exit {sipp.returncode}")
    print(f"answered {answered}, ended {ended}, recordings complete {complete} + empty {empty} (caller gone "
          f"before the first frame), other {len(done) - complete - empty}; worker alive at the end: {alive}")
    print(f"crash in the worker log: {'Fatal Python error' in text}; sink ports created: {m.group(1) if m else '?'}")
    print(f"wall time {wall:.0f} s; files in {base}")
    return 0 if (alive and answered == ended == complete + empty == args.calls) else 1


if __name__ == "__main__":
    sys.exit(main())
