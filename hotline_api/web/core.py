"""Shared machinery of the console pages: templates, the page route class (login redirects and
HTML error pages), the cookie-session user with CSRF checks, role gates, menus, formatting.

Pages use the same cookie session as ``/api/auth/login`` (``hotline_session`` + ``hotline_csrf``).
Unsafe methods need the CSRF token, either in the ``X-CSRF-Token`` header (htmx requests: added by
``static/js/console.js`` from the CSRF cookie) or in a ``csrf_token`` form field (plain forms).

Without a session every page answers a redirect to ``/login`` (htmx requests: 401 with
``HX-Redirect``) whose body holds no content. A page of another role answers 404, as the API does.
"""
from __future__ import annotations

import hmac
import threading
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Callable
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from hotline_api.api.deps import CSRF_COOKIE, CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE, SessionDep, SettingsDep
from hotline_api.core.config import Settings
from hotline_api.models.governance import User
from hotline_api.services import auth, masking

WEB_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"

ROLE_LABELS = {"operator": "接线员", "recording_manager": "录音管理员", "supervisor": "主管",
               "auditor": "审计员", "admin": "系统管理员"}

# role -> [(key, label, href)]; the first entry is the role's home page
MENUS: dict[str, list[tuple[str, str, str]]] = {
    "operator": [("op", "接线台", "/op"), ("op-calls", "我的来电", "/op/calls"),
                 ("op-callbacks", "待回拨", "/op/callbacks")],
    "recording_manager": [("review", "待办录音", "/review"), ("review-done", "已完成", "/review?done=1")],
    "supervisor": [("drafts", "草稿审核", "/drafts"), ("cases", "案件", "/cases"), ("alerts", "紧急提醒", "/alerts"),
                   ("roster", "值班表", "/roster"), ("callbacks", "待回拨", "/callbacks"), ("stats", "统计", "/stats"),
                   ("report", "分析报告", "/report")],
    "auditor": [("audit", "审计日志", "/audit")],
    "admin": [("users", "用户与角色", "/admin/users"), ("calendar", "工作时间", "/admin/calendar"),
              ("retention", "保留策略", "/admin/retention"), ("prompts", "提示音", "/admin/prompts"),
              ("asr", "识别模型", "/admin/asr"), ("pipeline", "录音处理", "/admin/pipeline")],
}

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                "img-src 'self' data:; media-src 'self'; connect-src 'self'; "
                                "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"),
}


# ------------------------------------------------------------------------------------ errors
class LoginRequired(Exception):
    pass


class PageNotFound(Exception):
    """Missing or not permitted (no enumeration): a 404 page."""


class PasswordChangeRequired(Exception):
    pass


class CsrfFailed(Exception):
    pass


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def _login_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    loc = "/login" if target in ("/", "/login") or request.method not in SAFE_METHODS else f"/login?next={quote(target, safe='')}"
    if is_htmx(request):
        return Response(status_code=401, headers={"HX-Redirect": loc})
    return RedirectResponse(loc, status_code=303)


class PageRoute(APIRoute):
    """Turns the page exceptions into redirects / HTML error pages and adds security headers."""

    def get_route_handler(self) -> Callable:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                response = await original(request)
            except LoginRequired:
                response = _login_redirect(request)
            except PasswordChangeRequired:
                response = (Response(status_code=403, headers={"HX-Redirect": "/password"}) if is_htmx(request)
                            else RedirectResponse("/password", status_code=303))
            except PageNotFound:
                response = error_page(request, 404, "页面不存在", "您要找的内容不存在，或您没有查看权限。")
            except CsrfFailed:
                response = error_page(request, 403, "请求已过期", "安全校验失败，请刷新页面后重试。")
            for k, v in SECURITY_HEADERS.items():
                response.headers.setdefault(k, v)
            return response

        return handler


# --------------------------------------------------------------------------------- templates
def _tz(settings: Settings | None = None) -> ZoneInfo:
    return ZoneInfo(getattr(settings, "timezone", None) or "Asia/Shanghai")


