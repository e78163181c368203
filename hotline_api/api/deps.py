"""FastAPI dependencies (``Annotated`` style): settings, DB session, the current user from a bearer
token or a cookie session (CSRF double-submit check on unsafe methods), and role/permission gates.

Use::

    @router.get("/recordings/{rid}")
    def get_recording(rid: str, session: SessionDep, user: CurrentUser): ...

    @router.get("/audit")
    def audit_log(user: Annotated[User, Depends(require_role("auditor"))]): ...

A user whose role is not allowed gets 404 (no enumeration) unless the gate says otherwise. A user
who must change the one-time password gets 403 ``password_change_required`` everywhere except the
routes that use ``CurrentUserAnyState`` (password change, me, logout).
"""
from __future__ import annotations

from typing import Annotated, Callable, Iterator

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.orm import Session

from hotline_api.core.config import Settings, get_settings
from hotline_api.db.session import session_factory
from hotline_api.models.governance import User
from hotline_api.services import auth

SESSION_COOKIE = "hotline_session"
CSRF_COOKIE = "hotline_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_settings_dep() -> Settings:
    return get_settings()


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def get_db(settings: SettingsDep) -> Iterator[Session]:
    with session_factory(settings.db_url)() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_db)]


def client_ip(request: Request) -> str | None:
    """The peer address (proxy headers are not trusted here; a reverse proxy setup would use
    uvicorn's --forwarded-allow-ips)."""
    return request.client.host if request.client else None


def _unauthorized(detail: str = "not authenticated") -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def _authenticate(request: Request, session: Session, settings: Settings) -> User:
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("bad authorization header")
        try:
            user = auth.user_from_token(session, settings, token.strip())
        except auth.TokenInvalid:
            raise _unauthorized("invalid or expired token") from None
        request.state.auth_via = "bearer"
    else:
        cookie = request.cookies.get(SESSION_COOKIE)
        if not cookie:
            raise _unauthorized()
        try:
            user, ws = auth.web_session(session, cookie)
        except auth.TokenInvalid:
            raise _unauthorized("session expired") from None
        if request.method.upper() not in SAFE_METHODS and not auth.check_csrf(
            ws, request.headers.get(CSRF_HEADER), request.cookies.get(CSRF_COOKIE)
        ):
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="CSRF token missing or wrong")
        request.state.auth_via = "cookie"
    request.state.user = user
    # End the session check's read transaction: a handler that then writes must not try to upgrade
    # a stale SQLite snapshot (WAL answers "database is locked" at once when others committed).
    session.commit()
    return user


def get_current_user_any_state(request: Request, session: SessionDep, settings: SettingsDep) -> User:
    return _authenticate(request, session, settings)


def get_current_user(request: Request, session: SessionDep, settings: SettingsDep) -> User:
    user = _authenticate(request, session, settings)
    if user.must_change_password:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="password_change_required")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]
CurrentUserAnyState = Annotated[User, Depends(get_current_user_any_state)]


def require_role(*roles: str, status_code: int = status.HTTP_404_NOT_FOUND) -> Callable[..., User]:
    """A dependency that lets only ``roles`` through; others get ``status_code`` (404 by default)."""
    allowed = frozenset(roles)

    def _dep(user: CurrentUser) -> User:
        if user.role not in allowed:
            raise HTTPException(status_code, detail="not found" if status_code == 404 else "forbidden")
        return user

    _dep.__name__ = f"require_role_{'_'.join(sorted(allowed))}"
    return _dep


def require_permission(permission: str, status_code: int = status.HTTP_404_NOT_FOUND) -> Callable[..., User]:
    def _dep(user: CurrentUser) -> User:
        if not user.has_permission(permission):
            raise HTTPException(status_code, detail="not found" if status_code == 404 else "forbidden")
        return user

    _dep.__name__ = f"require_permission_{permission}"
    return _dep


def not_found() -> HTTPException:
    """The one answer for anything missing or not permitted (no enumeration)."""
    return HTTPException(status.HTTP_404_NOT_FOUND, detail="not found")
