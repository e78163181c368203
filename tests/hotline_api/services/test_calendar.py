"""Working-day calendar: chinese_calendar data, 调休 workdays, admin overrides, fallback years."""
from __future__ import annotations

import logging
from datetime import date

import pytest

from hotline_api.services.calendar import Override, WorkCalendar, compute_deadlines, package_years


def test_package_holidays_and_makeup_workday():
    cal = WorkCalendar()
    assert cal.is_workday(date(2025, 10, 1)) == (False, False)  # National Day
    assert cal.is_workday(date(2025, 9, 28)) == (True, False)  # make-up Sunday (调休)
    assert cal.is_workday(date(2025, 10, 11)) == (True, False)  # make-up Saturday
    assert cal.is_workday(date(2025, 10, 12)) == (False, False)  # ordinary Sunday


def test_notice_deadline_day_before_national_day_skips_holiday_counts_makeup_saturday():
    # received Tue 2025-09-30; Oct 1-8 are holidays; Sat Oct 11 is a 调休 workday.
    # Working days: 10/9, 10/10, 10/11(调休), 10/13 ... the 15th is Tue 2025-10-28.
    cal = WorkCalendar()
    due, prov = cal.add_working_days(date(2025, 9, 30), 15)
    assert (due, prov) == (date(2025, 10, 28), False)
    # without the make-up Saturday it would have been 10-29: the 调休 day counted
    dl = compute_deadlines(date(2025, 9, 30), real_name=True, calendar=cal)
    assert dl["acceptance_notice"] == {"from": "2025-09-30", "due": "2025-10-28", "working_days": 15,
                                       "provisional": False}


def test_makeup_sunday_counts_as_first_working_day():
    # received Fri 2025-09-26: Sun 9/28 (调休) is working day 1; 15th is Thu 2025-10-23
    assert WorkCalendar().add_working_days(date(2025, 9, 26), 15) == (date(2025, 10, 23), False)
    assert WorkCalendar().add_working_days(date(2025, 9, 26), 1) == (date(2025, 9, 28), False)


def test_received_2026_12_20_runs_into_unknown_year_provisional(caplog):
    assert package_years()[1] == 2026  # chinese_calendar 1.11; update this test with the package
    cal = WorkCalendar()
    with caplog.at_level(logging.WARNING, logger="hotline_api.services.calendar"):
        due, prov = cal.add_working_days(date(2026, 12, 20), 15)
    # 2026-12-21..31: 9 working days; 2027 fallback (weekends only): Jan 1 (Fri), 4, 5, 6, 7, 8 -> 15th = 2027-01-08
    assert due == date(2027, 1, 8)
    assert prov is True
    assert cal.year_status(2027) == "fallback"
    assert any("2027" in w for w in cal.warnings(date(2026, 12, 20)))


def test_2027_date_uses_fallback_and_overrides():
    jan1 = date(2027, 1, 1)  # a Friday; unknown to the package
    assert WorkCalendar().is_workday(jan1) == (True, True)
    cal = WorkCalendar([Override(jan1, workday=False)])
    assert cal.is_workday(jan1) == (False, True)  # admin said closed, still provisional
    cal2 = WorkCalendar([Override(jan1, workday=False, official_schedule=True),
                         Override(date(2027, 1, 2), workday=True, official_schedule=True)])
    assert cal2.is_workday(jan1) == (False, False)
    assert cal2.is_workday(date(2027, 1, 2)) == (True, False)  # admin-entered make-up Saturday
    assert cal2.year_status(2027) == "admin"
    assert cal2.warnings(date(2027, 1, 1)) == [] or all("2027" not in w for w in cal2.warnings(date(2027, 1, 1)))


def test_override_beats_package():
    d = date(2025, 10, 13)  # a normal Monday
    assert WorkCalendar([Override(d, workday=False)]).is_workday(d) == (False, False)


def test_db_overrides_apply_without_restart(db):
    from hotline_api.services.calendar import enter_official_schedule, set_override

    with db() as s:
        assert WorkCalendar.from_db(s).is_workday(date(2027, 2, 8)) == (True, True)
        set_override(s, date(2025, 10, 13), "holiday", note="local closure", actor="admin1")
        enter_official_schedule(s, 2027, holidays=[date(2027, 2, 8)], workdays=[date(2027, 2, 6)], actor="admin1")
        s.commit()
    with db() as s:
        cal = WorkCalendar.from_db(s)
        assert cal.is_workday(date(2025, 10, 13)) == (False, False)
        assert cal.is_workday(date(2027, 2, 8)) == (False, False)
        assert cal.is_workday(date(2027, 2, 6)) == (True, False)
    with pytest.raises(ValueError):
        with db() as s:
            set_override(s, date(2027, 3, 1), "closed")


def test_zero_and_negative():
    cal = WorkCalendar()
    assert cal.add_working_days(date(2025, 10, 4), 0) == (date(2025, 10, 9), False)
    with pytest.raises(ValueError):
        cal.add_working_days(date(2025, 10, 4), -1)
