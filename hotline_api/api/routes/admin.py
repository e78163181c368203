"""Administration (admins only; everyone else: 404). Admins manage users and settings; they do not
see content (no audio, transcripts, drafts or caller numbers here).

* ``GET  /api/admin/users``, ``POST /api/admin/users`` ``{"username", "role", "unit", "permissions",
  "display_name", "password"?}`` (without a password a one-time password is returned once; either
  way the user must change it at first login),
  ``GET/PATCH /api/admin/users/{id}`` (``role``, ``unit``, ``permissions``, ``active``,
  ``display_name``), ``DELETE /api/admin/users/{id}`` (deactivates; users stay for the audit trail),
  ``POST /api/admin/users/{id}/password`` (new one-time password; with ``{"password"}``: that password;
  either way the user must change it at next login, and every token and session of the user ends)
* ``GET /api/admin/retention``, ``PUT /api/admin/retention/{kind}`` ``{"days": n | null}``
* ``GET /api/admin/holds``, ``POST /api/admin/holds`` ``{"target_type", "target_id", "reason"}``,
  ``POST /api/admin/holds/{id}/release`` ``{"reason"}``
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Request
from sqlalchemy import select

from hotline_api.api.deps import SessionDep, SettingsDep, client_ip, not_found
from hotline_api.api.routes._common import AdminUser, bad_request, iso, visible
from hotline_api.models.calls import Recording
from hotline_api.models.cases import Case
from hotline_api.models.governance import LegalHold, User
from hotline_api.services import access, auth, retention, user_admin
from recordings.retention import KINDS

router = APIRouter(prefix="/admin", tags=["admin"])


RETENTION_DAYS_MAX = 100 * 366
"""The longest retention period that can be set (null keeps forever)."""


def _permissions_ok(perms) -> bool:
    return isinstance(perms, list) and len(perms) <= 32 and all(isinstance(p, str) and len(p) <= 64 for p in perms)


def _user(session, user_id: str) -> User:
    with visible():
        u = session.get(User, access.check_id(user_id))
        if u is None:
            raise access.NotVisible("not found")
    return u


@router.get("/users")
def list_users(session: SessionDep, admin: AdminUser) -> dict:
    users = session.execute(select(User).order_by(User.username)).scalars()
    return {"items": [user_admin.user_json(u) for u in users]}


@router.post("/users", status_code=201)
def create_user(request: Request, session: SessionDep, settings: SettingsDep, admin: AdminUser,
                body: Annotated[dict, Body()]) -> dict:
    perms = body.get("permissions") or []
    if not _permissions_ok(perms):
        raise bad_request("permissions must be a list of permission names")
    for key in ("username", "role"):
        if not isinstance(body.get(key), str):
            raise bad_request(f"{key} is required")
    for key in ("unit", "display_name", "password"):
        if body.get(key) is not None and not isinstance(body.get(key), str):
            raise bad_request(f"{key} must be text")
    try:
        user, one_time = auth.create_user(session, body["username"], body["role"], body.get("password"),
                                          unit=body.get("unit") or None, permissions=perms,
                                          display_name=body.get("display_name"), actor=admin, settings=settings,
                                          ip=client_ip(request))
    except auth.UserError as e:
        session.rollback()
        raise bad_request(str(e)) from None
    session.commit()
    out = user_admin.user_json(user)
    if one_time:
        out["one_time_password"] = one_time
    return out


@router.get("/users/{user_id}")
def get_user(user_id: str, session: SessionDep, admin: AdminUser) -> dict:
    return user_admin.user_json(_user(session, user_id))


@router.patch("/users/{user_id}")
def update_user(user_id: str, request: Request, session: SessionDep, admin: AdminUser,
                body: Annotated[dict, Body()]) -> dict:
    u = _user(session, user_id)
    if "permissions" in body and not _permissions_ok(body["permissions"]):
        raise bad_request("permissions must be a list of permission names")
    try:
        user_admin.update_user(session, admin, u, body, ip=client_ip(request))
    except auth.UserError as e:
        session.rollback()
        raise bad_request(str(e)) from None
    session.commit()
    return user_admin.user_json(u)


@router.delete("/users/{user_id}")
def deactivate_user(user_id: str, request: Request, session: SessionDep, admin: AdminUser) -> dict:
    u = _user(session, user_id)
    try:
        user_admin.update_user(session, admin, u, {"active": False}, ip=client_ip(request))
    except auth.UserError as e:
        session.rollback()
        raise bad_request(str(e)) from None
    session.commit()
    return user_admin.user_json(u)


@router.post("/users/{user_id}/password")
def reset_password(user_id: str, request: Request, session: SessionDep, settings: SettingsDep, admin: AdminUser,
                   body: Annotated[dict | None, Body()] = None) -> dict:
    u = _user(session, user_id)
    chosen = (body or {}).get("password")
    if chosen is None:
        pw = user_admin.reset_password(session, admin, u, ip=client_ip(request), settings=settings)
        session.commit()
        return {"id": u.id, "one_time_password": pw, "must_change_password": True}
    try:
        user_admin.set_password(session, admin, u, chosen, ip=client_ip(request), settings=settings)
    except auth.UserError as e:
        session.rollback()
        raise bad_request(str(e)) from None
    session.commit()
    return {"id": u.id, "must_change_password": bool(u.must_change_password)}


# ---------------------------------------------------------------------------------- retention
@router.get("/retention")
def get_retention(session: SessionDep, admin: AdminUser) -> dict:
    policy = retention.load_policy(session)
    return {"policies": {k: getattr(policy, f"{k}_days") for k in KINDS}}


@router.put("/retention/{kind}")
def set_retention(kind: str, session: SessionDep, admin: AdminUser, body: Annotated[dict, Body()]) -> dict:
    days = body.get("days")
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= RETENTION_DAYS_MAX):
        raise bad_request(f"days must be a whole number of days (0..{RETENTION_DAYS_MAX}), or null to keep forever")
    if kind not in KINDS:
        raise not_found()
    try:
        retention.set_policy(session, kind, days, actor=admin)
    except retention.RetentionError as e:
        session.rollback()
        raise bad_request(str(e)) from None
    session.commit()
    return get_retention(session, admin)


# ------------------------------------------------------------------------------------- holds
def _hold_json(h: LegalHold) -> dict:
    return {"id": h.id, "target_type": h.target_type, "target_id": h.target_id, "reason": h.reason,
            "created_by": h.created_by, "created_at": iso(h.created_at), "released_at": iso(h.released_at)}


@router.get("/holds")
def list_holds(session: SessionDep, admin: AdminUser, all: bool = False) -> dict:  # noqa: A002
    stmt = select(LegalHold)
    if not all:
        stmt = stmt.where(LegalHold.released_at.is_(None))
    return {"items": [_hold_json(h) for h in session.execute(stmt.order_by(LegalHold.created_at.desc())).scalars()]}


@router.post("/holds", status_code=201)
def place_hold(request: Request, session: SessionDep, admin: AdminUser, body: Annotated[dict, Body()]) -> dict:
    target_type = body.get("target_type")
    if target_type not in ("recording", "case"):
        raise bad_request("target_type must be recording or case")
    reason = body.get("reason")
    if not isinstance(reason, str) or len(reason) > 2000:
        raise bad_request("a legal hold needs a reason")
    with visible():
        tid = access.check_id(body.get("target_id"))
        if session.get(Recording if target_type == "recording" else Case, tid) is None:
            raise access.NotVisible("not found")
    try:
        h = retention.place_hold(session, target_type, tid, reason, actor=admin, ip=client_ip(request))
    except retention.RetentionError as e:
        session.rollback()
        raise bad_request(str(e)) from None
    session.commit()
    return _hold_json(h)


@router.post("/holds/{hold_id}/release")
def release_hold(hold_id: str, request: Request, session: SessionDep, admin: AdminUser,
                 body: Annotated[dict | None, Body()] = None) -> dict:
    reason = (body or {}).get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 2000:
        raise bad_request("releasing a legal hold needs a reason")
    with visible():
        hid = access.check_id(hold_id)
    try:
        h = retention.release_hold(session, hid, actor=admin, reason=reason, ip=client_ip(request))
    except retention.RetentionError:
        session.rollback()
        raise not_found() from None
    session.commit()
    return _hold_json(h)
