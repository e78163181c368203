"""Turning stored transcripts and draft evidence into what the pages show (masked)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from hotline_api.services import access

Mask = Callable[[str], str]


def masker(terms: access.IdentityTerms | None) -> Mask:
    """Length-preserving identity masking with the known terms (``access.mask_text_aligned``)."""
    return lambda text: access.mask_text_aligned(text, terms) or ""

SPEAKER_LABELS = {"caller": "来电人", "operator": "接线员", "voicemail": "留言人", "hotline": "热线"}
FIELD_LABELS = {
    "category": "类别", "issue_types": "问题类型", "subjects": "被反映人", "places": "地点", "real_name": "实名",
    "reporter_name": "举报人姓名", "reporter_phone": "举报人电话", "urgent": "紧急", "duplicate_hint": "疑似重复",
    "amount_yuan": "涉及金额", "summary": "摘要",
}


@dataclass
class Segment:
    start: float
    end: float
    speaker: str
    channel: int
    text: str

    @property
    def label(self) -> str:
        return SPEAKER_LABELS.get(self.speaker, self.speaker)

    @property
    def clock(self) -> str:
        s = int(self.start)
        return f"{s // 60:02d}:{s % 60:02d}"


def segments_of(transcript: dict | None, mask: Mask) -> list[Segment]:
    """Both channels' segments in time order, text masked (reporter identity)."""
    if not transcript:
        return []
    out: list[Segment] = []
    for ch in transcript.get("channels") or []:
        idx = int(ch.get("channel", 0) or 0)
        speaker = ch.get("speaker") or ("caller" if idx == 0 else "operator")
        for seg in ch.get("segments") or []:
            txt = (seg.get("text") or "").strip()
            if not txt:
                continue
            try:
                start, end = float(seg.get("start", 0.0)), float(seg.get("end", 0.0))
            except (TypeError, ValueError):
                continue
            out.append(Segment(start, max(end, start), speaker, idx,
                               mask(txt)))
    out.sort(key=lambda s: (s.start, s.channel))
    return out


@dataclass
class Piece:
    text: str
    fields: list[str]  # draft fields whose evidence covers this piece (empty: plain text)

    @property
    def field_attr(self) -> str:
        return " ".join(self.fields)

    @property
    def title(self) -> str:
        return "、".join(FIELD_LABELS.get(f, f) for f in self.fields)


def evidence_pieces(text: str | None, evidence: dict[str, Any] | None, mask: Mask) -> list[Piece]:
    """Split ``text`` at the evidence span boundaries; each piece knows which fields point at it.
    Identity is masked with a length-preserving mask, so the spans still fit."""
    if not text:
        return []
    n = len(text)
    cover: list[set[str]] = [set() for _ in range(n)]
    for fld, spans in (evidence or {}).items():
        if not isinstance(spans, list):
            continue
        for sp in spans:
            try:
                a, b = int(sp[0]), int(sp[1])
            except (TypeError, ValueError, IndexError):
                continue
            for i in range(max(a, 0), min(b, n)):
                cover[i].add(fld)
    pieces: list[Piece] = []
    start = 0
    for i in range(1, n + 1):
        if i == n or cover[i] != cover[start]:
            pieces.append(Piece(text[start:i], sorted(cover[start])))
            start = i
    masked = mask(text)
    if len(masked) != n:  # not length-preserving: mask each piece on its own
        for p in pieces:
            p.text = mask(p.text)
        return pieces
    pos = 0
    for p in pieces:
        p.text, pos = masked[pos:pos + len(p.text)], pos + len(p.text)
    return pieces


_SPACES = re.compile(r"\s+")


def join_list(values: Any) -> str:
    if not values:
        return ""
    if isinstance(values, str):
        return values
    return "、".join(str(v) for v in values if v)


def split_list(raw: str | None) -> list[str]:
    """'a、b, c；d' -> ['a', 'b', 'c', 'd'] (Chinese and Latin separators)."""
    if not raw:
        return []
    parts = re.split(r"[、,，;；\n]+", raw)
    out: list[str] = []
    for p in parts:
        p = _SPACES.sub("", p)
        if p and p not in out:
            out.append(p)
    return out
