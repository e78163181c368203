#!/usr/bin/env python3
"""bench/serve_calls: concurrent recorded calls through ``hotline serve``, as the service runs them.

For each N, a fresh data dir is made (``db upgrade``, ``keys init``, a recording manager on the
default duty roster) and ``hotline serve --only sip,pipeline`` is started in pool mode: kamailio on
the public SIP port in front of ``ceil(N/2) + 2`` pjsua2 ``hotline sip-worker`` processes (2
callers each, the other 2 legs are kept for operators), SQLite database, and the recording
pipeline part, which encrypts each finished recording, assigns it for review and queues its
transcription job. sipp places N calls at ``--rate`` setups/s, each streaming looped RTP audio
(espeak-ng + sox, as bench/concurrent_calls.py) for ``--hold`` seconds, to 127.0.0.1 only. After
the calls, up to 120 s are given for every answered call's recording to be stored and queued.

Per N it prints: calls attempted / answered (sipp, database) / recordings complete / stored (a
``recording_blobs`` row) / queued (a ``transcription_jobs`` row) / stage ``queued``, plain WAVs
left in ``<data>/recordings/incoming``; latency hang-up -> stored and hang-up -> queued
(``recordings.completed_at`` to ``recording_blobs.stored_at`` / ``transcription_jobs.created_at``;
p50, p95, max); CPU (% of one core, utime+stime deltas) and peak RSS of the whole service process
tree (serve, its parts, the sip-workers, kamailio), sampled every 0.5 s, during the calls and over
the run including the pipeline's drain; the median RSS of one sip-worker idle after start. Setup
failures are explained from sipp's stat, error and message files (a provisional reply relayed
after the 200 OK is counted) and the service's logs (warnings and errors of serve, kamailio and
the workers, counted); the data dir with all of them is kept when anything failed (``--keep``:
always).

In the same run, for comparison, ``bench/concurrent_calls.py --steps N`` (bare ``python -m
telephony.worker`` processes behind kamailio, no database) runs after each serve step, never at
the same time; its result line is shown next to the serve figures. A final JSON line has it all.

    .venv/bin/python bench/serve_calls.py                        # N = 25, 50, 100; 30 s calls, 10 cps
    .venv/bin/python bench/serve_calls.py --steps 100            # one run at N = 100
    .venv/bin/python bench/serve_calls.py --quick                # development: --steps 5 --hold 5
    .venv/bin/python bench/serve_calls.py --quick --no-bare      # without the bare-worker comparison
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.concurrent_calls import (SCENARIO, Sampler, _cpu_rss, free_port, log, machine,  # noqa: E402
                                    make_audio, media_base)
from tests.telephony.sipp_util import stop_process  # noqa: E402

PY = sys.executable
PIPELINE_WAIT_S = 120.0
SAMPLE_EVERY_S = 0.5
SETUP_WAIT_S = 240.0  # many workers importing pjsua2 + SQLAlchemy on 2 cores take a while
MANAGER = "bench_manager"


# ------------------------------------------------------------------------------ process tree

def process_tree(root: int) -> dict[int, str]:
    """``root`` and every live process below it -> its command line (one pass over /proc)."""
    parent: dict[int, int] = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                parent[int(p)] = int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = {root} if root in parent else set(), {root}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier and p not in found}
        found |= frontier
    out = {}
    for p in found:
        try:
            out[p] = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            pass
    return out


def is_worker(cmd: str) -> bool:
    return " sip-worker " in f" {cmd} "


def is_kamailio(cmd: str) -> bool:
    return "kamailio" in os.path.basename(cmd.split(" ", 1)[0])


class TreeSampler(Sampler):
    """bench.concurrent_calls.Sampler over the serve process tree instead of a Pool object,
    every 0.5 s; ``snapshot()`` gives the figures so far while it keeps sampling."""

    def __init__(self, root: int) -> None:
        super().__init__(None)  # type: ignore[arg-type]  # pids() below replace the Pool's
        self.root = root
        self.lock = threading.Lock()
        self.seen: dict[int, str] = {}  # every pid of the tree ever seen (leftover check at stop)
        self._tree: dict[int, str] = {}
        self.load_max = 0.0

    def pids(self) -> list[int]:
        self._tree = process_tree(self.root)
        self.seen.update(self._tree)
        self.kam_set = {p for p, c in self._tree.items() if is_kamailio(c)}
        return sorted(self._tree)

    def worker_pids(self) -> list[int]:
        return sorted(p for p, c in self._tree.items() if is_worker(c))

    def sample(self) -> None:
        with self.lock:
            super().sample()
            self.load_max = max(self.load_max, os.getloadavg()[0])

    def _run(self) -> None:
        while not self.stop.wait(SAMPLE_EVERY_S):
            self.sample()

    def snapshot(self) -> dict:
        with self.lock:
            return {"cpu_percent": round(self.cpu_percent, 1),
                    "kamailio_cpu_percent": round(self.kamailio_cpu_percent, 1),
                    "cpu_seconds": round(self.cpu_seconds, 1), "peak_rss_mb": round(self.peak_rss / 2**20, 1),
                    "peak_pss_mb": round(self.peak_pss / 2**20, 1),
                    "sipp_cpu_percent": round(self.sipp_cpu_percent, 1), "wall_s": round(self.t1 - self.t0, 1),
                    "load_1min_max": round(self.load_max, 2)}


# ------------------------------------------------------------------------------ the service

def free_port_block(count: int) -> int:
    """A base port with base .. base+count-1 free on 127.0.0.1 (UDP and TCP): the workers' ports."""
    for _ in range(500):
        base = random.randrange(30000, 60000 - count)
        socks = []
        try:
            for port in range(base, base + count):
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    s = socket.socket(socket.AF_INET, kind)
                    socks.append(s)
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no block of {count} free ports")


