"""Drafting: a transcript (speaker turns or plain/Vosk text) becomes a draft case.

Public API:
- ``make_draft(text=None, turns=None, received=None, calendar=None, deadlines=None) -> dict`` with the CONTRACT
  draft keys plus ``evidence`` (field -> [[start, end], ...] into the input text; for turns the
  turn texts joined with ``\\n``), ``confidence``, ``routing``, ``urgent_kinds`` and, when
  ``received`` is given, ``deadlines``.
- ``load_transcript_file(path)`` reads a `.txt`/`.json` file into ``(text, turns)``.
- ``DraftInputError`` for bad input; ``MAX_INPUT_CHARS`` is the documented size limit.
"""
from hotline_api.drafting.draft import DRAFT_KEYS, make_draft
from hotline_api.drafting.inputs import load_transcript_file, parse_transcript_json, read_text_file
from hotline_api.drafting.text import MAX_INPUT_CHARS, DraftInputError

__all__ = ["DRAFT_KEYS", "MAX_INPUT_CHARS", "DraftInputError", "load_transcript_file", "make_draft",
           "parse_transcript_json", "read_text_file"]
