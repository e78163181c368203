"""Read-only queries for the console pages: paginated lists (indexed, LIMIT/OFFSET with a separate
count) and the statistics dashboard's aggregations, done in SQL so that pages stay fast with 100k
calls and 20k cases. Each dashboard aggregation reads one covering index (``models/stats.py``,
migration ``0008_stats``) and never the wide rows; calls are counted per bucket by index range
(bucket bounds computed here), not by a per-row day expression and a GROUP BY sort.

Local days: timestamps are stored in UTC; days are bucketed in the configured time zone with the
zone's UTC offset at the start of the period (exact for Asia/Shanghai, which has no DST).

Access: lists of content (drafts, cases) apply ``services.access`` as SQL (a supervisor with a
unit sees drafts/cases of recordings of that unit, and those without a recording; without a unit,
everything). Case filters by issue type / place match a whole JSON string element of the case
document. The dashboard shows aggregate counts (no content, no identity) of the supervisor's unit
(``stats_scope``: the same rules as SQL; without a unit, every unit's); the alert lists follow the
API's rules (``open_urgent_alerts``, ``open_review_alerts``).
"""
from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterable
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, and_, bindparam, case, column, exists, func, literal, or_, select, text, values
from sqlalchemy.orm import Session

from hotline_api.db.base import UTCDateTime
from hotline_api.models.calls import Call, Recording
from hotline_api.models.cases import Case, CaseDeadline, Draft, UrgentAlert
from hotline_api.models.governance import ReviewAlert, ReviewAssignment, User

CALL_CHANNELS = ("call", "voicemail")
CHANNEL_LABELS = {"call": "来电", "voicemail": "留言"}
CASE_STATUS_LABELS = {"registered": "已受理", "handling": "办理中", "closed": "已了结", "archived": "已归档"}
DRAFT_STATUS_LABELS = {"draft": "待审核", "registered": "已受理", "discarded": "已作废"}
DEADLINE_KIND_LABELS = {"acceptance_notice": "受理告知", "result_feedback": "结果反馈"}
FEEDBACK_LABELS = {"notice_sent": "已发送受理告知", "result_sent": "已反馈处理结果", "objection": "举报人提出异议"}
DEADLINE_STATES = {"overdue": "已逾期", "due_soon": "3个工作日内到期", "open": "有未完成期限", "none": "无未完成期限"}


# ------------------------------------------------------------------------------------- time
def tz_of(settings: Any) -> ZoneInfo:
    return ZoneInfo(getattr(settings, "timezone", None) or "Asia/Shanghai")


def local_range_utc(start: date, end: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) local days as UTC datetimes."""
    a = datetime.combine(start, time(0), tzinfo=tz).astimezone(timezone.utc)
    b = datetime.combine(end, time(0), tzinfo=tz).astimezone(timezone.utc)
    return a, b


def _offset_minutes(tz: ZoneInfo, at: date) -> int:
    off = datetime.combine(at, time(12), tzinfo=tz).utcoffset() or timedelta(0)
    return int(off.total_seconds() // 60)


def local_day_expr(session: Session, column, offset_minutes: int):
    """SQL expression: the local calendar day of a UTC timestamp column, as 'YYYY-MM-DD' text."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        return func.strftime("%Y-%m-%d", column, f"{offset_minutes:+d} minutes")
    if dialect == "postgresql":
        return func.to_char(column + text(f"interval '{offset_minutes} minutes'"), "YYYY-MM-DD")
    return func.date(column)  # other backends: UTC days


# --------------------------------------------------------------------------------- paging
@dataclass
class PageResult:
    items: list[Any]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


def _paged(session: Session, stmt, page: int, per_page: int, count_stmt=None) -> PageResult:
    per_page = max(1, min(per_page, 200))
    page = max(1, page)
    if count_stmt is None:
        count_stmt = select(func.count()).select_from(stmt.order_by(None).subquery())
    total = session.execute(count_stmt).scalar_one()
    rows = session.execute(stmt.limit(per_page).offset((page - 1) * per_page)).all()
    return PageResult(rows, total, page, per_page)


