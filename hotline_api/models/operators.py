"""Operators on softphones, working hours, date overrides of the opening, and live call events.
Migration ``0006_ops``."""
from __future__ import annotations

import json
from datetime import date, datetime

from sqlalchemy import Boolean, CheckConstraint, Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hotline_api.db.base import Base, UTCDateTime, UUIDStr, new_uuid, utcnow
from hotline_api.db.crypto_types import EncryptedText

OPERATOR_STATES = ("available", "on_call", "wrap_up", "paused", "offline")


class Operator(Base):
    """The operator profile of a user (role ``operator``). ``state`` is what the operator (or the
    routing) set; ``reserved_call_id`` holds them while a worker rings them for a call (a lease:
    ``reserved_until``), so two workers never ring the same operator for two callers."""

    __tablename__ = "operators"

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_uuid)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="offline")
    state_reason: Mapped[str | None] = mapped_column(String(255))  # paused: why
    state_since: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_call_ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # longest idle first
    wrap_up_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    current_call_id: Mapped[str | None] = mapped_column(String(36))
    reserved_call_id: Mapped[str | None] = mapped_column(String(36))
    reserved_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # SIP credentials for REGISTER at the registrar: the digest HA1 only (md5(user:realm:password))
    sip_username: Mapped[str | None] = mapped_column(String(64), unique=True)
    sip_realm: Mapped[str | None] = mapped_column(String(128))
    sip_ha1: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    contacts: Mapped[list["OperatorContact"]] = relationship(back_populates="operator", cascade="all, delete-orphan",
                                                             order_by="OperatorContact.priority")

    __table_args__ = (
        CheckConstraint("state IN ('available','on_call','wrap_up','paused','offline')", name="state"),
        Index("ix_operators_state", "state"),
    )


class OperatorContact(Base):
    """How to reach an operator: ``static`` (a SIP URI dialled directly) or ``registered`` (the
    operator's AOR at the registrar; ``uri`` empty means ``sip:<sip_username>@<registrar>``)."""

    __tablename__ = "operator_contacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="static")
    uri: Mapped[str] = mapped_column(String(255), default="")
    priority: Mapped[int] = mapped_column(Integer, default=0)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)

    operator: Mapped[Operator] = relationship(back_populates="contacts")

    __table_args__ = (CheckConstraint("kind IN ('static','registered')", name="kind"),)


class WorkingHours(Base):
    """One opening interval of the weekly schedule: ``weekday`` 0 = Monday; local times HH:MM in
    ``timezone`` (``end_time`` 24:00 allowed). A weekday without rows is closed."""

    __tablename__ = "working_hours"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    weekday: Mapped[int] = mapped_column(Integer)
    start_time: Mapped[str] = mapped_column(String(5))
    end_time: Mapped[str] = mapped_column(String(5))
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")

    __table_args__ = (CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday"),)


class OpenOverride(Base):
    """An admin decision for one local date: closed all day (``is_open`` false), or open (with
    ``start_time``/``end_time``, default the standard working-day hours). Takes precedence over
    the weekly schedule and the holiday calendar."""

    __tablename__ = "open_overrides"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    day: Mapped[date] = mapped_column(Date, unique=True)
    is_open: Mapped[bool] = mapped_column(Boolean)
    start_time: Mapped[str | None] = mapped_column(String(5))
    end_time: Mapped[str | None] = mapped_column(String(5))
    note: Mapped[str | None] = mapped_column(String(255))
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CallEvent(Base):
    """Live call events for the console (ringing, answered, bridged, hangup, voicemail...).
    ``data`` is JSON and never holds the caller's number or URI."""

    __tablename__ = "call_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(String(36), index=True)
    operator_id: Mapped[str | None] = mapped_column(String(36))
    type: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # encrypted at rest; the caller's words (partial/transcript) under the call's content key
    data_json: Mapped[str] = mapped_column("data", EncryptedText("call_events.data"), default="{}")

    __table_args__ = (Index("ix_call_events_operator_id", "operator_id", "id"),)

    @property
    def data(self) -> dict:
        return json.loads(self.data_json or "{}")
