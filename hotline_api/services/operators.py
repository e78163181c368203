"""Operators (state, SIP credentials, contacts), the atomic claim of the longest-idle operator,
and the working-hours decision.

Operator states: ``available``, ``on_call``, ``wrap_up`` (``operator_wrap_up_seconds`` after a
talk, then ``available`` again), ``paused`` (with a reason), ``offline``. Operators set available /
paused / offline themselves; the routing sets on_call and wrap_up. Wrap-up expiry is evaluated
lazily (:func:`effective_state`, and inside the claim), so no timer process is needed.

Claim (:func:`claim_longest_idle`): candidates are the available operators (or those whose
wrap-up has expired) that are not reserved, ordered by idle time (``last_call_ended_at``, else
``state_since``; oldest first). Each candidate is taken with one conditional ``UPDATE ... WHERE
id = :id AND <still free>``: the row count tells whether this worker won it. Two worker processes
sharing the database can therefore never reserve the same operator (SQLite serialises writers;
PostgreSQL re-checks the WHERE clause on the locked row). A reservation is a lease
(``reserved_until``): a worker that dies while ringing does not strand the operator.

Working hours (:func:`is_open`): in the schedule's time zone (default ``settings.timezone``,
Asia/Shanghai):

1. an admin :class:`OpenOverride` for the local date wins (closed all day, or open in its hours);
2. else the day must be a working day per :class:`hotline_api.services.calendar.WorkCalendar`
   (chinese_calendar holidays and 调休 make-up workdays, admin holiday overrides, and for years the
   package does not know -- 2027 with chinese_calendar 1.11 -- weekends plus admin overrides,
   flagged ``provisional`` with a warning in the logs and :func:`holiday_warnings`);
3. the hours are the weekly schedule's for that weekday; a make-up workday on a weekend without
   weekly hours uses the standard workday hours (the first of Monday..Friday that has hours).

Everything is read from the database at each decision: admin changes apply without restart.
"""
from __future__ import annotations

import hashlib
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Iterable
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from hotline_api.models.operators import OPERATOR_STATES, OpenOverride, Operator, OperatorContact, WorkingHours

log = logging.getLogger(__name__)

SELF_STATES = ("available", "paused", "offline")  # what an operator may set
DEFAULT_WEEKLY: dict[int, list[tuple[str, str]]] = {d: [("08:30", "17:30")] for d in range(5)}
DEFAULT_TZ = "Asia/Shanghai"


class OperatorError(ValueError):
    """Bad input for an operator operation (the message says what)."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def digest_ha1(username: str, realm: str, password: str) -> str:
    """HA1 of SIP digest authentication: md5(username:realm:password) (RFC 2617). Only this is
    stored; the registrar verifies REGISTERs against it."""
    return hashlib.md5(f"{username}:{realm}:{password}".encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------- profile
def get_for_user(session: Session, user_id: str) -> Operator | None:
    return session.execute(select(Operator).where(Operator.user_id == user_id)).scalar_one_or_none()


def ensure_operator(session: Session, user, *, contacts: Iterable[dict] | None = None, sip_username: str | None = None,
                    sip_password: str | None = None, realm: str = "12388") -> Operator:
    """Create or update the operator profile of ``user``. ``contacts``: ``[{"kind": "static",
    "uri": "sip:..."}, {"kind": "registered"}]`` (replaces the list when given)."""
    if getattr(user, "role", "operator") != "operator":
        raise OperatorError("only users with the operator role can take calls")
    op = get_for_user(session, user.id)
    if op is None:
        op = Operator(user_id=user.id, state="offline", state_since=utcnow())
        session.add(op)
    if sip_username is not None:
        if not sip_username or not sip_username.replace("_", "").replace(".", "").replace("-", "").isalnum():
            raise OperatorError("SIP user name: letters, digits, '.', '_', '-' only")
        clash = session.execute(select(Operator.id).where(Operator.sip_username == sip_username,
                                                          Operator.id != op.id)).first()
        if clash:
            raise OperatorError(f"SIP user name {sip_username!r} is taken")
        op.sip_username = sip_username
    if sip_password is not None:
        if not op.sip_username:
            raise OperatorError("set a SIP user name before a SIP password")
        if len(sip_password) < 8:
            raise OperatorError("SIP password: at least 8 characters")
        op.sip_realm = realm
        op.sip_ha1 = digest_ha1(op.sip_username, realm, sip_password)
    if contacts is not None:
        new = []
        for i, c in enumerate(contacts):
            kind = c.get("kind", "static")
            uri = (c.get("uri") or "").strip()
            if kind not in ("static", "registered"):
                raise OperatorError(f"contact kind must be static or registered, got {kind!r}")
            if kind == "static" and not uri.lower().startswith(("sip:", "sips:")):
                raise OperatorError(f"a static contact needs a sip: URI, got {uri!r}")
            new.append(OperatorContact(kind=kind, uri=uri, priority=int(c.get("priority", i)),
                                       enabled=bool(c.get("enabled", True))))
        op.contacts = new
    session.flush()
    return op


def effective_state(op: Operator, now: datetime | None = None) -> str:
    now = now or utcnow()
    if op.state == "wrap_up" and op.wrap_up_until is not None and op.wrap_up_until <= now:
        return "available"
    return op.state


def set_state(session: Session, op: Operator, state: str, reason: str | None = None, *, by_routing: bool = False,
              now: datetime | None = None) -> Operator:
    """Change an operator's state (operators: available / paused with a reason / offline)."""
    now = now or utcnow()
    if state not in OPERATOR_STATES:
        raise OperatorError(f"unknown state {state!r} (states: {', '.join(OPERATOR_STATES)})")
    if not by_routing and state not in SELF_STATES:
        raise OperatorError(f"state {state!r} is set by the call routing, not by hand")
    if state == "paused" and not (reason or "").strip():
        raise OperatorError("a pause needs a reason")
    if not by_routing and op.state == "on_call" and state == "available":
        raise OperatorError("the operator is on a call")
    op.state = state
    op.state_reason = ((reason or "").strip()[:255] or None) if state == "paused" else None
    op.state_since = now
    if state != "wrap_up":
        op.wrap_up_until = None
    session.flush()
    return op


