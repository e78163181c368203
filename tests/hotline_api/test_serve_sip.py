"""`hotline serve --only sip,pipeline` (single worker, database sink, the recording pipeline) against a real sipp caller: the call
row, the encrypted recording, its review assignment and its transcription job."""
from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from tests.telephony.conftest import caller_audio  # noqa: F401 - fixture
from tests.telephony.sipp_util import SIPP, call_scenario, free_port, run_sipp, sipp_errors, stop_process, wait_for

pytestmark = [pytest.mark.sip, pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) not installed")]


@pytest.fixture
def serve_sip(settings, tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_")}
    env.update(HOTLINE_DATA_DIR=str(settings.data_dir), HOTLINE_SIP_PORT=str(port))
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "hotline_api.cli", "serve", "--only", "sip,pipeline"], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: proc.poll() is not None or b"listening" in (tmp_path / "serve.log").read_bytes(), 90,
                 what="sip worker to listen")
        assert proc.poll() is None, (tmp_path / "serve.log").read_text(errors="replace")
        yield f"127.0.0.1:{port}", proc
    finally:
        stop_process(proc, signal.SIGTERM, 30)
        log.close()


def test_call_through_serve_is_stored_encrypted_assigned_and_queued(settings, db, serve_sip, caller_audio, tmp_path):
    from hotline_api.models.calls import Call, Recording
    from hotline_api.models.asr import TranscriptionJob
    from hotline_api.models.governance import RecordingBlob, ReviewAssignment
    from hotline_api.services import storage

    target, proc = serve_sip
    stream, ref, ref_rate = caller_audio
    r = run_sipp(call_scenario(stream, hold_ms=6000), target, tmp_path, "e2e")
    assert r.returncode == 0, sipp_errors(tmp_path, "e2e")

    def job_exists():
        with db() as s:
            return s.query(TranscriptionJob).count() == 1

    wait_for(job_exists, 60, what="transcription job")
    with db() as s:
        call = s.query(Call).one()
        assert call.dialled == "12388" and call.sip_call_id
        assert call.caller_number == "13800000000"  # the scenario's From user, decrypted by the field cipher
        assert call.caller_hash and "13800000000" not in call.caller_hash
        assert call.answered_at and call.ended_at and call.ended_at > call.answered_at
        # hung up (BYE) while the prompts still played: the agent marks that abandoned, recording kept
        assert (call.status, call.hangup_cause, call.hung_up_by) == ("abandoned", 200, "caller")
        assert call.flow_path.startswith("notice")
        rec = s.query(Recording).one()
        assert rec.call_id == call.id and rec.status == "complete" and rec.channels == 2 and rec.sample_rate == 16000
        assert 5.5 < rec.duration < 7.5
        blob = s.get(RecordingBlob, rec.id)
        assert blob is not None and blob.wrapped_key
        assert s.query(ReviewAssignment).filter_by(recording_id=rec.id).one()
        job = s.query(TranscriptionJob).one()
        assert job.recording_id == rec.id and job.status == "waiting_for_model"  # no model installed here
        # caller identity is encrypted at rest: the raw column holds no "sipp"
        raw = s.connection().exec_driver_sql("SELECT caller_number, caller_uri FROM calls").one()
        assert "13800000000" not in (raw[0] or "") and "13800000000" not in (raw[1] or "")
        ctx = storage.open_crypto(settings, db)
        with storage.open_reader(s, ctx, rec.id) as reader:
            data = reader.read_all()
    assert hashlib.sha256(data).hexdigest() == rec.sha256
    audio, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert audio.shape[1] == 2 and rate == 16000 and np.abs(audio[:, 0]).max() > 0.05
    # no plain audio left anywhere in the data dir
    plain = [p for p in settings.data_dir.rglob("*.wav") if "prompts" not in p.parts]
    assert plain == []
