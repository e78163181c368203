"""Acceptance of the durable recording pipeline, through `hotline serve` as users run it: pool mode
(kamailio in front of pjsua2 `hotline sip-worker` processes), every part (SIP, API, pipeline, ASR
worker, scheduler), the embedded SQLite database, sipp callers streaming RTP audio.

* a burst of 40 calls hanging up within 2 s of each other: within 60 s every recording is stored
  (encrypted, plain file gone), assigned for review and queued for transcription, nothing is left
  in ``recordings/incoming`` and the logs hold no traceback;
* faults, each followed by the exactly-once check (one blob, one assignment, one job, one
  ``recording.store`` and one ``review.assign`` audit entry per recording): an external process
  holding SQLite's write lock for 30 s during a burst; ``kill -9`` of a SIP worker right after the
  hang-ups; ``kill -9`` of the pipeline process in the middle of an ingest; ``kill -9`` of the whole
  service with unstored recordings on disk, then a restart;
* a corrupt file and a stuck recording are shown, with stage, age and reason, by
  ``hotline pipeline status`` and the admin's page, and do not block the rest.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.telephony.sipp_util import (SIPP, cmdline, descendants, free_even_port_pair, free_port, ppid, stop_process,
                                      stream_uac_scenario, wait_for)

pytestmark = [pytest.mark.sip, pytest.mark.slow, pytest.mark.timeout(1500),
              pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) not installed")]

WORKERS = 22  # kamailio gives each worker 2 callers (4 legs, 2 kept for operators): 40 callers + spare
SCENARIO = stream_uac_scenario(name="pipeline burst caller", user="13800000000", tag="p", loop=True,
                               telephone_event=False, stop_stream=True)


# ---------------------------------------------------------------------------------- processes
class Service:
    def __init__(self, settings, tmp: Path):
        self.settings = settings
        self.tmp = tmp
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
        self.env.update(HOTLINE_DATA_DIR=str(settings.data_dir), HOTLINE_SIP_PORT=str(self.port),
                        HOTLINE_SIP_USE_KAMAILIO="1", HOTLINE_SIP_WORKERS=str(WORKERS),
                        HOTLINE_SIP_WORKER_BASE_PORT=str(free_port()), HOTLINE_HTTP_PORT=str(free_port("tcp")),
                        HOTLINE_LIVE_ASR="0", HOTLINE_MAX_CONCURRENT_CALLS="100",
                        HOTLINE_PIKE_REQS_PER_INTERVAL="1000", HOTLINE_PIPELINE_SCAN_SECONDS="5",
                        HOTLINE_QUEUE_MAX_WAIT_SECONDS="600")
        self.proc: subprocess.Popen | None = None
        self.n = 0

    @property
    def log_path(self) -> Path:
        return self.tmp / f"serve{self.n}.log"

    def start(self) -> None:
        self.n += 1
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "hotline_api.cli", "serve"], env=self.env,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(lambda: self.proc.poll() is not None or (len(self.workers()) == WORKERS and self.part("pipeline")
                                                             and b"kamailio started" in self.log_path.read_bytes()),
                     240, 0.5, what="service to start")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.logs()}") from None
        assert self.proc.poll() is None, self.logs()
        time.sleep(3)  # kamailio's first OPTIONS probes mark the workers up

    def workers(self) -> list[int]:
        return [p for p in descendants(self.proc.pid) if "sip-worker" in cmdline(p)]

    def part(self, name: str) -> int | None:
        for p in descendants(self.proc.pid):
            if f"--only {name} " in cmdline(p) + " ":
                return p
        return None

    def worker_of(self, worker_id: str) -> int | None:
        for p in self.workers():
            if f"--worker-id {worker_id} " in cmdline(p) + " ":
                return p
        return None

    def logs(self) -> str:
        out = []
        for f in sorted(self.tmp.glob("serve*.log")):
            out.append(f"--- {f.name}\n" + f.read_text(errors="replace")[-5000:])
        for f in sorted(self.settings.run_dir.glob("sip/**/*.log"))[:4]:
            out.append(f"--- {f.name}\n" + f.read_text(errors="replace")[-1500:])
        return "\n".join(out)

    def all_log_text(self) -> str:
        files = list(self.tmp.glob("serve*.log")) + list(self.settings.run_dir.glob("sip/**/*.log"))
        return "\n".join(f.read_text(errors="replace") for f in files)

    def kill_all(self) -> None:
        """kill -9 of the service: the supervisor, every part, worker and kamailio."""
        pids = descendants(self.proc.pid) | {self.proc.pid}
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)
        self._log.close()
        wait_for(lambda: not any(os.path.exists(f"/proc/{p}") and ppid(p) not in (None, 0) for p in pids), 20,
                 what="every process of the service gone")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, 60)
            self._log.close()


def calls(svc: Service, tag: str, n: int, hold_s: float, audio: Path, rate: float | None = None):
    """n sipp calls (RTP audio for hold_s, then BYE), all set up within ~1 s: background Popen."""
    d = svc.tmp / f"sipp-{tag}"
    d.mkdir(exist_ok=True)
    scen = d / "scenario.xml"
    scen.write_text(SCENARIO.replace("@AUDIO@", str(audio)).replace("@HOLD_MS@", str(int(hold_s * 1000))))
    cmd = [SIPP, f"127.0.0.1:{svc.port}", "-sf", str(scen), "-i", "127.0.0.1", "-p", str(free_port("udp")),
           "-m", str(n), "-l", str(n), "-r", str(rate or n), "-cid_str", f"{tag}-%u-%p@%s", "-nostdin",
           "-timeout", f"{int(hold_s + 90)}s", "-recv_timeout", "30000", "-mp", str(free_even_port_pair()),
           "-rtp_threadtasks", "32", "-trace_err", "-error_file", str(d / "errors.log")]
    return subprocess.Popen(cmd, cwd=d, stdout=open(d / "stdout.log", "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


# ---------------------------------------------------------------------------------- checks
def _rows(db, tag: str):
    from hotline_api.models.calls import Call, Recording

    with db() as s:
        return s.execute(select(Recording.id, Recording.stage, Recording.status, Call.ended_at)
                         .join(Call, Call.id == Recording.call_id)
                         .where(Call.sip_call_id.like(f"{tag}-%"))).all()


def _answered(db, tag: str) -> int:
    from hotline_api.models.calls import Call

    with db() as s:
        return s.execute(select(func.count()).where(Call.sip_call_id.like(f"{tag}-%"),
                                                    Call.answered_at.is_not(None))).scalar_one()


def incoming_files(settings) -> list[Path]:
    return [p for p in (settings.recordings_dir / "incoming").rglob("*.wav")]


def settled(db, settings, tag: str, n: int) -> bool:
    rows = _rows(db, tag)
    return len(rows) == n and all(r.stage == "queued" for r in rows) and not incoming_files(settings)


def wait_settled(svc: Service, db, tag: str, n: int, timeout: float) -> None:
    try:
        wait_for(lambda: settled(db, svc.settings, tag, n), timeout, 0.5, what=f"{n} recordings of {tag} queued")
    except AssertionError as e:
        rows = _rows(db, tag)
        stages: dict = {}
        for r in rows:
            stages[r.stage] = stages.get(r.stage, 0) + 1
        raise AssertionError(f"{e}: {len(rows)} rows, stages {stages}, incoming {len(incoming_files(svc.settings))}"
                             f"\n{svc.logs()}") from None


def check_exactly_once(db, settings, tag: str, n: int) -> None:
    from hotline_api.models.asr import TranscriptionJob
    from hotline_api.models.governance import AuditEntry, RecordingBlob, ReviewAssignment

    rows = _rows(db, tag)
    assert len(rows) == n
    ids = [r.id for r in rows]
    with db() as s:
        for model, col in ((RecordingBlob, RecordingBlob.recording_id), (ReviewAssignment, ReviewAssignment.recording_id),
                           (TranscriptionJob, TranscriptionJob.recording_id)):
            got = dict(s.execute(select(col, func.count()).where(col.in_(ids)).group_by(col)).all())
            assert got == {i: 1 for i in ids}, model.__name__
        for action in ("recording.store", "review.assign"):
            got = dict(s.execute(select(AuditEntry.object_id, func.count())
                                 .where(AuditEntry.action == action, AuditEntry.object_id.in_(ids))
                                 .group_by(AuditEntry.object_id)).all())
            assert got == {i: 1 for i in ids}, action
        for rid in ids:  # encrypted, never plain
            blob = s.get(RecordingBlob, rid)
            raw = (settings.recordings_dir / blob.rel_path).read_bytes()
            assert raw[:4] != b"RIFF" and blob.plain_size > 44 * 10
    assert not incoming_files(settings)


# ---------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("audio")
    out = d / "tone_ulaw.wav"
    subprocess.run(["sox", "-n", "-r", "8000", "-c", "1", "-e", "u-law", str(out), "synth", "3", "sine", "300-900"],
                   check=True, capture_output=True)
    return out


@pytest.fixture
def service(settings, db, tmp_path):
    from hotline_api.services import auth, review

    with db() as s:  # a recording manager on the default roster, as an admin would set up
        mgr, _ = auth.create_user(s, "mgr", "recording_manager", "a-long-password-1")
        review.set_roster(s, None, mgr)
        auth.create_user(s, "adm", "admin", "a-long-password-2")
        s.commit()
    svc = Service(settings, tmp_path)
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


def _hold_lock_process(db_path: str, seconds: float) -> subprocess.Popen:
    code = ("import sqlite3,sys,time\n"
            "c=sqlite3.connect(sys.argv[1],isolation_level=None,timeout=60)\n"
            "c.execute('BEGIN IMMEDIATE'); print('locked',flush=True); time.sleep(float(sys.argv[2]))\n"
            "c.execute('COMMIT'); print('released',flush=True)\n")
    p = subprocess.Popen([sys.executable, "-c", code, db_path, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


# ---------------------------------------------------------------------------------- the test
def test_every_recording_reaches_storage_review_and_transcription(service, settings, db, audio):
    svc = service
    # 1. burst: 40 calls set up within ~1 s, 6 s of audio each, so they hang up within 2 s of each other
    p = calls(svc, "burst", 40, 6.0, audio)
    assert p.wait(120) == 0, (svc.tmp / "sipp-burst" / "errors.log").read_text(errors="replace")[-2000:] + svc.logs()
    assert _answered(db, "burst") == 40
    wait_for(lambda: len(_rows(db, "burst")) == 40 and all(r.ended_at for r in _rows(db, "burst")), 30,
             what="40 calls ended in the database")
    rows = _rows(db, "burst")
    ends = sorted(r.ended_at for r in rows)
    assert (ends[-1] - ends[0]).total_seconds() <= 2.0, ends
    t_hangup = time.monotonic()
    wait_settled(svc, db, "burst", 40, 60)
    assert time.monotonic() - t_hangup <= 60
    check_exactly_once(db, settings, "burst", 40)
    text = svc.all_log_text()
    assert "Traceback" not in text and "database is locked" not in text, svc.logs()

    # 2. an external process holds the write lock for 30 s during a burst
    p = calls(svc, "locked", 10, 8.0, audio)
    wait_for(lambda: _answered(db, "locked") == 10, 30, what="locked-burst calls answered")
    holder = _hold_lock_process(settings.db_url.removeprefix("sqlite:///"), 30)
    try:
        assert p.wait(120) == 0, (svc.tmp / "sipp-locked" / "errors.log").read_text(errors="replace")[-2000:]
    finally:
        assert holder.wait(60) == 0
    wait_settled(svc, db, "locked", 10, 90)
    check_exactly_once(db, settings, "locked", 10)

    # 3. kill -9 of a SIP worker right after its calls hung up
    p = calls(svc, "wkill", 6, 5.0, audio)
    wait_for(lambda: _answered(db, "wkill") == 6, 30, what="calls answered")
    from hotline_api.models.calls import Call

    with db() as s:
        victim_id = s.execute(select(Call.worker_id).where(Call.sip_call_id.like("wkill-%"))
                              .order_by(Call.created_at.desc())).scalars().first()
    victim = svc.worker_of(victim_id)
    assert victim is not None
    assert p.wait(60) == 0
    os.kill(victim, signal.SIGKILL)  # sipp has its 200 OK to the BYE: the worker is finishing the recording
    wait_settled(svc, db, "wkill", 6, 90)
    check_exactly_once(db, settings, "wkill", 6)

    # 4. kill -9 of the pipeline process in the middle of an ingest
    pipe = svc.part("pipeline")
    os.kill(pipe, signal.SIGSTOP)
    p = calls(svc, "pkill", 8, 5.0, audio)
    assert p.wait(60) == 0
    wait_for(lambda: sum(r.stage == "completed" for r in _rows(db, "pkill")) == 8, 30, what="8 completed rows")
    from hotline_api.models.calls import Recording

    os.kill(pipe, signal.SIGCONT)
    ids = [r.id for r in _rows(db, "pkill")]

    def some_claimed_or_stored() -> bool:
        with db() as s:
            return bool(s.execute(select(func.count()).where(Recording.id.in_(ids),
                                                            (Recording.claim_token.is_not(None))
                                                            | (Recording.stage != "completed"))).scalar_one())

    wait_for(some_claimed_or_stored, 10, 0.002, what="the pipeline to start on them")
    os.kill(pipe, signal.SIGKILL)
    with db() as s:
        unfinished = s.execute(select(func.count()).where(Recording.id.in_(ids), Recording.stage != "queued")).scalar_one()
    assert unfinished > 0  # killed in the middle, not after
    wait_for(lambda: svc.part("pipeline") not in (None, pipe), 30, what="pipeline part restarted")
    wait_settled(svc, db, "pkill", 8, 90)
    check_exactly_once(db, settings, "pkill", 8)

    # 5. the whole service killed with unstored recordings on disk, then started again
    os.kill(svc.part("pipeline"), signal.SIGSTOP)
    p = calls(svc, "restart", 8, 5.0, audio)
    assert p.wait(60) == 0
    wait_for(lambda: sum(r.stage == "completed" for r in _rows(db, "restart")) == 8, 30, what="8 completed rows")
    assert len(incoming_files(settings)) == 8  # plain files waiting to be stored
    svc.kill_all()
    svc.start()
    wait_settled(svc, db, "restart", 8, 90)
    check_exactly_once(db, settings, "restart", 8)
    for tag, n in (("burst", 40), ("locked", 10), ("wkill", 6), ("pkill", 8)):
        check_exactly_once(db, settings, tag, n)  # nothing earlier was touched again by the restart

    # 6. a corrupt file and a stuck recording: shown with stage, age and reason; the rest flows on
    bad = str(uuid.uuid4())
    bad_path = settings.recordings_dir / "incoming" / "2026" / "12" / f"{bad}.wav"
    bad_path.parent.mkdir(parents=True, exist_ok=True)
    bad_path.write_bytes(os.urandom(20000))
    old = time.time() - 120
    os.utime(bad_path, (old, old))  # a file nobody reported, left by a crash two minutes ago
    stuck = str(uuid.uuid4())
    with db() as s:  # a recording whose store step keeps failing: third try 25 min ago, next one in an hour
        now = datetime.now(timezone.utc)
        s.add(Recording(id=stuck, kind="call", status="complete", path=str(settings.recordings_dir / "gone.wav"),
                        stage="completed", stage_at=now - timedelta(minutes=25), stage_attempts=3,
                        stage_error="OSError: [Errno 28] No space left on device", stage_next_at=now + timedelta(hours=1),
                        created_at=now - timedelta(minutes=26), duration=5.0))
        s.commit()
    p = calls(svc, "after", 4, 3.0, audio)
    assert p.wait(60) == 0
    wait_settled(svc, db, "after", 4, 60)  # not blocked by either
    wait_for(lambda: not bad_path.exists(), 30, what="corrupt file taken in")
    out = subprocess.run([sys.executable, "-m", "hotline_api.cli", "pipeline", "status", "--json"], env=svc.env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr  # not healthy
    st = json.loads(out.stdout)
    q = {r["recording_id"]: r for r in st["quarantined"]}
    assert bad in q and "WAV" in q[bad]["error"]
    s_ = {r["recording_id"]: r for r in st["stuck"]}
    assert s_[stuck]["stage"] == "completed" and s_[stuck]["age_s"] >= 25 * 60 and s_[stuck]["attempts"] == 3
    assert "No space left" in s_[stuck]["error"]
    text = subprocess.run([sys.executable, "-m", "hotline_api.cli", "pipeline", "status"], env=svc.env,
                          capture_output=True, text=True, timeout=60).stdout
    assert stuck in text and bad in text and "completed" in text
    # the admin's page
    from fastapi.testclient import TestClient

    from hotline_api.app import create_app

    with TestClient(create_app(settings), base_url="https://testserver") as c:
        r = c.post("/login", data={"username": "adm", "password": "a-long-password-2"}, follow_redirects=False)
        assert r.status_code == 303, r.text
        page = c.get("/admin/pipeline")
        assert page.status_code == 200
        html = page.text
        for expected in (stuck, bad, "待加密保存", "不是可读的 WAV", "需要处理", "No space left"):
            assert expected in html, expected
    raw = sqlite3.connect(settings.db_url.removeprefix("sqlite:///"))
    assert raw.execute("SELECT stage FROM recordings WHERE id = ?", (bad,)).fetchone() == ("quarantined",)
    raw.close()
