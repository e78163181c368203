"""Draft cases, their corrections, registered cases with their history, reporter feedback,
urgent alerts, deadlines, the working-day calendar's admin overrides and the per-year
registration counter.

Identity (reporter name/phone) lives only in ``Draft.fields_json`` / ``Case.fields_json`` and
``Draft.caller_hash`` (a salted hash, never the number). The draft/case documents, the input text
and the corrections are encrypted at rest (``EncryptedText``); what lists filter and count on
(issue types, places) is kept beside them in ``case_facets``, written on every flush of a case.
``transcript_id`` has no foreign key on purpose: the transcripts table belongs to a parallel
migration branch.
"""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Date, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy import event
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from hotline_api.db.base import Base, UTCDateTime, UUIDStr, new_uuid, utcnow
from hotline_api.db.crypto_types import EncryptedText

DRAFT_STATUSES = ("draft", "registered", "discarded")
CASE_STATUSES = ("registered", "handling", "closed", "archived")
HANDLING_MODES = ("自办", "转办", "交办")


class Draft(Base):
    __tablename__ = "drafts"

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_uuid)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    source: Mapped[str] = mapped_column(String(16), default="api")  # transcript / api / cli
    recording_id: Mapped[str | None] = mapped_column(ForeignKey("recordings.id"), index=True)
    transcript_id: Mapped[str | None] = mapped_column(String(36), index=True)
    call_id: Mapped[str | None] = mapped_column(ForeignKey("calls.id"), index=True)
    caller_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    category: Mapped[str | None] = mapped_column(String(16), index=True)
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    real_name: Mapped[bool] = mapped_column(Boolean, default=False)
    duplicate_hint: Mapped[bool] = mapped_column(Boolean, default=False)
    # the current (possibly corrected) draft document, and the machine's first version
    fields_json: Mapped[str] = mapped_column(EncryptedText("drafts.fields_json"))
    original_json: Mapped[str] = mapped_column(EncryptedText("drafts.original_json"))
    input_mode: Mapped[str | None] = mapped_column(String(8))  # turns / text
    input_text: Mapped[str | None] = mapped_column(EncryptedText("drafts.input_text"))  # evidence spans point here
    case_id: Mapped[str | None] = mapped_column(String(36), index=True)

    corrections: Mapped[list["DraftCorrection"]] = relationship(back_populates="draft", order_by="DraftCorrection.id")

    __table_args__ = (Index("ix_drafts_created", "created_at"),)


