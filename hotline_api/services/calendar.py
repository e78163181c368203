"""Working-day calendar: Chinese public holidays and make-up workdays (调休) from
``chinese_calendar``, admin-entered holidays/workdays from the DB (``HolidayOverride``), and a
fallback for years the package does not know (weekends + admin overrides), flagged provisional.

API (also used by the working-hours logic):

    cal = WorkCalendar.from_db(session)          # or WorkCalendar() without DB overrides
    cal.is_workday(date)        -> (bool, provisional)
    cal.add_working_days(d, n)  -> (date, provisional)   # the n-th working day after d
    cal.year_status(year)       -> "package" / "admin" / "fallback"
    cal.warnings()              -> messages for the admin console

A result is provisional when any date it looked at lies in a year that neither
``chinese_calendar`` nor an admin-entered official schedule covers. Admin overrides take
precedence over the package for their dates. ``WorkCalendar.from_db`` reads the overrides at
call time, so admin changes apply without restart.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Iterable

log = logging.getLogger(__name__)

_warned_years: set[int] = set()
_warn_lock = threading.Lock()


@dataclass(frozen=True)
class Override:
    day: date
    workday: bool
    official_schedule: bool = False


def _package_is_workday(d: date) -> bool | None:
    """chinese_calendar's answer, or None when the package has no data for that year."""
    import chinese_calendar

    try:
        return bool(chinese_calendar.is_workday(d))
    except NotImplementedError:
        return None


def package_years() -> tuple[int, int]:
    """The first and last year the installed chinese_calendar knows."""
    import chinese_calendar

    years = {d.year for d in chinese_calendar.holidays} | {d.year for d in chinese_calendar.workdays}
    return min(years), max(years)


class WorkCalendar:
    def __init__(self, overrides: Iterable[Override] = ()):
        self._overrides: dict[date, Override] = {o.day: o for o in overrides}
        self._admin_years = {o.day.year for o in self._overrides.values() if o.official_schedule}
        self._first, self._last = package_years()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_db(cls, session) -> "WorkCalendar":
        from sqlalchemy import select

        from hotline_api.models.cases import HolidayOverride

        rows = session.execute(select(HolidayOverride)).scalars().all()
        return cls(Override(r.day, r.kind == "workday", bool(r.official_schedule)) for r in rows)

    # ------------------------------------------------------------------ queries
    def year_status(self, year: int) -> str:
        if year in self._admin_years:
            return "admin"
        if self._first <= year <= self._last:
            return "package"
        return "fallback"

    def is_workday(self, d: date) -> tuple[bool, bool]:
        status = self.year_status(d.year)
        provisional = status == "fallback"
        o = self._overrides.get(d)
        if o is not None:
            return o.workday, provisional
        if status == "package":
            v = _package_is_workday(d)
            if v is not None:
                return v, False
            provisional = True
        if provisional:
            self._warn(d.year)
        # fallback (and admin-entered years): weekends are rest days unless overridden
        return d.weekday() < 5, provisional

    def add_working_days(self, start: date, n: int) -> tuple[date, bool]:
        """The date of the n-th working day after ``start`` (``start`` itself not counted).
        n == 0 returns start (moved forward to a working day if it is not one)."""
        if n < 0:
            raise ValueError("n must be >= 0")
        d = start
        provisional = False
        if n == 0:
            ok, p = self.is_workday(d)
            provisional |= p
            while not ok:
                d += timedelta(days=1)
                ok, p = self.is_workday(d)
                provisional |= p
            return d, provisional
        counted = 0
        guard = 0
        while counted < n:
            d += timedelta(days=1)
            ok, p = self.is_workday(d)
            provisional |= p
            counted += ok
            guard += 1
            if guard > n * 7 + 366:
                raise RuntimeError("calendar has no working days in range")
        return d, provisional

    def working_days_between(self, start: date, end: date) -> tuple[int, bool]:
        """Working days in (start, end]."""
        n, provisional = 0, False
        d = start
        while d < end:
            d += timedelta(days=1)
            ok, p = self.is_workday(d)
            n += ok
            provisional |= p
        return n, provisional

    def warnings(self, today: date | None = None) -> list[str]:
        today = today or date.today()
        out = []
        for y in (today.year, today.year + 1):
            if self.year_status(y) == "fallback":
                out.append(f"节假日数据缺失：{y}年的法定节假日安排未知（chinese_calendar 仅支持到{self._last}年），"
                           f"当前按周末加管理员设置计算，相关期限为暂定。请更新 chinese_calendar 或录入{y}年官方放假安排。")
        return out

    @staticmethod
    def _warn(year: int) -> None:
        with _warn_lock:
            if year in _warned_years:
                return
            _warned_years.add(year)
        log.warning("holiday data for %d is unknown to chinese_calendar: using weekends plus admin overrides; "
                    "results are provisional until the package is updated or an admin enters the %d schedule",
                    year, year)


# ---------------------------------------------------------------------- admin entry
def set_override(session, day: date, kind: str, *, official_schedule: bool = False, note: str | None = None,
                 actor: str | None = None):
    """Create or replace the admin override of a date (kind: 'holiday' or 'workday')."""
    from sqlalchemy import select

    from hotline_api.models.cases import HolidayOverride

    if kind not in ("holiday", "workday"):
        raise ValueError("kind must be 'holiday' or 'workday'")
    row = session.execute(select(HolidayOverride).where(HolidayOverride.day == day)).scalar_one_or_none()
    if row is None:
        row = HolidayOverride(day=day, year=day.year)
        session.add(row)
    row.kind = kind
    row.official_schedule = official_schedule
    row.note = note
    row.created_by = actor
    session.flush()
    return row


def enter_official_schedule(session, year: int, holidays: Iterable[date], workdays: Iterable[date] = (),
                            actor: str | None = None) -> int:
    """Record a year's official holiday schedule (holidays and 调休 workdays); from then on the
    year is no longer provisional. Returns the number of dates written."""
    n = 0
    for d in holidays:
        if d.year != year:
            raise ValueError(f"{d} is not in {year}")
        set_override(session, d, "holiday", official_schedule=True, actor=actor)
        n += 1
    for d in workdays:
        if d.year != year:
            raise ValueError(f"{d} is not in {year}")
        set_override(session, d, "workday", official_schedule=True, actor=actor)
        n += 1
    return n


# ---------------------------------------------------------------------- deadlines
DEFAULT_RULES = {"acceptance_notice": 15, "result_feedback": 15}


def compute_deadlines(received: date, real_name: bool, calendar: WorkCalendar | None = None,
                      rules: dict[str, int] | None = None) -> dict:
    """Deadlines known at drafting time: the acceptance notice for real-name reports."""
    cal = calendar or WorkCalendar()
    rules = {**DEFAULT_RULES, **(rules or {})}
    out: dict = {}
    if real_name and rules.get("acceptance_notice"):
        due, prov = cal.add_working_days(received, rules["acceptance_notice"])
        out["acceptance_notice"] = {"from": received.isoformat(), "due": due.isoformat(),
                                    "working_days": rules["acceptance_notice"], "provisional": prov}
    return out
