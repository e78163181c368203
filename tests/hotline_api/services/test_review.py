"""Designated staff: assignment to the manager on the roster at completion, listening coverage from
the bytes actually served to that manager (50 % no, 95 % yes), stored (hash re-checked), organized,
escalation past the deadline (injected clock) with a supervisor alert, monthly compliance counts."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from hotline_api.cli import main
from hotline_api.models.governance import RecordingBlob, ReviewAlert
from hotline_api.services import audit, auth, review, pipeline, storage
from tests.hotline_api.services.govtest_util import make_call

SH = ZoneInfo("Asia/Shanghai")
PW = "correct horse battery"


@pytest.fixture
def staff(db):
    with db() as s:
        users = {n: auth.create_user(s, n, r, PW, unit="某区纪委")[0] for n, r in
                 (("day_mgr", "recording_manager"), ("night_mgr", "recording_manager"),
                  ("default_mgr", "recording_manager"), ("sup", "supervisor"), ("op", "operator"))}
        day = date(2026, 3, 4)  # a Wednesday
        review.set_roster(s, day, users["day_mgr"], "day", "08:30", "17:30")
        review.set_roster(s, day, users["night_mgr"], "night", "17:30", "08:30")
        review.set_roster(s, None, users["default_mgr"])
        s.commit()
        return users


def _complete(db, settings, ctx, local_dt, **kw):
    with db() as s:
        ev, data = make_call(s, settings, at=local_dt.astimezone(timezone.utc), **kw)
    pipeline.on_recording_completed(db, ctx, ev, calendar=review.weekday_calendar)
    with db() as s:
        return ev.recording_id, data, review.get_assignment(s, ev.recording_id)


def _who(db, a):
    from hotline_api.models.governance import User

    with db() as s:
        return s.get(User, a.manager_id).username if a.manager_id else None


def test_assignment_follows_the_roster(settings, db, ctx, staff):
    cases = [
        (datetime(2026, 3, 4, 10, 0, tzinfo=SH), "day_mgr"),
        (datetime(2026, 3, 4, 20, 0, tzinfo=SH), "night_mgr"),
        (datetime(2026, 3, 5, 7, 0, tzinfo=SH), "night_mgr"),  # overnight shift from the 4th
        (datetime(2026, 3, 5, 9, 0, tzinfo=SH), "default_mgr"),  # nothing on the roster: default
        (datetime(2026, 3, 4, 3, 0, tzinfo=SH), "default_mgr"),
    ]
    for at, expected in cases:
        rid, _, a = _complete(db, settings, ctx, at)
        assert _who(db, a) == expected, at
    with db() as s:
        assert any(e["action"] == "review.assign" and e["detail"]["manager"] == "night_mgr" for e in audit.iter_entries(s))


def test_deadline_is_end_of_next_working_day(settings, db, ctx, staff):
    _, _, a = _complete(db, settings, ctx, datetime(2026, 3, 4, 10, 0, tzinfo=SH))  # Wed
    assert a.due_at == datetime(2026, 3, 6, 0, 0, tzinfo=SH)  # end of Thursday
    _, _, a = _complete(db, settings, ctx, datetime(2026, 3, 6, 18, 0, tzinfo=SH))  # Fri evening
    assert a.due_at == datetime(2026, 3, 10, 0, 0, tzinfo=SH)  # end of Monday
    holiday = lambda d: (d.weekday() < 5 and d != date(2026, 3, 9), d.year > 2026)  # noqa: E731
    due, prov = review.compute_due(datetime(2026, 3, 6, 18, 0, tzinfo=SH), review.ReviewConfig(), holiday)
    assert due == datetime(2026, 3, 11, 0, 0, tzinfo=SH) and not prov
    due, prov = review.compute_due(datetime(2026, 12, 31, 10, 0, tzinfo=SH), review.ReviewConfig(), holiday)
    assert prov  # the deadline ran into a year the calendar does not know


def _play(db, ctx, rid, user, start, stop):
    """Serve bytes as the audio endpoint does: stream, and count what was delivered."""
    with db() as s:
        def done(a, b):
            review.record_served_range(s, rid, user, a, b)
        got = b"".join(storage.stream_range(storage.open_reader(s, ctx, rid), start, stop, on_done=done))
        s.commit()
        return got, review.get_assignment(s, rid)


def test_listened_from_served_ranges(settings, db, ctx, staff):
    rid, data, a = _complete(db, settings, ctx, datetime(2026, 3, 4, 10, 0, tzinfo=SH), seconds=4.0)
    mgr, op = staff["day_mgr"], staff["op"]
    with db() as s:
        blob = s.get(RecordingBlob, rid)
        lo, n = blob.data_offset, blob.data_size
    _, a = _play(db, ctx, rid, op, 0, len(data))  # someone else listening does not count
    assert a.coverage == 0 and a.listened_at is None
    _, a = _play(db, ctx, rid, mgr, 0, lo + n // 2)  # header + first half
    assert a.coverage == pytest.approx(0.5, abs=0.01) and a.listened_at is None
    _, a = _play(db, ctx, rid, mgr, lo + n // 4, lo + n // 2)  # overlapping again: union, not sum
    assert a.coverage == pytest.approx(0.5, abs=0.01) and a.listened_at is None
    _, a = _play(db, ctx, rid, mgr, lo + n // 2, lo + int(n * 0.95))
    assert a.coverage == pytest.approx(0.95, abs=0.01) and a.listened_at is not None
    assert a.completed_at is None  # stored and organized still missing


def test_stored_organized_complete_and_permissions(settings, db, ctx, staff):
    rid, data, a = _complete(db, settings, ctx, datetime(2026, 3, 4, 10, 0, tzinfo=SH))
    mgr = staff["day_mgr"]
    _play(db, ctx, rid, mgr, 0, len(data))
    with db() as s:
        with pytest.raises(review.NotPermitted):
            review.confirm_stored(s, ctx, rid, staff["night_mgr"])
        with pytest.raises(review.ReviewError):
            review.organize(s, rid, mgr)
        with pytest.raises(review.ReviewError):
            review.organize(s, rid, mgr, no_content_reason="  ")
        review.confirm_stored(s, ctx, rid, mgr, now=datetime(2026, 3, 4, 11, 0, tzinfo=SH))
        a = review.organize(s, rid, mgr, no_content_reason="误拨，无实际内容", now=datetime(2026, 3, 4, 11, 5, tzinfo=SH))
        s.commit()
        assert a.completed_at == datetime(2026, 3, 4, 11, 5, tzinfo=SH) and a.organized_kind == "no_content"
        assert s.get(RecordingBlob, rid).verified_at is not None


def test_stored_refused_when_hash_does_not_match(settings, db, ctx, staff):
    rid, _, _ = _complete(db, settings, ctx, datetime(2026, 3, 4, 10, 0, tzinfo=SH), seconds=6.0)
    p = ctx.store.path(rid)
    raw = bytearray(p.read_bytes())
    raw[-50] ^= 1
    p.write_bytes(bytes(raw))
    with db() as s:
        with pytest.raises(storage.TamperedError):
            review.confirm_stored(s, ctx, rid, staff["day_mgr"])
        assert review.get_assignment(s, rid).stored_confirmed_at is None


def _finish(db, ctx, rid, user, data, when):
    _play(db, ctx, rid, user, 0, len(data))
    with db() as s:
        review.confirm_stored(s, ctx, rid, user, now=when)
        review.organize(s, rid, user, tags=["待核实"], now=when)
        s.commit()


def test_escalation_and_compliance_report(settings, db, ctx, staff, capsys):
    mgr = staff["day_mgr"]
    wed10 = datetime(2026, 3, 4, 10, 0, tzinfo=SH)
    r1, d1, _ = _complete(db, settings, ctx, wed10)  # day_mgr, done on time
    r2, d2, _ = _complete(db, settings, ctx, wed10 + timedelta(minutes=5))  # day_mgr, done late
    r3, d3, _ = _complete(db, settings, ctx, wed10 + timedelta(minutes=10))  # day_mgr, left open
    r4, d4, _ = _complete(db, settings, ctx, datetime(2026, 3, 4, 22, 0, tzinfo=SH))  # night_mgr, open
    r5, _, _ = _complete(db, settings, ctx, datetime(2026, 2, 27, 10, 0, tzinfo=SH))  # February: not counted
    _finish(db, ctx, r1, mgr, d1, datetime(2026, 3, 5, 15, 0, tzinfo=SH))
    due = datetime(2026, 3, 6, 0, 0, tzinfo=SH)
    with db() as s:  # just before the deadline only the February item is overdue
        assert [a.recording_id for a in review.escalate_overdue(s, now=due - timedelta(seconds=1))] == [r5]
        s.rollback()
    # the deadline passes (injected clock)
    with db() as s:
        alerts = review.escalate_overdue(s, now=due + timedelta(minutes=1))
        s.commit()
        escalated = {a.recording_id for a in alerts}
        assert escalated == {r2, r3, r4, r5}
        assert all("录音审核逾期" in a.message for a in alerts)
        assert review.escalate_overdue(s, now=due + timedelta(hours=1)) == []  # once only
        assert {a.recording_id for a in review.open_alerts(s, unit="某区纪委")} >= {r2, r3, r4}
        review.acknowledge_alert(s, alerts[0].id, staff["sup"])
        with pytest.raises(review.NotPermitted):
            review.acknowledge_alert(s, alerts[1].id, mgr)
        s.commit()
        assert s.get(ReviewAlert, alerts[0].id).acknowledged_at is not None
        assert sum(e["action"] == "review.escalate" for e in audit.iter_entries(s)) == len(alerts)
    _finish(db, ctx, r2, mgr, d2, due + timedelta(hours=2))  # late
    with db() as s:
        rep = review.compliance_report(s, 2026, 3, now=due + timedelta(days=1))
        rows = {r.manager: r for r in rep.rows}
        assert (rows["day_mgr"].assigned, rows["day_mgr"].done_on_time, rows["day_mgr"].late, rows["day_mgr"].open,
                rows["day_mgr"].overdue_open) == (3, 1, 1, 1, 1)
        assert (rows["night_mgr"].assigned, rows["night_mgr"].open) == (1, 1)
        assert rep.total.assigned == 4 and "default_mgr" not in rows  # the February item is in February
        feb = review.compliance_report(s, 2026, 2, now=due)
        assert feb.total.assigned == 1
    # escalation job (APScheduler target) and the CLI report
    assert review.escalation_job(db) == 0  # everything overdue was escalated already
    assert main(["review", "report", "2026-03", "--json"]) == 0
    assert '"assigned": 4' in capsys.readouterr().out


def test_default_calendar_uses_chinese_holidays(settings, db):
    # 2026-09-30 (Wed) is the day before the National Day holiday (Oct 1-7 in 2026? the package decides):
    # the deadline must skip the holiday, whatever its length, and land on a working day's end.
    from hotline_api.services import calendar as cal

    with db() as s:
        is_workday = review.default_calendar(s)
        due, _ = review.compute_due(datetime(2026, 9, 30, 10, 0, tzinfo=SH), review.ReviewConfig(), is_workday)
        last_day = due.astimezone(SH).date() - timedelta(days=1)
        assert is_workday(last_day)[0] and cal.WorkCalendar().is_workday(last_day)[0]
        assert not is_workday(date(2026, 10, 1))[0]
        assert last_day > date(2026, 10, 1)
