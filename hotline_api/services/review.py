"""Designated staff: every recorded call and voicemail is assigned at completion to the recording
manager on duty, who must listen to it (coverage measured from the byte ranges served to them),
confirm it stored (integrity hash re-checked) and organize it (case link, "no content" with a
reason, or tags) by a deadline (default: end of the next working day). Overdue items escalate to
supervisors; a monthly compliance report counts the work per manager.

Settings read (with defaults, via ``getattr`` until they exist in ``Settings``):
``review_deadline_workdays`` (1), ``review_listened_threshold`` (0.9), ``timezone``.
"""
from __future__ import annotations

import json
import logging
from types import SimpleNamespace
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Callable
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, sessionmaker

from hotline_api.models.governance import DutyRoster, RecordingBlob, ReviewAlert, ReviewAssignment, User
from recordings import ranges as rng

log = logging.getLogger(__name__)

Calendar = Callable[[date], tuple[bool, bool]]  # day -> (is working day, provisional)


class ReviewError(ValueError):
    pass


class NotPermitted(ReviewError):
    """The user may not act on this item (the API answers 404)."""


@dataclass(frozen=True)
class ReviewConfig:
    deadline_workdays: int = 1
    listened_threshold: float = 0.9
    timezone: str = "Asia/Shanghai"

    @classmethod
    def from_settings(cls, settings: Any | None) -> "ReviewConfig":
        if settings is None:
            return cls()
        return cls(
            deadline_workdays=int(getattr(settings, "review_deadline_workdays", 1)),
            listened_threshold=float(getattr(settings, "review_listened_threshold", 0.9)),
            timezone=getattr(settings, "timezone", "Asia/Shanghai") or "Asia/Shanghai",
        )


def weekday_calendar(day: date) -> tuple[bool, bool]:
    return day.weekday() < 5, False


def default_calendar(session: Session | None = None) -> Calendar:
    """The project's working-day calendar (``hotline_api.services.calendar.WorkCalendar``: Chinese
    holidays, 调休 and admin overrides, from the DB when a session is given), else Monday-Friday."""
    try:
        from hotline_api.services import calendar as cal  # type: ignore[attr-defined]
    except ImportError:
        return weekday_calendar
    wc = getattr(cal, "WorkCalendar", None)
    if wc is not None:
        try:
            if session is None:
                return wc().is_workday
            with session.begin_nested():  # a failure must not poison the caller's transaction
                return wc.from_db(session).is_workday
        except Exception:  # noqa: BLE001 - e.g. its tables not migrated yet: still assign, on weekdays
            log.warning("working-day calendar unavailable; review deadlines use Monday-Friday", exc_info=True)
            return weekday_calendar
    fn = getattr(cal, "is_workday", None)
    if fn is not None:
        def _wrap(day: date) -> tuple[bool, bool]:
            r = fn(day)
            return (bool(r[0]), bool(r[1])) if isinstance(r, tuple) else (bool(r), False)
        return _wrap
    return weekday_calendar


def compute_due(completed_at: datetime, cfg: ReviewConfig, calendar: Calendar | None = None) -> tuple[datetime, bool]:
    """End (local midnight) of the N-th working day after the local day of ``completed_at``."""
    calendar = calendar or default_calendar()
    tz = ZoneInfo(cfg.timezone)
    day = completed_at.astimezone(tz).date()
    provisional, found = False, 0
    for _ in range(400):
        day += timedelta(days=1)
        ok, prov = calendar(day)
        provisional = provisional or prov
        if ok:
            found += 1
            if found >= max(cfg.deadline_workdays, 1):
                break
    end = datetime.combine(day + timedelta(days=1), time(0, 0), tzinfo=tz)
    return end.astimezone(timezone.utc), provisional


# -------------------------------------------------------------------------------------- roster
def _hm(s: str) -> time:
    h, m = s.split(":")
    return time(int(h), int(m))