# ---------------------------------------------------------------------------------- access
def draft_visible_clause(user: User, settings: Any = None):
    """SQL over ``Draft``: the drafts a supervisor may see (``services.access.can_see_draft``)."""
    from hotline_api.services import access

    if user.role != "supervisor":
        return literal(False)
    if not user.unit:
        return literal(True)
    return or_(Draft.recording_id.is_(None), Draft.recording_id.in_(access.visible_recording_ids(user, settings=settings)))


@dataclass(frozen=True)
class Scope:
    """What a user's statistics count: WHERE clauses over ``Call``, ``Case``, ``Draft`` and
    ``ReviewAssignment`` (the rules of ``services.access`` as SQL)."""

    calls: Any
    cases: Any
    drafts: Any
    assignments: Any


def stats_scope(session: Session, user: User | None, settings: Any = None) -> Scope | None:
    """The dashboard's scope for ``user``: None (every unit) for a supervisor without a unit, as the
    content API lets them see everything, and for ``user=None`` (no user: the CLI, tests); a unit
    supervisor counts the calls, cases, drafts and review items of their unit (``access.call_clause``,
    ``draft_visible_clause``, ``access.visible_recording_ids``); anyone else nothing."""
    from hotline_api.services import access

    if user is None or (user.role == "supervisor" and user.active and not user.unit):
        return None
    if user.role != "supervisor" or not user.active:
        return Scope(literal(False), literal(False), literal(False), literal(False))
    drafts = draft_visible_clause(user, settings)
    return Scope(
        calls=access.call_clause(session, user, settings=settings),
        # explicit correlation: the statements these go into may select from drafts / assignments too
        cases=exists(select(Draft.id).where(Draft.id == Case.draft_id, drafts).correlate(Case)),
        drafts=drafts,
        assignments=ReviewAssignment.recording_id.in_(
            access.visible_recording_ids(user, settings=settings).correlate(None)),
    )


# ----------------------------------------------------------------------------- review queue
@dataclass
class QueueItem:
    assignment: ReviewAssignment
    recording: Recording
    call: Call | None

    @property
    def overdue(self) -> bool:
        return self.assignment.completed_at is None and datetime.now(timezone.utc) > self.assignment.due_at


def review_queue(session: Session, user: User, done: bool = False, page: int = 1, per_page: int = 25) -> PageResult:
    """The recording manager's assigned items: open ones by deadline (overdue first), or the done ones."""
    stmt = (select(ReviewAssignment, Recording, Call)
            .join(Recording, Recording.id == ReviewAssignment.recording_id)
            .outerjoin(Call, Call.id == Recording.call_id)
            .where(ReviewAssignment.manager_id == user.id))
    if done:
        stmt = stmt.where(ReviewAssignment.completed_at.is_not(None)).order_by(ReviewAssignment.completed_at.desc())
    else:
        stmt = stmt.where(ReviewAssignment.completed_at.is_(None)).order_by(ReviewAssignment.due_at, ReviewAssignment.assigned_at)
    count = select(func.count(ReviewAssignment.id)).where(
        ReviewAssignment.manager_id == user.id,
        ReviewAssignment.completed_at.is_not(None) if done else ReviewAssignment.completed_at.is_(None))
    res = _paged(session, stmt, page, per_page, count)
    res.items = [QueueItem(a, r, c) for a, r, c in res.items]
    return res


def review_counts(session: Session, user: User, now: datetime | None = None) -> dict[str, int]:
    now = now or datetime.now(timezone.utc)
    row = session.execute(select(
        func.count(ReviewAssignment.id),
        func.sum(case((ReviewAssignment.due_at < now, 1), else_=0)),
        func.sum(case((ReviewAssignment.listened_at.is_not(None), 1), else_=0)),
    ).where(ReviewAssignment.manager_id == user.id, ReviewAssignment.completed_at.is_(None))).one()
    return {"open": row[0] or 0, "overdue": int(row[1] or 0), "listened": int(row[2] or 0)}


