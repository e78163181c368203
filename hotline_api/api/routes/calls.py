"""Calls visible to the caller of the API (``services.access``), newest first.

* ``GET /api/calls?limit=&offset=`` -> ``{"items": [...], "limit", "offset"}``; each item has ``id``,
  ``started_at``, ``ended_at``, ``channel``, ``status``, ``recording_id`` (+ ``answered_at``,
  ``duration``, ``operator_id``, ``caller``, ``identity_masked``)
* ``GET /api/calls/{id}``

``caller`` is masked (``138******18``) unless the user holds ``identity``; showing it is audited
(``identity.view``). Auditors and admins get 404.
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from hotline_api.api.deps import SessionDep, SettingsDep
from hotline_api.api.routes._common import ContentUser, Offset, audit_read, iso, visible
from hotline_api.models.calls import Call
from hotline_api.services import access, masking

router = APIRouter(tags=["calls"])


def call_json(call: Call, show_identity: bool) -> dict:
    rec = call.recording
    number = call.caller_number or None
    return {
        "id": call.id,
        "started_at": iso(call.created_at),
        "answered_at": iso(call.answered_at),
        "ended_at": iso(call.ended_at),
        "channel": call.channel,
        "status": call.status,
        "recording_id": rec.id if rec is not None else None,
        "duration": rec.duration if rec is not None else None,
        "operator_id": call.operator_id,
        "caller": number if show_identity else masking.mask_phone(number),
        "identity_masked": not show_identity,
    }


@router.get("/calls")
def list_calls(request: Request, session: SessionDep, settings: SettingsDep, user: ContentUser,
               limit: Annotated[int, Query(ge=1, le=500)] = 50,
               offset: Offset = 0) -> dict:
    calls = access.list_calls(session, user, limit=limit, offset=offset, settings=settings)
    show = access.has_identity(user)
    items = [call_json(c, show) for c in calls]
    if show and any(c.caller_number for c in calls):
        audit_read(settings, request, user, "identity.view", "call", None,
                   detail={"fields": ["caller"], "calls": [c.id for c in calls if c.caller_number]})
    return {"items": items, "limit": limit, "offset": offset}


@router.get("/calls/{call_id}")
def get_call(call_id: str, request: Request, session: SessionDep, settings: SettingsDep, user: ContentUser) -> dict:
    with visible():
        call = session.get(Call, access.check_id(call_id))
        if call is None or not access.can_see_call_row(session, user, call, settings=settings):
            raise access.NotVisible("not found")
    show = access.has_identity(user)
    if show and call.caller_number:
        audit_read(settings, request, user, "identity.view", "call", call.id, detail={"fields": ["caller"]})
    return call_json(call, show)
