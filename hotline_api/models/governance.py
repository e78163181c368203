"""Recording governance: users and sessions, audit log, encrypted-recording keys, designated-staff
review, legal holds, retention and exports. Migration ``0005_gov``."""
from __future__ import annotations

import json
from datetime import date, datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import Mapped, mapped_column

from hotline_api.db.base import Base, UTCDateTime, UUIDStr, new_uuid, utcnow
from hotline_api.db.crypto_types import EncryptedText

ROLES = ("operator", "recording_manager", "supervisor", "auditor", "admin")
PERMISSIONS = ("identity",)


# --------------------------------------------------------------------------------------- users
class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_uuid)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(32))
    permissions_json: Mapped[str] = mapped_column("permissions", Text, default="[]")
    unit: Mapped[str | None] = mapped_column(String(128))
    password_hash: Mapped[str] = mapped_column(String(255))
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    token_version: Mapped[int] = mapped_column(Integer, default=0)  # bump to revoke all tokens
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (CheckConstraint("role IN ('operator','recording_manager','supervisor','auditor','admin')", name="role"),)

    @property
    def permissions(self) -> set[str]:
        return set(json.loads(self.permissions_json or "[]"))

    @permissions.setter
    def permissions(self, value) -> None:
        self.permissions_json = json.dumps(sorted(set(value)))

    def has_permission(self, perm: str) -> bool:
        return perm in self.permissions

    def __repr__(self) -> str:
        return f"User({self.username!r}, role={self.role!r})"


class LoginAttempt(Base):
    """Every login attempt. The per-address throttle counts recent failures per address (before any
    password hash); the lockout counts them per user name and address (existing name or not, so it
    does not reveal whether a name exists, and an attacker cannot lock the real user out elsewhere)."""

    __tablename__ = "login_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str | None] = mapped_column(UUIDStr())
    ip: Mapped[str | None] = mapped_column(String(64))
    success: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_login_attempts_user_at", "username", "at"), Index("ix_login_attempts_ip_at", "ip", "at"))