# ----------------------------------------------------------------------------------- drafts
def drafts_page(session: Session, user: User, status: str = "draft", page: int = 1, per_page: int = 25,
                urgent_only: bool = False) -> PageResult:
    stmt = select(Draft).where(Draft.status == status, draft_visible_clause(user))
    if urgent_only:
        stmt = stmt.where(Draft.urgent.is_(True))
    stmt = stmt.order_by(Draft.urgent.desc(), Draft.received_at.desc())
    return _paged(session, stmt, page, per_page)


# ------------------------------------------------------------------------------------ cases
@dataclass
class CaseFilters:
    status: str | None = None
    category: str | None = None
    issue_type: str | None = None
    place: str | None = None
    deadline: str | None = None  # overdue / due_soon / open / none
    number: str | None = None

    def as_query(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v}


def _has_facet(key: str, value: str):
    """The case has this issue type / place (``case_facets``: the case document is encrypted)."""
    from hotline_api.models.cases import CaseFacet

    return exists(select(CaseFacet.id).where(CaseFacet.case_id == Case.id, CaseFacet.facet == key,
                                             CaseFacet.value == value.strip()))

def cases_page(session: Session, user: User, f: CaseFilters, today: date, soon_until: date, page: int = 1,
               per_page: int = 25) -> PageResult:
    """Cases newest first, filtered. ``soon_until`` is the date of the 3rd working day after today."""
    stmt = select(Case)
    conds = []
    if user.unit:
        conds.append(exists(select(Draft.id).where(Draft.id == Case.draft_id, draft_visible_clause(user))))
    if f.status:
        conds.append(Case.status == f.status)
    if f.category:
        conds.append(Case.category == f.category)
    if f.number:
        conds.append(Case.number.like(f"%{f.number.strip()[:32]}%"))
    if f.issue_type:
        conds.append(_has_facet("issue_types", f.issue_type))
    if f.place:
        conds.append(_has_facet("places", f.place.strip()[:128]))
    open_dl = select(CaseDeadline.id).where(CaseDeadline.case_id == Case.id, CaseDeadline.done_at.is_(None))
    if f.deadline == "overdue":
        conds.append(exists(open_dl.where(CaseDeadline.due_on < today)))
    elif f.deadline == "due_soon":
        conds.append(exists(open_dl.where(CaseDeadline.due_on >= today, CaseDeadline.due_on <= soon_until)))
        conds.append(~exists(open_dl.where(CaseDeadline.due_on < today)))
    elif f.deadline == "open":
        conds.append(exists(open_dl))
    elif f.deadline == "none":
        conds.append(~exists(open_dl))
    if conds:
        stmt = stmt.where(and_(*conds))
    stmt = stmt.order_by(Case.registered_at.desc(), Case.seq.desc())
    res = _paged(session, stmt, page, per_page)
    cases = [r[0] for r in res.items]
    ids = [c.id for c in cases]
    deadlines: dict[str, list[CaseDeadline]] = {}
    if ids:
        for dl in session.execute(select(CaseDeadline).where(CaseDeadline.case_id.in_(ids), CaseDeadline.done_at.is_(None))
                                  .order_by(CaseDeadline.due_on)).scalars():
            deadlines.setdefault(dl.case_id, []).append(dl)
    res.items = [(c, json.loads(c.fields_json or "{}"), deadlines.get(c.id, [])) for c in cases]
    return res


# ----------------------------------------------------------------------------------- alerts
# Urgent alerts are those of the drafts the user may see (``access.visible_urgent_alerts``, the rule
# of ``GET /api/alerts``); review alerts those of the user's unit or of no unit (``review.open_alerts``,
# the rule of ``GET /api/review/alerts``). A supervisor without a unit sees every unit's; anyone but
# a supervisor none.
def _review_alert_clause(user: User):
    if user.role != "supervisor":
        return literal(False)
    if not user.unit:
        return literal(True)
    return or_(ReviewAlert.unit == user.unit, ReviewAlert.unit.is_(None))