def hotline(env: dict, *args: str, stdin: str | None = None) -> str:
    r = subprocess.run([PY, "-m", "hotline_api.cli", *args], env=env, cwd=REPO, input=stdin, text=True,
                       capture_output=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"hotline {' '.join(args)} failed ({r.returncode}): {r.stderr[-2000:]}")
    return r.stdout


def db_url(data: Path) -> str:
    return f"sqlite:///{(data / 'hotline.db').resolve()}"


def prepare_data(env: dict, data: Path) -> None:
    """Schema, master key, and a recording manager on the default roster (recordings get assigned)."""
    from hotline_api.db.session import session_factory
    from hotline_api.models.governance import DutyRoster, User

    hotline(env, "db", "upgrade")
    hotline(env, "keys", "init")
    hotline(env, "users", "add", MANAGER, "--role", "recording_manager", "--password-stdin",
            stdin="bench-manager-password-1\n")
    factory = session_factory(db_url(data))
    with factory() as s:
        user = s.query(User).filter_by(username=MANAGER).one()
        s.add(DutyRoster(day=None, shift="default", manager_id=user.id))
        s.commit()


class Service:
    """``hotline serve --only sip,pipeline`` in its own session, with a log file."""

    def __init__(self, env: dict, log_path: Path, workers: int) -> None:
        self.env, self.log_path, self.workers = env, log_path, workers
        self.proc: subprocess.Popen | None = None
        self.seen: dict[int, str] = {}

    def start(self) -> None:
        self._fh = open(self.log_path, "ab")
        self.proc = subprocess.Popen([PY, "-m", "hotline_api.cli", "serve", "--only", "sip,pipeline"], env=self.env,
                                     cwd=REPO, stdin=subprocess.DEVNULL, stdout=self._fh, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + SETUP_WAIT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hotline serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            tree = process_tree(self.proc.pid)
            self.seen.update(tree)
            text = self.log_path.read_text(errors="replace")
            ready = set(re.findall(r"worker (\S+) answers on", text))
            if (sum(map(is_worker, tree.values())) >= self.workers and len(ready) >= self.workers
                    and "kamailio started" in text and "recording pipeline started" in text):
                return
            time.sleep(0.5)
        raise RuntimeError(f"service not up in {SETUP_WAIT_S:.0f} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""

    def tree(self) -> dict[int, str]:
        t = process_tree(self.proc.pid) if self.proc else {}
        self.seen.update(t)
        return t

    def stop(self, extra_seen: dict[int, str] | None = None) -> list[str]:
        """SIGTERM to the process group, wait, SIGKILL; then any worker/kamailio of the tree still
        alive is killed by its pid. Returns what had to be killed that way."""
        if self.proc is None:
            return []
        self.seen.update(self.tree())
        self.seen.update(extra_seen or {})
        stop_process(self.proc, signal.SIGTERM, 60)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything left in serve's own group
        except (ProcessLookupError, PermissionError):
            pass
        self._fh.close()
        leftovers = []
        deadline = time.monotonic() + 20
        while True:
            alive = {p: c for p, c in self.seen.items() if (is_worker(c) or is_kamailio(c)) and _same(p, c)}
            if not alive or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        for p, c in alive.items():
            leftovers.append(f"{p} {c[:100]}")
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return leftovers


def _same(pid: int, cmd: str) -> bool:
    """Is ``pid`` still the process we saw (not gone, not a zombie, same command line)?"""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        now = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return state != "Z" and now == cmd


# ------------------------------------------------------------------------------ database figures

def _utc(t: datetime | None) -> datetime | None:
    return None if t is None else (t if t.tzinfo else t.replace(tzinfo=timezone.utc))


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(q * len(v)) - 1))]  # nearest rank


