"""Retention policy decisions on plain data (no database).

Rules, first match wins:

1. a legal hold on the recording or on its case: keep, always;
2. linked to a case: keep until the case is archived, then ``case_archived_days`` after archiving
   (or after the recording, if it is later than the archiving);
3. marked "no content": ``no_content_days`` after the recording completed;
4. a voicemail without a case: ``voicemail_no_case_days`` after it completed;
5. anything else (an ordinary call not yet organized): ``other_days`` (``None`` = keep).

A period of ``None`` means "keep". Deletion itself (crypto-shredding) is done by the service.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta

KINDS = ("no_content", "voicemail_no_case", "case_archived", "other")


@dataclass(frozen=True)
class RetentionPolicy:
    no_content_days: int | None = 180
    voicemail_no_case_days: int | None = 365
    case_archived_days: int | None = 5 * 365
    other_days: int | None = None

    @classmethod
    def from_mapping(cls, days_by_kind: dict[str, int | None]) -> "RetentionPolicy":
        base = cls()
        values = {f.name: getattr(base, f.name) for f in fields(cls)}
        for kind, days in days_by_kind.items():
            name = f"{kind}_days"
            if name not in values:
                raise ValueError(f"unknown retention kind {kind!r} (known: {', '.join(KINDS)})")
            if days is not None and days < 0:
                raise ValueError(f"retention days for {kind} must be >= 0")
            values[name] = days
        return cls(**values)


@dataclass(frozen=True)
class RecordingFacts:
    recording_id: str
    kind: str  # call / voicemail / import
    completed_at: datetime
    no_content: bool = False
    case_id: str | None = None
    case_archived_at: datetime | None = None
    held: bool = False  # a legal hold on the recording or on its case


@dataclass(frozen=True)
class Decision:
    recording_id: str
    purge: bool
    rule: str  # legal_hold / case_open / case_archived / no_content / voicemail_no_case / other
    reason: str
    due_at: datetime | None  # when it becomes (or became) deletable; None = never under current facts


def _due(start: datetime, days: int | None) -> datetime | None:
    return None if days is None else start + timedelta(days=days)


def decide(f: RecordingFacts, policy: RetentionPolicy, now: datetime) -> Decision:
    rid = f.recording_id
    if f.held:
        return Decision(rid, False, "legal_hold", "legal hold on the recording or its case", None)
    if f.case_id is not None:
        if f.case_archived_at is None:
            return Decision(rid, False, "case_open", f"linked to case {f.case_id}, not archived", None)
        # counted from the later of the archiving and the recording: a recording linked to a case
        # archived long ago is still kept the full period (the link must not make it purgeable)
        due = _due(max(f.case_archived_at, f.completed_at), policy.case_archived_days)
        rule, days, since = "case_archived", policy.case_archived_days, f"case {f.case_id} archived {f.case_archived_at.date()}"
    elif f.no_content:
        due = _due(f.completed_at, policy.no_content_days)
        rule, days, since = "no_content", policy.no_content_days, f"marked no content, recorded {f.completed_at.date()}"
    elif f.kind == "voicemail":
        due = _due(f.completed_at, policy.voicemail_no_case_days)
        rule, days, since = "voicemail_no_case", policy.voicemail_no_case_days, f"voicemail without a case, recorded {f.completed_at.date()}"
    else:
        due = _due(f.completed_at, policy.other_days)
        rule, days, since = "other", policy.other_days, f"{f.kind} not linked to a case, recorded {f.completed_at.date()}"
    if due is None:
        return Decision(rid, False, rule, f"{since}; policy keeps it", None)
    if now >= due:
        return Decision(rid, True, rule, f"{since}; retention {days} days ended {due.date()}", due)
    return Decision(rid, False, rule, f"{since}; kept until {due.date()}", due)


def plan(facts: list[RecordingFacts], policy: RetentionPolicy, now: datetime) -> list[Decision]:
    return [decide(f, policy, now) for f in facts]
