"""Offline speech recognition with Vosk (batch files and live streams) and Vosk model management.

This package never imports ``hotline_api``; the service wires it in ``hotline_api.services.transcription``.

* :mod:`asr.engine` - ``load_model`` (one Model per process and path), ``Transcriber.transcribe``;
* :mod:`asr.live` - ``LiveRecognizer`` for a call's caller channel;
* :mod:`asr.models` - ``install`` / ``verify`` / ``model_status``;
* :mod:`asr.postprocess` - CJK display text, admin replacement list;
* :mod:`asr.audio` - validated, block-wise audio reads;
* :mod:`asr.errors` - exception types.
"""
from asr.errors import (
    AsrError,
    AudioInputError,
    Cancelled,
    ModelError,
    ModelInstallError,
    ModelNotInstalled,
    ModelVerifyError,
)

__all__ = [
    "AsrError",
    "AudioInputError",
    "Cancelled",
    "ModelError",
    "ModelInstallError",
    "ModelNotInstalled",
    "ModelVerifyError",
]
