"""Authentication routes (mounted under ``/api``):

* ``POST /api/auth/token``  form ``username``, ``password`` -> ``{"access_token", "token_type": "bearer"}``
* ``POST /api/auth/login``  form ``username``, ``password`` -> session cookie (HttpOnly) + CSRF cookie;
  body ``{"csrf_token", "must_change_password", "user"}``. Send the CSRF token back in the
  ``X-CSRF-Token`` header on every POST/PUT/PATCH/DELETE.
  A throttled address (too many failed logins from it) gets 429 with ``Retry-After``, unhashed.
* ``POST /api/auth/logout`` ends the cookie session (``?all=1``: every cookie session and every
  token of the user, on every device)
* ``POST /api/auth/password`` form ``old_password``, ``new_password``
* ``GET  /api/auth/me``
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, Response, status

from hotline_api.api.deps import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    CurrentUserAnyState,
    SessionDep,
    SettingsDep,
    client_ip,
)
from hotline_api.models.governance import User
from hotline_api.services import audit, auth

router = APIRouter(prefix="/auth", tags=["auth"])


def user_json(user: User) -> dict:
    return {"id": user.id, "username": user.username, "display_name": user.display_name, "role": user.role,
            "unit": user.unit, "permissions": sorted(user.permissions),
            "must_change_password": bool(user.must_change_password)}


def _login(request: Request, session, settings, username: str, password: str) -> User:
    try:
        return auth.authenticate(session, username, password, ip=client_ip(request), settings=settings)
    except auth.Throttled as e:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, detail=str(e),
                            headers={"Retry-After": str(e.retry_after)}) from None
    except auth.AuthError as e:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=str(e),
                            headers={"WWW-Authenticate": "Bearer"}) from None


@router.post("/token")
def token(request: Request, session: SessionDep, settings: SettingsDep,
          username: Annotated[str, Form(max_length=256)], password: Annotated[str, Form(max_length=1024)]) -> dict:
    user = _login(request, session, settings, username, password)
    return {"access_token": auth.issue_token(settings, user), "token_type": "bearer",
            "must_change_password": bool(user.must_change_password)}


def _cookie_secure(settings) -> bool:
    return bool(getattr(settings, "cookie_secure", True))


@router.post("/login")
def login(request: Request, response: Response, session: SessionDep, settings: SettingsDep,
          username: Annotated[str, Form(max_length=256)], password: Annotated[str, Form(max_length=1024)]) -> dict:
    user = _login(request, session, settings, username, password)
    sess_token, csrf = auth.create_web_session(session, settings, user, ip=client_ip(request))
    session.commit()
    ttl = int(auth.AuthConfig.from_settings(settings).session_ttl.total_seconds())
    secure = _cookie_secure(settings)
    response.set_cookie(SESSION_COOKIE, sess_token, max_age=ttl, httponly=True, secure=secure, samesite="strict", path="/")
    response.set_cookie(CSRF_COOKIE, csrf, max_age=ttl, httponly=False, secure=secure, samesite="strict", path="/")
    return {"csrf_token": csrf, "must_change_password": bool(user.must_change_password), "user": user_json(user)}


@router.post("/logout")
def logout(request: Request, response: Response, session: SessionDep, user: CurrentUserAnyState,
           all: bool = False) -> dict:  # noqa: A002 - query parameter name
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        auth.end_web_session(session, cookie)
    ended = auth.end_all_sessions(session, user) if all else None
    audit.record(session, "auth.logout", actor=user, object_type="user", object_id=user.id, ip=client_ip(request),
                 detail={"all": all} if ended is None else {"all": True, "sessions_ended": ended})
    session.commit()
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    return {"ok": True}


@router.post("/password")
def change_password(request: Request, session: SessionDep, settings: SettingsDep, user: CurrentUserAnyState,
                    old_password: Annotated[str, Form(max_length=1024)],
                    new_password: Annotated[str, Form(max_length=1024)]) -> dict:
    try:
        auth.change_password(session, user, old_password, new_password, settings=settings, ip=client_ip(request))
    except auth.UserError as e:
        session.rollback()
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(e)) from None
    session.commit()
    # the old token/session is revoked (token_version bumped): log in again
    return {"ok": True, "relogin": True}


@router.get("/me")
def me(user: CurrentUserAnyState) -> dict:
    return user_json(user)