def contact_uris(op: Operator, registrar: str = "") -> list[str]:
    """The URIs to ring, in priority order. A registered contact is the operator's AOR at the
    registrar (``sip:<sip_username>@<registrar>``), where kamailio looks up their softphones."""
    out = []
    for c in sorted(op.contacts, key=lambda c: c.priority or 0):
        if c.enabled is False:
            continue
        if c.kind == "static":
            out.append(c.uri)
        elif c.uri:
            out.append(c.uri)
        elif op.sip_username and registrar:
            out.append(f"sip:{op.sip_username}@{registrar}")
    return out


# ---------------------------------------------------------------------------- claim / release
def _free_clause(now: datetime):
    free_state = or_(Operator.state == "available",
                     and_(Operator.state == "wrap_up", Operator.wrap_up_until.is_not(None),
                          Operator.wrap_up_until <= now))
    unreserved = or_(Operator.reserved_call_id.is_(None), Operator.reserved_until < now)
    return and_(free_state, unreserved)


@dataclass
class Claim:
    operator: Operator | None
    logged_in: int
    available: int


@contextmanager
def _write_txn(session: Session):
    """A transaction of its own that takes the write lock first (SQLite ``BEGIN IMMEDIATE``), so a
    read followed by a write cannot lose a race to another process (no stale snapshot)."""
    session.commit()  # whatever the caller had open
    engine = session.get_bind()
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.info["begin_mode"] = "IMMEDIATE"
        with Session(bind=conn, expire_on_commit=False) as s:
            yield s
            s.commit()


def claim_longest_idle(session: Session, call_id: str, exclude: Iterable[str] = (), *, now: datetime | None = None,
                       lease_s: float = 90.0) -> Claim:
    """Reserve the longest-idle free operator not in ``exclude`` for ``call_id`` and commit.
    The conditional UPDATE's row count decides (PostgreSQL); on SQLite the whole claim also runs
    under the write lock."""
    now = now or utcnow()
    exclude = set(exclude)
    won = None
    # A plain read first: with nobody free (the usual case while callers wait) no write lock is taken,
    # so a queue of callers does not contend with the call events and the recording pipeline.
    idle_key = func.coalesce(Operator.last_call_ended_at, Operator.state_since)
    with session.get_bind().connect() as conn:
        logged_in = conn.execute(select(func.count()).select_from(Operator).where(Operator.state != "offline")).scalar()
        free = [r[0] for r in conn.execute(select(Operator.id).where(_free_clause(now)))]
    if not [oid for oid in free if oid not in exclude]:
        return Claim(None, int(logged_in or 0), len(free))
    with _write_txn(session) as s:
        logged_in = s.execute(select(func.count()).select_from(Operator).where(Operator.state != "offline")).scalar()
        rows = s.execute(select(Operator.id).where(_free_clause(now)).order_by(idle_key.asc(), Operator.id)).all()
        free = [r[0] for r in rows]
        for oid in free:
            if oid in exclude:
                continue
            res = s.execute(update(Operator).where(Operator.id == oid, _free_clause(now))
                            .values(reserved_call_id=call_id, reserved_until=now + timedelta(seconds=lease_s))
                            .execution_options(synchronize_session=False))
            if res.rowcount == 1:
                won = oid
                break
    op = session.get(Operator, won, populate_existing=True) if won else None
    return Claim(op, int(logged_in or 0), len(free))


