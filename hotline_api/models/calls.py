"""Calls, their recordings and DTMF digits (written by the SIP agent's event sink)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hotline_api.db.base import Base, UTCDateTime, UUIDStr, new_uuid, utcnow
from hotline_api.db.crypto_types import EncryptedText


class Call(Base):
    __tablename__ = "calls"

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_uuid)
    sip_call_id: Mapped[str] = mapped_column(String(255), index=True)
    # Confidential: the caller's identity. Encrypted at rest, never logged, never in file names.
    caller_uri: Mapped[str | None] = mapped_column(EncryptedText("calls.caller_uri"))
    caller_number: Mapped[str | None] = mapped_column(EncryptedText("calls.caller_number"))
    caller_hash: Mapped[str | None] = mapped_column(String(64), index=True)  # salted hash, for duplicates
    dialled: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16), default="call")  # call / voicemail
    # ringing / answered / ended / abandoned / rejected / recovered
    status: Mapped[str] = mapped_column(String(16), default="ringing")
    worker_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    hangup_cause: Mapped[int | None] = mapped_column(Integer)  # SIP status code of the end
    hangup_reason: Mapped[str | None] = mapped_column(String(255))
    hung_up_by: Mapped[str | None] = mapped_column(String(16))  # caller / hotline / system
    flow_path: Mapped[str | None] = mapped_column(String(64))  # which flow ran (record / queue / attendant)
    operator_id: Mapped[str | None] = mapped_column(String(36))

    recordings: Mapped[list["Recording"]] = relationship(back_populates="call", order_by="Recording.created_at")
    dtmf: Mapped[list["DtmfEvent"]] = relationship(back_populates="call", order_by="DtmfEvent.offset_s")

    __table_args__ = (Index("ix_calls_created", "created_at", "channel", "status"),)

    @property
    def recording(self) -> "Recording | None":
        return self.recordings[0] if self.recordings else None


class Recording(Base):
    __tablename__ = "recordings"

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_uuid)
    call_id: Mapped[str | None] = mapped_column(ForeignKey("calls.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="call")  # call / voicemail / import
    path: Mapped[str | None] = mapped_column(Text)  # relative to the data dir
    # recording / complete / recovered / failed / empty / purged
    status: Mapped[str] = mapped_column(String(16), default="recording")
    duration: Mapped[float | None] = mapped_column(Float)
    sample_rate: Mapped[int | None] = mapped_column(Integer)
    channels: Mapped[int | None] = mapped_column(Integer)
    sha256: Mapped[str | None] = mapped_column(String(64))
    size_bytes: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The durable completion chain (hotline_api.services.pipeline): recording → completed → stored
    # → assigned → queued, or quarantined (a file that cannot be stored; ``stage_error`` says why)
    # or failed (the agent could not record). Each step is taken from this state, retried with
    # back-off (``stage_next_at``) and claimed under a lease (``claim_token``/``claim_until``).
    stage: Mapped[str] = mapped_column(String(16), default="recording")
    stage_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # when it entered the stage
    stage_attempts: Mapped[int] = mapped_column(Integer, default=0)  # failed tries of the current step
    stage_error: Mapped[str | None] = mapped_column(Text)
    stage_next_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    claim_token: Mapped[str | None] = mapped_column(String(36))
    claim_until: Mapped[datetime | None] = mapped_column(UTCDateTime())

    call: Mapped[Call | None] = relationship(back_populates="recordings")

    __table_args__ = (Index("ix_recordings_stage", "stage", "stage_next_at"),)


class DtmfEvent(Base):
    __tablename__ = "dtmf_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id"), index=True)
    digit: Mapped[str] = mapped_column(String(1))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    offset_s: Mapped[float] = mapped_column(Float)  # seconds since answer (= position in the recording)
    method: Mapped[str] = mapped_column(String(16))  # rfc2833 / sip_info

    call: Mapped[Call] = relationship(back_populates="dtmf")
