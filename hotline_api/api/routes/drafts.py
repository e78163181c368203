"""Drafts (case drafts made from transcripts), with the keys of ``hotline draft --json``.

* ``GET   /api/drafts?status=draft&limit=&offset=``  visible drafts, newest first
* ``GET   /api/drafts/{id}``   fields, evidence, confidence, duplicates, corrections, the input text
* ``PATCH /api/drafts/{id}``   ``{"changes": {field: value, ...}, "reason": "..."}`` (or ``{"field",
  "value"}``): corrections before registration, each kept (operators on their own call's draft,
  supervisors)
* ``POST  /api/drafts/{id}/register``  supervisor: draft -> case (number ``12388-YYYY-NNNNNN``)

A draft is content of its recording (same visibility). ``reporter_name`` / ``reporter_phone`` and
identity in the text are masked unless the user holds ``identity``; views are audited
(``draft.view``; ``identity.view`` when shown), changes too (``draft.correct``, ``case.register``).
"""
from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Request, status
from sqlalchemy import or_, select

from hotline_api.api.deps import SessionDep, SettingsDep, client_ip, not_found
from hotline_api.api.routes._common import (
    ContentUser,
    Offset,
    SupervisorUser,
    audit_read,
    bad_request,
    factory,
    iso,
    visible,
)
from hotline_api.drafting import DRAFT_KEYS
from hotline_api.models.cases import Draft
from hotline_api.models.governance import User
from hotline_api.services import access, audit, case_links, cases, masking

router = APIRouter(tags=["drafts"])

IDENTITY_KEYS = ("reporter_name", "reporter_phone")


def draft_json(session, d: Draft, user: User, full: bool = True) -> tuple[dict[str, Any], bool]:
    """(JSON, identity shown?)."""
    show = access.has_identity(user)
    fields = json.loads(d.fields_json or "{}")
    terms = access.identity_terms(session, d.recording_id, draft=d)
    shown_identity = show and any(fields.get(k) for k in IDENTITY_KEYS)
    if not show:
        fields = access.mask_draft_fields(fields, terms)
    out: dict[str, Any] = {
        "id": d.id, "status": d.status, "source": d.source, "recording_id": d.recording_id,
        "transcript_id": d.transcript_id, "call_id": d.call_id, "case_id": d.case_id,
        "received_at": iso(d.received_at), "created_at": iso(d.created_at), "updated_at": iso(d.updated_at),
        **{k: fields.get(k) for k in DRAFT_KEYS},
        "evidence": fields.get("evidence"), "confidence": fields.get("confidence"),
        "deadlines": fields.get("deadlines"), "routing": fields.get("routing"),
        # from the link table, as the user may see them: another unit's draft or case is never named
        "duplicates": case_links.duplicates_json(session, user, d), "identity_masked": not show,
    }
    if full:
        text = d.input_text
        out["input_text"] = text if show else access.mask_text_aligned(text, terms)
        out["input_mode"] = d.input_mode
        out["links"] = out["duplicates"]
        corr = []
        for c in d.corrections:
            old, new = json.loads(c.old_json or "null"), json.loads(c.new_json or "null")
            if c.field in IDENTITY_KEYS:
                shown_identity = shown_identity or (show and bool(old or new))
                if not show:
                    mask = masking.mask_name if c.field == "reporter_name" else masking.mask_phone
                    old, new = (mask(old) if isinstance(old, str) else old), (mask(new) if isinstance(new, str) else new)
            corr.append({"field": c.field, "old": old, "new": new, "actor": c.actor, "reason": c.reason, "at": iso(c.at)})
        out["corrections"] = corr
    return out, shown_identity


