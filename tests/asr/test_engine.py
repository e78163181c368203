"""Real Vosk decoding (stand-in Korean model) of espeak-ng speech: structure, timings, fidelity,
8 kHz stereo speakers, post-processing."""
from __future__ import annotations

import json
import wave

import numpy as np
import pytest

from asr.engine import Transcriber, reseed_dither
from asr.postprocess import Replacements
from tests.asr import speech as sp

pytestmark = pytest.mark.vosk

TOL = 0.5  # seconds of slack around where the speech is


def _words(result):
    return [w for ch in result["channels"] for s in ch["segments"] for w in s["words"]]


def _inside(w, spans):
    return any(a - TOL <= w["start"] <= w["end"] <= b + TOL for a, b in spans)


@pytest.fixture(scope="module")
def mono16(tmp_path_factory, phrases16k):
    """0.5 s silence, phrase 0, ~0.8 s gap, phrase 1; 16 kHz mono (the model's rate)."""
    a, b = phrases16k[0], phrases16k[1]
    start_b = 0.5 + len(a) / 16000 + 0.8
    x = sp.timeline(16000, start_b + len(b) / 16000 + 0.5, [(0, 0.5, a), (0, start_b, b)], 1)
    p = sp.write(tmp_path_factory.mktemp("mono") / "mono16.wav", x, 16000)
    spans = [tuple(s + o for s in sp.voiced_span(y, 16000)) for y, o in ((a, 0.5), (b, start_b))]
    return p, spans, len(x) / 16000


def test_structure_and_timings(ko_model, mono16):
    path, spans, duration = mono16
    calls = []
    res = Transcriber(ko_model).transcribe(path, progress=lambda d, t: calls.append((d, t)))
    json.dumps(res)  # serialisable
    assert set(res) >= {"duration", "sample_rate", "channels", "text", "rtf", "turns"}
    assert res["duration"] == pytest.approx(duration, abs=1e-3)
    assert res["sample_rate"] == 16000 and res["rtf"] > 0
    (ch,) = res["channels"]
    assert ch["channel"] == 0 and ch["speaker"] == "caller"
    assert ch["segments"], "no speech recognised"
    words = _words(res)
    for s in ch["segments"]:
        assert s["text"] and s["words"]
        assert s["start"] == s["words"][0]["start"] and s["end"] == s["words"][-1]["end"]
    prev = -1.0
    for w in words:
        assert set(w) == {"word", "start", "end", "conf"}
        assert 0.0 <= w["conf"] <= 1.0 and 0.0 <= w["start"] <= w["end"] <= duration
        assert w["start"] >= prev - 1e-6
        prev = w["start"]
        assert _inside(w, spans), f"word {w} outside the speech {spans}"
    for a, b in spans:  # each phrase yields words
        assert any(a - TOL <= w["start"] <= b + TOL for w in words)
    assert res["text"] == ch["text"]
    assert [t["speaker"] for t in res["turns"]] == ["caller"]
    assert calls[0][0] == 0.0 and calls[-1][0] == pytest.approx(duration)
    assert all(x[0] <= y[0] for x, y in zip(calls, calls[1:]))


def _raw_vosk(model, path, chunk=4000):
    """The reference: Vosk's own example loop over the WAV."""
    import vosk

    rec = vosk.KaldiRecognizer(model.model, model.sample_rate)
    rec.SetWords(True)
    words = []
    with wave.open(str(path), "rb") as wf:
        assert wf.getframerate() == model.sample_rate
        while True:
            data = wf.readframes(chunk)
            if not data:
                break
            if rec.AcceptWaveform(data):
                words += json.loads(rec.Result()).get("result", [])
    words += json.loads(rec.FinalResult()).get("result", [])
    return words


def test_fidelity_equals_raw_vosk_loop(ko_model, mono16):
    path = mono16[0]
    reseed_dither(11)
    raw = _raw_vosk(ko_model, path)
    assert raw
    for t in (Transcriber(ko_model), Transcriber(ko_model, block_seconds=0.37, skip_silence_seconds=None)):
        reseed_dither(11)  # Kaldi's feature dither draws from libc rand(): same seed, same noise
        ours = _words(t.transcribe(path))
        assert [(w["word"], w["start"], w["end"], w["conf"]) for w in ours] == \
               [(w["word"], w["start"], w["end"], w["conf"]) for w in raw]


