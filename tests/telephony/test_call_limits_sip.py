"""The maximum call length over real SIP: past ``max_call_seconds`` the worker plays the closing
prompt and hangs up itself (BYE from the hotline side); the caller is never left hanging and the
recording is complete, with the closing prompt on the hotline channel."""
from __future__ import annotations


import numpy as np
import pytest
import soundfile as sf

from tests.telephony.audio_util import best_ncc
from tests.telephony.sipp_util import SIPP, hung_up_by_hotline_scenario, run_sipp, sipp_errors

pytestmark = [pytest.mark.sip, pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) not installed")]


def test_call_past_max_length_gets_closing_prompt_and_bye(make_worker, caller_audio, tmp_path, prompts_dir):
    stream, _ref, _rate = caller_audio
    w = make_worker(max_call_seconds=12)
    r = run_sipp(hung_up_by_hotline_scenario(stream), w.target, tmp_path, "limit", timeout=60)
    assert r.returncode == 0, sipp_errors(tmp_path, "limit")  # the BYE came from the hotline
    ended = w.wait_events("CallEnded")[0]
    done = w.wait_events("RecordingCompleted")[0]
    assert ended["hung_up_by"] == "hotline" and ended["status"] == "ended"
    states = [e["state"] for e in w.events("FlowChanged")]
    assert "closing" in states
    assert done["status"] == "complete"
    # the limit, then the closing prompt, then BYE: not much longer than limit + prompt
    too_long, rate = sf.read(str(prompts_dir / "too_long.wav"), dtype="float32")
    assert 12 <= done["duration"] <= 12 + len(too_long) / rate + 3
    audio, arate = sf.read(done["path"], dtype="float32")
    tail = audio[int((12 - 0.5) * arate):, 1]  # hotline channel after the limit
    ncc, _ = best_ncc(tail, too_long[: min(len(too_long), 3 * rate)])
    assert ncc > 0.8, ncc
    assert np.abs(audio[:, 0]).max() > 0.05  # the caller was recorded throughout