class DraftSubject(Base):
    """Reported persons of a draft, indexed for duplicate search (toneless pinyin of the name)."""

    __tablename__ = "draft_subjects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    draft_id: Mapped[str] = mapped_column(ForeignKey("drafts.id"), index=True)
    # the reported person: report content, sealed under the call's content key (models.content)
    name: Mapped[str] = mapped_column(EncryptedText("draft_subjects.name"), default="")
    name_pinyin: Mapped[str] = mapped_column(String(128), default="", index=True)
    title: Mapped[str] = mapped_column(EncryptedText("draft_subjects.title"), default="")
    unit: Mapped[str] = mapped_column(EncryptedText("draft_subjects.unit"), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DraftLink(Base):
    """A probable duplicate: this draft and an earlier draft (and its case, if registered)."""

    __tablename__ = "draft_links"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    draft_id: Mapped[str] = mapped_column(ForeignKey("drafts.id"), index=True)
    earlier_draft_id: Mapped[str] = mapped_column(ForeignKey("drafts.id"), index=True)
    earlier_case_id: Mapped[str | None] = mapped_column(String(36))
    reason: Mapped[str] = mapped_column(String(16))  # same_subject / same_caller
    detail: Mapped[str | None] = mapped_column(EncryptedText("draft_links.detail"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (UniqueConstraint("draft_id", "earlier_draft_id", "reason", name="uq_draft_links_pair"),)


class DraftCorrection(Base):
    __tablename__ = "draft_corrections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    draft_id: Mapped[str] = mapped_column(ForeignKey("drafts.id"), index=True)
    field: Mapped[str] = mapped_column(String(32))
    old_json: Mapped[str | None] = mapped_column(EncryptedText("draft_corrections.old_json"))
    new_json: Mapped[str | None] = mapped_column(EncryptedText("draft_corrections.new_json"))
    actor: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(EncryptedText("draft_corrections.reason"))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    draft: Mapped[Draft] = relationship(back_populates="corrections")


class CaseSequence(Base):
    """The last registration number handed out per year (updated inside the registering transaction)."""

    __tablename__ = "case_sequences"

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_uuid)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    year: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    draft_id: Mapped[str] = mapped_column(ForeignKey("drafts.id"), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="registered", index=True)
    category: Mapped[str | None] = mapped_column(String(16), index=True)
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    real_name: Mapped[bool] = mapped_column(Boolean, default=False)
    fields_json: Mapped[str] = mapped_column(EncryptedText("cases.fields_json"))
    received_on: Mapped[date] = mapped_column(Date, index=True)  # statistics filter periods on it
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    registered_by: Mapped[str] = mapped_column(String(64))
    handling_mode: Mapped[str | None] = mapped_column(String(8))  # 自办 / 转办 / 交办
    handling_unit: Mapped[str | None] = mapped_column(String(128))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_on: Mapped[date | None] = mapped_column(Date)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    result: Mapped[str | None] = mapped_column(EncryptedText("cases.result"))  # the handling's outcome

    events: Mapped[list["CaseEvent"]] = relationship(back_populates="case", order_by="CaseEvent.id")
    deadlines: Mapped[list["CaseDeadline"]] = relationship(back_populates="case", order_by="CaseDeadline.id")
    feedback: Mapped[list["ReporterFeedback"]] = relationship(back_populates="case", order_by="ReporterFeedback.id")

    facets: Mapped[list["CaseFacet"]] = relationship(back_populates="case", cascade="all, delete-orphan")

    __table_args__ = (UniqueConstraint("year", "seq", name="uq_cases_year_seq"),)


#: the case document's list fields that lists filter on and the dashboard counts
FACET_KEYS = ("issue_types", "places")


class CaseFacet(Base):
    """One issue type or place of a case, in clear, for SQL filters and counts (the case document
    itself is encrypted). Derived from ``Case.fields_json`` whenever a case is flushed."""

    __tablename__ = "case_facets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    facet: Mapped[str] = mapped_column(String(16))  # issue_types / places
    value: Mapped[str] = mapped_column(String(128))

    case: Mapped[Case] = relationship(back_populates="facets")

    __table_args__ = (Index("ix_case_facets_facet_value", "facet", "value"),)


def facets_of(fields_json: str | None) -> list[tuple[str, str]]:
    import json

    doc = json.loads(fields_json or "{}")
    out: list[tuple[str, str]] = []
    for key in FACET_KEYS:
        values = (v.strip()[:128] for v in doc.get(key) or [] if isinstance(v, str))
        out.extend((key, v) for v in dict.fromkeys(values) if v)  # "X" and " X " are one value
    return out


@event.listens_for(Session, "before_flush")
def _sync_case_facets(session, _flush_context, _instances) -> None:
    from sqlalchemy import inspect

    for obj in list(session.new) + list(session.dirty):
        if not isinstance(obj, Case):
            continue
        if obj not in session.new and not inspect(obj).attrs.fields_json.history.has_changes():
            continue
        want = facets_of(obj.fields_json)
        have = [(f.facet, f.value) for f in obj.facets]
        if have != want:
            obj.facets = [CaseFacet(facet=k, value=v) for k, v in want]


class CaseEvent(Base):
    """History: who did what when, to a draft or a case."""

    __tablename__ = "case_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str | None] = mapped_column(ForeignKey("cases.id"), index=True)
    draft_id: Mapped[str | None] = mapped_column(ForeignKey("drafts.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(EncryptedText("case_events.detail"))

    case: Mapped[Case | None] = relationship(back_populates="events")


class CaseDeadline(Base):
    __tablename__ = "case_deadlines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # acceptance_notice / result_feedback
    start_on: Mapped[date] = mapped_column(Date)
    due_on: Mapped[date] = mapped_column(Date, index=True)
    working_days: Mapped[int] = mapped_column(Integer)
    provisional: Mapped[bool] = mapped_column(Boolean, default=False)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reminded_soon_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reminded_overdue_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    case: Mapped[Case] = relationship(back_populates="deadlines")

    __table_args__ = (UniqueConstraint("case_id", "kind", name="uq_case_deadlines_kind"),)


class DeadlineRule(Base):
    """Configurable deadline rules (working days); defaults live in services.cases.DEFAULT_RULES."""

    __tablename__ = "deadline_rules"

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    working_days: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ReporterFeedback(Base):
    __tablename__ = "reporter_feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # notice_sent / result_sent / objection
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(EncryptedText("reporter_feedback.note"))

    case: Mapped[Case] = relationship(back_populates="feedback")


class UrgentAlert(Base):
    __tablename__ = "urgent_alerts"

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_uuid)
    draft_id: Mapped[str] = mapped_column(ForeignKey("drafts.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    kinds: Mapped[str] = mapped_column(String(128), default="")
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)  # open / acknowledged
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    note: Mapped[str | None] = mapped_column(EncryptedText("urgent_alerts.note"))
    latency_s: Mapped[float | None] = mapped_column(Float)  # transcript -> alert


class HolidayOverride(Base):
    """Admin-entered calendar data: a holiday or a workday on a date. Rows with
    ``official_schedule`` are the official holiday schedule of their year; once a year has them,
    deadlines in that year are no longer provisional."""

    __tablename__ = "holiday_overrides"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    day: Mapped[date] = mapped_column(Date, unique=True)
    year: Mapped[int] = mapped_column(Integer, index=True)
    kind: Mapped[str] = mapped_column(String(8))  # holiday / workday
    official_schedule: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str | None] = mapped_column(String(255))
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
