"""Operator state and profiles (mounted under ``/api``):

* ``GET  /api/operators/me`` -- my operator profile and state (404 if I am not an operator)
* ``PUT  /api/operators/me/state`` ``{"state": "available"|"paused"|"offline", "reason": "..."}``
* ``GET  /api/operators`` -- supervisors/admins: every operator with state, contacts, SIP user
  (the digest HA1 is never returned)
* ``PUT  /api/operators/{user_id}`` -- admin: create/update a user's operator profile
  ``{"contacts": [{"kind": "static", "uri": "sip:..."} | {"kind": "registered"}],
  "sip_username": "...", "sip_password": "..."}`` (stored as digest HA1 only; the registrar
  picks it up without restart)
* ``PUT  /api/operators/{user_id}/state`` -- supervisor/admin: set an operator's state (e.g. offline)
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, Field

from hotline_api.api.deps import CurrentUser, SessionDep, SettingsDep, client_ip, not_found, require_role
from hotline_api.models.governance import User
from hotline_api.models.operators import Operator
from hotline_api.services import audit
from hotline_api.services import operators as ops

router = APIRouter(prefix="/operators", tags=["operators"])

Manager = Annotated[User, Depends(require_role("supervisor", "admin"))]
Admin = Annotated[User, Depends(require_role("admin"))]


class StateIn(BaseModel):
    state: str = Field(max_length=16)
    reason: str | None = Field(default=None, max_length=255)


class ContactIn(BaseModel):
    kind: str = Field(default="static", max_length=16)
    uri: str = Field(default="", max_length=255)
    priority: int | None = Field(default=None, ge=0, le=10_000)
    enabled: bool = True


class ProfileIn(BaseModel):
    contacts: list[ContactIn] | None = Field(default=None, max_length=10)
    sip_username: str | None = Field(default=None, max_length=64)
    sip_password: str | None = Field(default=None, max_length=128)


def _registrar(settings) -> str:
    return f"{settings.sip_host}:{settings.sip_port}"


def _bad(e: Exception) -> HTTPException:
    return HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(e))


@router.get("/me")
def my_profile(session: SessionDep, settings: SettingsDep, user: CurrentUser) -> dict:
    op = ops.get_for_user(session, user.id)
    if op is None:
        raise not_found()
    return ops.operator_json(op, registrar=_registrar(settings), with_user=user)


@router.put("/me/state")
def set_my_state(body: StateIn, request: Request, session: SessionDep, settings: SettingsDep, user: CurrentUser) -> dict:
    op = ops.get_for_user(session, user.id)
    if op is None:
        raise not_found()
    try:
        ops.set_state(session, op, body.state, body.reason)
    except ops.OperatorError as e:
        raise _bad(e) from None
    audit.record(session, "operator.state", actor=user, object_type="operator", object_id=op.id, ip=client_ip(request),
                 detail={"state": body.state, "reason": body.reason})
    session.commit()
    return ops.operator_json(op, registrar=_registrar(settings), with_user=user)


@router.get("")
def list_operators(session: SessionDep, settings: SettingsDep, user: Manager) -> dict:
    rows = session.query(Operator, User).join(User, User.id == Operator.user_id).order_by(User.username).all()
    return {"operators": [ops.operator_json(op, registrar=_registrar(settings), with_user=u) for op, u in rows]}


@router.put("/{user_id}")
def put_profile(user_id: str, body: ProfileIn, request: Request, session: SessionDep, settings: SettingsDep,
                admin: Admin) -> dict:
    target = session.get(User, user_id)
    if target is None:
        raise not_found()
    realm = getattr(settings, "sip_registrar_realm", "12388")
    try:
        contacts = None if body.contacts is None else [c.model_dump(exclude_none=True) for c in body.contacts]
        op = ops.ensure_operator(session, target, contacts=contacts, sip_username=body.sip_username,
                                 sip_password=body.sip_password, realm=realm)
    except ops.OperatorError as e:
        session.rollback()
        raise _bad(e) from None
    audit.record(session, "operator.profile", actor=admin, object_type="operator", object_id=op.id,
                 ip=client_ip(request), detail={"contacts": contacts, "sip_username": body.sip_username,
                                                "sip_password_changed": body.sip_password is not None})
    session.commit()
    return ops.operator_json(op, registrar=_registrar(settings), with_user=target)


@router.put("/{user_id}/state")
def put_state(user_id: str, body: StateIn, request: Request, session: SessionDep, settings: SettingsDep,
              manager: Manager) -> dict:
    op = ops.get_for_user(session, user_id)
    if op is None:
        raise not_found()
    try:
        ops.set_state(session, op, body.state, body.reason)
    except ops.OperatorError as e:
        raise _bad(e) from None
    audit.record(session, "operator.state", actor=manager, object_type="operator", object_id=op.id,
                 ip=client_ip(request), detail={"state": body.state, "reason": body.reason})
    session.commit()
    return ops.operator_json(op, registrar=_registrar(settings), with_user=session.get(User, user_id))
