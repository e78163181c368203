"""待回拨: callers who asked to be called back (``services.callbacks``).

* ``/op/callbacks`` (operators): every open task, the earliest due first; any operator may call back.
* ``/callbacks`` (supervisors): the tasks of their unit, by status (open / done / unreachable).
* ``GET /callbacks/{id}/number`` (htmx): the caller's number for the one who calls back, only with
  the ``identity`` permission, audited (``masking.reveal``), as the reporter identity on a draft.
* ``POST /callbacks/{id}/attempt``: 已接通 / 无人接听 / 号码有误 with an optional note.

The number is masked everywhere else on these pages."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from hotline_api.models.governance import User
from hotline_api.services import access, callbacks
from hotline_api.web.core import (
    OperatorUser,
    PageNotFound,
    PageRoute,
    SessionDep,
    SupervisorUser,
    client_ip,
    render,
    role_page,
)

router = APIRouter(route_class=PageRoute, include_in_schema=False)

CallbackUser = Annotated[User, Depends(role_page(*callbacks.ROLES))]

STATUS_LABELS = {"open": "待回拨", "done": "已回拨", "unreachable": "无法联系"}
OUTCOME_LABELS = {"reached": "已接通", "no_answer": "无人接听", "wrong_number": "号码有误"}
MESSAGES = {"reached": "已记录：回拨接通，任务完成。", "no_answer": "已记录：无人接听。",
            "wrong_number": "已记录：号码有误。", "unreachable": "已尝试 3 次未能联系，任务已标记为无法联系。",
            "conflict": "该任务已被他人更新，请查看最新状态后重试。", "closed": "该任务已办结。"}
LIST_URL = {"operator": "/op/callbacks", "supervisor": "/callbacks"}


def _list(request: Request, session, user: User, status: str, msg: str, active: str) -> Response:
    rows = callbacks.list_tasks(session, user, status)
    return render(request, "callbacks/list.html", {
        "tasks": [callbacks.view(t, c) for t, c in rows], "status": status, "status_labels": STATUS_LABELS,
        "outcome_labels": OUTCOME_LABELS, "msg": MESSAGES.get(msg), "msg_key": msg,
        "list_url": LIST_URL[user.role], "can_reveal": user.has_permission("identity"),
        "max_attempts": callbacks.MAX_FAILED_ATTEMPTS,
    }, active=active)


@router.get("/op/callbacks")
def op_callbacks(request: Request, session: SessionDep, user: OperatorUser, msg: str = "") -> Response:
    return _list(request, session, user, "open", msg, "op-callbacks")


@router.get("/callbacks")
def sup_callbacks(request: Request, session: SessionDep, user: SupervisorUser, status: str = "open",
                  msg: str = "") -> Response:
    return _list(request, session, user, status if status in STATUS_LABELS else "open", msg, "callbacks")


def _task(session, user, task_id: str):
    try:
        return callbacks.visible_task(session, user, task_id)
    except access.NotVisible:
        raise PageNotFound() from None


@router.get("/callbacks/{task_id}/number")
def callback_number(request: Request, task_id: str, session: SessionDep, user: CallbackUser) -> Response:
    """Reveal the caller's number (``identity`` permission only; audited)."""
    t = _task(session, user, task_id)
    if not user.has_permission("identity"):
        raise PageNotFound()
    number = callbacks.reveal_number(session, user, t, ip=client_ip(request))
    session.commit()
    return render(request, "callbacks/_number.html", {"number": number, "t": t})


@router.post("/callbacks/{task_id}/attempt")
async def callback_attempt(request: Request, task_id: str, session: SessionDep, user: CallbackUser) -> Response:
    t = _task(session, user, task_id)
    form = await request.form()
    outcome = form.get("outcome") or ""
    note = form.get("note") or ""
    back = LIST_URL[user.role]
    if outcome not in OUTCOME_LABELS or not isinstance(note, str):
        return RedirectResponse(back, status_code=303)
    try:
        t = callbacks.record_attempt(session, t, user, outcome, note, ip=client_ip(request))
        session.commit()
    except callbacks.TaskChanged:
        session.rollback()
        return RedirectResponse(f"{back}?msg=conflict", status_code=303)
    except callbacks.CallbackError:
        session.rollback()
        return RedirectResponse(f"{back}?msg=closed", status_code=303)
    msg = "unreachable" if t.status == "unreachable" else outcome
    return RedirectResponse(f"{back}?msg={msg}", status_code=303)
