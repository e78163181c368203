"""Transcription jobs and transcripts (ASR stage).

A job per recording (``recording_id`` unique). Status: queued / running / done / failed /
waiting_for_model. Workers claim jobs atomically with a claim token and hold them under a lease that
a heartbeat extends; a job whose lease expired (worker killed) is claimed again.

Transcript content is stored and read only through ``hotline_api.services.transcription``
(``store_transcript`` / ``load_transcript``), so governance can encrypt it in one place.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hotline_api.db.crypto_types import EncryptedText
from hotline_api.db.base import Base, UTCDateTime, UUIDStr, new_uuid, utcnow

JOB_STATUSES = ("queued", "running", "done", "failed", "waiting_for_model")


class TranscriptionJob(Base):
    __tablename__ = "transcription_jobs"

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_uuid)
    recording_id: Mapped[str] = mapped_column(ForeignKey("recordings.id"), unique=True)
    status: Mapped[str] = mapped_column(String(24), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claim_token: Mapped[str | None] = mapped_column(String(36))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    progress: Mapped[float | None] = mapped_column(Float)  # 0..1 of the audio processed
    model: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_transcription_jobs_status_lease", "status", "lease_until"),)


class Transcript(Base):
    __tablename__ = "transcripts"

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_uuid)
    recording_id: Mapped[str] = mapped_column(ForeignKey("recordings.id"), unique=True)
    job_id: Mapped[str | None] = mapped_column(UUIDStr())
    model: Mapped[str | None] = mapped_column(String(128))
    duration: Mapped[float | None] = mapped_column(Float)
    # The transcript JSON and display text: report content, encrypted at rest (field cipher).
    data: Mapped[str] = mapped_column(EncryptedText("transcripts.data"))
    text: Mapped[str | None] = mapped_column(EncryptedText("transcripts.text"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