def _check_hm(s: str) -> str:
    try:
        t = _hm(s)
    except (ValueError, AttributeError):
        raise ReviewError(f"time must be HH:MM, got {s!r}") from None
    return f"{t.hour:02d}:{t.minute:02d}"


def set_roster(session: Session, day: date | None, manager: User, shift: str = "day", start: str = "00:00",
               end: str = "00:00", actor: Any = None) -> DutyRoster:
    """Put ``manager`` on duty for ``day``/``shift`` (local times; end <= start runs past midnight,
    start == end is the whole day). ``day=None`` sets the default manager."""
    from hotline_api.services import audit

    if manager.role != "recording_manager":
        raise ReviewError(f"{manager.username} is not a recording manager")
    start, end = _check_hm(start), _check_hm(end)
    if day is None:
        shift = "default"
    row = session.execute(select(DutyRoster).where(
        DutyRoster.day.is_(None) if day is None else DutyRoster.day == day, DutyRoster.shift == shift)).scalar_one_or_none()
    if row is None:
        row = DutyRoster(day=day, shift=shift)
        session.add(row)
    row.start_time, row.end_time, row.manager_id = start, end, manager.id
    session.flush()
    audit.record(session, "roster.set", actor=actor, actor_name=None if actor else "system", object_type="roster",
                 object_id=str(row.id), detail={"day": day.isoformat() if day else None, "shift": shift,
                                                "start": start, "end": end, "manager": manager.username})
    return row


def _covers(row: DutyRoster, on_day: date, local: datetime) -> bool:
    s, e = _hm(row.start_time), _hm(row.end_time)
    start = datetime.combine(on_day, s, tzinfo=local.tzinfo)
    end_day = on_day if e > s else on_day + timedelta(days=1)
    end = datetime.combine(end_day, e, tzinfo=local.tzinfo)
    return start <= local < end


def manager_on_duty(session: Session, at: datetime, tz: str = "Asia/Shanghai") -> User | None:
    local = at.astimezone(ZoneInfo(tz))
    d = local.date()
    rows = session.execute(select(DutyRoster).where(DutyRoster.day.in_([d, d - timedelta(days=1)]))
                           .order_by(DutyRoster.day.desc(), DutyRoster.start_time)).scalars().all()
    for row in rows:
        if _covers(row, row.day, local):
            user = session.get(User, row.manager_id)
            if user is not None and user.active:
                return user
    default = session.execute(select(DutyRoster).where(DutyRoster.day.is_(None))).scalars().first()
    if default is not None:
        user = session.get(User, default.manager_id)
        if user is not None and user.active:
            return user
    return None


# ---------------------------------------------------------------------------------- assignment
def assign_at_completion(session: Session, recording_id: str, *, call_id: str | None, kind: str,
                         completed_at: datetime, calendar: Calendar | None = None, settings: Any = None,
                         cfg: ReviewConfig | None = None) -> ReviewAssignment:
    """Assign a completed recording to the manager on duty at ``completed_at`` (idempotent)."""
    from hotline_api.services import audit

    cfg = cfg or ReviewConfig.from_settings(settings)
    existing = session.execute(select(ReviewAssignment).where(ReviewAssignment.recording_id == recording_id)).scalar_one_or_none()
    if existing is not None:
        return existing
    manager = manager_on_duty(session, completed_at, cfg.timezone)
    due, provisional = compute_due(completed_at, cfg, calendar or default_calendar(session))
    a = ReviewAssignment(recording_id=recording_id, call_id=call_id, kind=kind if kind in ("call", "voicemail") else "call",
                         manager_id=manager.id if manager else None, assigned_at=completed_at, due_at=due,
                         due_provisional=provisional)
    session.add(a)
    session.flush()
    if manager is None:
        log.warning("recording %s: no recording manager on the roster (and no default); left unassigned", recording_id)
    audit.record(session, "review.assign", actor_name="system", object_type="recording", object_id=recording_id,
                 detail={"manager": manager.username if manager else None, "due_at": due.isoformat(),
                         "due_provisional": provisional}, at=completed_at)
    return a


