"""End to end through the composition root: an audio file imported over the API (encrypted into
storage), transcribed by the ASR worker with the real Vosk engine (stand-in model) reading through
the default opener (decrypting storage), then drafted. The draft links to the recording and its transcript."""
from __future__ import annotations

import io
import threading

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from tests.asr import speech
from tests.asr.conftest import ko_model_dir, speech_dir  # noqa: F401 - fixtures

pytestmark = [pytest.mark.vosk, pytest.mark.slow]


def test_import_transcribe_draft(settings, db, ko_model_dir, speech_dir):  # noqa: F811
    from hotline_api import wiring
    from hotline_api.app import create_app
    from hotline_api.models.asr import TranscriptionJob, Transcript
    from hotline_api.models.cases import Draft
    from hotline_api.models.calls import Recording
    from hotline_api.services import auth, review, storage, transcription

    settings.vosk_model = str(ko_model_dir)
    ctx = storage.open_crypto(settings, db)
    with db() as s:
        sup, _ = auth.create_user(s, "sup", "supervisor", "a-long-password-1")
        mgr, _ = auth.create_user(s, "mgr", "recording_manager", "a-long-password-2")
        review.set_roster(s, None, mgr)
        s.commit()
        token = auth.issue_token(settings, sup)
    # 8 kHz stereo call: caller speech on channel 0 at 0.5 s, hotline speech on channel 1 at 3 s
    rate = 8000
    a = speech.speech_array(speech.PHRASES[0], speech_dir, rate)
    b = speech.speech_array(speech.PHRASES[1], speech_dir, rate)
    audio = speech.timeline(rate, 3.0 + len(b) / rate + 0.5, [(0, 0.5, a), (1, 3.0, b)], channels=2)
    buf = io.BytesIO()
    sf.write(buf, audio, rate, format="WAV", subtype="PCM_16")

    app = create_app(settings)
    app.state.crypto = ctx
    with TestClient(app) as client:
        r = client.post("/api/recordings/import?filename=call.wav", content=buf.getvalue(),
                        headers={"Authorization": f"Bearer {token}", "Content-Type": "audio/wav"})
        assert r.status_code == 201, r.text
        rid = r.json()["recording_id"]
        assert r.json()["job_status"] == "queued"
    assert not [p for p in settings.data_dir.rglob("*.wav") if "prompts" not in p.parts]  # no plain copy

    drafted = threading.Event()
    to_draft = wiring.transcript_to_draft(db, settings)

    def on_ready(ready):
        to_draft(ready)
        drafted.set()

    transcription.subscribe(on_ready)
    try:
        worker = transcription.Worker(settings, exit_when_idle=True, poll_interval=0.2)
        worker.run()
    finally:
        transcription.unsubscribe(on_ready)
    assert drafted.is_set()
    with db() as s:
        job = s.query(TranscriptionJob).filter_by(recording_id=rid).one()
        assert job.status == "done", job.last_error
        t = s.query(Transcript).filter_by(recording_id=rid).one()
        doc = transcription.load_transcript(s, rid)
        assert [c["speaker"] for c in doc["channels"]] == ["caller", "operator"]
        caller_segs = doc["channels"][0]["segments"]
        assert caller_segs and caller_segs[0]["start"] >= 0.3
        assert doc["channels"][1]["segments"][0]["start"] >= 2.7  # where the hotline side speaks
        d = s.query(Draft).filter_by(recording_id=rid).one()
        assert d.transcript_id == t.id
        rec = s.get(Recording, rid)
        assert rec is not None and d.call_id == rec.call_id
