"""The statistics dashboard (``web.queries.dashboard``, index-only aggregations) against a live
recomputation in Python from the rows themselves: calls bucketed by their local day, cases counted
from their (encrypted) documents rather than from ``case_facets``, compliance per assignment. The
comparison is repeated after the data changes (calls added around local midnight, cases edited,
re-categorised, deleted, assignments completed) for several periods, granularities and zones, so
it fails on a wrong bucket edge, a lost narrowing or a stale count.

Also: the migration creates the covering indexes, and the dashboard's statements read indexes,
never a full scan of the big tables (EXPLAIN QUERY PLAN)."""
from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, inspect, select

import hotline_api.models.stats  # noqa: F401 - the covering indexes on Base.metadata
from hotline_api.models.calls import Call, Recording
from hotline_api.models.cases import Case, Draft
from hotline_api.models.governance import ReviewAssignment, User
from hotline_api.services import auth
from hotline_api.web import queries

CATS = ["检举控告", "申诉", "批评建议", None]
ISSUES = ["测试问题甲", "测试问题乙", "测试问题丙", "测试问题丁"]
PLACES = [f"测试地{i:02d}" for i in range(20)]  # more than the 15 shown, so the cut is exercised
STATUSES = ["ended", "abandoned", "rejected"]


# ----------------------------------------------------------------------------- reference
@dataclass
class Ref:
    labels: list[str]
    calls: dict[str, list[int]]
    by_status: dict[str, int]
    cases_series: list[int]
    cases_total: int
    real_name: int
    urgent: int
    duplicates: int
    by_category: list[tuple[str, int]]
    by_status_cases: dict[str, int]
    by_issue: list[tuple[str, int]]
    by_place: list[tuple[str, int]]
    drafts: tuple[int, int]
    compliance: list[tuple]


def reference(s, start: date, end: date, tz: ZoneInfo, granularity: str, now: datetime) -> Ref:
    """Everything the dashboard shows, recomputed row by row in Python."""
    keys = list(queries._buckets(start, end, granularity))
    index = {k: i for i, k in enumerate(keys)}
    a_utc, b_utc = queries.local_range_utc(start, end, tz)
    calls = {c: [0] * len(keys) for c in queries.CALL_CHANNELS}
    by_status: Counter = Counter()
    for c in s.execute(select(Call)).scalars():
        if not (a_utc <= c.created_at < b_utc):
            continue
        day = c.created_at.astimezone(tz).date()
        ch = "voicemail" if c.channel == "voicemail" else "call"
        calls[ch][index[queries._bucket_key(day, granularity)]] += 1
        by_status[c.status] += 1
    series = [0] * len(keys)
    cats: Counter = Counter()
    sts: Counter = Counter()
    issues: Counter = Counter()
    places: Counter = Counter()
    total = real = urgent = dups = 0
    for c in s.execute(select(Case)).scalars():
        if not (start <= c.received_on < end):
            continue
        total += 1
        real += bool(c.real_name)
        urgent += bool(c.urgent)
        dups += bool(s.get(Draft, c.draft_id).duplicate_hint)
        series[index[queries._bucket_key(c.received_on, granularity)]] += 1
        cats[c.category or ""] += 1
        sts[queries.CASE_STATUS_LABELS.get(c.status, c.status)] += 1
        doc = json.loads(c.fields_json)  # decrypted by the column type: independent of case_facets
        issues.update({v.strip() for v in doc.get("issue_types") or []})
        places.update({v.strip() for v in doc.get("places") or []})
    by_count = lambda cnt: sorted(cnt.items(), key=lambda kv: (-kv[1], kv[0]))  # noqa: E731
    drafts = [d for d in s.execute(select(Draft)).scalars() if a_utc <= d.received_at < b_utc]
    comp: dict[str, list[int]] = {}
    names = {u.id: u.display_name or u.username for u in s.execute(select(User)).scalars()}
    for a in s.execute(select(ReviewAssignment)).scalars():
        if not (a_utc <= a.assigned_at < b_utc):
            continue
        row = comp.setdefault(names.get(a.manager_id, "（未分配）"), [0, 0, 0, 0, 0])
        row[0] += 1
        if a.completed_at is None:
            row[3] += 1
            row[4] += a.due_at < now
        elif a.completed_at <= a.due_at:
            row[1] += 1
        else:
            row[2] += 1
    return Ref([queries._bucket_label(k, granularity) for k in keys], calls, dict(by_status), series, total, real,
               urgent, dups, [(c or "（未分类）", n) for c, n in by_count(cats)], dict(sts), by_count(issues), by_count(places)[:15],
               (len(drafts), sum(d.status == "draft" for d in drafts)),
               sorted((m, *v) for m, v in comp.items()))


