"""Cases (supervisors) and urgent alerts.

* ``GET  /api/cases?status=&category=&issue_type=&place=&deadline_state=&limit=&offset=``
  (``deadline_state``: ``overdue`` / ``due_soon`` (within 3 working days) / ``open`` / ``none``)
* ``GET  /api/cases/{id}``  the draft keys, deadlines, history and reporter feedback
* ``POST /api/cases/{id}/transitions``  ``{"action": "handling", "mode": "自办|转办|交办", "unit": ...}``,
  ``{"action": "close", "result": ...}``, ``{"action": "archive"}``,
  ``{"action": "feedback", "kind": "notice_sent|result_sent|objection", "note": ...}``
* ``GET  /api/alerts?all=0``, ``POST /api/alerts/{id}/ack``  urgent-draft alerts

Identity masked unless ``identity``; views and changes audited.
"""
from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Request, status

from hotline_api.api.deps import SessionDep, SettingsDep, client_ip
from hotline_api.api.routes._common import Offset, SupervisorUser, audit_read, bad_request, iso, now_utc, visible
from hotline_api.drafting import DRAFT_KEYS
from hotline_api.models.cases import HANDLING_MODES, Case, Draft, UrgentAlert
from hotline_api.models.governance import User
from hotline_api.services import access, audit, cases
from hotline_api.services.calendar import WorkCalendar

router = APIRouter(tags=["cases"])


def case_json(session, c: Case, user: User, full: bool = True) -> tuple[dict[str, Any], bool]:
    show = access.has_identity(user)
    fields = json.loads(c.fields_json or "{}")
    draft = session.get(Draft, c.draft_id)
    shown = show and any(fields.get(k) for k in ("reporter_name", "reporter_phone"))
    if not show:
        fields = access.mask_draft_fields(fields, access.identity_terms(session, draft.recording_id if draft else None,
                                                                        draft=draft))
    out: dict[str, Any] = {
        "id": c.id, "number": c.number, "status": c.status, "draft_id": c.draft_id,
        "recording_id": draft.recording_id if draft else None,
        "received_on": c.received_on.isoformat() if c.received_on else None,
        "registered_at": iso(c.registered_at), "registered_by": c.registered_by,
        "handling_mode": c.handling_mode, "handling_unit": c.handling_unit,
        "closed_at": iso(c.closed_at), "archived_at": iso(c.archived_at), "result": c.result,
        **{k: fields.get(k) for k in DRAFT_KEYS},
        "deadlines": [{"kind": d.kind, "start_on": d.start_on.isoformat(), "due_on": d.due_on.isoformat(),
                       "working_days": d.working_days, "provisional": d.provisional, "done_at": iso(d.done_at)}
                      for d in c.deadlines],
        "identity_masked": not show,
    }
    if full:
        out["history"] = cases.history(session, c.id)
        out["feedback"] = [{"kind": f.kind, "at": iso(f.at), "actor": f.actor, "note": f.note} for f in c.feedback]
        out["evidence"] = fields.get("evidence")
    return out, shown


@router.get("/cases")
def list_cases(session: SessionDep, settings: SettingsDep, user: SupervisorUser,
               status_: Annotated[str | None, Query(alias="status", pattern="^(registered|handling|closed|archived)$")] = None,
               category: Annotated[str | None, Query(max_length=32)] = None,
               issue_type: Annotated[str | None, Query(max_length=64)] = None,
               place: Annotated[str | None, Query(max_length=128)] = None,
               deadline_state: Annotated[str | None, Query(pattern="^(overdue|due_soon|open|none)$")] = None,
               limit: Annotated[int, Query(ge=1, le=500)] = 50, offset: Offset = 0) -> dict:
    today = cases.local_date(now_utc(), settings)
    soon, _ = WorkCalendar.from_db(session).add_working_days(today, 3)
    f = access.CaseFilter(status=status_, category=category, issue_type=issue_type, place=place,
                          deadline_state=deadline_state, limit=limit, offset=offset)
    rows = access.list_cases(session, user, f, today=today, due_soon_until=soon, settings=settings)
    items = []
    for c in rows:
        j, _ = case_json(session, c, user, full=False)
        if not j["identity_masked"]:  # lists stay masked: open the case to see (and audit) identity
            masked = access.mask_draft_fields(j, access.IdentityTerms([], []))
            j.update(reporter_name=masked["reporter_name"], reporter_phone=masked["reporter_phone"], identity_masked=True)
        items.append(j)
    return {"items": items, "limit": limit, "offset": offset}


