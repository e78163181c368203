"""Login, logout, one-time password change, the root redirect and the static assets."""
from __future__ import annotations

import mimetypes
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from hotline_api.api.deps import CSRF_COOKIE, SESSION_COOKIE, SessionDep, SettingsDep
from hotline_api.services import audit, auth
from hotline_api.web.core import (
    STATIC_DIR,
    SECURITY_HEADERS,
    LoginRequired,
    PageRoute,
    PageUser,
    client_ip,
    home_of,
    render,
)

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def _safe_next(raw: str | None) -> str | None:
    """Only local paths (no scheme, no host, no protocol-relative //) are followed after login."""
    if not raw or not raw.startswith("/") or raw.startswith("//") or "\\" in raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc:
        return None
    return raw


@router.get("/")
def root(request: Request, session: SessionDep) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        try:
            user, _ = auth.web_session(session, token)
            return RedirectResponse("/password" if user.must_change_password else home_of(user), status_code=303)
        except auth.TokenInvalid:
            pass
    return RedirectResponse("/login", status_code=303)


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:  # noqa: A002 - query name
    return render(request, "login.html", {"next": _safe_next(next) or "", "error": None, "username": ""})


@router.post("/login")
def login_submit(request: Request, session: SessionDep, settings: SettingsDep,
                 username: Annotated[str, Form(max_length=256)] = "", password: Annotated[str, Form(max_length=1024)] = "",
                 next: Annotated[str, Form(max_length=2048)] = "") -> Response:  # noqa: A002
    try:
        user = auth.authenticate(session, username, password, ip=client_ip(request), settings=settings)
    except auth.Throttled as e:  # this address: refused before any password check
        resp = render(request, "login.html", {"next": _safe_next(next) or "", "error": str(e),
                                              "username": username[:64]}, status_code=429)
        resp.headers["Retry-After"] = str(e.retry_after)
        return resp
    except auth.AuthError as e:  # the message never says whether the user exists
        return render(request, "login.html", {"next": _safe_next(next) or "", "error": str(e), "username": username[:64]},
                      status_code=401)
    token, csrf = auth.create_web_session(session, settings, user, ip=client_ip(request))
    session.commit()
    ttl = int(auth.AuthConfig.from_settings(settings).session_ttl.total_seconds())
    secure = bool(getattr(settings, "cookie_secure", True))
    target = "/password" if user.must_change_password else (_safe_next(next) or home_of(user))
    resp = RedirectResponse(target, status_code=303)
    resp.set_cookie(SESSION_COOKIE, token, max_age=ttl, httponly=True, secure=secure, samesite="strict", path="/")
    resp.set_cookie(CSRF_COOKIE, csrf, max_age=ttl, httponly=False, secure=secure, samesite="strict", path="/")
    return resp


@router.post("/logout")
def logout(request: Request, session: SessionDep, user: PageUser, all: bool = False) -> Response:  # noqa: A002
    """Log out; ``?all=1``: out of every console session and API token of the user."""
    auth.end_web_session(session, request.cookies.get(SESSION_COOKIE) or "")
    detail: dict = {"via": "console"}
    if all:
        detail.update(all=True, sessions_ended=auth.end_all_sessions(session, user))
    audit.record(session, "auth.logout", actor=user, object_type="user", object_id=user.id, ip=client_ip(request),
                 detail=detail)
    session.commit()
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    resp.delete_cookie(CSRF_COOKIE, path="/")
    if request.headers.get("hx-request") == "true":
        resp = Response(status_code=200, headers={"HX-Redirect": "/login"})
        resp.delete_cookie(SESSION_COOKIE, path="/")
        resp.delete_cookie(CSRF_COOKIE, path="/")
    return resp


@router.get("/password")
def password_page(request: Request, user: PageUser) -> Response:
    return render(request, "password.html", {"error": None, "forced": bool(user.must_change_password)})


@router.post("/password")
def password_submit(request: Request, session: SessionDep, settings: SettingsDep, user: PageUser,
                    old_password: Annotated[str, Form(max_length=1024)] = "",
                    new_password: Annotated[str, Form(max_length=1024)] = "",
                    new_password2: Annotated[str, Form(max_length=1024)] = "") -> Response:
    forced = bool(user.must_change_password)
    if new_password != new_password2:
        return render(request, "password.html", {"error": "两次输入的新密码不一致", "forced": forced}, status_code=400)
    try:
        auth.change_password(session, user, old_password, new_password, settings=settings, ip=client_ip(request))
    except auth.UserError as e:
        session.rollback()
        return render(request, "password.html", {"error": str(e), "forced": forced}, status_code=400)
    session.commit()
    # every session of the user ended with the change: log in again with the new password
    resp = RedirectResponse("/login?changed=1", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    resp.delete_cookie(CSRF_COOKIE, path="/")
    return resp


_STATIC_ROOT = STATIC_DIR.resolve()


@router.get("/static/{path:path}")
def static(path: str) -> Response:
    """Assets shipped with the package; the path must stay inside ``static/``."""
    if not path or "\x00" in path or len(path) > 200:
        return Response(status_code=404)
    target = (_STATIC_ROOT / path).resolve()
    if _STATIC_ROOT not in target.parents or not target.is_file():
        return Response(status_code=404)
    media = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    if target.suffix == ".js":
        media = "text/javascript"
    return FileResponse(target, media_type=media, headers={"Cache-Control": "public, max-age=86400",
                                                           "X-Content-Type-Options": "nosniff"})


__all__ = ["router", "LoginRequired", "SECURITY_HEADERS"]