@router.get("/drafts")
def list_drafts(session: SessionDep, settings: SettingsDep, user: ContentUser,
                status_: Annotated[str | None, Query(alias="status", pattern="^(draft|registered|discarded)$")] = "draft",
                limit: Annotated[int, Query(ge=1, le=500)] = 50, offset: Offset = 0) -> dict:
    vis = Draft.recording_id.in_(access.visible_recording_ids(user, settings=settings))
    if user.role == "supervisor":
        vis = or_(vis, Draft.recording_id.is_(None))
    stmt = select(Draft).where(vis)
    if status_:
        stmt = stmt.where(Draft.status == status_)
    rows = session.execute(stmt.order_by(Draft.created_at.desc(), Draft.id.desc()).limit(limit).offset(offset)).scalars()
    items = []
    for d in rows:
        j, _ = draft_json(session, d, user, full=False)
        items.append(j)
    # a list shows identity only masked: open a draft to see (and audit) its reporter's identity
    for j in items:
        for k in IDENTITY_KEYS:
            j[k] = masking.mask_name(j[k]) if k == "reporter_name" and j.get(k) else (
                masking.mask_phone(j[k]) if j.get(k) else j.get(k))
        j["identity_masked"] = True
    return {"items": items, "limit": limit, "offset": offset}


@router.get("/drafts/{draft_id}")
def get_draft(draft_id: str, request: Request, session: SessionDep, settings: SettingsDep, user: ContentUser) -> dict:
    with visible():
        d = access.visible_draft(session, user, draft_id, settings=settings)
    out, shown = draft_json(session, d, user)
    audit_read(settings, request, user, "draft.view", "draft", d.id, detail={"identity": access.has_identity(user)})
    if shown:
        audit_read(settings, request, user, "identity.view", "draft", d.id, detail={"fields": list(IDENTITY_KEYS)})
    return out


@router.patch("/drafts/{draft_id}")
def correct_draft(draft_id: str, request: Request, session: SessionDep, settings: SettingsDep, user: ContentUser,
                  body: Annotated[dict, Body()]) -> dict:
    with visible():
        d = access.visible_draft(session, user, draft_id, settings=settings)
    if user.role not in ("operator", "supervisor"):
        raise not_found()
    if "changes" in body:
        changes = body.get("changes")
    elif "field" in body:
        changes = {body.get("field"): body.get("value")}
    else:
        changes = None
    if not isinstance(changes, dict) or not changes or len(changes) > len(DRAFT_KEYS):
        raise bad_request('send {"changes": {field: value}} or {"field": ..., "value": ...}')
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 2000):
        raise bad_request("reason must be text")
    if len(json.dumps(changes, ensure_ascii=False)) > 64 * 1024:
        raise bad_request("changes too large")
    try:
        for field, value in changes.items():
            cases.correct_draft(session, d.id, str(field), value, actor=user.username, reason=reason, commit=False)
        audit.record(session, "draft.correct", actor=user, object_type="draft", object_id=d.id, ip=client_ip(request),
                     reason=reason, detail={"fields": sorted(str(f) for f in changes)})
        session.commit()
    except cases.CaseError as e:
        session.rollback()
        raise bad_request(str(e)) from None
    session.refresh(d)
    out, _ = draft_json(session, d, user)
    return out


@router.post("/drafts/{draft_id}/register", status_code=201)
def register(draft_id: str, request: Request, session: SessionDep, settings: SettingsDep, user: SupervisorUser,
             body: Annotated[dict | None, Body()] = None) -> dict:
    with visible():
        d = access.visible_draft(session, user, draft_id, settings=settings)
    note = (body or {}).get("note")
    if note is not None and (not isinstance(note, str) or len(note) > 2000):
        raise bad_request("note must be text")
    if d.status != "draft":
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"草稿已{ '受理' if d.status == 'registered' else '作废'}")
    session.rollback()  # release the read transaction before the registering one takes the write lock
    try:
        case = cases.register_draft(session.get_bind(), d.id, user.username, settings=settings, note=note)
    except cases.CaseError as e:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(e)) from None
    audit.append(factory(settings), "case.register", actor=user, object_type="case", object_id=case.id, ip=client_ip(request),
                 detail={"number": case.number, "draft_id": d.id})
    return {"id": case.id, "number": case.number, "status": case.status, "draft_id": d.id,
            "registered_at": iso(case.registered_at)}