def assert_matches(s, start: date, end: date, settings, granularity: str | None, now: datetime) -> None:
    tz = queries.tz_of(settings)
    d = queries.dashboard(s, start, end, settings, granularity=granularity, now=now)
    r = reference(s, start, end, tz, d.granularity, now)
    where = (start, end, d.granularity, str(tz))
    assert d.calls.labels == r.labels, where
    assert d.calls.values == r.calls, where
    assert d.calls_by_channel == {c: sum(v) for c, v in r.calls.items()}, where
    assert d.calls_total == sum(map(sum, r.calls.values())), where
    assert d.calls_by_status == r.by_status, where
    assert d.cases_by_period.values["cases"] == r.cases_series, where
    assert (d.cases_total, d.real_name, d.urgent, d.duplicates) == (r.cases_total, r.real_name, r.urgent, r.duplicates), where
    assert d.by_category == r.by_category, where
    assert dict(d.by_status) == r.by_status_cases, where
    assert d.by_issue_type == r.by_issue, where
    assert d.by_place == r.by_place, where
    assert (d.drafts_total, d.drafts_pending) == r.drafts, where
    got = sorted((c.manager, c.assigned, c.done_on_time, c.late, c.open, c.overdue_open) for c in d.compliance)
    assert got == r.compliance, where
    t = d.compliance_total
    assert (t.assigned, t.done_on_time, t.late, t.open, t.overdue_open) == tuple(
        sum(row[i] for row in r.compliance) for i in range(1, 6)), where
    # the totals-only variant (the report's previous period) gives the same totals
    p = queries.dashboard(s, start, end, settings, granularity=granularity, now=now, totals_only=True)
    assert (p.calls_total, p.calls_by_channel, p.calls_by_status, p.cases_total, p.real_name, p.urgent, p.duplicates) == \
        (d.calls_total, d.calls_by_channel, d.calls_by_status, d.cases_total, d.real_name, d.urgent, d.duplicates)


# ----------------------------------------------------------------------------------- data
def add_call(s, at: datetime, channel: str, status: str, manager_id: str | None, done: datetime | None) -> None:
    cid, rid = str(uuid.uuid4()), str(uuid.uuid4())
    s.add(Call(id=cid, sip_call_id=f"{cid}@t", dialled="12388", channel=channel, status=status, created_at=at))
    s.add(Recording(id=rid, call_id=cid, kind="voicemail" if channel == "voicemail" else "call", status="complete",
                    created_at=at))
    s.flush()
    s.add(ReviewAssignment(recording_id=rid, call_id=cid, kind="call", manager_id=manager_id, assigned_at=at,
                           due_at=at + timedelta(days=2), completed_at=done))


_seq = [0]


def add_case(s, rng: random.Random, received: date, at: datetime, pending: bool = False) -> Case | None:
    doc = {"category": rng.choice(CATS), "issue_types": rng.sample(ISSUES, rng.choice((1, 2))),
           "places": rng.sample(PLACES, rng.choice((1, 2, 3))), "real_name": rng.random() < 0.4,
           "urgent": rng.random() < 0.2, "summary": "测试摘要。"}
    fj = json.dumps(doc, ensure_ascii=False)
    draft = Draft(status="draft" if pending else "registered", source="api", received_at=at, created_at=at,
                  updated_at=at, category=doc["category"], urgent=doc["urgent"], real_name=doc["real_name"],
                  duplicate_hint=rng.random() < 0.3, fields_json=fj, original_json=fj)
    s.add(draft)
    s.flush()
    if pending:
        return None
    _seq[0] += 1
    case = Case(number=f"T-{received.year}-{_seq[0]:06d}", year=received.year, seq=_seq[0], draft_id=draft.id,
                status=rng.choice(list(queries.CASE_STATUS_LABELS)), category=doc["category"], urgent=doc["urgent"],
                real_name=doc["real_name"], fields_json=fj, received_on=received, registered_at=at,
                registered_by="tester")
    s.add(case)
    draft.case_id = case.id
    return case


