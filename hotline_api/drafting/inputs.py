"""Reading transcripts from files/stdin with clear errors (size, encoding, JSON, speakers)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, BinaryIO

from hotline_api.drafting.text import MAX_INPUT_CHARS, SPEAKERS, DraftInputError

# UTF-8 is at most 4 bytes a character; read one byte past the limit to detect oversize input.
MAX_INPUT_BYTES = MAX_INPUT_CHARS * 4


def _decode(data: bytes, name: str) -> str:
    if len(data) > MAX_INPUT_BYTES:
        raise DraftInputError(f"{name}: too large (over {MAX_INPUT_BYTES} bytes; the limit is {MAX_INPUT_CHARS} characters)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DraftInputError(f"{name}: not UTF-8 text (invalid byte at offset {e.start}); convert it to UTF-8") from e
    if len(text) > MAX_INPUT_CHARS:
        raise DraftInputError(f"{name}: too long ({len(text)} characters; the limit is {MAX_INPUT_CHARS})")
    if not text.strip():
        raise DraftInputError(f"{name}: empty")
    return text


def read_text_file(path: str | Path | None, stream: BinaryIO | None = None) -> str:
    if stream is not None:
        return _decode(stream.read(MAX_INPUT_BYTES + 1), "stdin")
    p = Path(path)
    if not p.is_file():
        raise DraftInputError(f"{p}: no such file")
    with p.open("rb") as f:
        return _decode(f.read(MAX_INPUT_BYTES + 1), str(p))


def parse_transcript_json(text: str, name: str = "input") -> tuple[str | None, list[dict] | None]:
    """Accepts ``{"turns": [...]}``, a bare list of turns, or a ``hotline transcribe --json``
    object (its ``turns`` if present, else its ``text``)."""
    try:
        obj: Any = json.loads(text)
    except json.JSONDecodeError as e:
        raise DraftInputError(f"{name}: invalid JSON: {e.msg} at line {e.lineno} column {e.colno}") from e
    turns = obj if isinstance(obj, list) else (obj.get("turns") if isinstance(obj, dict) else None)
    if turns is None and isinstance(obj, dict) and isinstance(obj.get("text"), str):
        return obj["text"], None
    if not isinstance(turns, list):
        raise DraftInputError(f'{name}: expected {{"turns": [{{"speaker": ..., "text": ...}}]}}')
    for k, t in enumerate(turns):
        if not isinstance(t, dict) or "text" not in t:
            raise DraftInputError(f"{name}: turns[{k}] must be an object with speaker and text")
        if t.get("speaker") not in SPEAKERS:
            raise DraftInputError(f"{name}: turns[{k}]: unknown speaker {t.get('speaker')!r} "
                                  f"(expected one of: {', '.join(SPEAKERS)})")
    return None, turns


def load_transcript_file(path: str) -> tuple[str | None, list[dict] | None]:
    """`-` reads stdin as text; `.json` is turns; anything else is plain or ASR text."""
    import sys

    if path == "-":
        return read_text_file(None, sys.stdin.buffer), None
    text = read_text_file(path)
    if str(path).lower().endswith(".json"):
        return parse_transcript_json(text, str(path))
    return text, None
