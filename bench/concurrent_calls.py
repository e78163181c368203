#!/usr/bin/env python3
"""bench/concurrent_calls: many simultaneous recorded calls through kamailio to the worker pool.

sipp places calls at ``--rate`` call setups/s up to N concurrent calls, each streaming RTP audio
(an 8 kHz u-law file synthesised at run time with espeak-ng + sox, looped) for ``--hold``
seconds, through kamailio to a pool of real pjsua2 workers (``python -m telephony.worker``, 4
legs each). For each N it prints calls attempted / answered / completely recorded, and the CPU
and RSS of the workers and kamailio together; a step search (default 25, 50, 75, 100, 125, stop
at the first N that is not fully recorded) gives the highest N at which every recording is
complete.

"Completely recorded" means: a RecordingCompleted event with status ``complete``, a readable
2-channel file whose length matches the event, at least ``hold - 1.5`` s long, and caller audio
(not silence) on channel 0.

    .venv/bin/python bench/concurrent_calls.py                  # step search, 10 cps, 30 s calls
    .venv/bin/python bench/concurrent_calls.py --steps 100      # one run at N = 100
    .venv/bin/python bench/concurrent_calls.py --steps 10 --hold 10   # quick check
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from telephony.kamailio import KamailioConfig  # noqa: E402
from telephony.pool import Pool, PoolConfig, WorkerLaunch, WorkerSpec  # noqa: E402
from tests.telephony.sipp_util import stream_uac_scenario  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

SCENARIO = stream_uac_scenario(name="bench caller", user="bench", tag="b", loop=True, telephone_event=False,
                               stop_stream=True)

SPEECH = ("ni3 hao3 wo3 yao4 ju3 bao4 yi2 ge4 wen4 ti2 qing3 ni3 men5 zi3 xi4 ting1 yi2 xia4 "
          "zhe4 jian4 shi4 qing5 fa1 sheng1 zai4 qu4 nian2 de5 xia4 tian1")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                    t.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue


def media_base() -> int:
    for _ in range(200):
        base = random.randrange(20000, 50000, 2)
        try:
            for off in range(0, 8, 2):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.bind(("127.0.0.1", base + off))
            return base
        except OSError:
            continue
    return 6000


def make_audio(d: Path) -> Path:
    """8 kHz mono u-law WAV of Mandarin speech, synthesised now (espeak-ng, else sox tones)."""
    raw = d / "speech_raw.wav"
    out = d / "caller_8k_ulaw.wav"
    if shutil.which("espeak-ng"):
        subprocess.run(["espeak-ng", "-v", "cmn-latn-pinyin", "-s", "150", "-w", str(raw), SPEECH],
                       check=True, capture_output=True)
    else:
        subprocess.run(["sox", "-n", "-r", "8000", str(raw), "synth", "5", "sine", "300-900"],
                       check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-e", "u-law", str(out)],
                   check=True, capture_output=True)
    return out


# ------------------------------------------------------------------------------ process stats

def _children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            out.append(int(p.name))
    return out


def _cpu_rss(pid: int) -> tuple[float, int]:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
        rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        return cpu, rss
    except (OSError, IndexError, ValueError):
        return 0.0, 0


def _pss(pid: int) -> int:
    """Proportional set size: shared pages (kamailio's shm, the python libraries) counted once."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def thread_cpu(pids: list[int]) -> dict[tuple[int, int], tuple[str, float]]:
    """(pid, tid) -> (thread name, CPU seconds) for every thread of ``pids``."""
    out: dict[tuple[int, int], tuple[str, float]] = {}
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                comm = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
                f = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
                out[(pid, int(tid))] = (comm, (int(f[11]) + int(f[12])) / CLK_TCK)
            except (OSError, IndexError, ValueError):
                continue
    return out


class Sampler:
    """Samples CPU seconds and RSS/PSS of the pool's processes (workers + kamailio + its
    children) and of sipp, once a second."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.sipp_pid: int | None = None
        self.stop = threading.Event()
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.sipp_cpu0 = self.sipp_cpu1 = 0.0
        self.peak_rss = 0
        self.peak_pss = 0
        self.t0 = self.t1 = 0.0
        self.kam_set: set[int] = set()
        self.threads_first: dict[tuple[int, int], float] = {}
        self.threads_last: dict[tuple[int, int], tuple[str, float]] = {}
        self.started = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def kam_pids(self) -> list[int]:
        kam = self.pool.kamailio
        if kam is not None and kam.pid:
            return [kam.pid] + _children(kam.pid)
        return []

    def pids(self) -> list[int]:
        pids = [p for p in (self.pool.worker_pid(s.worker_id) for s in self.pool.specs) if p]
        self.kam_set = set(self.kam_pids())
        return pids + sorted(self.kam_set)

    def sample(self) -> None:
        rss = pss = 0
        for pid in self.pids():
            cpu, r = _cpu_rss(pid)
            self.first.setdefault(pid, cpu)
            self.last[pid] = cpu
            rss += r
            pss += _pss(pid)
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_pss = max(self.peak_pss, pss)
        # per-thread CPU: pjmedia's clock thread comes and goes with the calls, so threads are
        # sampled every second (a thread first seen after the start counts from 0)
        for key, (comm, cpu) in thread_cpu(self.worker_pids()).items():
            if key not in self.threads_first:
                self.threads_first[key] = cpu if not self.started else 0.0
            self.threads_last[key] = (comm, cpu)
        if self.sipp_pid:
            c, _ = _cpu_rss(self.sipp_pid)
            if c:
                self.sipp_cpu1 = c
        self.t1 = time.monotonic()

    def _run(self) -> None:
        while not self.stop.wait(1.0):
            self.sample()

    def worker_pids(self) -> list[int]:
        return [p for p in (self.pool.worker_pid(s.worker_id) for s in self.pool.specs) if p]

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.sample()
        self.started = True
        self.thread.start()

    def finish(self) -> None:
        if self.stop.is_set():
            return
        self.stop.set()
        self.thread.join(5)
        self.sample()
        wall = max(1e-6, self.t1 - self.t0)
        per: dict[str, float] = {}
        for key, (comm, cpu) in self.threads_last.items():
            per[comm] = per.get(comm, 0.0) + cpu - self.threads_first.get(key, 0.0)
        self.thread_percent = {k: 100.0 * v / wall for k, v in per.items()}

    @property
    def cpu_seconds(self) -> float:
        return sum(self.last[p] - self.first[p] for p in self.last)

    @property
    def kamailio_cpu_percent(self) -> float:
        wall = self.t1 - self.t0
        secs = sum(self.last[p] - self.first[p] for p in self.last if p in self.kam_set)
        return 100.0 * secs / wall if wall >= 1 else 0.0

    @property
    def cpu_percent(self) -> float:
        wall = self.t1 - self.t0
        return 100.0 * self.cpu_seconds / wall if wall >= 1 else 0.0

    @property
    def sipp_cpu_percent(self) -> float:
        wall = max(1e-6, self.t1 - self.t0)
        return 100.0 * (self.sipp_cpu1 - self.sipp_cpu0) / wall


# ------------------------------------------------------------------------------ events

def read_events(specs: list[WorkerSpec]) -> list[dict]:
    out = []
    for s in specs:
        p = s.work_dir / "events.jsonl"
        if not p.exists():
            continue
        for line in p.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def recording_ok(ev: dict, hold_s: float) -> tuple[bool, str]:
    import numpy as np
    import soundfile as sf

    if ev.get("status") != "complete":
        return False, f"status {ev.get('status')}"
    try:
        info = sf.info(ev["path"])
    except Exception as e:
        return False, f"unreadable: {e}"
    dur = info.frames / info.samplerate
    if info.channels != 2 or abs(dur - ev["duration"]) > 0.05:
        return False, f"channels {info.channels}, {dur:.2f}s vs event {ev['duration']:.2f}s"
    if dur < hold_s - 1.5:
        return False, f"short: {dur:.1f}s"
    data, _ = sf.read(ev["path"], dtype="int16", always_2d=True)
    ch0 = data[:, 0].astype(np.float32)
    rms = float(np.sqrt(np.mean(ch0 * ch0))) if len(ch0) else 0.0
    if rms < 50:
        return False, f"no caller audio (rms {rms:.0f})"
    return True, ""


# ------------------------------------------------------------------------------ one step

@dataclass
class StepResult:
    n: int
    attempted: int
    answered: int
    complete: int
    failures: dict
    cpu_percent: float
    kamailio_cpu_percent: float
    cpu_seconds: float
    peak_rss_mb: float
    peak_pss_mb: float
    sipp_cpu_percent: float
    wall_s: float
    worker_threads: dict

    @property
    def all_complete(self) -> bool:
        return self.attempted == self.n and self.complete == self.n


def run_step(pool: Pool, d: Path, audio: Path, port: int, n: int, rate: float,
             hold_s: float) -> StepResult:
    tag = f"n{n}x{int(time.time())}"
    scen = d / f"{tag}.xml"
    scen.write_text(SCENARIO.replace("@AUDIO@", str(audio))
                    .replace("@HOLD_MS@", str(int(hold_s * 1000))))
    stf = d / f"{tag}.csv"
    cmd = ["sipp", f"127.0.0.1:{port}", "-sf", str(scen), "-i", "127.0.0.1",
           "-p", str(free_port()), "-m", str(n), "-r", str(rate), "-l", str(n),
           "-cid_str", f"{tag}-%u-%p@%s", "-nostdin", "-timeout", f"{int(hold_s + n / rate + 120)}s",
           "-recv_timeout", "20000", "-trace_stat", "-stf", str(stf), "-fd", "5",
           "-mp", str(media_base()), "-rtp_threadtasks", "32"]
    sampler = Sampler(pool)
    sampler.start()
    t0 = time.monotonic()
    step_t0 = time.time()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, cwd=d)
    sampler.sipp_pid = p.pid
    sampler.sipp_cpu0 = _cpu_rss(p.pid)[0]
    last_report = 0.0
    while p.poll() is None:
        time.sleep(1)
        if time.monotonic() - last_report >= 10:
            last_report = time.monotonic()
            evs = [e for e in read_events(pool.specs) if e["type"] == "CallStarted"
                   and e["sip_call_id"].startswith(tag)]
            log(f"  N={n}: {time.monotonic() - t0:5.0f} s, {len(evs)} calls started, "
                f"workers+kamailio CPU {sampler.cpu_percent:.0f}%")
    err = p.stderr.read() if p.stderr else ""
    sampler.finish()  # CPU/RSS over the calls themselves, not the wait for stragglers below
    # recordings are completed a moment after each BYE
    started_ids: set[str] = set()
    deadline = time.monotonic() + 60
    while True:
        evs = read_events(pool.specs)
        started = {e["call_uuid"] for e in evs
                   if e["type"] == "CallStarted" and e["sip_call_id"].startswith(tag)}
        answered = {e["call_uuid"] for e in evs if e["type"] == "CallAnswered"} & started
        done = [e for e in evs if e["type"] == "RecordingCompleted" and e["call_uuid"] in answered]
        if len({e["call_uuid"] for e in done}) >= len(answered) or time.monotonic() > deadline:
            break
        time.sleep(1)
    wall = time.monotonic() - t0
    attempted = 0
    try:
        lines = [ln for ln in stf.read_text().splitlines() if ln.strip()]
        hdr, last = lines[0].split(";"), lines[-1].split(";")
        attempted = int(last[hdr.index("OutgoingCall(C)")])
    except (OSError, IndexError, ValueError):
        attempted = n
    failures: dict[str, int] = {}
    complete = 0
    shown = 0
    for e in done:
        ok, why = recording_ok(e, hold_s)
        if ok:
            complete += 1
        else:
            failures[why.split(":")[0]] = failures.get(why.split(":")[0], 0) + 1
            if shown < 5:
                shown += 1
                log(f"  recording {e['recording_id']}: {why}")
    exits = [ev for ev in pool.events if ev.kind == "worker_exited" and ev.at >= step_t0]
    if exits:
        failures["worker exits"] = len(exits)
    missing = answered - {e["call_uuid"] for e in done}
    if missing:
        failures["no recording event"] = len(missing)
        ended = {e["call_uuid"]: e for e in evs if e["type"] == "CallEnded"}
        worker = {e["call_uuid"]: e["worker_id"] for e in evs if e["type"] == "CallStarted"}
        for cu in sorted(missing):
            end = ended.get(cu)
            log(f"  call {cu} on {worker.get(cu)}: answered, no RecordingCompleted; CallEnded "
                + (f"{end['status']} cause {end['hangup_cause']} by {end['hung_up_by']}"
                   if end else "missing"))
    if len(answered) < attempted:
        failures["not answered"] = attempted - len(answered)
    if p.returncode not in (0, None) and err.strip():
        failures["sipp: " + err.strip().splitlines()[-1][:80]] = 1
    return StepResult(n, attempted, len(answered), complete, failures, sampler.cpu_percent,
                      sampler.kamailio_cpu_percent, sampler.cpu_seconds, sampler.peak_rss / 2**20, sampler.peak_pss / 2**20,
                      sampler.sipp_cpu_percent, wall,
                      {k: round(v, 1) for k, v in sorted(getattr(sampler, "thread_percent", {}).items(),
                                                         key=lambda kv: -kv[1]) if v >= 0.5})


# ------------------------------------------------------------------------------ main

def machine() -> str:
    model = platform.processor()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    mem = ""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    load = os.getloadavg()
    return (f"nproc {os.cpu_count()}, {model}, memory {mem}, "
            f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=10.0, help="call setups per second (10)")
    ap.add_argument("--steps", default="25,50,75,100,125",
                    help="concurrent call counts to try in order; stops at the first that is "
                         "not fully recorded (default 25,50,75,100,125)")
    ap.add_argument("--hold", type=float, default=30.0, help="seconds per call (30)")
    ap.add_argument("--workers", type=int, default=0,
                    help="worker processes (default: enough 4-leg workers for the largest N)")
    ap.add_argument("--clock-rate", type=int, default=0,
                    help="worker conference bridge / recording rate (default: the worker's own)")
    ap.add_argument("--all-steps", action="store_true", help="do not stop at the first failure")
    ap.add_argument("--keep", action="store_true", help="keep the run directory")
    ap.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = ap.parse_args(argv)
    for tool in ("kamailio", "sipp", "sox"):
        if shutil.which(tool) is None:
            print(f"concurrent_calls: {tool} is required", file=sys.stderr)
            return 2
    steps = [int(s) for s in args.steps.split(",") if s.strip()]
    n_workers = args.workers or math.ceil(max(steps) / 4)
    print(f"machine: {machine()}")
    print(f"setup: rate {args.rate:g} cps, {args.hold:g} s calls with RTP (PCMU), "
          f"{n_workers} workers x 4 legs behind kamailio, steps {steps}"
          + (f", worker clock rate {args.clock_rate} Hz" if args.clock_rate else ""))
    d = Path(tempfile.mkdtemp(prefix="bcc", dir="/tmp"))
    results: list[StepResult] = []
    try:
        from telephony.prompts import build_prompts

        audio = make_audio(d)
        recordings, prompts = d / "recordings", d / "prompts"
        build_prompts(prompts)

        def launch(spec: WorkerSpec) -> WorkerLaunch:
            conf = {"worker_id": spec.worker_id, "sip_host": spec.host, "sip_port": spec.port,
                    "hotline_number": "12388", "trunk_allow": ["127.0.0.0/8"],
                    "trusted_proxies": ["127.0.0.1/32"], "max_calls": 4,
                    "spool_dir": str(spec.work_dir / "spool"), "recordings_dir": str(recordings),
                    "prompts_dir": str(prompts), "max_call_seconds": int(args.hold) + 600}
            if args.clock_rate:
                conf["clock_rate"] = args.clock_rate
            path = spec.work_dir / "worker.json"
            path.write_text(json.dumps(conf))
            return WorkerLaunch([sys.executable, "-m", "telephony.worker", "--config", str(path),
                                 "--events", str(spec.work_dir / "events.jsonl"),
                                 "--log-level", "WARNING"], cwd=str(REPO))

        kam = KamailioConfig(run_dir=d / "kam", listen_port=free_port(),
                             max_concurrent_calls=max(steps) * 2, ping_interval_s=5,
                             probing_threshold=3, fr_timer_ms=4000, children=4)
        cfg = PoolConfig(run_dir=d, workers=n_workers,
                         worker_ports=[free_port() for _ in range(n_workers)], kamailio=kam,
                         worker_ready_timeout_s=120)
        pool = Pool(cfg, launch)
        log(f"starting {n_workers} workers and kamailio ...")
        pool.start()
        try:
            time.sleep(3)
            idle = Sampler(pool)
            idle.start()
            time.sleep(5)
            idle.finish()
            print(f"idle pool: CPU {idle.cpu_percent:.1f}% of one core, "
                  f"RSS {idle.peak_rss / 2**20:.0f} MiB (PSS {idle.peak_pss / 2**20:.0f} MiB)")
            print(f"{'N':>5} {'attempted':>9} {'answered':>8} {'complete':>8} "
                  f"{'CPU%':>6} {'(kam)':>6} {'RSS MiB':>8} {'PSS MiB':>8} {'sipp CPU%':>9}  failures")
            for n in steps:
                log(f"step N={n} ...")
                r = run_step(pool, d, audio, cfg.kamailio.listen_port, n, args.rate, args.hold)
                results.append(r)
                print(f"{r.n:>5} {r.attempted:>9} {r.answered:>8} {r.complete:>8} "
                      f"{r.cpu_percent:>6.0f} {r.kamailio_cpu_percent:>6.1f} {r.peak_rss_mb:>8.0f} {r.peak_pss_mb:>8.0f} "
                      f"{r.sipp_cpu_percent:>9.0f}  {r.failures or '-'}", flush=True)
                print(f"      worker CPU% by thread: {r.worker_threads}", flush=True)
                if not r.all_complete and not args.all_steps:
                    break
                time.sleep(5)  # let the last calls' recordings settle
        finally:
            pool.stop()
    finally:
        if args.keep:
            print(f"run directory kept: {d}")
        else:
            shutil.rmtree(d, ignore_errors=True)
    good = [r.n for r in results if r.all_complete]
    print(f"highest N with every recording complete: {max(good) if good else 'none'} "
          f"(CPU% = share of one core; the machine has {os.cpu_count()} cores)")
    if args.json:
        print(json.dumps([r.__dict__ | {"all_complete": r.all_complete} for r in results]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