@pytest.fixture()
def data(settings, db):
    rng = random.Random(7)
    with db() as s:
        mgrs = [auth.create_user(s, f"statmgr{i}", "recording_manager", "stat-pass-2026", display_name=f"管理员{i}")[0]
                for i in range(2)]
        s.flush()
        tz = ZoneInfo("Asia/Shanghai")
        base = datetime(2025, 12, 1, tzinfo=tz)
        for i in range(400):
            at = (base + timedelta(minutes=rng.randrange(0, 200 * 24 * 60))).astimezone(timezone.utc)
            done = None if rng.random() < 0.3 else at + timedelta(hours=rng.randrange(1, 80))
            add_call(s, at, rng.choice(["call", "call", "voicemail", "transfer"]), rng.choice(STATUSES),
                     rng.choice([m.id for m in mgrs] + [None]), done)
        # calls on both sides of local midnight and of the period edges (UTC 16:00 = 00:00 in Shanghai)
        for day in (date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 2), date(2026, 4, 1)):
            edge = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(timezone.utc)
            for delta in (timedelta(microseconds=-1), timedelta(0), timedelta(seconds=1)):
                add_call(s, edge + delta, "voicemail", "ended", mgrs[0].id, None)
        for i in range(150):
            at = (base + timedelta(minutes=rng.randrange(0, 200 * 24 * 60))).astimezone(timezone.utc)
            add_case(s, rng, at.astimezone(tz).date(), at, pending=rng.random() < 0.1)
        s.commit()
    return {"rng": rng, "mgrs": [m.id for m in mgrs]}


PERIODS = [
    (date(2026, 1, 1), date(2026, 2, 1), None),       # month, by day
    (date(2026, 1, 1), date(2026, 4, 1), None),       # quarter, by week
    (date(2025, 12, 1), date(2026, 12, 1), None),     # 12 months, by month
    (date(2026, 3, 2), date(2026, 3, 3), "day"),      # one day
    (date(2026, 1, 15), date(2026, 6, 20), "week"),   # partial first and last week
    (date(2026, 2, 10), date(2026, 5, 10), "month"),  # partial first and last month
    (date(2027, 1, 1), date(2027, 2, 1), None),       # nothing in it
]


def check_all(db, settings, now) -> None:
    with db() as s:
        for start, end, gran in PERIODS:
            assert_matches(s, start, end, settings, gran, now)


