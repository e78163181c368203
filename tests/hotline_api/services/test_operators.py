"""Operators: states, atomic longest-idle claims (also across processes), wrap-up, and the
working-hours decision with chinese_calendar, admin overrides and the 2027 fallback."""
from __future__ import annotations

import logging
import multiprocessing as mp
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

import hotline_api.models.governance  # noqa: F401
import hotline_api.models.operators  # noqa: F401 - registers the tables
from hotline_api.models.operators import Operator
from hotline_api.services import operators as ops
from hotline_api.services.auth import create_user

SH = ZoneInfo("Asia/Shanghai")


def at(y, m, d, hh=10, mm=0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=SH)


def make_ops(session, n, state="available", t0=None):
    t0 = t0 or datetime(2026, 3, 2, tzinfo=timezone.utc)
    out = []
    for i in range(n):
        u, _ = create_user(session, f"op{i}", "operator", "correct-horse-battery")
        op = ops.ensure_operator(session, u, contacts=[{"kind": "static", "uri": f"sip:op{i}@127.0.0.1:{5070 + i}"}])
        ops.set_state(session, op, state, reason="lunch" if state == "paused" else None, now=t0 + timedelta(minutes=i))
        out.append(op)
    session.commit()
    return out


def test_states_and_validation(db):
    with db() as s:
        (op,) = make_ops(s, 1)
        with pytest.raises(ops.OperatorError):
            ops.set_state(s, op, "paused")  # a pause needs a reason
        with pytest.raises(ops.OperatorError):
            ops.set_state(s, op, "on_call")  # routing only
        with pytest.raises(ops.OperatorError):
            ops.set_state(s, op, "sleeping")
        ops.set_state(s, op, "paused", "training")
        assert op.state == "paused" and op.state_reason == "training"
        ops.set_state(s, op, "available")
        assert op.state_reason is None
        u2, _ = create_user(s, "boss", "supervisor", "correct-horse-battery")
        with pytest.raises(ops.OperatorError):
            ops.ensure_operator(s, u2)
        with pytest.raises(ops.OperatorError):
            ops.ensure_operator(s, op_user(s, op), contacts=[{"kind": "static", "uri": "http://x"}])


def op_user(s, op):
    from hotline_api.models.governance import User

    return s.get(User, op.user_id)


def test_sip_credentials_store_ha1_only(db):
    with db() as s:
        (op,) = make_ops(s, 1)
        ops.ensure_operator(s, op_user(s, op), sip_username="op0", sip_password="s3cret-pass", realm="12388")
        s.commit()
        assert op.sip_ha1 == ops.digest_ha1("op0", "12388", "s3cret-pass")
        assert "s3cret-pass" not in repr(ops.operator_json(op))
        op.contacts.append(hotline_api.models.operators.OperatorContact(kind="registered", uri="", priority=9))
        assert ops.contact_uris(op, "127.0.0.1:5060")[-1] == "sip:op0@127.0.0.1:5060"


def test_claim_longest_idle_reservation_and_wrap_up(db):
    with db() as s:
        a, b, c = make_ops(s, 3)
        ops.set_state(s, c, "paused", "break")
        s.commit()
        t = datetime(2026, 3, 2, 8, tzinfo=timezone.utc)
        x = ops.claim_longest_idle(s, "call-1", now=t)
        assert x.operator.id == a.id and x.logged_in == 3 and x.available == 2
        y = ops.claim_longest_idle(s, "call-2", now=t)
        assert y.operator.id == b.id
        assert ops.claim_longest_idle(s, "call-3", now=t).operator is None  # a, b reserved; c paused
        # b does not answer: given back, still the longest idle... but excluded for call-2's retry
        ops.release(s, b.id, "call-2", "no_answer", now=t)
        assert ops.claim_longest_idle(s, "call-2", exclude={b.id}, now=t).operator is None
        # a answers and talks: on call, then wrap-up, then free again (and now the most recent)
        assert ops.mark_answered(s, a.id, "call-1", now=t)
        assert s.get(Operator, a.id, populate_existing=True).state == "on_call"
        ops.release(s, a.id, "call-1", "ended", wrap_up_s=30, now=t + timedelta(minutes=5))
        a2 = s.get(Operator, a.id, populate_existing=True)
        assert a2.state == "wrap_up" and ops.effective_state(a2, t + timedelta(minutes=5, seconds=10)) == "wrap_up"
        z = ops.claim_longest_idle(s, "call-4", now=t + timedelta(minutes=5, seconds=10))
        assert z.operator.id == b.id
        ops.release(s, b.id, "call-4", "cancelled", now=t)
        later = t + timedelta(minutes=6)
        assert ops.effective_state(a2, later) == "available"
        # b idle since state_since (earlier than a's last call end): b first
        assert ops.claim_longest_idle(s, "call-5", now=later).operator.id == b.id
        assert ops.claim_longest_idle(s, "call-6", now=later).operator.id == a.id


def test_reservation_is_a_lease(db):
    with db() as s:
        (a,) = make_ops(s, 1)
        t = datetime(2026, 3, 2, 8, tzinfo=timezone.utc)
        assert ops.claim_longest_idle(s, "c1", now=t, lease_s=60).operator is not None
        assert ops.claim_longest_idle(s, "c2", now=t + timedelta(seconds=30)).operator is None
        # the worker that rang died: the lease runs out
        assert ops.claim_longest_idle(s, "c3", now=t + timedelta(seconds=61)).operator.id == a.id


