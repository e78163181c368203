"""Callback tasks (``services.callbacks``): callers who asked to be called back.

* ``GET  /api/callbacks?status=open&limit=&offset=`` -> ``{"items": [...], "status", "limit", "offset"}``;
  operators: every open task; supervisors: the tasks of their unit, any status
* ``GET  /api/callbacks/{id}``
* ``GET  /api/callbacks/{id}/caller`` -> ``{"caller": ..., "identity_masked": bool}``: the number
  for the one who calls back (``identity`` permission; audited ``identity.view``); 404 without it
* ``POST /api/callbacks/{id}/attempts`` ``{"outcome": "reached|no_answer|wrong_number", "note": "..."}``
  (audited ``callback.attempt``); 409 when the task is no longer open or changed meanwhile

Items: ``id``, ``call_id``, ``status``, ``attempts``, ``max_attempts``, ``due_at``, ``requested_at``,
``caller`` (always masked), ``last_outcome``, ``last_attempt_at``, ``handled_by``, ``outcome_note``
(phone numbers masked). Other roles get 404.
"""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, status

from hotline_api.api.deps import SessionDep, client_ip, not_found
from hotline_api.api.routes._common import Offset, bad_request, iso, roles, visible
from hotline_api.models.governance import User
from hotline_api.services import callbacks

router = APIRouter(tags=["callbacks"])

CallbackUser = Annotated[User, Depends(roles(*callbacks.ROLES))]


def task_json(v: callbacks.TaskView) -> dict[str, Any]:
    return {
        "id": v.id, "call_id": v.call_id, "status": v.status, "attempts": v.attempts, "max_attempts": v.max_attempts,
        "due_at": iso(v.due_at), "requested_at": iso(v.requested_at), "created_at": iso(v.created_at),
        "updated_at": iso(v.updated_at), "caller": v.caller_masked, "identity_masked": True,
        "last_outcome": v.last_outcome, "last_attempt_at": iso(v.last_attempt_at), "handled_by": v.handled_by,
        "outcome_note": v.outcome_note,
    }


@router.get("/callbacks")
def list_callbacks(session: SessionDep, user: CallbackUser,
                   status_: Annotated[str, Query(alias="status", pattern="^(open|done|unreachable)$")] = "open",
                   limit: Annotated[int, Query(ge=1, le=500)] = 100,
                   offset: Offset = 0) -> dict:
    rows = callbacks.list_tasks(session, user, status_, limit=limit, offset=offset)
    return {"items": [task_json(callbacks.view(t, c)) for t, c in rows], "status": status_, "limit": limit,
            "offset": offset}


@router.get("/callbacks/{task_id}")
def get_callback(task_id: str, session: SessionDep, user: CallbackUser) -> dict:
    with visible():
        t = callbacks.visible_task(session, user, task_id)
    return task_json(callbacks.view(t, t.call))


@router.get("/callbacks/{task_id}/caller")
def reveal_caller(task_id: str, request: Request, session: SessionDep, user: CallbackUser) -> dict:
    with visible():
        t = callbacks.visible_task(session, user, task_id)
    if not user.has_permission("identity"):
        raise not_found()
    number = callbacks.reveal_number(session, user, t, ip=client_ip(request))
    session.commit()
    return {"id": t.id, "caller": number, "identity_masked": False}


@router.post("/callbacks/{task_id}/attempts")
def record_attempt(task_id: str, request: Request, session: SessionDep, user: CallbackUser,
                   body: Annotated[dict, Body()]) -> dict:
    outcome, note = body.get("outcome"), body.get("note")
    if not isinstance(outcome, str) or outcome not in callbacks.OUTCOMES:
        raise bad_request(f"outcome must be one of {', '.join(callbacks.OUTCOMES)}")
    if note is not None and not isinstance(note, str):
        raise bad_request("note must be text")
    with visible():
        t = callbacks.visible_task(session, user, task_id)
    try:
        t = callbacks.record_attempt(session, t, user, outcome, note, ip=client_ip(request))
    except callbacks.CallbackError as e:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(e)) from None
    session.commit()
    return task_json(callbacks.view(t, t.call))