def open_urgent_alerts(session: Session, user: User, settings: Any = None, limit: int = 100
                       ) -> list[tuple[UrgentAlert, Draft]]:
    return list(session.execute(select(UrgentAlert, Draft).join(Draft, Draft.id == UrgentAlert.draft_id)
                                .where(UrgentAlert.status == "open", draft_visible_clause(user, settings))
                                .order_by(UrgentAlert.created_at).limit(limit)).all())


def recent_acknowledged_alerts(session: Session, user: User, settings: Any = None, limit: int = 20
                               ) -> list[tuple[UrgentAlert, Draft]]:
    return list(session.execute(select(UrgentAlert, Draft).join(Draft, Draft.id == UrgentAlert.draft_id)
                                .where(UrgentAlert.status != "open", draft_visible_clause(user, settings))
                                .order_by(UrgentAlert.acknowledged_at.desc()).limit(limit)).all())


def open_review_alerts(session: Session, user: User, limit: int = 100) -> list[ReviewAlert]:
    stmt = select(ReviewAlert).where(ReviewAlert.acknowledged_at.is_(None), _review_alert_clause(user))
    return list(session.execute(stmt.order_by(ReviewAlert.created_at).limit(limit)).scalars())


def alert_counts(session: Session, user: User, settings: Any = None) -> dict[str, int]:
    urgent = session.execute(select(func.count(UrgentAlert.id)).join(Draft, Draft.id == UrgentAlert.draft_id)
                             .where(UrgentAlert.status == "open", draft_visible_clause(user, settings))).scalar_one()
    review = session.execute(select(func.count(ReviewAlert.id)).where(ReviewAlert.acknowledged_at.is_(None),
                                                                      _review_alert_clause(user))).scalar_one()
    return {"urgent": urgent, "review": review}


# --------------------------------------------------------------------------- operator calls
def operator_ids(session: Session, user: User) -> list[str]:
    """The ids a call's ``operator_id`` may carry for this user: the user id, and the id of the
    user's operator profile (``operators.id``, which the routing writes)."""
    ids = [user.id]
    try:
        from hotline_api.services import operators as ops

        op = ops.get_for_user(session, user.id)
        if op is not None:
            ids.append(op.id)
    except Exception:  # noqa: BLE001 - operators tables absent
        session.rollback()
    return ids


def operator_may_see(session: Session, user: User, call: Call, hours: float, now: datetime | None = None) -> bool:
    if user.role != "operator" or call.operator_id not in operator_ids(session, user):
        return False
    now = now or datetime.now(timezone.utc)
    ended = call.ended_at or call.answered_at or call.created_at
    return ended is not None and ended >= now - timedelta(hours=hours)


def operator_calls(session: Session, user: User, hours: float, now: datetime | None = None, page: int = 1,
                   per_page: int = 25) -> PageResult:
    """Calls the operator handled that ended (or started) within the allowed window."""
    now = now or datetime.now(timezone.utc)
    since = now - timedelta(hours=hours)
    stmt = (select(Call, Recording).outerjoin(Recording, Recording.call_id == Call.id)
            .where(Call.operator_id.in_(operator_ids(session, user)),
                   func.coalesce(Call.ended_at, Call.answered_at, Call.created_at) >= since)
            .order_by(Call.created_at.desc()))
    return _paged(session, stmt, page, per_page)


# ----------------------------------------------------------------------------- statistics
@dataclass
class Series:
    labels: list[str]
    values: dict[str, list[int]]  # series name -> values aligned with labels

    def total(self, name: str | None = None) -> int:
        if name is not None:
            return sum(self.values.get(name, []))
        return sum(sum(v) for v in self.values.values())


@dataclass
class ComplianceAgg:
    manager: str
    assigned: int = 0
    done_on_time: int = 0
    late: int = 0
    open: int = 0
    overdue_open: int = 0

    @property
    def on_time_rate(self) -> float | None:
        return self.done_on_time / self.assigned if self.assigned else None