def _claimer(url: str, n: int, q) -> None:
    from hotline_api.db.session import session_factory

    sessions = session_factory(url)
    got = []
    for i in range(n):
        with sessions() as s:
            c = ops.claim_longest_idle(s, f"{mp.current_process().name}-{i}")
            if c.operator is not None:
                got.append(c.operator.id)
    q.put(got)


def test_claims_are_atomic_across_processes(db, settings):
    with db() as s:
        make_ops(s, 12)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_claimer, args=(settings.db_url, 8, q), name=f"w{i}") for i in range(3)]
    for p in procs:
        p.start()
    results = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    claimed = [oid for r in results for oid in r]
    assert len(claimed) == 12  # every operator once, none twice, though 24 claims ran in parallel
    assert len(set(claimed)) == 12


# ---------------------------------------------------------------------------- working hours
def test_spring_festival_closed_and_tiaoxiu_saturday_open(db):
    with db() as s:
        d = ops.is_open(s, at(2026, 2, 17, 10))  # 春节, a Tuesday
        assert not d.open and d.reason == "closed_holiday" and not d.provisional
        d = ops.is_open(s, at(2026, 2, 14, 10))  # 调休: a Saturday that is a workday
        assert d.open and d.reason == "open"
        assert not ops.is_open(s, at(2026, 2, 14, 20)).open  # but not after hours
        assert ops.is_open(s, at(2026, 3, 7, 10)).reason == "closed_weekend"
        assert ops.is_open(s, at(2026, 3, 9, 8, 29)).reason == "closed_hours"
        assert ops.is_open(s, at(2026, 3, 9, 8, 30)).open
        # the time zone matters: 02:00 UTC is 10:00 in Shanghai
        assert ops.is_open(s, datetime(2026, 3, 9, 2, 0, tzinfo=timezone.utc)).open


def test_weekly_schedule_and_overrides_apply_without_restart(db):
    with db() as s:
        ops.set_weekly_schedule(s, {0: [("09:00", "12:00"), ("13:00", "18:00")], 5: [("09:00", "12:00")]})
        s.commit()
        assert not ops.is_open(s, at(2026, 3, 9, 12, 30)).open  # Monday lunch break
        assert ops.is_open(s, at(2026, 3, 9, 13, 30)).open
        assert not ops.is_open(s, at(2026, 3, 10, 10)).open  # Tuesday: no hours now
        # a make-up Saturday without... Saturday has hours here, those apply
        assert ops.is_open(s, at(2026, 2, 14, 10)).open and not ops.is_open(s, at(2026, 2, 14, 13)).open
        ops.set_open_override(s, date(2026, 3, 9), False, note="office move")
        s.commit()
        assert ops.is_open(s, at(2026, 3, 9, 13, 30)).reason == "closed_override"
        ops.set_open_override(s, date(2026, 2, 17), True, "10:00", "16:00", note="holiday duty")
        s.commit()
        assert ops.is_open(s, at(2026, 2, 17, 11)).open and not ops.is_open(s, at(2026, 2, 17, 17)).open
        assert ops.delete_open_override(s, date(2026, 3, 9))
        s.commit()
        assert ops.is_open(s, at(2026, 3, 9, 13, 30)).open
        with pytest.raises(ops.OperatorError):
            ops.set_weekly_schedule(s, {0: [("18:00", "09:00")]})
        with pytest.raises(ops.OperatorError):
            ops.set_weekly_schedule(s, {7: [("08:00", "09:00")]})


def test_2027_falls_back_with_warning_until_official_schedule_entered(db, caplog):
    from hotline_api.services import calendar

    calendar._warned_years.discard(2027)
    with db() as s, caplog.at_level(logging.WARNING):
        d = ops.is_open(s, at(2027, 2, 8, 10))  # a Monday in 2027 (Spring Festival week, data unknown)
        assert d.open and d.provisional
        assert any("2027" in w for w in d.warnings)
        assert "holiday data for 2027" in caplog.text
        assert not ops.is_open(s, at(2027, 2, 6, 10)).open  # fallback: weekends closed
        # an admin overrides one date, then enters the official 2027 schedule
        ops.set_open_override(s, date(2027, 2, 9), False, note="closed by decision")
        s.commit()
        assert ops.is_open(s, at(2027, 2, 9, 10)).reason == "closed_override"
        calendar.enter_official_schedule(s, 2027, [date(2027, 2, 8) + timedelta(days=i) for i in range(-2, 5)],
                                         [date(2027, 2, 20)])
        s.commit()
        d = ops.is_open(s, at(2027, 2, 8, 10))
        assert not d.open and d.reason == "closed_holiday" and not d.provisional
        d = ops.is_open(s, at(2027, 2, 20, 10))  # the make-up Saturday entered by the admin
        assert d.open and not d.provisional
        ws = ops.holiday_warnings(calendar.WorkCalendar.from_db(s), today=date(2027, 3, 1))
        assert not any("2027年" in w for w in ws) and any("2028年" in w for w in ws)