def fmt_dt(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    from hotline_api.core.config import get_settings

    return value.astimezone(_tz(get_settings())).strftime(fmt)


def fmt_iso(value: str | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """An ISO timestamp string (audit entries, case history) in local time."""
    if not value:
        return "—"
    try:
        return fmt_dt(datetime.fromisoformat(value), fmt)
    except ValueError:
        return value


def fmt_date(value: date | datetime | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return fmt_dt(value, "%Y-%m-%d")
    return value.strftime("%Y-%m-%d")


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(round(seconds))
    return f"{s // 60}:{s % 60:02d}" if s < 3600 else f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def fmt_pct(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value * 100:.{digits}f}%"


def fmt_money(value: int | float | None) -> str:
    if value is None:
        return "—"
    if value >= 10000:
        return f"{value / 10000:g} 万元"
    return f"{value:g} 元"


URGENT_KIND_LABELS = {"self_harm": "自伤风险", "violence": "暴力威胁", "mass_incident": "群体性事件",
                      "evidence_or_flight": "销毁证据或外逃"}


def urgent_kinds(kinds: str | None) -> str:
    parts = [k for k in (kinds or "").split(",") if k]
    return "、".join(URGENT_KIND_LABELS.get(k, k) for k in parts) or "紧急情况"


def draft_summary(draft: Any) -> str:
    """A draft's summary, masked (for lists)."""
    import json

    try:
        doc = json.loads(getattr(draft, "fields_json", None) or "{}")
    except ValueError:
        return ""
    names = [doc["reporter_name"]] if doc.get("reporter_name") else []
    phones = [doc["reporter_phone"]] if doc.get("reporter_phone") else []
    return masking.mask_text(doc.get("summary") or "", names=names, phones=phones) or ""


templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
templates.env.filters.update(dt=fmt_dt, isodt=fmt_iso, date=fmt_date, duration=fmt_duration, pct=fmt_pct, money=fmt_money,
                             mask_phone=masking.mask_phone, mask_name=masking.mask_name,
                             mask_text=lambda t: masking.mask_text(t), urgent_kinds=urgent_kinds,
                             draft_summary=draft_summary)
templates.env.globals.update(ROLE_LABELS=ROLE_LABELS)
templates.env.autoescape = True


def asset_version() -> str:
    """Changes when a static file changes (cache busting for ``/static/...?v=``)."""
    latest = 0.0
    for p in STATIC_DIR.rglob("*"):
        if p.is_file():
            latest = max(latest, p.stat().st_mtime)
    return str(int(latest))


_ASSET_V = asset_version()
templates.env.globals.update(asset_v=_ASSET_V)


def render(request: Request, name: str, ctx: dict[str, Any] | None = None, *, status_code: int = 200,
           active: str | None = None) -> HTMLResponse:
    ctx = dict(ctx or {})
    user: User | None = getattr(request.state, "page_user", None)
    ctx.setdefault("user", user)
    ctx.setdefault("menu", MENUS.get(user.role, []) if user is not None else [])
    ctx.setdefault("active", active)
    ctx.setdefault("csrf_token", getattr(request.state, "csrf_token", ""))
    return templates.TemplateResponse(request, name, ctx, status_code=status_code)


def error_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    return render(request, "error.html", {"title": title, "message": message, "status": status}, status_code=status)


# -------------------------------------------------------------------------------- page users
async def _page_user(request: Request, session: SessionDep) -> User:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise LoginRequired()
    try:
        user, ws = auth.web_session(session, token)
    except auth.TokenInvalid:
        raise LoginRequired() from None
    request.state.page_user = user
    request.state.csrf_token = ws.csrf_token
    request.state.web_session_id = ws.id
    if request.method.upper() not in SAFE_METHODS:
        supplied = request.headers.get(CSRF_HEADER)
        if not supplied:
            ctype = request.headers.get("content-type", "")
            if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
                form = await request.form()
                v = form.get("csrf_token")
                supplied = v if isinstance(v, str) else None
        # double submit: the value must equal the session's token (the cookie is checked when sent)
        cookie = request.cookies.get(CSRF_COOKIE)
        if not supplied or not hmac.compare_digest(supplied, ws.csrf_token) or (
                cookie is not None and not hmac.compare_digest(cookie, ws.csrf_token)):
            raise CsrfFailed()
    if user.must_change_password and request.url.path not in ("/password", "/logout"):
        raise PasswordChangeRequired()
    # end the read transaction of the session check: a handler that writes must not upgrade a stale
    # SQLite snapshot (WAL: "database is locked" without waiting) after other requests committed
    session.commit()
    return user


PageUser = Annotated[User, Depends(_page_user)]


def role_page(*roles: str) -> Callable[..., User]:
    allowed = frozenset(roles)

    def _dep(user: PageUser) -> User:
        if user.role not in allowed:
            raise PageNotFound()
        return user

    _dep.__name__ = f"page_role_{'_'.join(sorted(allowed))}"
    return _dep


OperatorUser = Annotated[User, Depends(role_page("operator"))]
ManagerUser = Annotated[User, Depends(role_page("recording_manager"))]
SupervisorUser = Annotated[User, Depends(role_page("supervisor"))]
AuditorUser = Annotated[User, Depends(role_page("auditor"))]
AdminUser = Annotated[User, Depends(role_page("admin"))]


def home_of(user: User) -> str:
    menu = MENUS.get(user.role)
    return menu[0][2] if menu else "/login"


# ----------------------------------------------------------------------------------- crypto
_crypto_lock = threading.Lock()


def crypto_context(request: Request, settings: Settings) -> Any:
    """The app's storage crypto context (``app.state.crypto``, shared with the content API),
    opened once: the master key is checked against the database before anything is read."""
    from hotline_api.db.session import session_factory
    from hotline_api.services import storage

    ctx = getattr(request.app.state, "crypto", None)
    if ctx is None:
        with _crypto_lock:
            ctx = getattr(request.app.state, "crypto", None)
            if ctx is None:
                ctx = storage.open_crypto(settings, session_factory(settings.db_url))
                request.app.state.crypto = ctx
    return ctx


@dataclass
class Pager:
    page: int
    per_page: int
    total: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


def page_number(raw: Any) -> int:
    try:
        return max(1, min(int(raw), 100000))
    except (TypeError, ValueError):
        return 1


def db_factory(session: Session):
    """A sessionmaker bound to the same engine as ``session`` (for audit.append etc.)."""
    from sqlalchemy.orm import sessionmaker

    return sessionmaker(bind=session.get_bind(), expire_on_commit=False, future=True)


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


__all__ = [
    "AdminUser", "AuditorUser", "ManagerUser", "OperatorUser", "PageRoute", "PageUser", "PageNotFound",
    "SessionDep", "SettingsDep", "SupervisorUser", "render", "templates", "home_of",
]