@dataclass
class Dashboard:
    start: date
    end: date  # exclusive
    granularity: str
    calls: Series
    calls_total: int
    calls_by_channel: dict[str, int]
    calls_by_status: dict[str, int]
    cases_total: int
    cases_by_period: Series
    by_category: list[tuple[str, int]]
    by_issue_type: list[tuple[str, int]]
    by_place: list[tuple[str, int]]
    by_status: list[tuple[str, int]]
    real_name: int
    urgent: int
    duplicates: int
    drafts_total: int
    drafts_pending: int
    compliance: list[ComplianceAgg] = field(default_factory=list)
    compliance_total: ComplianceAgg | None = None

    @property
    def real_name_ratio(self) -> float | None:
        return self.real_name / self.cases_total if self.cases_total else None

    @property
    def duplicate_ratio(self) -> float | None:
        return self.duplicates / self.cases_total if self.cases_total else None


def pick_granularity(start: date, end: date) -> str:
    days = (end - start).days
    if days <= 62:
        return "day"
    if days <= 200:
        return "week"
    return "month"


def _bucket_key(day: date, granularity: str) -> date:
    if granularity == "week":
        return day - timedelta(days=day.weekday())
    if granularity == "month":
        return day.replace(day=1)
    return day


def _bucket_label(key: date, granularity: str) -> str:
    if granularity == "week":
        return f"{key.month}/{key.day} 周"
    if granularity == "month":
        return f"{key.year}-{key.month:02d}"
    return f"{key.month}/{key.day}"


def _buckets(start: date, end: date, granularity: str) -> "OrderedDict[date, int]":
    out: OrderedDict[date, int] = OrderedDict()
    d = start
    while d < end:
        k = _bucket_key(d, granularity)
        if k not in out:
            out[k] = len(out)
        d += timedelta(days=1)
    return out


def _series_from_days(day_counts: Iterable[tuple[str, str, int]], names: Iterable[str], start: date, end: date,
                      granularity: str) -> Series:
    buckets = _buckets(start, end, granularity)
    names = list(names)
    values = {n: [0] * len(buckets) for n in names}
    for day_s, name, n in day_counts:
        if day_s is None:
            continue
        d = date.fromisoformat(str(day_s)[:10])
        if not (start <= d < end):
            continue
        key = name if name in values else names[0]
        values[key][buckets[_bucket_key(d, granularity)]] += int(n)
    return Series([_bucket_label(k, granularity) for k in buckets], values)


def _bucket_bounds(start: date, end: date, granularity: str, a_utc: datetime, b_utc: datetime, off: int
                   ) -> list[tuple[int, datetime, datetime]]:
    """(bucket index, UTC from, UTC to) for each bucket of local days [start, end): the local days
    of a bucket shifted by the zone's offset at the start of the period (the same days as
    ``local_day_expr``), clipped to the period's exact UTC range [a_utc, b_utc)."""
    keys = list(_buckets(start, end, granularity))
    shift = timedelta(minutes=off)
    out = []
    for i, k in enumerate(keys):
        first = max(k, start)
        stop = keys[i + 1] if i + 1 < len(keys) else end
        lo = datetime.combine(first, time(0), tzinfo=timezone.utc) - shift
        hi = datetime.combine(stop, time(0), tzinfo=timezone.utc) - shift
        out.append((i, max(lo, a_utc), min(hi, b_utc)))
    return out


