"""Prompt generation (espeak-ng + sox), the admin-replacement rule, and validation."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf

from telephony.prompts import PROMPTS, PromptError, PromptSet, build_prompts, load_prompt, prepare_prompt, to_pinyin


def test_pinyin_reads_digits_in_chinese():
    p = to_pinyin("这里是12388举报电话。")
    assert "yao1 er4 san1 ba1 ba1" in p
    assert p.startswith("zhe4 li3 shi4") and p.endswith(".")
    assert not any(ch.isdigit() and ch not in "012345" for ch in p.replace(" ", ""))


def test_prompt_texts_are_documented():
    assert PROMPTS["notice"] == "您好，这里是12388举报电话。为了更好地为您服务，本次通话将被录音。"
    assert PROMPTS["speak_after_tone"] == "请在提示音后讲述您要反映的问题，讲完后请挂机。"
    for name in ("queue", "voicemail_greeting", "menu", "scope_info", "confirmation", "goodbye", "too_long", "beep"):
        assert name in PROMPTS


def test_generated_prompts_are_mono_16k(prompts_dir):
    for name in PROMPTS:
        info = sf.info(str(prompts_dir / f"{name}.wav"))
        assert info.channels == 1 and info.samplerate == 16000 and info.subtype == "PCM_16", name
        assert info.frames > 0
    notice, _ = sf.read(str(prompts_dir / "notice.wav"), dtype="float32")
    assert len(notice) / 16000 > 4.0 and np.abs(notice).max() > 0.3  # real speech, not silence
    beep, rate = sf.read(str(prompts_dir / "beep.wav"), dtype="float32")
    assert abs(len(beep) / rate - 0.3) < 0.01
    spec = np.abs(np.fft.rfft(beep))
    assert abs(np.argmax(spec) * rate / len(beep) - 1000) < 10


def test_admin_replacement_is_kept_unless_forced(tmp_path, prompts_dir):
    d = tmp_path / "p"
    shutil.copytree(prompts_dir, d)
    custom = np.zeros(8000, dtype=np.int16)
    custom[::50] = 1000
    sf.write(str(d / "notice.wav"), custom, 8000, subtype="PCM_16")
    before = (d / "notice.wav").read_bytes()
    res = build_prompts(d, names=["notice", "beep"])
    assert res == {"notice": "kept", "beep": "kept"}
    assert (d / "notice.wav").read_bytes() == before
    res = build_prompts(d, force=True, names=["beep"])
    assert res == {"beep": "written"}
    (d / "goodbye.wav").unlink()
    assert build_prompts(d)["goodbye"] == "written"


def test_loader_converts_and_names_bad_files(tmp_path):
    stereo = tmp_path / "st.wav"
    sf.write(str(stereo), np.zeros((4410, 2), dtype=np.float32) + 0.1, 44100, subtype="FLOAT")
    p = prepare_prompt(stereo, tmp_path / "cache", 16000)
    info = sf.info(str(p.path))
    assert info.channels == 1 and info.samplerate == 16000 and abs(p.duration - 0.1) < 0.01
    bad = tmp_path / "notice.wav"
    bad.write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(PromptError, match="notice.wav"):
        load_prompt(bad)
    with pytest.raises(PromptError, match="missing"):
        load_prompt(tmp_path / "nope.wav")
    with pytest.raises(PromptError, match="notice.wav"):
        PromptSet(tmp_path)