def get_assignment(session: Session, recording_id: str) -> ReviewAssignment | None:
    return session.execute(select(ReviewAssignment).where(ReviewAssignment.recording_id == recording_id)).scalar_one_or_none()


def _maybe_complete(a: ReviewAssignment, now: datetime) -> None:
    if a.completed_at is None and a.listened_at and a.stored_confirmed_at and a.organized_at:
        a.completed_at = now


def record_served_range(session: Session, recording_id: str, user: User, start: int, stop: int,
                        now: datetime | None = None, settings: Any = None) -> ReviewAssignment | None:
    """Add bytes [start, stop) served to ``user``; counts only for the assigned manager. Sets
    ``listened_at`` when the union of served ranges covers the threshold of the audio data."""
    now = now or datetime.now(timezone.utc)
    a = get_assignment(session, recording_id)
    if a is None or a.manager_id != user.id or stop <= start:
        return a
    blob = session.get(RecordingBlob, recording_id)
    lo, hi = (blob.data_offset, blob.data_offset + blob.data_size) if blob else (0, stop)
    merged = rng.merge(a.ranges + [[int(start), int(stop)]])
    a.served_ranges = json.dumps(merged)
    a.coverage = rng.coverage(merged, lo, hi)
    cfg = ReviewConfig.from_settings(settings)
    if a.listened_at is None and a.coverage >= cfg.listened_threshold:
        a.listened_at = now
    _maybe_complete(a, now)
    session.flush()
    return a


def playback_recorder(factory: sessionmaker, recording_id: str, user: User, ip: str | None = None,
                      settings: Any = None, reason: str | None = None) -> Callable[[int, int], None]:
    """``on_done`` callback for ``storage.stream_range``: in a transaction of its own, audits the
    playback with the byte range actually delivered and adds it to the manager's listening coverage."""
    from hotline_api.services import audit

    user_id, username = user.id, user.username

    def _done(start: int, end: int) -> None:
        try:
            with factory() as s:
                u = s.get(User, user_id)
                if u is not None and end > start:
                    record_served_range(s, recording_id, u, start, end, settings=settings)
                s.commit()
            audit.append(factory, "recording.play", actor=SimpleNamespace(id=user_id, username=username),
                         object_type="recording", object_id=recording_id, ip=ip, reason=reason,
                         detail={"range": [start, end - 1] if end > start else None, "bytes": end - start})
        except Exception:  # noqa: BLE001 - never break the response; but say so loudly
            log.exception("recording %s: could not record playback", recording_id)

    return _done


def _check_actor(a: ReviewAssignment | None, user: User) -> ReviewAssignment:
    if a is None or not (a.manager_id == user.id or user.role == "supervisor"):
        raise NotPermitted("not found")
    return a


def confirm_stored(session: Session, ctx, recording_id: str, user: User, now: datetime | None = None,
                   ip: str | None = None) -> ReviewAssignment:
    """Re-check the integrity hash (full decrypt) and mark the item stored."""
    from hotline_api.services import audit, storage

    now = now or datetime.now(timezone.utc)
    a = _check_actor(get_assignment(session, recording_id), user)
    digest = storage.verify_integrity(session, ctx, recording_id, now=now)
    a.stored_confirmed_at, a.stored_by = now, user.id
    _maybe_complete(a, now)
    audit.record(session, "review.stored", actor=user, object_type="recording", object_id=recording_id, ip=ip,
                 detail={"sha256": digest}, at=now)
    return a


