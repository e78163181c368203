"""Callback tasks: a caller who chose "call me back" (key 2 in the queue's voicemail offer, flow
state ``callback``) gets a task that operators work through until the caller is reached or the
number is given up as unreachable (``hotline_api.services.callbacks``).

The caller's number stays in the call row (encrypted); the task only points at the call. The
outcome note is content (what was said on the callback) and is stored encrypted."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hotline_api.db.base import Base, UTCDateTime, UUIDStr, new_uuid, utcnow
from hotline_api.db.crypto_types import EncryptedText
from hotline_api.models.calls import Call

TASK_STATUSES = ("open", "done", "unreachable")
OUTCOMES = ("reached", "no_answer", "wrong_number")


class CallbackTask(Base):
    __tablename__ = "callback_tasks"

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_uuid)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id"), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open / done / unreachable
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    handled_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))  # who made the last attempt
    last_outcome: Mapped[str | None] = mapped_column(String(16))  # reached / no_answer / wrong_number
    outcome_note: Mapped[str | None] = mapped_column(EncryptedText("callback_tasks.outcome_note"))
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    call: Mapped[Call] = relationship()

    __table_args__ = (Index("ix_callback_tasks_status_due", "status", "due_at"),)