def mark_answered(session: Session, operator_id: str, call_id: str, now: datetime | None = None) -> bool:
    now = now or utcnow()
    with _write_txn(session) as s:
        res = s.execute(update(Operator).where(Operator.id == operator_id, Operator.reserved_call_id == call_id)
                        .values(state="on_call", state_since=now, current_call_id=call_id, reserved_call_id=None,
                                reserved_until=None, wrap_up_until=None, state_reason=None)
                        .execution_options(synchronize_session=False))
    return res.rowcount == 1


def release(session: Session, operator_id: str, call_id: str, outcome: str, *, wrap_up_s: float = 30.0,
            now: datetime | None = None) -> None:
    """Give the operator back after a call attempt. After a talk (``ended``, or they were on
    this call) they go to wrap-up (or available when wrap-up is 0); otherwise only the
    reservation is dropped (their idle time is unchanged)."""
    now = now or utcnow()
    with _write_txn(session) as s:
        _release(s, operator_id, call_id, now, wrap_up_s)
    session.expire_all()


def _release(session: Session, operator_id: str, call_id: str, now: datetime, wrap_up_s: float) -> None:
    op = session.get(Operator, operator_id)
    if op is None:
        return
    if op.reserved_call_id == call_id:
        op.reserved_call_id = None
        op.reserved_until = None
    if op.current_call_id == call_id:
        op.current_call_id = None
        op.last_call_ended_at = now
        if op.state == "on_call":  # an operator who paused/logged off meanwhile stays so
            if wrap_up_s > 0:
                op.state, op.wrap_up_until = "wrap_up", now + timedelta(seconds=wrap_up_s)
            else:
                op.state, op.wrap_up_until = "available", None
            op.state_since = now


# ---------------------------------------------------------------------------- working hours
def _hhmm(s: str) -> time:
    s = (s or "").strip()
    if s == "24:00":
        return time(23, 59, 59, 999999)
    try:
        h, m = s.split(":")
        return time(int(h), int(m))
    except (ValueError, TypeError):
        raise OperatorError(f"time must be HH:MM, got {s!r}") from None


def weekly_schedule(session: Session, default_tz: str = DEFAULT_TZ) -> tuple[str, dict[int, list[tuple[str, str]]]]:
    rows = session.execute(select(WorkingHours).order_by(WorkingHours.weekday, WorkingHours.start_time)).scalars().all()
    if not rows:
        return default_tz, {k: list(v) for k, v in DEFAULT_WEEKLY.items()}
    out: dict[int, list[tuple[str, str]]] = {}
    for r in rows:
        out.setdefault(r.weekday, []).append((r.start_time, r.end_time))
    return rows[0].timezone or default_tz, out


def set_weekly_schedule(session: Session, schedule: dict[int, list[tuple[str, str]]], tz: str = DEFAULT_TZ) -> None:
    """Replace the weekly schedule (weekday 0 = Monday -> [(start, end)] local HH:MM)."""
    try:
        ZoneInfo(tz)
    except Exception:
        raise OperatorError(f"unknown time zone {tz!r}") from None
    rows = []
    for wd, spans in schedule.items():
        wd = int(wd)
        if not 0 <= wd <= 6:
            raise OperatorError(f"weekday must be 0 (Monday) to 6 (Sunday), got {wd}")
        for start, end in spans:
            if _hhmm(start) >= _hhmm(end):
                raise OperatorError(f"{start}-{end}: the end must be after the start")
            rows.append(WorkingHours(weekday=wd, start_time=start, end_time=end, timezone=tz))
    session.query(WorkingHours).delete()
    session.add_all(rows)
    session.flush()


def set_open_override(session: Session, day: date, is_open: bool, start: str | None = None, end: str | None = None,
                      note: str | None = None, actor: str | None = None) -> OpenOverride:
    if (start is None) != (end is None):
        raise OperatorError("give both start and end, or neither")
    if start is not None and _hhmm(start) >= _hhmm(end):
        raise OperatorError(f"{start}-{end}: the end must be after the start")
    row = session.execute(select(OpenOverride).where(OpenOverride.day == day)).scalar_one_or_none()
    if row is None:
        row = OpenOverride(day=day)
        session.add(row)
    row.is_open, row.start_time, row.end_time, row.note, row.created_by = is_open, start, end, note, actor
    session.flush()
    return row


