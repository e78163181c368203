"""Operator pages: the state toggle (available / paused with a reason), the live call panel (waiting /
ringing / on call, caller masked, live transcript when available) fed by the live events stream,
the draft form that saves as you type, and "my calls" of the allowed window.

The draft an operator types is a real draft (``services.cases.create_draft`` on the first save,
then ``correct_draft`` per changed field), linked to the call and its recording, so the supervisor
reviews it like any other; the transcript stage then finds the call already drafted."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select

from hotline_api.drafting import DraftInputError
from hotline_api.drafting.classify import CATEGORIES
from hotline_api.models.calls import Call, Recording
from hotline_api.models.cases import Draft
from hotline_api.services import access, audit, cases as case_svc, masking
from hotline_api.services import operators as ops
from hotline_api.web import queries
from hotline_api.web.core import (
    OperatorUser,
    PageNotFound,
    PageRoute,
    SessionDep,
    SettingsDep,
    client_ip,
    page_number,
    render,
)
from hotline_api.web.transcript_view import join_list, split_list

router = APIRouter(route_class=PageRoute, include_in_schema=False)

STATE_LABELS = {"available": "空闲", "on_call": "通话中", "wrap_up": "话后整理", "paused": "暂停", "offline": "离线"}
PAUSE_REASONS = ("会议", "培训", "用餐", "休息", "其他")


def _profile(session, user):
    """The user's operator profile (``services.operators``), or None when not set up."""
    return ops.get_for_user(session, user.id)


def _state_of(session, user) -> dict[str, Any] | None:
    op = _profile(session, user)
    if op is None:
        return None
    state = ops.effective_state(op)
    return {"state": state, "reason": op.state_reason, "since": op.state_since,
            "wrap_up_until": op.wrap_up_until if state == "wrap_up" else None}


def _live_api_mounted() -> bool:
    """The live events API (``hotline_api/api/routes/live.py``; the app factory mounts every routes
    module, so the module's presence means ``/api/live/events`` is served)."""
    import importlib.util

    return importlib.util.find_spec("hotline_api.api.routes.live") is not None


OPERATOR_ERRORS = (("a pause needs a reason", "暂停须选择原因"), ("on a call", "通话中不能手动切换状态"),
                   ("set by the call routing", "该状态由来电分配自动设置"))


def _window_hours(settings) -> float:
    return float(getattr(settings, "operator_view_hours", 24))


@router.get("/op")
def op_home(request: Request, session: SessionDep, settings: SettingsDep, user: OperatorUser, err: str = "") -> Response:
    res = queries.operator_calls(session, user, _window_hours(settings), per_page=5)
    return render(request, "op/home.html", {
        "state": _state_of(session, user), "state_labels": STATE_LABELS, "reasons": PAUSE_REASONS,
        "live_url": "/api/live/events" if (_live_api_mounted() and _profile(session, user)) else None,
        "calls": res, "err": err[:200], "hours": _window_hours(settings),
    }, active="op")


@router.get("/op/state")
def op_state_card(request: Request, session: SessionDep, user: OperatorUser) -> Response:
    """The state card alone: the console reloads it when a live event says the state changed (the
    routing sets on call / wrap-up / available by itself)."""
    if _profile(session, user) is None:
        raise PageNotFound()
    return render(request, "op/_state.html", {"state": _state_of(session, user), "state_labels": STATE_LABELS,
                                              "reasons": PAUSE_REASONS, "error": None})


@router.post("/op/state")
async def op_state(request: Request, session: SessionDep, user: OperatorUser) -> Response:
    op = _profile(session, user)
    if op is None:
        raise PageNotFound()
    form = await request.form()
    state = form.get("state") or ""
    reason = (form.get("reason") or "").strip()[:200] or None
    error = None
    if state not in ("available", "paused"):
        error = "状态无效"
    else:
        try:
            ops.set_state(session, op, state, reason)
            audit.record(session, "operator.state", actor=user, object_type="operator", object_id=op.id,
                         ip=client_ip(request), detail={"state": state, "reason": reason, "via": "console"})
            session.commit()
        except ops.OperatorError as e:
            session.rollback()
            error = next((t for k, t in OPERATOR_ERRORS if k in str(e)), "无法切换状态")
    return render(request, "op/_state.html", {"state": _state_of(session, user), "state_labels": STATE_LABELS,
                                              "reasons": PAUSE_REASONS, "error": error},
                  status_code=200 if error is None else 400)


@router.get("/op/calls")
def op_calls(request: Request, session: SessionDep, settings: SettingsDep, user: OperatorUser, page: int = 1) -> Response:
    res = queries.operator_calls(session, user, _window_hours(settings), page=page_number(page))

    def page_url(p: int) -> str:
        return "/op/calls?" + urlencode({"page": p})

    return render(request, "op/calls.html", {"res": res, "pager": res, "page_url": page_url,
                                             "hours": _window_hours(settings)}, active="op-calls")


def _load_call(session, user, call_id: str, settings) -> Call:
    try:
        cid = access.check_id(call_id)
    except access.NotVisible:
        raise PageNotFound() from None
    call = session.get(Call, cid)
    if call is None or not (access.can_see_call_row(session, user, call, settings=settings)
                            or queries.operator_may_see(session, user, call, _window_hours(settings))):
        raise PageNotFound()
    return call