class WebSession(Base):
    """A cookie session of the web console. Only the sha256 of the session token is stored."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the cookie token
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


# --------------------------------------------------------------------------------------- audit
class AuditEntry(Base):
    """Append-only, hash-chained. Never updated, never deleted (ORM guard below, DB triggers in the
    migration)."""

    __tablename__ = "audit_entries"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor_id: Mapped[str | None] = mapped_column(String(36))
    actor_name: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    object_type: Mapped[str | None] = mapped_column(String(32))
    object_id: Mapped[str | None] = mapped_column(String(64), index=True)
    ip: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text, default="{}")  # canonical JSON
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str | None] = mapped_column(String(64))  # seal: HMAC of hash under the chain key (keys dir)

    __table_args__ = (Index("ix_audit_entries_at", "at"),)


@event.listens_for(AuditEntry, "before_update")
def _audit_no_update(mapper, connection, target):  # pragma: no cover - guard
    raise RuntimeError("audit entries are append-only")


@event.listens_for(AuditEntry, "before_delete")
def _audit_no_delete(mapper, connection, target):  # pragma: no cover - guard
    raise RuntimeError("audit entries are append-only")


# ------------------------------------------------------------------------------- crypto state
class CryptoState(Base):
    """One row: the key check value of the master key that wraps the stored data keys."""

    __tablename__ = "crypto_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    master_kcv: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # the key check value of the field key the encrypted columns are under (``keys rotate --field-key``)
    field_kcv: Mapped[str | None] = mapped_column(String(32))


class RecordingBlob(Base):
    """The encrypted file of a recording and its wrapped data key. Purge destroys ``wrapped_key``
    (crypto-shredding) and then deletes the file; the row remains as metadata."""

    __tablename__ = "recording_blobs"

    recording_id: Mapped[str] = mapped_column(ForeignKey("recordings.id"), primary_key=True)
    rel_path: Mapped[str] = mapped_column(String(255))  # relative to settings.recordings_dir
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    master_kcv: Mapped[str | None] = mapped_column(String(32))
    chunk_size: Mapped[int] = mapped_column(Integer)
    plain_size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    data_offset: Mapped[int] = mapped_column(Integer, default=0)  # WAV sample data inside the plaintext
    data_size: Mapped[int] = mapped_column(Integer, default=0)
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


# ------------------------------------------------------------------------------ designated staff
class DutyRoster(Base):
    """Date + shift -> recording manager. Times are local (settings.timezone); a shift whose end is
    not after its start runs past midnight. A row with ``day`` NULL is the default manager."""

    __tablename__ = "duty_roster"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    day: Mapped[date | None] = mapped_column(Date, index=True)
    shift: Mapped[str] = mapped_column(String(32), default="day")
    start_time: Mapped[str] = mapped_column(String(5), default="00:00")  # HH:MM local
    end_time: Mapped[str] = mapped_column(String(5), default="00:00")  # HH:MM local; == start: 24 h
    manager_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (UniqueConstraint("day", "shift", name="uq_duty_roster_day_shift"),)


class ReviewAssignment(Base):
    __tablename__ = "review_assignments"

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_uuid)
    recording_id: Mapped[str] = mapped_column(ForeignKey("recordings.id"), unique=True)
    call_id: Mapped[str | None] = mapped_column(String(36), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="call")  # call / voicemail
    manager_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), index=True)
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    due_provisional: Mapped[bool] = mapped_column(Boolean, default=False)
    # listened: union of byte ranges served to the manager, over the audio data
    served_ranges: Mapped[str] = mapped_column(Text, default="[]")
    coverage: Mapped[float] = mapped_column(Float, default=0.0)
    listened_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # stored: confirmed with the integrity hash re-checked
    stored_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    stored_by: Mapped[str | None] = mapped_column(String(36))
    # organized: linked to a case / no content with a reason / tagged
    organized_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    organized_kind: Mapped[str | None] = mapped_column(String(16))  # case / no_content / tags
    case_id: Mapped[str | None] = mapped_column(String(36), index=True)
    no_content_reason: Mapped[str | None] = mapped_column(EncryptedText("review_assignments.no_content_reason"))
    tags_json: Mapped[str] = mapped_column("tags", Text, default="[]")
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_review_assignments_due", "completed_at", "due_at"),)

    @property
    def tags(self) -> list[str]:
        return json.loads(self.tags_json or "[]")

    @property
    def ranges(self) -> list[list[int]]:
        return json.loads(self.served_ranges or "[]")


class ReviewAlert(Base):
    """A supervisor alert (overdue review item); must be acknowledged."""

    __tablename__ = "review_alerts"

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_uuid)
    kind: Mapped[str] = mapped_column(String(32), default="review_overdue")
    assignment_id: Mapped[str | None] = mapped_column(ForeignKey("review_assignments.id"), index=True)
    recording_id: Mapped[str | None] = mapped_column(String(36))
    manager_id: Mapped[str | None] = mapped_column(String(36))
    unit: Mapped[str | None] = mapped_column(String(128))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_by: Mapped[str | None] = mapped_column(String(36))


# ----------------------------------------------------------------------------------- retention
class LegalHold(Base):
    __tablename__ = "legal_holds"

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_uuid)
    target_type: Mapped[str] = mapped_column(String(16))  # recording / case
    target_id: Mapped[str] = mapped_column(String(64), index=True)
    reason: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    released_by: Mapped[str | None] = mapped_column(String(36))

    __table_args__ = (CheckConstraint("target_type IN ('recording','case')", name="target_type"),)


class RetentionPolicyRow(Base):
    """Configured retention periods by kind (``recordings.retention.KINDS``); NULL days = keep."""

    __tablename__ = "retention_policies"

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    days: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(36))


RetentionPolicy = RetentionPolicyRow


class PurgeStub(Base):
    """What remains of a purged recording: metadata, reason and time (never audio or keys)."""

    __tablename__ = "purge_stubs"

    recording_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    call_id: Mapped[str | None] = mapped_column(String(36))
    kind: Mapped[str | None] = mapped_column(String(16))
    rule: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    plain_size: Mapped[int | None] = mapped_column(Integer)
    recorded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    purged_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    purged_by: Mapped[str] = mapped_column(String(64), default="retention")


# -------------------------------------------------------------------------------------- export
class ExportRequest(Base):
    """A supervisor asks (with a reason); a different supervisor approves; the bundle expires."""

    __tablename__ = "export_requests"

    id: Mapped[str] = mapped_column(UUIDStr(), primary_key=True, default=new_uuid)
    requester_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str] = mapped_column(Text)
    object_type: Mapped[str] = mapped_column(String(16), default="recording")  # recording / case
    object_ids_json: Mapped[str] = mapped_column("object_ids", Text, default="[]")
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending/approved/rejected/expired
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    approver_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    bundle_rel_path: Mapped[str | None] = mapped_column(String(255))
    manifest_sha256: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        CheckConstraint("approver_id IS NULL OR approver_id <> requester_id", name="not_self_approved"),
    )

    @property
    def object_ids(self) -> list[str]:
        return json.loads(self.object_ids_json or "[]")


class SelfApprovalError(ValueError):
    pass


def approve_export(req: ExportRequest, approver: User, now: datetime, ttl_hours: int = 72) -> None:
    """The rule the API enforces (also a DB check constraint): a second supervisor approves."""
    from datetime import timedelta

    if approver.id == req.requester_id:
        raise SelfApprovalError("an export cannot be approved by its own requester")
    if approver.role != "supervisor":
        raise SelfApprovalError("only a supervisor can approve an export")
    if req.status != "pending":
        raise SelfApprovalError(f"export is {req.status}, not pending")
    req.approver_id, req.decided_at, req.status = approver.id, now, "approved"
    req.expires_at = now + timedelta(hours=ttl_hours)