def organize(session: Session, recording_id: str, user: User, *, case_id: str | None = None,
             no_content_reason: str | None = None, tags: list[str] | None = None, now: datetime | None = None,
             ip: str | None = None, settings: Any = None) -> ReviewAssignment:
    """Organize: link to a case, or mark "no content" with a reason, or tag (at least one). A case
    is linked only when ``user`` may see it (``case_links.linkable_case``: never another unit's);
    otherwise ``NotPermitted``, as for a missing case, and nothing changes."""
    from hotline_api.services import access, audit, case_links

    now = now or datetime.now(timezone.utc)
    a = _check_actor(get_assignment(session, recording_id), user)
    if case_id is not None:
        try:
            case_id = case_links.linkable_case(session, user, case_id, settings=settings).id
        except access.NotVisible:
            raise NotPermitted("not found") from None
    tags = [t.strip() for t in (tags or []) if t and t.strip()]
    if no_content_reason is not None and not no_content_reason.strip():
        raise ReviewError("a no-content mark needs a reason")
    if case_id is None and no_content_reason is None and not tags:
        raise ReviewError("link a case, mark no content with a reason, or add tags")
    if case_id is not None and no_content_reason is not None:
        raise ReviewError("a recording linked to a case cannot be marked no content")
    if case_id is not None:
        a.case_id, a.organized_kind, a.no_content_reason = case_id, "case", None
    elif no_content_reason is not None:
        a.no_content_reason, a.organized_kind, a.case_id = no_content_reason.strip(), "no_content", None
    elif a.organized_kind is None:
        a.organized_kind = "tags"
    if tags:
        a.tags_json = json.dumps(sorted(set(a.tags) | set(tags)), ensure_ascii=False)
    a.organized_at = a.organized_at or now
    _maybe_complete(a, now)
    audit.record(session, "review.organize", actor=user, object_type="recording", object_id=recording_id, ip=ip,
                 detail={"kind": a.organized_kind, "case_id": a.case_id, "tags": a.tags,
                         "no_content": a.no_content_reason is not None}, at=now)
    return a


def queue_for(session: Session, user: User, include_done: bool = False, limit: int = 100, offset: int = 0) -> list[ReviewAssignment]:
    stmt = select(ReviewAssignment).where(ReviewAssignment.manager_id == user.id)
    if not include_done:
        stmt = stmt.where(ReviewAssignment.completed_at.is_(None))
    return list(session.execute(stmt.order_by(ReviewAssignment.due_at).limit(limit).offset(offset)).scalars())


def status_of(a: ReviewAssignment, now: datetime) -> dict[str, Any]:
    return {
        "recording_id": a.recording_id, "manager_id": a.manager_id, "due_at": a.due_at.isoformat(),
        "due_provisional": a.due_provisional, "coverage": round(a.coverage, 4), "listened": a.listened_at is not None,
        "stored": a.stored_confirmed_at is not None, "organized": a.organized_at is not None,
        "organized_kind": a.organized_kind, "case_id": a.case_id, "tags": a.tags,
        "completed_at": a.completed_at.isoformat() if a.completed_at else None,
        "overdue": a.completed_at is None and now > a.due_at, "escalated": a.escalated_at is not None,
    }


# ---------------------------------------------------------------------------------- escalation
def escalate_overdue(session: Session, now: datetime | None = None) -> list[ReviewAlert]:
    """Mark overdue, not yet escalated items and create one supervisor alert each (with audit)."""
    from hotline_api.services import audit

    now = now or datetime.now(timezone.utc)
    items = session.execute(select(ReviewAssignment).where(
        ReviewAssignment.completed_at.is_(None), ReviewAssignment.escalated_at.is_(None),
        ReviewAssignment.due_at < now)).scalars().all()
    alerts = []
    for a in items:
        manager = session.get(User, a.manager_id) if a.manager_id else None
        missing = [n for n, v in (("收听", a.listened_at), ("存储确认", a.stored_confirmed_at), ("整理", a.organized_at)) if v is None]
        who = manager.display_name or manager.username if manager else "（未分配）"
        msg = f"录音审核逾期：负责人 {who}，截止 {a.due_at.isoformat()}，未完成：{'、'.join(missing)}"
        alert = ReviewAlert(kind="review_overdue", assignment_id=a.id, recording_id=a.recording_id,
                            manager_id=a.manager_id, unit=manager.unit if manager else None, message=msg, created_at=now)
        session.add(alert)
        a.escalated_at = now
        alerts.append(alert)
        session.flush()
        audit.record(session, "review.escalate", actor_name="system", object_type="recording", object_id=a.recording_id,
                     detail={"manager": manager.username if manager else None, "due_at": a.due_at.isoformat(),
                             "missing": [m for m in ("listened", "stored", "organized")
                                         if getattr(a, {"listened": "listened_at", "stored": "stored_confirmed_at",
                                                        "organized": "organized_at"}[m]) is None],
                             "alert_id": alert.id}, at=now)
    return alerts