def _draft_for(session, call: Call) -> Draft | None:
    return session.execute(select(Draft).where(Draft.call_id == call.id, Draft.status != "discarded")
                           .order_by(Draft.created_at)).scalars().first()


def _call_ctx(session, call: Call) -> dict[str, Any]:
    d = _draft_for(session, call)
    doc = json.loads(d.fields_json) if d is not None else {}
    rec = session.execute(select(Recording).where(Recording.call_id == call.id)).scalars().first()
    subj = (doc.get("subjects") or [{}])[0] if doc.get("subjects") else {}
    return {"call": call, "draft": d, "doc": doc, "subject": subj, "places_text": join_list(doc.get("places")),
            "caller_masked": masking.mask_phone(call.caller_number) if call.caller_number else "未知",
            "categories": CATEGORIES, "rec": rec, "saved_at": d.updated_at if d is not None else None}


@router.get("/op/calls/{call_id}")
def op_call(request: Request, call_id: str, session: SessionDep, settings: SettingsDep, user: OperatorUser) -> Response:
    call = _load_call(session, user, call_id, settings)
    return render(request, "op/call.html", _call_ctx(session, call), active="op-calls")


@router.get("/op/live/{call_id}")
def op_live(request: Request, call_id: str, session: SessionDep, settings: SettingsDep, user: OperatorUser) -> Response:
    """The live panel's call part (caller masked + the draft form), loaded when a call reaches the operator."""
    call = _load_call(session, user, call_id, settings)
    return render(request, "op/_live_call.html", _call_ctx(session, call))


MIN_NOTES = 12  # characters of notes before the first draft is made from them


def _operator_changes(form, doc: dict) -> dict[str, Any]:
    """The fields the operator changed: a submitted value counts only when it differs from what the
    form showed (``shown_*``) and from the draft's current value, so an untouched (possibly not yet
    refreshed) field never overwrites what the drafting found."""
    out: dict[str, Any] = {}
    cat = form.get("category") or ""
    if cat != (form.get("shown_category") or "") and cat in CATEGORIES and cat != doc.get("category"):
        out["category"] = cat
    places_raw = form.get("places") or ""
    if places_raw != (form.get("shown_places") or ""):
        places = split_list(places_raw)
        if sorted(places) != sorted(doc.get("places") or []):
            out["places"] = places
    subj = {k: (form.get(f"subject_{k}") or "").strip()[:128] for k in ("name", "title", "unit")}
    if "|".join(subj.values()) != (form.get("shown_subject") or "||"):
        old = doc.get("subjects") or []
        first = {k: (old[0].get(k) or "") for k in ("name", "title", "unit")} if old else None
        if subj != first:
            out["subjects"] = ([subj] if any(subj.values()) else []) + list(old[1:])
    for flag in ("real_name", "urgent"):
        v = form.get(flag) == "1"
        if v != ((form.get(f"shown_{flag}") or "") == "1") and v != bool(doc.get(flag)):
            out[flag] = v
    summary = (form.get("summary") or "").strip()[:4000]
    if summary != (form.get("shown_summary") or "").strip() and summary != (doc.get("summary") or ""):
        out["summary"] = summary
    return out


@router.post("/op/calls/{call_id}/draft")
async def op_draft_save(request: Request, call_id: str, session: SessionDep, settings: SettingsDep,
                        user: OperatorUser) -> Response:
    """Autosave (htmx, on input with a short delay). The first save with a sentence of notes makes
    the call's draft from them (drafting fills the structured fields, which are swapped into the form
    out of band); later saves record each field the operator changed as a correction."""
    call = _load_call(session, user, call_id, settings)
    form = await request.form()
    d = _draft_for(session, call)
    state, created = "saved", False
    if d is not None and d.status != "draft":
        state = "locked"
    elif d is None:
        notes = (form.get("summary") or "").strip()[:4000]
        if len(notes) < MIN_NOTES:
            state = "waiting"
        else:
            rec = session.execute(select(Recording).where(Recording.call_id == call.id)).scalars().first()
            try:
                res = case_svc.create_draft(session, text=notes, recording_id=rec.id if rec else None, call_id=call.id,
                                            received_at=call.created_at, source="operator", actor=user.username,
                                            settings=settings)
                d, created = res.draft, True
                audit.append(_factory(settings), "draft.operator_create", actor=user, object_type="draft",
                             object_id=d.id, ip=client_ip(request), detail={"call_id": call.id})
            except DraftInputError:
                session.rollback()
                state = "error"
    if d is not None and state == "saved" and not created:
        changes = _operator_changes(form, json.loads(d.fields_json))
        try:
            for field, new in changes.items():
                case_svc.correct_draft(session, d.id, field, new, actor=user.username, reason="接线员填写", commit=False)
            session.commit()
        except case_svc.CaseError:
            session.rollback()
            state = "error"
        if changes and state == "saved":
            audit.append(_factory(settings), "draft.operator_edit", actor=user, object_type="draft", object_id=d.id,
                         ip=client_ip(request), detail={"fields": sorted(changes), "call_id": call.id})
    ctx = _call_ctx(session, call) if created else {}
    ctx.update({"state": state, "created": created, "at": datetime.now(timezone.utc)})
    return render(request, "op/_save_state.html", ctx)


def _factory(settings):
    from hotline_api.db.session import session_factory

    return session_factory(settings.db_url)
