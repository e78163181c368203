"""Master-key rotation with the service running (issue 11): `hotline serve` (kamailio, two pool
workers, the pipeline, the transcription worker with the stand-in model) takes calls while
`hotline keys rotate` runs -- a call is in progress and a transcription job is running at that
moment. Afterwards, with only the new key on disk, every recording plays and every transcript
reads: the running processes followed the rotation instead of wrapping new keys with the old one."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.asr.conftest import ko_model_dir  # noqa: F401 - fixture
from tests.telephony.conftest import caller_audio  # noqa: F401 - fixture
from tests.telephony.sipp_util import SIPP, call_scenario, free_port, run_sipp, sipp_errors, stop_process, wait_for

pytestmark = [pytest.mark.sip, pytest.mark.vosk, pytest.mark.slow,
              pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) not installed")]


def test_rotation_while_a_call_and_a_transcription_run(settings, db, caller_audio, ko_model_dir, tmp_path):  # noqa: F811
    from hotline_api.models.asr import TranscriptionJob
    from hotline_api.models.calls import Call, Recording
    from hotline_api.models.governance import RecordingBlob
    from hotline_api.services import review, storage, transcription

    port, base = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env.update(HOTLINE_DATA_DIR=str(settings.data_dir), HOTLINE_SIP_PORT=str(port), HOTLINE_SIP_USE_KAMAILIO="1",
               HOTLINE_SIP_WORKERS="2", HOTLINE_SIP_WORKER_BASE_PORT=str(base), HOTLINE_HTTP_PORT=str(free_port("tcp")),
               HOTLINE_VOSK_MODEL=str(ko_model_dir), HOTLINE_LIVE_ASR="0")
    subprocess.run([sys.executable, "-m", "hotline_api.cli", "keys", "init"], env=env, check=True, capture_output=True)
    with db() as s:  # a manager on duty, so recordings are assigned and queued
        from hotline_api.services import auth

        mgr, _ = auth.create_user(s, "mgr", "recording_manager", "a-long-password-2")
        review.set_roster(s, None, mgr)
        s.commit()
    out = open(tmp_path / "serve.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "hotline_api.cli", "serve", "--only", "sip,pipeline,worker"],
                            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    old_kcv = storage.open_crypto(settings, db).master.kcv

    def log_tail() -> str:
        return (tmp_path / "serve.log").read_text(errors="replace")[-4000:]

    try:
        wait_for(lambda: proc.poll() is not None or b"kamailio started" in (tmp_path / "serve.log").read_bytes(), 120,
                 what="serve to start")
        assert proc.poll() is None, log_tail()
        time.sleep(2)
        stream, _ref, _rate = caller_audio
        r = run_sipp(call_scenario(stream, hold_ms=4000), f"127.0.0.1:{port}", tmp_path, "first")
        assert r.returncode == 0, sipp_errors(tmp_path, "first")

        def job_running():
            with db() as s:
                return s.query(TranscriptionJob).filter(TranscriptionJob.status == "running").count() > 0

        wait_for(job_running, 90, interval=0.05, what="the first call's transcription to start")
        bg = run_sipp(call_scenario(stream, hold_ms=9000), f"127.0.0.1:{port}", tmp_path, "second", background=True)

        def second_up():
            with db() as s:
                return s.query(Call).filter(Call.answered_at.is_not(None), Call.ended_at.is_(None)).count() == 1

        wait_for(second_up, 30, interval=0.05, what="the second call to be answered")
        with db() as s:
            during_job = s.query(TranscriptionJob).filter(TranscriptionJob.status == "running").count()
        rot = subprocess.run([sys.executable, "-m", "hotline_api.cli", "keys", "rotate"], env=env,
                             capture_output=True, text=True, timeout=120)
        assert rot.returncode == 0, rot.stdout + rot.stderr
        with db() as s:
            assert s.query(Call).filter(Call.ended_at.is_(None)).count() == 1  # the call was still up
        assert during_job >= 1 or job_running()
        assert bg.wait(60) == 0, sipp_errors(tmp_path, "second")

        def all_transcribed():
            with db() as s:
                jobs = s.query(TranscriptionJob).all()
                return len(jobs) == 2 and all(j.status == "done" for j in jobs)

        wait_for(all_transcribed, 180, what="both recordings transcribed\n" + log_tail())
    finally:
        stop_process(proc, signal.SIGTERM, 40)
        out.close()
    assert b"Traceback" not in (tmp_path / "serve.log").read_bytes(), log_tail()
    keys_dir = settings.keys_dir
    assert not (keys_dir / "master.key.new").exists()
    fresh = storage.open_crypto(settings, db)  # a process started now knows only the new key
    assert fresh.master.kcv != old_kcv
    with db() as s:
        recs = s.query(Recording).all()
        assert len(recs) == 2
        for rec in recs:
            blob = s.get(RecordingBlob, rec.id)
            assert blob.master_kcv == fresh.master.kcv
            with storage.open_reader(s, fresh, rec.id) as reader:
                assert hashlib.sha256(reader.read_all()).hexdigest() == blob.sha256
            assert transcription.load_transcript(s, rec.id) is not None