def db_figures(data: Path) -> dict:
    from sqlalchemy import func, select

    from hotline_api.db.session import session_factory
    from hotline_api.models.asr import TranscriptionJob
    from hotline_api.models.calls import Call, Recording
    from hotline_api.models.governance import RecordingBlob, ReviewAssignment

    factory = session_factory(db_url(data))
    with factory() as s:
        calls = s.execute(select(Call.status, Call.created_at, Call.answered_at, Call.ended_at, Call.hung_up_by,
                                 Call.flow_path, Call.id)).all()
        ended = {c.id: _utc(c.ended_at) for c in calls}
        rows = s.execute(
            select(Recording.id, Recording.call_id, Recording.status, Recording.stage, Recording.stage_error,
                   Recording.completed_at,
                   RecordingBlob.stored_at, TranscriptionJob.created_at, ReviewAssignment.manager_id)
            .outerjoin(RecordingBlob, RecordingBlob.recording_id == Recording.id)
            .outerjoin(TranscriptionJob, TranscriptionJob.recording_id == Recording.id)
            .outerjoin(ReviewAssignment, ReviewAssignment.recording_id == Recording.id)).all()
        jobs = s.execute(select(func.count()).select_from(TranscriptionJob)).scalar_one()
    stored_lat, queued_lat, end_to_done = [], [], []
    answer_delay = [(_utc(c.answered_at) - _utc(c.created_at)).total_seconds() for c in calls
                    if c.answered_at is not None and c.created_at is not None]
    for r in rows:
        done = _utc(r.completed_at)
        if done is not None and ended.get(r.call_id) is not None:
            end_to_done.append((done - ended[r.call_id]).total_seconds())
        if done is not None and r.stored_at is not None:
            stored_lat.append((_utc(r.stored_at) - done).total_seconds())
        if done is not None and r.created_at is not None:
            queued_lat.append((_utc(r.created_at) - done).total_seconds())

    def count(values) -> dict:
        out: dict[str, int] = {}
        for v in values:
            out[str(v)] = out.get(str(v), 0) + 1
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def lat(v: list[float]) -> dict:
        return {"p50": _r(pct(v, 0.5)), "p95": _r(pct(v, 0.95)), "max": _r(max(v) if v else None), "n": len(v)}

    return {
        "db_calls": len(calls), "db_answered": sum(1 for c in calls if c.answered_at is not None),
        "call_status": count((c.status for c in calls)),
        "hung_up_by": count((c.hung_up_by for c in calls)),
        "flow_path": count((c.flow_path for c in calls)),
        "recordings": len(rows),
        "complete": sum(1 for r in rows if r.status == "complete"),
        "recording_status": count((r.status for r in rows)),
        "stage": count((r.stage for r in rows)),
        "stage_errors": sorted({r.stage_error[:160] for r in rows if r.stage_error}),
        "stored": sum(1 for r in rows if r.stored_at is not None),
        "queued": sum(1 for r in rows if r.created_at is not None),
        "transcription_jobs": jobs,
        "assigned_to_manager": sum(1 for r in rows if r.manager_id is not None),
        "stored_latency_s": lat(stored_lat), "queued_latency_s": lat(queued_lat),
        "answer_delay_s": lat(answer_delay), "call_end_to_recording_completed_s": lat(end_to_done),
    }


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 2)


def pipeline_busy(data: Path) -> tuple[int, int]:
    """(recordings not yet through the pipeline, answered calls without a recording row)."""
    from sqlalchemy import func, select

    from hotline_api.db.session import session_factory
    from hotline_api.models.calls import Call, Recording

    factory = session_factory(db_url(data))
    with factory() as s:
        busy = s.execute(select(func.count()).select_from(Recording)
                         .where(Recording.stage.in_(("recording", "completed", "stored", "assigned")))).scalar_one()
        answered = s.execute(select(func.count()).select_from(Call).where(Call.answered_at.is_not(None))).scalar_one()
        recs = s.execute(select(func.count(func.distinct(Recording.call_id)))
                         .where(Recording.call_id.is_not(None))).scalar_one()
    return busy, max(0, answered - recs)


