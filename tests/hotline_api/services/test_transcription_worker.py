"""The worker in-process with the real Vosk engine (stand-in model): imports, bad input, transcript
storage and the completion event."""
from __future__ import annotations

import struct

import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import select

import hotline_api.models.asr  # noqa: F401 - registers the tables until models/__init__ imports it
from hotline_api.models.asr import Transcript, TranscriptionJob as Job
from hotline_api.models.calls import Recording
from hotline_api.services import transcription as tr
from tests.asr import speech as sp
from tests.asr.conftest import ko_model_dir, phrases8k, speech_dir  # noqa: F401 - fixtures

pytestmark = pytest.mark.vosk


def _bad_files(d):
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    (d / "empty.wav").write_bytes(b"")
    out["empty.wav"] = "empty file"
    good = d / "full.wav"
    sf.write(str(good), (np.random.default_rng(0).standard_normal(16000) * 2000).astype(np.int16), 16000)
    (d / "truncated.wav").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    out["truncated.wav"] = "truncated WAV"
    (d / "notaudio.wav").write_text("not audio at all\n" * 100)
    out["notaudio.wav"] = "not a readable audio file"
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 0, 8000, 0, 0, 16)
    (d / "zero.wav").write_bytes(b"RIFF" + struct.pack("<I", 36 + 10) + b"WAVE" + fmt + b"data"
                                 + struct.pack("<I", 10) + b"\0" * 10)
    out["zero.wav"] = "0 channels"
    sf.write(str(d / "six.wav"), np.zeros((8000, 6), dtype=np.int16), 8000)
    out["six.wav"] = "6 channels"
    return out


def test_worker_fails_bad_input_clearly_and_keeps_serving(db, settings, ko_model_dir, phrases8k, tmp_path):
    settings.vosk_model = str(ko_model_dir)  # an external (configured) model directory
    expected = _bad_files(tmp_path / "in")
    ids = {}
    for name in expected:
        ids[name] = tr.enqueue_import(tmp_path / "in" / name, settings)
    call = sp.write(tmp_path / "in" / "call.wav",
                    sp.timeline(8000, 8.0, [(0, 0.5, phrases8k[0]), (1, 4.0, phrases8k[1])], 2), 8000)
    good_rec, good_job = tr.enqueue_import(call, settings)
    ready = []
    tr.subscribe(ready.append)
    try:
        w = tr.Worker(settings, exit_when_idle=True, poll_interval=0.05, threads=2)
        w.run()
    finally:
        tr.unsubscribe(ready.append)
    with db() as s:
        for name, msg in expected.items():
            rec_id, job_id = ids[name]
            j = s.get(Job, job_id)
            assert j.status == "failed" and j.attempts == 1, (name, j.status, j.last_error)
            assert msg in j.last_error, (name, j.last_error)
            rec = s.get(Recording, rec_id)
            assert rec.kind == "import" and (settings.data_dir / rec.path).is_file()  # nothing lost
            assert name not in rec.path  # file names are random ids
        j = s.get(Job, good_job)
        assert j.status == "done" and j.attempts == 1 and j.progress == 1.0
        data = tr.load_transcript(s, good_rec)
        assert s.scalar(select(Transcript.text).where(Transcript.recording_id == good_rec)) == data["text"]
    assert [c["speaker"] for c in data["channels"]] == ["caller", "operator"]
    assert data["channels"][0]["segments"] and data["channels"][1]["segments"]
    assert [t["speaker"] for t in data["turns"]][:2] == ["caller", "operator"]
    assert len(ready) == 1 and ready[0].recording_id == good_rec and ready[0].kind == "import"
    assert ready[0].transcript == data


def test_transcribe_cli_json(settings, ko_model_dir, phrases8k, tmp_path, capsys):
    import json

    from hotline_api.cli import main

    p = sp.write(tmp_path / "vm.wav", sp.timeline(8000, 4.0, [(0, 0.3, phrases8k[3])], 1), 8000)
    assert main(["transcribe", str(p), "--model", str(ko_model_dir), "--json", "--kind", "voicemail"]) == 0
    cap = capsys.readouterr()
    out = json.loads(cap.out)
    assert out["channels"][0]["speaker"] == "voicemail" and out["channels"][0]["segments"]
    assert "100%" in cap.err
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"")
    assert main(["transcribe", str(bad), "--model", str(ko_model_dir)]) == 1
    assert "empty file" in capsys.readouterr().err