def _call_series(session: Session, start: date, end: date, granularity: str, a_utc: datetime, b_utc: datetime,
                 off: int, scope: Scope | None = None) -> Series:
    """Calls per bucket and channel (other channels count as "call"). One statement: a VALUES list of
    the buckets' UTC bounds, each counted by index range on ``ix_calls_created`` (created_at,
    channel, status) - no per-row day computation and no GROUP BY sort over the period's calls.
    ``scope``: only the calls it admits (a unit's)."""
    bounds = _bucket_bounds(start, end, granularity, a_utc, b_utc, off)  # <= 3661 buckets (parse_period)
    labels = [_bucket_label(k, granularity) for k in _buckets(start, end, granularity)]
    vals = {c: [0] * len(labels) for c in CALL_CHANNELS}
    if bounds:
        b = (values(column("k", Integer), column("lo", UTCDateTime()), column("hi", UTCDateTime()), name="buckets")
             .data(bounds).cte("buckets"))
        in_bucket = and_(Call.created_at >= b.c.lo, Call.created_at < b.c.hi)
        if scope is not None:
            in_bucket = and_(in_bucket, scope.calls)
        total = select(func.count()).where(in_bucket).scalar_subquery()
        vm = select(func.count()).where(in_bucket, Call.channel == "voicemail").scalar_subquery()
        for k, n, n_vm in session.execute(select(b.c.k, total, vm)):
            vals["voicemail"][k] = int(n_vm or 0)
            vals["call"][k] = int(n or 0) - int(n_vm or 0)
    return Series(labels, vals)


_STATUS_COUNTS = text(
    # loose index scan over ix_calls_status_created (status, created_at): the distinct statuses by
    # successive MIN(status) > previous, then each status's calls in the period by index range
    "WITH RECURSIVE st(v) AS (SELECT MIN(status) FROM calls UNION ALL "
    "SELECT (SELECT MIN(c.status) FROM calls c WHERE c.status > st.v) FROM st WHERE st.v IS NOT NULL) "
    "SELECT st.v, (SELECT COUNT(*) FROM calls c WHERE c.status = st.v AND c.created_at >= :a AND c.created_at < :b) "
    "FROM st WHERE st.v IS NOT NULL"
).bindparams(bindparam("a", type_=UTCDateTime()), bindparam("b", type_=UTCDateTime()))


def _call_statuses(session: Session, a_utc: datetime, b_utc: datetime, scope: Scope | None = None) -> dict[str, int]:
    """Calls by status in [a_utc, b_utc) (statuses without calls in the period left out); with a
    ``scope``, only the calls it admits (an index range of the period, then the unit's rule)."""
    if scope is None:
        return {str(st): int(n) for st, n in session.execute(_STATUS_COUNTS, {"a": a_utc, "b": b_utc}) if n}
    stmt = (select(Call.status, func.count()).where(Call.created_at >= a_utc, Call.created_at < b_utc, scope.calls)
            .group_by(Call.status))
    return {str(st): int(n) for st, n in session.execute(stmt) if n}


def _json_array_counts(session: Session, key: str, where_sql: str, params: dict, limit: int | None = None,
                       scope: Scope | None = None) -> list[tuple[str, int]]:
    """Counts of the issue types / places (``key``) over the cases matching ``where_sql``.

    ``CROSS JOIN`` (an inner join whose condition is in WHERE, on every backend) keeps SQLite's join
    order cases -> facets without planner statistics: the period's cases from the covering index
    ``ix_cases_stats``, then each case's facets from the covering ``ix_case_facets_stats``.
    ``scope``: only the cases it admits (the period's cases in ``params['s']``..``params['e']``)."""
    if scope is not None:
        return _scoped_facet_counts(session, key, params["s"], params["e"], scope, limit)
    lim = f" LIMIT {int(limit)}" if limit else ""
    sql = (f"SELECT f.value AS v, COUNT(*) AS n FROM cases CROSS JOIN case_facets f WHERE f.case_id = cases.id "
           f"AND f.facet = :facet_key AND {where_sql} GROUP BY f.value ORDER BY n DESC, v{lim}")
    return [(str(v), int(n)) for v, n in session.execute(text(sql), {**params, "facet_key": key}) if v not in (None, "")]

def _scoped_facet_counts(session: Session, key: str, start: date, end: date, scope: Scope, limit: int | None
                         ) -> list[tuple[str, int]]:
    from hotline_api.models.cases import CaseFacet

    n = func.count().label("n")
    stmt = (select(CaseFacet.value, n).select_from(Case).join(CaseFacet, CaseFacet.case_id == Case.id)
            .where(CaseFacet.facet == key, Case.received_on >= start, Case.received_on < end, scope.cases)
            .group_by(CaseFacet.value).order_by(n.desc(), CaseFacet.value))
    if limit:
        stmt = stmt.limit(int(limit))
    return [(str(v), int(c)) for v, c in session.execute(stmt) if v not in (None, "")]


