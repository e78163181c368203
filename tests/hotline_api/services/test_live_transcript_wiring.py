"""The SIP worker's live-transcriber factory (hotline_api.wiring.LiveAsr) with the real Vosk engine
and the stand-in model: lazy model load, results as telephony LiveText in stream seconds."""
from __future__ import annotations

import re
import threading

import numpy as np
import pytest

from tests.asr import speech
from tests.asr.conftest import ko_model_dir, speech_dir  # noqa: F401 - fixtures

HANGUL = re.compile(r"[\uac00-\ud7a3]")


def test_setting_switches_it_off(settings):
    from hotline_api.wiring import LiveAsr, live_transcriber_for

    settings.live_asr = False
    assert live_transcriber_for(settings) is None
    settings.live_asr = True
    f = live_transcriber_for(settings)
    assert isinstance(f, LiveAsr) and f.model_dir == settings.live_model_dir


def test_no_model_installed_gives_no_transcriber(tmp_path, caplog):
    from hotline_api.wiring import LiveAsr

    f = LiveAsr(tmp_path / "nothing-here")
    assert f("call-1", 16000, lambda r: None) is None
    assert f("call-2", 16000, lambda r: None) is None
    assert caplog.text.count("no live Vosk model") == 1  # said once, not per call


@pytest.mark.vosk
@pytest.mark.slow
def test_lazy_model_and_results_in_stream_seconds(ko_model_dir, speech_dir):  # noqa: F811
    from hotline_api.wiring import LiveAsr
    from telephony.events import LiveText

    f = LiveAsr(ko_model_dir, wait_s=60)
    assert f.model is None  # nothing loaded before the first call
    got: list[LiveText] = []
    lock = threading.Lock()

    def emit(r):
        with lock:
            got.append(r)

    t = f("call-uuid-1", 16000, emit)
    assert t is not None and f.model is not None
    x = speech.speech_array(speech.PHRASES[0], speech_dir, 16000)
    audio = speech.timeline(16000, 1.0 + len(x) / 16000 + 1.0, [(0, 1.0, x)], channels=1)[:, 0]
    for i in range(0, len(audio), 320):  # 20 ms frames, as the agent's tap delivers them (in batches)
        t.feed(audio[i:i + 320].tobytes())
    t.close()
    finals = [r for r in got if r.final]
    assert finals and all(HANGUL.search(r.text) for r in finals)
    v0, v1 = speech.voiced_span(x, 16000)
    assert finals[0].start >= 1.0 + v0 - 0.3 and finals[-1].end <= 1.0 + v1 + 0.3, (finals, v0, v1)
    partials = [r for r in got if not r.final]
    assert all(not r.final and r.end >= r.start for r in partials)
    t2 = f("call-uuid-2", 16000, emit)  # the model is loaded once per process
    assert t2 is not None and t2.rec.model is t.rec.model
    t2.close()
