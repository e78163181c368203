"""`hotline serve --only sip` in pool mode: kamailio on the public port, two `hotline sip-worker`
processes with the database sink. A call is stored; a worker killed mid-call is restarted and its
recording reaches the database as `recovered` (then encrypted and assigned like any other)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.telephony.conftest import caller_audio  # noqa: F401 - fixture
from tests.telephony.sipp_util import SIPP, call_scenario, free_port, run_sipp, sipp_errors, stop_process, wait_for

pytestmark = [pytest.mark.sip, pytest.mark.slow,
              pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) not installed")]


def _worker_pids(parent: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if "sip-worker" in line and "--worker-id w" in line]


def test_pool_mode_stores_calls_and_recovers_a_killed_worker(settings, db, caller_audio, tmp_path):  # noqa: F811
    from hotline_api.models.calls import Call, Recording
    from hotline_api.models.governance import RecordingBlob

    port, base = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env.update(HOTLINE_DATA_DIR=str(settings.data_dir), HOTLINE_SIP_PORT=str(port), HOTLINE_SIP_USE_KAMAILIO="1",
               HOTLINE_SIP_WORKERS="2", HOTLINE_SIP_WORKER_BASE_PORT=str(base))
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "hotline_api.cli", "serve", "--only", "sip"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: proc.poll() is not None or len(_worker_pids(proc.pid)) == 2
                 and b"kamailio" in (tmp_path / "serve.log").read_bytes(), 90, what="pool to start")
        assert proc.poll() is None, (tmp_path / "serve.log").read_text(errors="replace")
        time.sleep(2)  # kamailio's first OPTIONS probes
        stream, _ref, _rate = caller_audio
        r = run_sipp(call_scenario(stream, hold_ms=4000), f"127.0.0.1:{port}", tmp_path, "one")
        assert r.returncode == 0, sipp_errors(tmp_path, "one") + (tmp_path / "serve.log").read_text(errors="replace")[-3000:]

        # a long call, then its worker is killed 3 s in
        bg = run_sipp(call_scenario(stream, hold_ms=30000), f"127.0.0.1:{port}", tmp_path, "long", background=True)

        def answered_calls():
            with db() as s:
                return s.query(Call).filter(Call.answered_at.is_not(None)).count()

        wait_for(lambda: answered_calls() == 2, 30, what="second call answered")
        time.sleep(3)
        with db() as s:
            live = s.query(Call).filter(Call.ended_at.is_(None)).one()
            victim = live.worker_id
        pids = [p for p in _worker_pids(proc.pid)
                if f"--worker-id {victim}" in open(f"/proc/{p}/cmdline").read().replace("\0", " ")]
        assert len(pids) == 1
        os.kill(pids[0], signal.SIGKILL)

        def recovered():
            with db() as s:
                rec = s.query(Recording).filter_by(call_id=live.id).one_or_none()
                return rec is not None and rec.status == "recovered" and s.get(RecordingBlob, rec.id) is not None

        wait_for(recovered, 60, what="recovered recording in the database")
        stop_process(bg, signal.SIGTERM, 10)
        with db() as s:
            rec = s.query(Recording).filter_by(call_id=live.id).one()
            assert rec.duration >= 2.0
            assert s.get(Call, live.id).status == "recovered"
        wait_for(lambda: len(_worker_pids(proc.pid)) == 2, 60, what="killed worker restarted")
    finally:
        stop_process(proc, signal.SIGTERM, 40)
        log.close()