@router.get("/cases/{case_id}")
def get_case(case_id: str, request: Request, session: SessionDep, settings: SettingsDep, user: SupervisorUser) -> dict:
    with visible():
        c = access.visible_case(session, user, case_id, settings=settings)
    out, shown = case_json(session, c, user)
    audit_read(settings, request, user, "case.view", "case", c.id, detail={"identity": access.has_identity(user)})
    if shown:
        audit_read(settings, request, user, "identity.view", "case", c.id, detail={"fields": ["reporter_name", "reporter_phone"]})
    return out


def _text(body: dict, key: str, required: bool = False, max_len: int = 2000) -> str | None:
    v = body.get(key)
    if v is None and not required:
        return None
    if not isinstance(v, str) or (required and not v.strip()) or len(v) > max_len:
        raise bad_request(f"{key} must be text" + (" (required)" if required else ""))
    return v


@router.post("/cases/{case_id}/transitions")
def transition(case_id: str, request: Request, session: SessionDep, settings: SettingsDep, user: SupervisorUser,
               body: Annotated[dict, Body()]) -> dict:
    with visible():
        c = access.visible_case(session, user, case_id, settings=settings)
    action = body.get("action")
    if action not in ("handling", "close", "archive", "feedback"):
        raise bad_request("action must be handling, close, archive or feedback")
    note = _text(body, "note")
    # input is checked here (400); what the lifecycle then refuses is a state conflict (409)
    if action == "handling":
        mode, unit = body.get("mode"), _text(body, "unit", True)
        if mode not in HANDLING_MODES:
            raise bad_request(f"mode must be one of {', '.join(HANDLING_MODES)}")
    elif action == "close":
        result = _text(body, "result", True, max_len=10000)
    elif action == "feedback" and (not isinstance(body.get("kind"), str) or body["kind"] not in cases.FEEDBACK_KINDS):
        raise bad_request(f"kind must be one of {', '.join(cases.FEEDBACK_KINDS)}")
    detail: dict[str, Any] = {"action": action, "from": c.status}
    try:
        audit.record(session, "case.transition", actor=user, object_type="case", object_id=c.id, ip=client_ip(request),
                     detail={**detail, **{k: body.get(k) for k in ("mode", "unit", "kind") if body.get(k) is not None}})
        if action == "handling":
            cases.start_handling(session, c.id, mode, unit, user.username, note=note)
        elif action == "close":
            cases.close_case(session, c.id, user.username, result, settings=settings)
        elif action == "archive":
            cases.archive_case(session, c.id, user.username)
        else:
            cases.record_feedback(session, c.id, body["kind"], user.username, note=note)
    except cases.CaseError as e:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(e)) from None
    session.refresh(c)
    out, _ = case_json(session, c, user)
    return out


# ------------------------------------------------------------------------------------ alerts
@router.get("/alerts")
def list_alerts(session: SessionDep, settings: SettingsDep, user: SupervisorUser, all: bool = False) -> dict:  # noqa: A002
    alerts = access.visible_urgent_alerts(session, user, open_only=not all, settings=settings)
    return {"items": [{"id": a.id, "draft_id": a.draft_id, "kinds": [k for k in (a.kinds or "").split(",") if k],
                       "status": a.status, "created_at": iso(a.created_at), "acknowledged_by": a.acknowledged_by,
                       "acknowledged_at": iso(a.acknowledged_at)} for a in alerts]}


@router.post("/alerts/{alert_id}/ack")
def ack_alert(alert_id: str, request: Request, session: SessionDep, settings: SettingsDep, user: SupervisorUser,
              body: Annotated[dict | None, Body()] = None) -> dict:
    with visible():
        a = session.get(UrgentAlert, access.check_id(alert_id))
        if a is None or not access.can_see_draft(session, user, session.get(Draft, a.draft_id), settings=settings):
            raise access.NotVisible("not found")
    note = _text(body or {}, "note")
    try:
        audit.record(session, "alert.ack", actor=user, object_type="alert", object_id=a.id, ip=client_ip(request),
                     detail={"draft_id": a.draft_id})
        a = cases.acknowledge_alert(session, a.id, user.username, note=note)
    except cases.CaseError as e:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(e)) from None
    return {"id": a.id, "status": a.status, "acknowledged_by": a.acknowledged_by, "acknowledged_at": iso(a.acknowledged_at)}