def test_8k_stereo_two_speakers(ko_model, phrases8k, tmp_path):
    a, b, c = phrases8k[0], phrases8k[1], phrases8k[2]
    placements = [(0, 0.5, a), (1, 5.0, b), (0, 10.0, c)]
    x = sp.timeline(8000, 10.0 + len(c) / 8000 + 0.5, placements, 2)
    path = sp.write(tmp_path / "call8k.wav", x, 8000)
    res = Transcriber(ko_model).transcribe(path)
    assert res["sample_rate"] == 8000
    ch0, ch1 = res["channels"]
    assert (ch0["channel"], ch0["speaker"], ch1["channel"], ch1["speaker"]) == (0, "caller", 1, "operator")
    spans = {0: [], 1: []}
    for ch, start, y in placements:
        v0, v1 = sp.voiced_span(y, 8000)
        spans[ch].append((start + v0, start + v1))
    for ch in (ch0, ch1):
        assert ch["segments"], f"nothing recognised on channel {ch['channel']}"
        for s in ch["segments"]:
            for w in s["words"]:
                assert _inside(w, spans[ch["channel"]]), f"ch{ch['channel']} word {w} outside {spans[ch['channel']]}"
        for a_, b_ in spans[ch["channel"]]:
            assert any(a_ - TOL <= s["start"] <= b_ + TOL for s in ch["segments"])
    assert [t["speaker"] for t in res["turns"]] == ["caller", "operator", "caller"]
    starts = [t["start"] for t in res["turns"]]
    assert starts == sorted(starts)


def test_voicemail_and_custom_speakers(ko_model, phrases8k, tmp_path):
    path = sp.write(tmp_path / "vm.wav", sp.timeline(8000, 4.5, [(0, 0.3, phrases8k[3])], 1), 8000)
    t = Transcriber(ko_model)
    assert t.transcribe(path, kind="voicemail")["channels"][0]["speaker"] == "voicemail"
    assert t.transcribe(path, speakers=["reporter"])["turns"][0]["speaker"] == "reporter"


def test_replacements_change_text_not_word_timings(ko_model, mono16, tmp_path):
    path = mono16[0]
    reseed_dither(3)
    plain = Transcriber(ko_model).transcribe(path)
    first = plain["channels"][0]["segments"][0]["words"][0]["word"]
    f = tmp_path / "repl.txt"
    f.write_text(f"{first} → 替换词\n", encoding="utf-8")
    reseed_dither(3)
    fixed = Transcriber(ko_model, replacements=Replacements.from_file(f)).transcribe(path)
    assert _words(fixed) == _words(plain)
    assert "替换词" in fixed["channels"][0]["segments"][0]["text"]
    assert "替换词" not in plain["text"] and "替换词" in fixed["text"]


def test_digital_silence_is_skipped_with_true_times(ko_model, phrases16k, tmp_path):
    """A long run of exact zeros is not decoded, and later words keep their place in the file."""
    a = phrases16k[1]
    x = sp.timeline(16000, 40.0, [(0, 30.0, a)], 1)
    path = sp.write(tmp_path / "late.wav", x, 16000)
    res = Transcriber(ko_model).transcribe(path)
    v0, v1 = sp.voiced_span(a, 16000)
    words = _words(res)
    assert words and all(30.0 + v0 - TOL <= w["start"] <= w["end"] <= 30.0 + v1 + TOL for w in words)
    noskip = Transcriber(ko_model, skip_silence_seconds=None).transcribe(path)
    assert abs(_words(noskip)[0]["start"] - words[0]["start"]) < 0.3


def test_valid_recording_without_frames_gives_empty_transcript(ko_model, tmp_path):
    """A recording marked `empty` by the agent (valid WAV, no frames) is not an error."""
    import soundfile as sf

    p = tmp_path / "empty_call.wav"
    sf.write(str(p), np.zeros((0, 2), dtype=np.int16), 8000, subtype="PCM_16")
    res = Transcriber(ko_model).transcribe(p)
    assert res["duration"] == 0 and res["turns"] == [] and res["text"] == ""
    assert [c["segments"] for c in res["channels"]] == [[], []]