def answered_now(data: Path) -> int:
    from sqlalchemy import func, select

    from hotline_api.db.session import session_factory
    from hotline_api.models.calls import Call

    with session_factory(db_url(data))() as s:
        return s.execute(select(func.count()).select_from(Call).where(Call.answered_at.is_not(None))).scalar_one()


# ------------------------------------------------------------------------------ sipp

def sipp_stats(stf: Path) -> dict:
    """The last line of sipp's -trace_stat file: attempted, successful, failed and its reasons."""
    try:
        lines = [ln for ln in stf.read_text().splitlines() if ln.strip()]
        hdr, last = lines[0].split(";"), lines[-1].split(";")
    except (OSError, IndexError):
        return {}
    row = dict(zip(hdr, last))

    def num(k: str) -> int:
        try:
            return int(row.get(k, "0") or 0)
        except ValueError:
            return 0
    reasons = {k[:-3]: num(k) for k in hdr if k.startswith("Failed") and k.endswith("(C)") and k != "FailedCall(C)"
               and num(k)}
    return {"attempted": num("OutgoingCall(C)"), "successful": num("SuccessfulCall(C)"),
            "failed": num("FailedCall(C)"), "failed_reasons": reasons}


_SIPP_EVENT = re.compile(r"\d{4}-\d\d-\d\d\s+[\d:.]+\s+[\d.]+: ")
_ABORT = re.compile(r"Aborting call on unexpected message for Call-Id '[^']*': while in message type (\S+) "
                    r"\(index (\d+)\), received '([^\r\n]*)")


def sipp_error_summary(err_file: Path, limit: int = 8) -> list[str]:
    """sipp's error file as counted events: an aborted call by (scenario step, message received),
    other events with their numbers masked."""
    if not err_file.exists():
        return []
    counts: dict[str, int] = {}
    for entry in _SIPP_EVENT.split(err_file.read_text(errors="replace"))[1:]:
        m = _ABORT.match(entry)
        if m:
            key = f"call aborted: received '{m.group(3).strip()}' while at step {m.group(2)} ({m.group(1)})"
        else:
            key = re.sub(r"\d+", "#", entry.strip().splitlines()[0] if entry.strip() else "")[:160]
        counts[key] = counts.get(key, 0) + 1
    return [f"{n} x {k}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1])[:limit]]


def reply_order(messages: Path) -> dict:
    """From sipp's message trace: calls that got a provisional reply after their 200 OK (a 1xx
    relayed late, which sipp's scenario treats as unexpected), and calls whose 200 OK came less
    than 1 ms after the 180 (the worker sends them back to back)."""
    if not messages.exists():
        return {}
    parts = re.split(r"-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\n", messages.read_text(errors="replace"))
    calls: dict[str, list[tuple[float, str]]] = {}
    for i in range(1, len(parts) - 1, 2):
        body = parts[i + 1]
        if "received" not in body.split("\n", 1)[0] or "\n\n" not in body:
            continue
        first = body.split("\n\n", 1)[1].lstrip().split("\n", 1)[0]
        cid = re.search(r"^Call-ID:\s*(\S+)", body, re.I | re.M)
        cseq = re.search(r"^CSeq:\s*\d+ INVITE", body, re.I | re.M)
        if cid and cseq and first.startswith("SIP/2.0 "):
            t = datetime.strptime(parts[i], "%Y-%m-%d %H:%M:%S.%f").timestamp()
            calls.setdefault(cid.group(1), []).append((t, first.split(" ")[1]))
    late, close = 0, 0
    for replies in calls.values():
        codes = [c for _, c in replies]
        if "200" in codes and any(c.startswith("1") for c in codes[codes.index("200"):]):
            late += 1
        t180 = next((t for t, c in replies if c == "180"), None)
        t200 = next((t for t, c in replies if c == "200"), None)
        if t180 is not None and t200 is not None and 0 <= t200 - t180 < 0.001:
            close += 1
    return {"calls": len(calls), "provisional_after_200": late, "200_within_1ms_of_180": close}


def run_sipp(d: Path, audio: Path, port: int, n: int, rate: float, hold_s: float, sampler: TreeSampler,
             data: Path, tag: str) -> tuple[dict, Path]:
    scen = d / f"{tag}.xml"
    scen.write_text(SCENARIO.replace("@AUDIO@", str(audio)).replace("@HOLD_MS@", str(int(hold_s * 1000))))
    stf, err = d / f"{tag}.csv", d / f"{tag}_errors.log"
    cmd = ["sipp", f"127.0.0.1:{port}", "-sf", str(scen), "-i", "127.0.0.1", "-mi", "127.0.0.1",
           "-p", str(free_port()), "-m", str(n), "-r", str(rate), "-l", str(n),
           "-cid_str", f"{tag}-%u-%p@%s", "-nostdin", "-timeout", f"{int(hold_s + n / rate + 120)}s",
           "-recv_timeout", "20000", "-trace_stat", "-stf", str(stf), "-fd", "5",
           "-trace_err", "-error_file", str(err), "-trace_msg", "-message_file", str(d / f"{tag}_messages.log"),
           "-mp", str(media_base()), "-rtp_threadtasks", "32"]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True, cwd=d)
    sampler.sipp_pid = p.pid
    sampler.sipp_cpu0 = _cpu_rss(p.pid)[0]
    last = 0.0
    try:
        while p.poll() is None:
            time.sleep(0.5)
            if time.monotonic() - last >= 10:
                last = time.monotonic()
                q0 = time.monotonic()
                try:
                    answered = answered_now(data)
                except Exception as e:  # noqa: BLE001 - a locked database must not stop the bench
                    answered = f"? ({type(e).__name__})"
                log(f"  N={n}: {q0 - t0:5.0f} s, {answered} answered in the database (read in "
                    f"{time.monotonic() - q0:.1f} s), service CPU {sampler.snapshot()['cpu_percent']:.0f}%")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    stderr = p.stderr.read() if p.stderr else ""
    st = sipp_stats(stf) or {"attempted": n}
    st["exit"] = p.returncode
    st["wall_s"] = round(time.monotonic() - t0, 1)
    if p.returncode not in (0, None) and stderr.strip():
        st["stderr"] = stderr.strip().splitlines()[-1][:200]
    st["errors"] = sipp_error_summary(err)
    st["reply_order"] = reply_order(d / f"{tag}_messages.log")
    if err.exists():
        st["error_head"] = err.read_text(errors="replace").splitlines()[:40]
    return st, err


