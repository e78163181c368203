"""Exception types of the ASR package. Every message is meant to be shown to a user as is."""
from __future__ import annotations


class AsrError(Exception):
    """Base class of every error raised by ``asr``."""


class AudioInputError(AsrError):
    """The audio cannot be transcribed (empty, truncated, not audio, unsupported channel layout).

    Permanent: retrying the same file gives the same error."""


class ModelError(AsrError):
    """A Vosk model is missing, incomplete, corrupt or cannot be loaded."""


class ModelNotInstalled(ModelError):
    """No usable model at the configured place."""


class ModelInstallError(ModelError):
    """``install`` failed; nothing was marked installed."""


class ModelVerifyError(ModelError):
    """A model's files do not match their checksums or the structure Vosk needs.

    ``problems`` lists one message per bad file."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = list(problems or [])


class Cancelled(AsrError):
    """Transcription stopped on request (e.g. a worker shutting down)."""