def delete_open_override(session: Session, day: date) -> bool:
    n = session.query(OpenOverride).filter(OpenOverride.day == day).delete()
    session.flush()
    return n > 0


@dataclass
class HoursDecision:
    open: bool
    reason: str  # open / closed_hours / closed_weekend / closed_holiday / closed_override
    provisional: bool = False
    local: datetime | None = None
    warnings: list[str] = field(default_factory=list)


def _standard_hours(weekly: dict[int, list[tuple[str, str]]]) -> list[tuple[str, str]]:
    for d in range(5):
        if weekly.get(d):
            return weekly[d]
    return list(DEFAULT_WEEKLY[0])


def _within(t: time, spans: list[tuple[str, str]]) -> bool:
    return any(_hhmm(s) <= t < _hhmm(e) for s, e in spans)


def _is_named_holiday(d: date, cal) -> bool:
    o = cal._overrides.get(d)
    if o is not None:
        return not o.workday
    try:
        import chinese_calendar

        on_holiday, name = chinese_calendar.get_holiday_detail(d)
        return bool(on_holiday and name)
    except NotImplementedError:
        return False


def is_open(session: Session, now: datetime | None = None, default_tz: str = DEFAULT_TZ) -> HoursDecision:
    """Is the hotline staffed at ``now`` (aware datetime)? See the module doc for the rules."""
    from hotline_api.services.calendar import WorkCalendar

    now = now or utcnow()
    if now.tzinfo is None:
        raise OperatorError("now must be timezone-aware")
    tz_name, weekly = weekly_schedule(session, default_tz)
    local = now.astimezone(ZoneInfo(tz_name))
    d, t = local.date(), local.time()
    ov = session.execute(select(OpenOverride).where(OpenOverride.day == d)).scalar_one_or_none()
    cal = WorkCalendar.from_db(session)
    provisional = cal.year_status(d.year) == "fallback"
    warnings = holiday_warnings(cal, d)
    if provisional:
        log.warning("working hours for %s: holiday data for %d is missing (chinese_calendar); deciding on weekends "
                    "plus admin overrides -- enter the official %d holiday schedule", d, d.year, d.year)
    if ov is not None:
        if not ov.is_open:
            return HoursDecision(False, "closed_override", provisional, local, warnings)
        spans = [(ov.start_time, ov.end_time)] if ov.start_time else _standard_hours(weekly)
        return HoursDecision(_within(t, spans), "open" if _within(t, spans) else "closed_hours", provisional, local,
                             warnings)
    workday, prov = cal.is_workday(d)
    provisional = provisional or prov
    if not workday:
        reason = "closed_holiday" if _is_named_holiday(d, cal) else "closed_weekend"
        return HoursDecision(False, reason, provisional, local, warnings)
    spans = weekly.get(d.weekday()) or (_standard_hours(weekly) if d.weekday() >= 5 else [])
    ok = _within(t, spans)
    return HoursDecision(ok, "open" if ok else "closed_hours", provisional, local, warnings)


def holiday_warnings(cal=None, today: date | None = None) -> list[str]:
    """Admin-facing warnings (Chinese) when the holiday data of this or next year is missing."""
    from hotline_api.services.calendar import WorkCalendar

    cal = cal or WorkCalendar()
    return cal.warnings(today)


# ---------------------------------------------------------------------------- listing
def operator_json(op: Operator, now: datetime | None = None, registrar: str = "", with_user=None) -> dict:
    u = with_user
    return {
        "id": op.id,
        "user_id": op.user_id,
        "username": getattr(u, "username", None),
        "display_name": getattr(u, "display_name", None),
        "state": effective_state(op, now),
        "state_reason": op.state_reason,
        "state_since": op.state_since.isoformat() if op.state_since else None,
        "last_call_ended_at": op.last_call_ended_at.isoformat() if op.last_call_ended_at else None,
        "wrap_up_until": op.wrap_up_until.isoformat() if op.wrap_up_until else None,
        "current_call_id": op.current_call_id,
        "ringing_call_id": op.reserved_call_id if (op.reserved_until and op.reserved_until > (now or utcnow())) else None,
        "sip": {"username": op.sip_username, "realm": op.sip_realm, "has_password": bool(op.sip_ha1)},
        "contacts": [{"kind": c.kind, "uri": c.uri, "priority": c.priority, "enabled": c.enabled}
                     for c in op.contacts],
        "dial_uris": contact_uris(op, registrar),
    }