# ------------------------------------------------------------------------------ logs

_LOG_SKIP = re.compile(r"no recording manager on the roster|no live Vosk model")


def log_findings(data: Path, serve_log: Path, limit: int = 8) -> dict[str, list[str]]:
    """WARNING/ERROR lines of serve, kamailio and the workers, numbers masked, repeats counted."""
    run = data / "run" / "sip"
    files = {"serve": [serve_log], "kamailio": sorted((run / "kamailio").glob("*.log")),
             "workers": sorted((run / "workers").rglob("*.log"))}
    out: dict[str, list[str]] = {}
    for name, paths in files.items():
        counts: dict[str, int] = {}
        for path in paths:
            text = path.read_text(errors="replace")
            if name == "kamailio":  # its TCP main process complains of every child gone at shutdown
                text = text.split("Thank you for flying kamailio", 1)[0]
            for line in text.splitlines():
                if not re.search(r"WARNING|ERROR|CRITICAL|Traceback|ALERT|\bERR\b|\bCRIT\b|Segmentation|exited", line):
                    continue
                if _LOG_SKIP.search(line):
                    continue
                key = re.sub(r"^\S+ \S+ ", "", line)  # timestamps
                key = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}|\b\d+(\.\d+)?\b", "#", key)[:220]
                counts[key] = counts.get(key, 0) + 1
        if counts:
            out[name] = [f"{n} x {k}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1])[:limit]]
    return out


# ------------------------------------------------------------------------------ one serve step

def serve_step(n: int, rate: float, hold_s: float, audio: Path, keep: bool) -> dict:
    workers = math.ceil(n / 2) + 2
    d = Path(tempfile.mkdtemp(prefix=f"bsc{n}-", dir="/tmp"))
    data = d / "data"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env.update(HOTLINE_DATA_DIR=str(data), HOTLINE_SIP_PORT=str(port), HOTLINE_SIP_USE_KAMAILIO="1",
               HOTLINE_SIP_WORKERS=str(workers), HOTLINE_SIP_WORKER_BASE_PORT=str(free_port_block(workers)),
               HOTLINE_LIVE_ASR="0", HOTLINE_MAX_CONCURRENT_CALLS=str(max(200, 2 * n)))
    res: dict = {"n": n, "workers": workers}
    svc = Service(env, d / "serve.log", workers)
    sampler: TreeSampler | None = None
    try:
        t0 = time.monotonic()
        prepare_data(env, data)
        log(f"serve N={n}: starting {workers} sip-workers, kamailio and the pipeline ...")
        svc.start()
        res["startup_s"] = round(time.monotonic() - t0, 1)
        time.sleep(3)  # kamailio's first OPTIONS probes; workers settle after their imports
        idle = TreeSampler(svc.proc.pid)
        idle.start()
        time.sleep(5)
        idle.finish()
        wrss = [_cpu_rss(p)[1] / 2**20 for p in idle.worker_pids()]
        res["idle"] = idle.snapshot() | {
            "worker_rss_mb_median": round(statistics.median(wrss), 1) if wrss else None,
            "workers_seen": len(wrss)}
        svc.seen.update(idle.seen)

        sampler = TreeSampler(svc.proc.pid)
        sampler.start()
        own0, own_t0 = _cpu_rss(os.getpid())[0], time.monotonic()
        tag = f"s{n}x{int(time.time())}"
        sipp, _err = run_sipp(d, audio, port, n, rate, hold_s, sampler, data, tag)
        res["sipp"] = sipp
        res["during_calls"] = sampler.snapshot()
        res["bench_cpu_percent"] = round(100 * (_cpu_rss(os.getpid())[0] - own0) / (time.monotonic() - own_t0), 1)
        # the pipeline: every answered call's recording stored and queued (or finished otherwise)
        t_end = time.monotonic()
        while True:
            try:
                busy, no_row = pipeline_busy(data)
            except Exception:  # noqa: BLE001 - locked: try again
                busy, no_row = 1, 0
            if (busy == 0 and no_row == 0) or time.monotonic() - t_end > PIPELINE_WAIT_S:
                break
            time.sleep(0.5)
        res["pipeline_drain_s"] = round(time.monotonic() - t_end, 1)
        res["pipeline_left"] = {"in_progress": busy, "answered_without_recording": no_row}
        sampler.finish()
        res["whole_run"] = sampler.snapshot()
        res["worker_threads_percent"] = {k: round(v, 1) for k, v in sorted(
            getattr(sampler, "thread_percent", {}).items(), key=lambda kv: -kv[1]) if v >= 0.5}
        svc.seen.update(sampler.seen)
        res["service_processes"] = len(sampler._tree)
        res.update(db_figures(data))
        inc = data / "recordings" / "incoming"
        res["plain_wavs_left"] = len(list(inc.rglob("*.wav"))) if inc.is_dir() else 0
    except Exception as e:  # noqa: BLE001 - report it with the logs, go on with the next N
        res["error"] = f"{type(e).__name__}: {e}"[:3000]
        log(f"serve N={n}: {res['error']}")
    finally:
        if sampler is not None and not sampler.stop.is_set():
            sampler.finish()
        res["leftover_processes_killed"] = svc.stop()
        res["logs"] = log_findings(data, svc.log_path)
        failed = (res.get("error") or res.get("sipp", {}).get("failed") or res.get("leftover_processes_killed")
                  or any(res.get(k) != res.get("db_answered") for k in ("complete", "stored", "queued")))
        if keep or failed:
            res["kept_dir"] = str(d)
        else:
            shutil.rmtree(d, ignore_errors=True)
    return res


# ------------------------------------------------------------------------------ bare workers

_BARE_ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(.*)$")


def bare_step(n: int, rate: float, hold_s: float) -> dict:
    """bench/concurrent_calls.py --steps N as a subprocess; its result row (and JSON) parsed."""
    cmd = [PY, str(REPO / "bench" / "concurrent_calls.py"), "--steps", str(n), "--hold", f"{hold_s:g}",
           "--rate", f"{rate:g}", "--json"]
    log(f"bare N={n}: {' '.join(cmd[1:])}")
    timeout = hold_s + n / rate + 600
    p = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        stdout, stderr = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        tree = process_tree(p.pid)  # its workers are in sessions of their own: stopped by pid
        p.terminate()  # its pool.stop() stops the workers and kamailio
        try:
            p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        for pid, cmdline in tree.items():
            if _same(pid, cmdline):
                os.kill(pid, signal.SIGKILL)
        p.wait(10)
        return {"n": n, "error": f"timed out after {timeout:.0f} s"}
    out: dict = {"n": n, "exit": p.returncode, "lines": []}
    for line in stdout.splitlines():
        m = _BARE_ROW.match(line)
        if m and int(m.group(1)) == n:
            out["row"] = line.rstrip()
            out.update(attempted=int(m.group(2)), answered=int(m.group(3)), complete=int(m.group(4)),
                       cpu_percent=float(m.group(5)), peak_rss_mb=float(m.group(7)), failures=m.group(10).strip())
        elif line.startswith("["):
            try:
                js = json.loads(line)
                out["json"] = js[0] if js else None
            except ValueError:
                pass
        elif line.startswith(("idle pool", "setup:", "highest N", "      worker CPU")):
            out["lines"].append(line.strip())
    # its explanations of incomplete recordings go to stderr
    out["lines"] += [ln.strip() for ln in stderr.splitlines() if ln.startswith(("  call ", "  recording "))][:10]
    if "row" not in out:
        out["error"] = (stderr or stdout)[-1500:]
    return out


# ------------------------------------------------------------------------------ output

def _f(v, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def print_step(s: dict, b: dict | None) -> None:
    n = s["n"]
    print(f"\n=== N = {n}: hotline serve --only sip,pipeline, {s['workers']} sip-workers x 2 callers ===")
    if s.get("error"):
        print(f"  ERROR: {s['error']}")
    sp = s.get("sipp", {})
    bj = (b or {}).get("json") or {}
    rows = [
        ("calls attempted (sipp)", sp.get("attempted"), (b or {}).get("attempted")),
        ("sipp successful / failed", f"{sp.get('successful', '-')} / {sp.get('failed', '-')}", "-"),
        ("answered (database / bare: events)", s.get("db_answered"), (b or {}).get("answered")),
        ("recordings complete", s.get("complete"), (b or {}).get("complete")),
        ("stored (recording_blobs)", s.get("stored"), "n/a"),
        ("assigned to the manager", s.get("assigned_to_manager"), "n/a"),
        ("queued (transcription_jobs)", s.get("queued"), "n/a"),
        ("recordings.stage", s.get("stage"), "n/a"),
        ("plain WAVs left in incoming", s.get("plain_wavs_left"), "n/a"),
    ]
    for key, name in (("stored_latency_s", "hang-up -> stored, s"), ("queued_latency_s", "hang-up -> queued, s"),
                      ("answer_delay_s", "INVITE -> answered (db), s"),
                      ("call_end_to_recording_completed_s", "call ended -> rec. completed, s")):
        lat = s.get(key) or {}
        rows.append((f"{name} p50/p95/max", f"{_f(lat.get('p50'), '{:.2f}')} / {_f(lat.get('p95'), '{:.2f}')} / "
                     f"{_f(lat.get('max'), '{:.2f}')}", "n/a"))
    dc, wr, idle = s.get("during_calls", {}), s.get("whole_run", {}), s.get("idle", {})
    rows += [
        ("CPU % of one core, during the calls", _f(dc.get("cpu_percent")), _f((b or {}).get("cpu_percent"))),
        ("  of it kamailio", _f(dc.get("kamailio_cpu_percent")), _f(bj.get("kamailio_cpu_percent"))),
        ("CPU %, calls + pipeline drain", _f(wr.get("cpu_percent")), "-"),
        ("peak RSS MB (sum)", _f(wr.get("peak_rss_mb"), "{:.0f}"), _f((b or {}).get("peak_rss_mb"), "{:.0f}")),
        ("peak PSS MB (sum)", _f(wr.get("peak_pss_mb"), "{:.0f}"), _f(bj.get("peak_pss_mb"), "{:.0f}")),
        ("sip-worker RSS idle, median MB", _f(idle.get("worker_rss_mb_median")), "-"),
        ("idle service: CPU % / RSS MB", f"{_f(idle.get('cpu_percent'))} / {_f(idle.get('peak_rss_mb'), '{:.0f}')}",
         "-"),
        ("sipp CPU %", _f(dc.get("sipp_cpu_percent")), _f(bj.get("sipp_cpu_percent"))),
        ("this bench's own CPU % (sampling)", _f(s.get("bench_cpu_percent")), "-"),
        ("load average 1 min, max during the calls", _f(dc.get("load_1min_max"), "{:.2f}"), "-"),
    ]
    print(f"  {'':42} {'serve':>26} {'bare workers':>14}")
    for name, sv, bv in rows:
        sv = json.dumps(sv, ensure_ascii=False) if isinstance(sv, dict) else sv
        print(f"  {name:42} {str('-' if sv is None else sv):>26} {str('-' if bv is None else bv):>14}")
    if sp.get("reply_order"):
        print(f"  SIP replies at sipp: {sp['reply_order']}")
    if sp.get("failed_reasons") or sp.get("errors") or sp.get("stderr"):
        print(f"  sipp failures: {sp.get('failed_reasons')} {sp.get('stderr', '')}")
        for e in sp.get("errors", []):
            print(f"    {e}")
        print("  sipp error file (head):")
        for e in sp.get("error_head", [])[:20]:
            print(f"    | {e[:200]}")
    print(f"  calls: status {s.get('call_status')}, hung up by {s.get('hung_up_by')}, flow {s.get('flow_path')}")
    if s.get("stage_errors"):
        print(f"  pipeline stage errors: {s['stage_errors'][:5]}")
    if s.get("pipeline_left", {}).get("in_progress") or s.get("pipeline_left", {}).get("answered_without_recording"):
        print(f"  NOT through the pipeline after {PIPELINE_WAIT_S:.0f} s: {s['pipeline_left']}")
    print(f"  startup {s.get('startup_s')} s, pipeline drain after the last call {s.get('pipeline_drain_s')} s, "
          f"service processes {s.get('service_processes')}, worker threads CPU% {s.get('worker_threads_percent')}")
    for part, lines in s.get("logs", {}).items():
        print(f"  log warnings/errors ({part}):")
        for ln in lines:
            print(f"    {ln}")
    if s.get("kept_dir"):
        print(f"  data dir, logs and sipp files kept: {s['kept_dir']}")
    if s.get("leftover_processes_killed"):
        print(f"  LEFT RUNNING after stop (killed): {s['leftover_processes_killed']}")
    if b is not None:
        print(f"  bare: {b.get('row') or b.get('error')}")
        for ln in b.get("lines", []):
            print(f"    {ln}")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", default="25,50,100", help="concurrent call counts, one service run each (25,50,100)")
    ap.add_argument("--hold", type=float, default=30.0, help="seconds per call (30)")
    ap.add_argument("--rate", type=float, default=10.0, help="call setups per second (10)")
    ap.add_argument("--quick", action="store_true", help="development: --steps 5 --hold 5")
    ap.add_argument("--no-bare", action="store_true", help="skip the bare-worker comparison (concurrent_calls.py)")
    ap.add_argument("--keep", action="store_true", help="keep the data dirs (kept anyway after an error)")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.hold = "5", 5.0
    for tool in ("kamailio", "sipp", "sox"):
        if shutil.which(tool) is None:
            print(f"serve_calls: {tool} is required", file=sys.stderr)
            return 2
    steps = [int(s) for s in args.steps.split(",") if s.strip()]
    print(f"machine: {machine()}")
    print(f"setup: hotline serve --only sip,pipeline (pool mode, SQLite), rate {args.rate:g} cps, {args.hold:g} s "
          f"calls with looped RTP (PCMU) to 127.0.0.1, steps {steps}; bare workers: bench/concurrent_calls.py",
          flush=True)
    loads = [os.getloadavg()[0]]
    results = []
    d = Path(tempfile.mkdtemp(prefix="bsc-audio", dir="/tmp"))
    try:
        audio = make_audio(d)
        for n in steps:
            s = serve_step(n, args.rate, args.hold, audio, args.keep)
            loads.append(os.getloadavg()[0])
            b = None if args.no_bare else bare_step(n, args.rate, args.hold)
            loads.append(os.getloadavg()[0])
            print_step(s, b)
            results.append({"serve": s, "bare": b})
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print("\nload average (1 min) at start and after each part: " + ", ".join(f"{x:.2f}" for x in loads))
    goal = [r["serve"] for r in results if r["serve"]["n"] == 100]
    for s in goal:
        p95 = (s.get("queued_latency_s") or {}).get("p95")
        ok = s.get("stored") == 100 and s.get("queued") == 100 and p95 is not None and p95 < 10
        print(f"goal (100 of 100 stored and queued, p95 hang-up -> queued < 10 s): {'met' if ok else 'NOT met'} "
              f"(stored {s.get('stored')}, queued {s.get('queued')}, p95 {p95} s)")
    print(json.dumps({"steps": results, "load_1min": loads, "rate": args.rate, "hold": args.hold},
                     ensure_ascii=False, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
