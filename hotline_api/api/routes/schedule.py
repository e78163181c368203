"""Working hours, date overrides and holiday data (mounted under ``/api``; admin unless noted):

* ``GET  /api/schedule`` -- supervisor/admin: ``{"timezone", "weekly": {"0": [["08:30", "17:30"]], ...},
  "overrides": [...], "holiday_years": {year: "package"|"admin"|"fallback"}, "warnings": [...],
  "now": {"open", "reason", "provisional"}}``
* ``PUT  /api/schedule/weekly`` ``{"timezone": "Asia/Shanghai", "weekly": {"0": [["08:30", "17:30"]]}}``
  (weekday 0 = Monday; a weekday left out is closed)
* ``PUT  /api/schedule/overrides/{YYYY-MM-DD}`` ``{"is_open": false}`` or
  ``{"is_open": true, "start": "09:00", "end": "12:00", "note": "..."}``;
  ``DELETE /api/schedule/overrides/{YYYY-MM-DD}``
* ``POST /api/schedule/holidays/{year}`` ``{"holidays": ["2027-02-06", ...], "workdays": ["2027-02-20"]}``
  -- the official holiday schedule of a year chinese_calendar does not know yet (ends the
  fallback and its warnings for that year)
* ``GET  /api/schedule/status?at=<ISO time>`` -- supervisor/admin: the decision for an instant

Changes apply to the next call without restart (the SIP workers read them at each decision).
"""
from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, Field
from sqlalchemy import select

from hotline_api.api.deps import SessionDep, SettingsDep, client_ip, require_role
from hotline_api.api.routes._common import Instant
from hotline_api.models.governance import User
from hotline_api.models.operators import OpenOverride
from hotline_api.services import audit, calendar
from hotline_api.services import operators as ops

router = APIRouter(prefix="/schedule", tags=["schedule"])

Manager = Annotated[User, Depends(require_role("supervisor", "admin"))]
Admin = Annotated[User, Depends(require_role("admin"))]


class WeeklyIn(BaseModel):
    timezone: str = Field(default="Asia/Shanghai", max_length=64)
    weekly: dict[int, list[tuple[str, str]]]


class OverrideIn(BaseModel):
    is_open: bool
    start: str | None = Field(default=None, max_length=5)
    end: str | None = Field(default=None, max_length=5)
    note: str | None = Field(default=None, max_length=255)


class HolidaysIn(BaseModel):
    holidays: list[date] = Field(max_length=120)
    workdays: list[date] = Field(default_factory=list, max_length=30)


def _bad(msg: str) -> HTTPException:
    return HTTPException(status.HTTP_400_BAD_REQUEST, detail=msg)


def _day(day: str) -> date:
    try:
        return date.fromisoformat(day)
    except ValueError:
        raise _bad("date must be YYYY-MM-DD") from None


def _decision(session, settings, when: datetime) -> dict:
    d = ops.is_open(session, when, getattr(settings, "timezone", ops.DEFAULT_TZ))
    return {"open": d.open, "reason": d.reason, "provisional": d.provisional,
            "local": d.local.isoformat() if d.local else None, "warnings": d.warnings}


@router.get("")
def get_schedule(session: SessionDep, settings: SettingsDep, user: Manager) -> dict:
    tz, weekly = ops.weekly_schedule(session, getattr(settings, "timezone", ops.DEFAULT_TZ))
    cal = calendar.WorkCalendar.from_db(session)
    today = datetime.now(timezone.utc).date()
    overrides = session.execute(select(OpenOverride).where(OpenOverride.day >= today).order_by(OpenOverride.day)).scalars()
    return {
        "timezone": tz,
        "weekly": {str(k): [list(x) for x in v] for k, v in sorted(weekly.items())},
        "overrides": [{"day": o.day.isoformat(), "is_open": o.is_open, "start": o.start_time, "end": o.end_time,
                       "note": o.note} for o in overrides],
        "holiday_years": {y: cal.year_status(y) for y in (today.year, today.year + 1)},
        "warnings": ops.holiday_warnings(cal, today),
        "now": _decision(session, settings, datetime.now(timezone.utc)),
    }


@router.get("/status")
def status_at(session: SessionDep, settings: SettingsDep, user: Manager, at: Instant = None) -> dict:
    when = at or datetime.now(timezone.utc)
    if when.tzinfo is None:
        raise _bad("at must include a UTC offset")
    return _decision(session, settings, when)


@router.put("/weekly")
def put_weekly(body: WeeklyIn, request: Request, session: SessionDep, admin: Admin) -> dict:
    try:
        ops.set_weekly_schedule(session, body.weekly, body.timezone)
    except ops.OperatorError as e:
        session.rollback()
        raise _bad(str(e)) from None
    audit.record(session, "schedule.weekly", actor=admin, object_type="schedule", ip=client_ip(request),
                 detail={"timezone": body.timezone, "weekly": {str(k): v for k, v in body.weekly.items()}})
    session.commit()
    return {"ok": True}


@router.put("/overrides/{day}")
def put_override(day: str, body: OverrideIn, request: Request, session: SessionDep, admin: Admin) -> dict:
    d = _day(day)
    try:
        ops.set_open_override(session, d, body.is_open, body.start, body.end, body.note, actor=admin.username)
    except ops.OperatorError as e:
        session.rollback()
        raise _bad(str(e)) from None
    audit.record(session, "schedule.override", actor=admin, object_type="schedule", object_id=d.isoformat(),
                 ip=client_ip(request), detail=body.model_dump())
    session.commit()
    return {"ok": True}


@router.delete("/overrides/{day}")
def delete_override(day: str, request: Request, session: SessionDep, admin: Admin) -> dict:
    d = _day(day)
    if not ops.delete_open_override(session, d):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="not found")
    audit.record(session, "schedule.override_delete", actor=admin, object_type="schedule", object_id=d.isoformat(),
                 ip=client_ip(request))
    session.commit()
    return {"ok": True}


@router.post("/holidays/{year}")
def post_holidays(year: int, body: HolidaysIn, request: Request, session: SessionDep, admin: Admin) -> dict:
    if not 2000 <= year <= 2100:
        raise _bad("year out of range")
    try:
        n = calendar.enter_official_schedule(session, year, body.holidays, body.workdays, actor=admin.username)
    except ValueError as e:
        session.rollback()
        raise _bad(str(e)) from None
    audit.record(session, "schedule.holidays", actor=admin, object_type="calendar", object_id=str(year),
                 ip=client_ip(request), detail={"holidays": [d.isoformat() for d in body.holidays],
                                                "workdays": [d.isoformat() for d in body.workdays]})
    session.commit()
    return {"ok": True, "dates": n, "status": calendar.WorkCalendar.from_db(session).year_status(year)}