def compliance_agg(session: Session, start_utc: datetime, end_utc: datetime, now: datetime | None = None,
                   scope: Scope | None = None) -> tuple[list[ComplianceAgg], ComplianceAgg]:
    """Review compliance of items assigned in [start_utc, end_utc), per manager (same counting as
    ``services.review.compliance_report``, in one GROUP BY); with a ``scope``, only the items of
    the recordings it admits (a unit's)."""
    now = now or datetime.now(timezone.utc)
    a = ReviewAssignment
    # index-only over ix_review_assignments_stats; COUNT of a column / of a CASE without ELSE counts
    # the non-NULL values: done = COUNT(completed_at), on time = completed_at <= due_at (NULL while
    # open), late = done - on time, open = all - done (due_at is NOT NULL)
    stmt = (select(a.manager_id, func.count(), func.count(a.completed_at),
                   func.count(case((a.completed_at <= a.due_at, 1))),
                   func.count(case((and_(a.completed_at.is_(None), a.due_at < now), 1))))
            .where(a.assigned_at >= start_utc, a.assigned_at < end_utc, *([scope.assignments] if scope else []))
            .group_by(a.manager_id))
    rows = session.execute(stmt).all()
    ids = [r[0] for r in rows if r[0]]
    names = {u.id: (u.display_name or u.username) for u in session.execute(select(User).where(User.id.in_(ids))).scalars()} if ids else {}
    out = []
    total = ComplianceAgg("合计")
    for mid, n, done, ok, over in rows:
        n, done, ok = int(n), int(done or 0), int(ok or 0)
        row = ComplianceAgg(names.get(mid, "（未分配）"), n, ok, done - ok, n - done, int(over or 0))
        out.append(row)
        for k in ("assigned", "done_on_time", "late", "open", "overdue_open"):
            setattr(total, k, getattr(total, k) + getattr(row, k))
    out.sort(key=lambda r: r.manager)
    return out, total