def escalation_job(factory: sessionmaker, now: Callable[[], datetime] | None = None) -> int:
    """APScheduler target: ``scheduler.add_job(escalation_job, 'interval', minutes=5, args=[factory])``."""
    with factory() as s:
        alerts = escalate_overdue(s, now() if now else None)
        s.commit()
    if alerts:
        log.warning("review: %d overdue item(s) escalated to supervisors", len(alerts))
    return len(alerts)


def open_alerts(session: Session, unit: str | None = None) -> list[ReviewAlert]:
    stmt = select(ReviewAlert).where(ReviewAlert.acknowledged_at.is_(None))
    if unit is not None:
        stmt = stmt.where(or_(ReviewAlert.unit == unit, ReviewAlert.unit.is_(None)))
    return list(session.execute(stmt.order_by(ReviewAlert.created_at)).scalars())


def acknowledge_alert(session: Session, alert_id: str, user: User, now: datetime | None = None) -> ReviewAlert:
    from hotline_api.services import audit

    alert = session.get(ReviewAlert, alert_id)
    if alert is None or user.role != "supervisor":
        raise NotPermitted("not found")
    if alert.acknowledged_at is None:
        alert.acknowledged_at, alert.acknowledged_by = now or datetime.now(timezone.utc), user.id
        audit.record(session, "review.alert_ack", actor=user, object_type="alert", object_id=alert.id)
    return alert


# ---------------------------------------------------------------------------------- compliance
@dataclass
class ComplianceRow:
    manager_id: str | None
    manager: str | None
    assigned: int = 0
    done_on_time: int = 0
    late: int = 0  # done after the deadline
    open: int = 0  # not done yet (includes overdue_open)
    overdue_open: int = 0  # not done and past the deadline

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ComplianceReport:
    year: int
    month: int
    rows: list[ComplianceRow] = field(default_factory=list)
    total: ComplianceRow = field(default_factory=lambda: ComplianceRow(None, "合计"))

    def as_dict(self) -> dict[str, Any]:
        return {"year": self.year, "month": self.month, "rows": [r.as_dict() for r in self.rows],
                "total": self.total.as_dict()}


def compliance_report(session: Session, year: int, month: int, now: datetime | None = None,
                      tz: str = "Asia/Shanghai") -> ComplianceReport:
    """Items assigned in the (local) month, per manager: done on time, late, open (and overdue)."""
    now = now or datetime.now(timezone.utc)
    zone = ZoneInfo(tz)
    start = datetime(year, month, 1, tzinfo=zone)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=zone)
    items = session.execute(select(ReviewAssignment).where(and_(
        ReviewAssignment.assigned_at >= start.astimezone(timezone.utc),
        ReviewAssignment.assigned_at < end.astimezone(timezone.utc)))).scalars().all()
    names = {u.id: u.username for u in session.execute(select(User)).scalars()}
    rows: dict[str | None, ComplianceRow] = {}
    report = ComplianceReport(year, month)
    for a in items:
        row = rows.setdefault(a.manager_id, ComplianceRow(a.manager_id, names.get(a.manager_id)))
        for r in (row, report.total):
            r.assigned += 1
            if a.completed_at is not None:
                if a.completed_at <= a.due_at:
                    r.done_on_time += 1
                else:
                    r.late += 1
            else:
                r.open += 1
                if now > a.due_at:
                    r.overdue_open += 1
    report.rows = sorted(rows.values(), key=lambda r: r.manager or "")
    return report