def test_dashboard_matches_live_recount_through_edits(settings, db, data):
    rng, now = data["rng"], datetime(2026, 4, 2, tzinfo=timezone.utc)
    check_all(db, settings, now)
    # a zone with a half-hour offset: buckets move with the zone
    settings.timezone = "Asia/Kolkata"
    check_all(db, settings, now)
    settings.timezone = "Asia/Shanghai"

    with db() as s:
        d0 = queries.dashboard(s, date(2026, 1, 1), date(2026, 2, 1), settings, now=now)
        # new calls (one right at the month's last local instant), a new case and a pending draft
        last = datetime(2026, 2, 1, tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(timezone.utc) - timedelta(microseconds=1)
        add_call(s, last, "call", "abandoned", data["mgrs"][1], None)
        add_call(s, datetime(2026, 1, 10, 3, tzinfo=timezone.utc), "voicemail", "recovered", None, None)
        add_case(s, rng, date(2026, 1, 31), last)
        add_case(s, rng, date(2026, 1, 5), datetime(2026, 1, 5, 2, tzinfo=timezone.utc), pending=True)
        s.commit()
    with db() as s:
        d1 = queries.dashboard(s, date(2026, 1, 1), date(2026, 2, 1), settings, now=now)
    assert d1.calls_total == d0.calls_total + 2 and d1.cases_total == d0.cases_total + 1
    assert d1.calls_by_status.get("recovered") == 1 and d1.calls.values["call"][-1] == d0.calls.values["call"][-1] + 1
    assert d1.drafts_total == d0.drafts_total + 2
    check_all(db, settings, now)

    with db() as s:  # cases edited: category, issue types, places, status, flags; drafts flagged
        cases = list(s.execute(select(Case).order_by(Case.number)).scalars())
        for c in cases[::4]:
            doc = json.loads(c.fields_json)
            doc["issue_types"] = ["测试问题戊"] + doc["issue_types"][:1]
            doc["places"] = [PLACES[0]]
            doc["category"] = "申诉"
            c.fields_json = json.dumps(doc, ensure_ascii=False)
            c.category, c.status, c.real_name, c.urgent = "申诉", "closed", not c.real_name, True
            s.get(Draft, c.draft_id).duplicate_hint = True
        for c in cases[1::9]:  # received on another day (moves between buckets and periods)
            c.received_on = c.received_on + timedelta(days=17)
        s.commit()
    check_all(db, settings, now)

    with db() as s:  # cases and calls deleted (their facets and assignments with them)
        cases = list(s.execute(select(Case).order_by(Case.number)).scalars())
        for c in cases[2::5]:
            d = s.get(Draft, c.draft_id)
            s.delete(c)
            s.flush()
            s.delete(d)
        for a in list(s.execute(select(ReviewAssignment).order_by(ReviewAssignment.assigned_at)).scalars())[::7]:
            rec = s.get(Recording, a.recording_id)
            call = s.get(Call, rec.call_id)
            s.delete(a)
            s.flush()
            s.delete(rec)
            s.flush()
            s.delete(call)
        s.commit()
    check_all(db, settings, now)

    with db() as s:  # review work done: open items completed (some late), a manager reassigned
        for a in list(s.execute(select(ReviewAssignment).where(ReviewAssignment.completed_at.is_(None))).scalars())[::2]:
            a.completed_at = a.due_at + timedelta(hours=rng.choice((-3, 5)))
        s.commit()
    check_all(db, settings, now)
    check_all(db, settings, datetime(2027, 1, 1, tzinfo=timezone.utc))  # later: more open items overdue


def test_buckets_split_at_local_midnight(settings, db):
    """Calls a microsecond either side of local midnight land in different days and months."""
    tz = ZoneInfo("Asia/Shanghai")
    midnight = datetime(2026, 3, 1, tzinfo=tz).astimezone(timezone.utc)  # 2026-02-28 16:00 UTC
    with db() as s:
        for at, ch in ((midnight - timedelta(microseconds=1), "call"), (midnight, "voicemail"),
                       (midnight + timedelta(hours=7, minutes=59), "voicemail")):
            add_call(s, at, ch, "ended", None, None)
        s.commit()
        d = queries.dashboard(s, date(2026, 2, 27), date(2026, 3, 3), settings)
        assert d.calls.labels == ["2/27", "2/28", "3/1", "3/2"]
        assert d.calls.values == {"call": [0, 1, 0, 0], "voicemail": [0, 0, 2, 0]}
        m = queries.dashboard(s, date(2026, 1, 1), date(2026, 4, 1), settings, granularity="month")
        assert m.calls.values == {"call": [0, 1, 0], "voicemail": [0, 0, 2]}
        assert queries.dashboard(s, date(2026, 3, 1), date(2026, 4, 1), settings).calls_total == 2


def test_migration_creates_the_covering_indexes(settings, db):
    from hotline_api.models.stats import INDEXES

    with db() as s:
        insp = inspect(s.get_bind())
        for ix in INDEXES:
            have = {i["name"]: i["column_names"] for i in insp.get_indexes(ix.table.name)}
            assert have.get(ix.name) == [c.name for c in ix.columns], ix.name


@pytest.mark.parametrize("analyzed", [False, True])
def test_dashboard_statements_read_indexes_only(settings, db, data, analyzed):
    """No statement of the dashboard scans the rows of calls, cases, drafts, case_facets or
    review_assignments (with and without planner statistics): every table access is a search on
    an index, and on the big tables a covering one."""
    engine = db.kw["bind"]
    if analyzed:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    seen: list[tuple[str, object]] = []

    def grab(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", grab)
    try:
        with db() as s:
            queries.dashboard(s, date(2025, 12, 1), date(2026, 12, 1), settings)
    finally:
        event.remove(engine, "before_cursor_execute", grab)
    assert len(seen) >= 8
    big = ("calls", "cases", "drafts", "case_facets", "review_assignments")
    with engine.connect() as conn:
        for statement, params in seen:
            for step in [r[3] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)]:
                words = step.split()
                if len(words) < 2 or words[0] not in ("SCAN", "SEARCH"):
                    continue
                table = {"c": "calls", "f": "case_facets"}.get(words[1], words[1])
                if table not in big:
                    continue
                # never the table's rows one by one; a period (range) read only from a covering index
                assert "INDEX" in step, (step, statement)
                if ">" in step or "<" in step or words[0] == "SCAN":
                    assert "COVERING INDEX" in step, (step, statement)