def dashboard(session: Session, start: date, end: date, settings: Any = None, granularity: str | None = None,
              now: datetime | None = None, totals_only: bool = False, user: User | None = None) -> Dashboard:
    """All dashboard figures for local days [start, end). ``totals_only``: only the totals (calls by
    channel and status, cases, real name, urgent, duplicates), e.g. for the previous period of a
    report; the breakdowns stay empty. ``user``: count only what they may see (``stats_scope``: a
    unit supervisor their unit's); without one, every unit's."""
    tz = tz_of(settings)
    granularity = granularity or pick_granularity(start, end)
    a_utc, b_utc = local_range_utc(start, end, tz)
    off = _offset_minutes(tz, start)
    scope = stats_scope(session, user, settings)
    calls = _call_series(session, start, end, granularity, a_utc, b_utc, off, scope)
    by_channel = {c: calls.total(c) for c in CALL_CHANNELS}
    by_status = _call_statuses(session, a_utc, b_utc, scope)
    # cases received in the period (of the scope)
    in_period = and_(Case.received_on >= start, Case.received_on < end)
    if scope is not None:
        in_period = and_(in_period, scope.cases)
    crow = session.execute(select(func.count(Case.id), func.sum(case((Case.real_name.is_(True), 1), else_=0)),
                                  func.sum(case((Case.urgent.is_(True), 1), else_=0))).where(in_period)).one()
    cases_total, real_name, urgent = int(crow[0] or 0), int(crow[1] or 0), int(crow[2] or 0)
    duplicates = session.execute(select(func.count(Case.id)).join(Draft, Draft.id == Case.draft_id)
                                 .where(in_period, Draft.duplicate_hint.is_(True))).scalar_one()
    # categories, statuses and days of the period's cases in one GROUP BY
    crows = [] if totals_only else session.execute(
        select(Case.received_on, Case.category, Case.status, func.count()).where(in_period)
        .group_by(Case.received_on, Case.category, Case.status)).all()
    cat_count: dict[str | None, int] = {}
    st_count: dict[str, int] = {}
    day_count: dict[Any, int] = {}
    for d_, cat, st, n in crows:
        cat_count[cat] = cat_count.get(cat, 0) + n
        st_count[st] = st_count.get(st, 0) + n
        day_count[d_] = day_count.get(d_, 0) + n
    cat_rows = sorted(cat_count.items(), key=lambda kv: (-kv[1], kv[0] or ""))
    st_rows = list(st_count.items())
    case_days = list(day_count.items())
    cases_series = _series_from_days(((d.isoformat() if hasattr(d, "isoformat") else d, "cases", n) for d, n in case_days),
                                     ["cases"], start, end, granularity)
    where_sql, params = "cases.received_on >= :s AND cases.received_on < :e", {"s": start, "e": end}
    if totals_only:
        by_issue, by_place, drow, (comp, comp_total) = [], [], (0, 0), ([], None)
    else:
        by_issue = _json_array_counts(session, "issue_types", where_sql, params, scope=scope)
        by_place = _json_array_counts(session, "places", where_sql, params, limit=15, scope=scope)
        drow = session.execute(select(func.count(), func.count(case((Draft.status == "draft", 1))))
                               .where(Draft.received_at >= a_utc, Draft.received_at < b_utc,
                                      *([scope.drafts] if scope else []))).one()
        comp, comp_total = compliance_agg(session, a_utc, b_utc, now, scope)
    return Dashboard(
        start=start, end=end, granularity=granularity, calls=calls, calls_total=sum(by_channel.values()),
        calls_by_channel=by_channel, calls_by_status=by_status,
        cases_total=cases_total, cases_by_period=cases_series,
        by_category=[(c or "（未分类）", int(n)) for c, n in cat_rows], by_issue_type=by_issue, by_place=by_place,
        by_status=[(CASE_STATUS_LABELS.get(s, s), int(n)) for s, n in st_rows], real_name=real_name, urgent=urgent,
        duplicates=int(duplicates), drafts_total=int(drow[0] or 0), drafts_pending=int(drow[1] or 0),
        compliance=comp, compliance_total=comp_total,
    )


# ----------------------------------------------------------------------------- periods
def parse_period(period: str | None, today: date) -> tuple[date, date, str]:
    """'2026-03' (month), '2026-Q1' (quarter), '2026' (year), 'YYYY-MM-DD..YYYY-MM-DD' (inclusive)
    -> (start, end exclusive, label). Default: the current month."""
    p = (period or "").strip().upper()
    try:
        if ".." in p:
            a, b = p.split("..", 1)
            s, e = date.fromisoformat(a), date.fromisoformat(b)
            if e < s or (e - s).days > 3660:
                raise ValueError
            return s, e + timedelta(days=1), f"{s.isoformat()} 至 {e.isoformat()}"
        if len(p) == 7 and p[4] == "-" and p[5] == "Q":
            y, q = int(p[:4]), int(p[6])
            if not 1 <= q <= 4:
                raise ValueError
            s = date(y, 3 * q - 2, 1)
            e = date(y + (q == 4), (3 * q) % 12 + 1, 1)
            return s, e, f"{y}年第{'一二三四'[q - 1]}季度"
        if len(p) == 7 and p[4] == "-":
            y, m = int(p[:4]), int(p[5:])
            s = date(y, m, 1)
            return s, date(y + (m == 12), m % 12 + 1, 1), f"{y}年{m}月"
        if len(p) == 4 and p.isdigit():
            y = int(p)
            return date(y, 1, 1), date(y + 1, 1, 1), f"{y}年"
    except ValueError:
        pass
    s = today.replace(day=1)
    return s, date(s.year + (s.month == 12), s.month % 12 + 1, 1), f"{s.year}年{s.month}月"


def previous_period(start: date, end: date) -> tuple[date, date]:
    span = end - start
    return start - span, start
