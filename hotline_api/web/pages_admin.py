"""Admin pages: users and roles, working-day calendar overrides (and the official holiday schedule of
years ``chinese_calendar`` does not know), retention policies, prompt files (upload with a preview
player), the ASR model status. Admins never see content (recordings, transcripts, drafts)."""
from __future__ import annotations

import os
import tempfile
from datetime import date, datetime, timezone
from pathlib import Path
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from sqlalchemy import delete, func, select

from hotline_api.models.cases import HolidayOverride
from hotline_api.models.governance import PERMISSIONS, ROLES, User
from hotline_api.services import audit, auth, calendar as cal_svc, retention, user_admin
from hotline_api.web.core import (
    ROLE_LABELS,
    AdminUser,
    PageNotFound,
    PageRoute,
    SessionDep,
    SettingsDep,
    client_ip,
    render,
)

router = APIRouter(route_class=PageRoute, include_in_schema=False)

MAX_PROMPT_BYTES = 20 * 1024 * 1024
RETENTION_LABELS = {"no_content": "无实质内容的录音", "voicemail_no_case": "未关联案件的留言",
                    "case_archived": "关联案件的录音（自案件归档起）", "other": "其他录音（未整理的来电）"}
USER_ERRORS = (("already exists", "用户名已存在"), ("unknown role", "角色无效"), ("cannot deactivate themselves", "不能停用自己的账号"),
               ("last active admin", "至少需要保留一个启用的系统管理员"), ("must be text", "输入过长"))


def _user_error(msg: str) -> str:
    for key, text in USER_ERRORS:
        if key in msg:
            return text
    return msg


def _back(path: str, **q: str) -> RedirectResponse:
    return RedirectResponse(path + ("?" + urlencode(q) if q else ""), status_code=303)


# -------------------------------------------------------------------------------------- users
@router.get("/admin/users")
def users(request: Request, session: SessionDep, user: AdminUser, msg: str = "", err: str = "") -> Response:
    rows = session.execute(select(User).order_by(User.role, User.username)).scalars().all()
    return render(request, "admin/users.html", {"rows": rows, "roles": ROLES, "perms": PERMISSIONS, "msg": msg[:200],
                                                "err": err[:200], "otp": None}, active="users")


@router.post("/admin/users")
async def user_create(request: Request, session: SessionDep, settings: SettingsDep, user: AdminUser) -> Response:
    form = await request.form()
    try:
        new, otp = auth.create_user(session, (form.get("username") or "").strip(), form.get("role") or "",
                                    None, unit=(form.get("unit") or "").strip() or None,
                                    permissions=["identity"] if form.get("identity") == "1" else [],
                                    display_name=(form.get("display_name") or "").strip() or None, actor=user,
                                    settings=settings, ip=client_ip(request))
        session.commit()
    except auth.UserError as e:
        session.rollback()
        return _back("/admin/users", err=_user_error(str(e)))
    rows = session.execute(select(User).order_by(User.role, User.username)).scalars().all()
    # the one-time password is shown once, on this response only (never in a URL or a log)
    return render(request, "admin/users.html", {"rows": rows, "roles": ROLES, "perms": PERMISSIONS, "msg": "",
                                                "err": "", "otp": (new.username, otp)}, active="users")


@router.post("/admin/users/{user_id}")
async def user_update(request: Request, user_id: str, session: SessionDep, settings: SettingsDep, user: AdminUser) -> Response:
    target = session.get(User, user_id) if len(user_id) <= 64 else None
    if target is None:
        raise PageNotFound()
    form = await request.form()
    if form.get("action") == "reset":
        pw = user_admin.reset_password(session, user, target, ip=client_ip(request), settings=settings)
        session.commit()
        rows = session.execute(select(User).order_by(User.role, User.username)).scalars().all()
        return render(request, "admin/users.html", {"rows": rows, "roles": ROLES, "perms": PERMISSIONS, "msg": "",
                                                    "err": "", "otp": (target.username, pw)}, active="users")
    changes = {"role": form.get("role") or target.role, "unit": (form.get("unit") or "").strip() or None,
               "permissions": ["identity"] if form.get("identity") == "1" else [],
               "active": form.get("active") == "1",
               "display_name": (form.get("display_name") or "").strip() or None}
    changes = {k: v for k, v in changes.items()
               if v != ({"permissions": sorted(target.permissions), "active": bool(target.active)}.get(k, getattr(target, k)))}
    if not changes:
        return _back("/admin/users", msg="没有变化")
    try:
        user_admin.update_user(session, user, target, changes, ip=client_ip(request))
        session.commit()
    except auth.UserError as e:
        session.rollback()
        return _back("/admin/users", err=_user_error(str(e)))
    return _back("/admin/users", msg=f"已保存 {target.username}")


# ----------------------------------------------------------------------------------- calendar
@router.get("/admin/calendar")
def calendar_page(request: Request, session: SessionDep, settings: SettingsDep, user: AdminUser, msg: str = "",
                  err: str = "") -> Response:
    today = datetime.now(timezone.utc).date()
    wc = cal_svc.WorkCalendar.from_db(session)
    first, last = cal_svc.package_years()
    years = [(y, wc.year_status(y)) for y in range(today.year - 1, today.year + 3)]
    rows = session.execute(select(HolidayOverride).where(HolidayOverride.year >= today.year - 1)
                           .order_by(HolidayOverride.day)).scalars().all()
    return render(request, "admin/calendar.html", {"warnings": wc.warnings(today), "years": years, "rows": rows,
                                                   "pkg": (first, last), "msg": msg[:200], "err": err[:200],
                                                   "schedule": _schedule_info(session)}, active="calendar")


WEEKDAYS = "一二三四五六日"


def _schedule_info(session) -> dict | None:
    """The weekly working hours (``services.operators.weekly_schedule``), for display."""
    try:
        from hotline_api.services import operators as ops

        tz, weekly = ops.weekly_schedule(session)
    except Exception:  # noqa: BLE001 - operators tables absent: nothing to show
        session.rollback()
        return None
    return {"tz": tz, "days": [(f"星期{WEEKDAYS[d]}", "、".join(f"{a}–{b}" for a, b in weekly.get(d, [])) or "不接听")
                               for d in range(7)]}


def _dates(raw: str) -> list[date]:
    out = []
    for part in (raw or "").replace("，", ",").replace("、", ",").replace("\n", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if ".." in part:
            a, b = (date.fromisoformat(x.strip()) for x in part.split("..", 1))
            if b < a or (b - a).days > 60:
                raise ValueError(part)
            out += [date.fromordinal(o) for o in range(a.toordinal(), b.toordinal() + 1)]
        else:
            out.append(date.fromisoformat(part))
    return out


@router.post("/admin/calendar")
async def calendar_set(request: Request, session: SessionDep, user: AdminUser) -> Response:
    form = await request.form()
    action = form.get("action")
    try:
        if action == "override":
            day = date.fromisoformat((form.get("day") or "").strip())
            cal_svc.set_override(session, day, form.get("kind") or "", note=(form.get("note") or "").strip()[:255] or None,
                                 actor=user.username)
            detail = {"day": day.isoformat(), "kind": form.get("kind")}
        elif action == "official":
            year = int(form.get("year") or 0)
            holidays, workdays = _dates(form.get("holidays") or ""), _dates(form.get("workdays") or "")
            if not holidays:
                raise ValueError("no holidays")
            n = cal_svc.enter_official_schedule(session, year, holidays, workdays, actor=user.username)
            detail = {"year": year, "dates": n}
        elif action == "delete":
            day = date.fromisoformat((form.get("day") or "").strip())
            session.execute(delete(HolidayOverride).where(HolidayOverride.day == day))
            detail = {"day": day.isoformat(), "deleted": True}
        else:
            raise ValueError("unknown action")
    except (ValueError, TypeError):
        session.rollback()
        return _back("/admin/calendar", err="日期或年份格式有误（日期格式 YYYY-MM-DD，区间用 .. 连接，且须属于所填年份）")
    audit.record(session, "calendar.override", actor=user, object_type="calendar", object_id=str(detail.get("day") or detail.get("year")),
                 ip=client_ip(request), detail=detail)
    session.commit()
    return _back("/admin/calendar", msg="已保存，立即生效")


# ---------------------------------------------------------------------------------- retention
@router.get("/admin/retention")
def retention_page(request: Request, session: SessionDep, user: AdminUser, msg: str = "", err: str = "") -> Response:
    policy = retention.load_policy(session)
    from recordings.retention import KINDS
    from hotline_api.models.governance import LegalHold, PurgeStub

    rows = [(k, RETENTION_LABELS.get(k, k), getattr(policy, f"{k}_days")) for k in KINDS]
    holds = session.execute(select(func.count(LegalHold.id)).where(LegalHold.released_at.is_(None))).scalar_one()
    purged = session.execute(select(func.count()).select_from(PurgeStub)).scalar_one()
    return render(request, "admin/retention.html", {"rows": rows, "holds": holds, "purged": purged, "msg": msg[:200],
                                                    "err": err[:200]}, active="retention")


@router.post("/admin/retention")
async def retention_set(request: Request, session: SessionDep, user: AdminUser) -> Response:
    form = await request.form()
    from recordings.retention import KINDS

    policy = retention.load_policy(session)
    changed = 0
    try:
        for k in KINDS:
            raw = (form.get(f"days_{k}") or "").strip()
            days = int(raw) if raw else None
            if days != getattr(policy, f"{k}_days"):
                retention.set_policy(session, k, days, actor=user)
                changed += 1
        session.commit()
    except (ValueError, retention.RetentionError):
        session.rollback()
        return _back("/admin/retention", err="天数须为非负整数；留空表示永久保存")
    return _back("/admin/retention", msg=f"已保存（{changed} 项变更）")


# ------------------------------------------------------------------------------------ prompts
def _prompt_names() -> dict[str, str]:
    from telephony.prompts import PROMPTS

    return dict(PROMPTS)


@router.get("/admin/prompts")
def prompts_page(request: Request, settings: SettingsDep, user: AdminUser, msg: str = "", err: str = "") -> Response:
    import soundfile as sf

    rows = []
    for name, text in _prompt_names().items():
        path = settings.prompts_dir / f"{name}.wav"
        info = None
        if path.is_file():
            try:
                i = sf.info(str(path))
                info = {"seconds": i.frames / i.samplerate if i.samplerate else 0, "rate": i.samplerate,
                        "channels": i.channels, "mtime": datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)}
            except Exception:  # noqa: BLE001 - shown as unreadable
                info = {"error": True}
        rows.append((name, text, info))
    return render(request, "admin/prompts.html", {"rows": rows, "msg": msg[:200], "err": err[:200],
                                                  "max_mb": MAX_PROMPT_BYTES // (1024 * 1024)}, active="prompts")


@router.get("/admin/prompts/{name}.wav")
def prompt_audio(name: str, settings: SettingsDep, user: AdminUser) -> Response:
    if name not in _prompt_names():
        raise PageNotFound()
    path = settings.prompts_dir / f"{name}.wav"
    if not path.is_file():
        raise PageNotFound()
    return FileResponse(path, media_type="audio/wav", headers={"Cache-Control": "no-store"})


@router.post("/admin/prompts/{name}")
async def prompt_upload(request: Request, name: str, settings: SettingsDep, session: SessionDep, user: AdminUser) -> Response:
    """Replace a prompt: the upload must be audio soundfile can read; it is written atomically (a
    broken upload never replaces a working prompt)."""
    from telephony.prompts import PromptError, load_prompt

    if name not in _prompt_names():
        raise PageNotFound()
    form = await request.form()
    up = form.get("file")
    if up is None or not hasattr(up, "read"):
        return _back("/admin/prompts", err="请选择要上传的音频文件")
    data = await up.read(MAX_PROMPT_BYTES + 1)
    if len(data) > MAX_PROMPT_BYTES:
        return _back("/admin/prompts", err=f"文件过大（不能超过 {MAX_PROMPT_BYTES // (1024 * 1024)} MB）")
    settings.prompts_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".upload", dir=settings.prompts_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            p = load_prompt(Path(tmp), name)
        except PromptError:
            return _back("/admin/prompts", err="无法识别的音频文件，请上传 WAV（单声道 16 kHz 最佳）")
        import hashlib

        os.replace(tmp, settings.prompts_dir / f"{name}.wav")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    audit.record(session, "prompt.replace", actor=user, object_type="prompt", object_id=name, ip=client_ip(request),
                 detail={"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "rate": p.rate if hasattr(p, "rate") else None})
    session.commit()
    return _back("/admin/prompts", msg=f"已替换提示音 {name}")


# ---------------------------------------------------------------------------------------- ASR
@router.get("/admin/asr")
def asr_page(request: Request, session: SessionDep, settings: SettingsDep, user: AdminUser) -> Response:
    from asr.models import model_status

    models = []
    for label, d in (("实时识别", settings.live_model_dir), ("批量识别", settings.batch_model_dir)):
        try:
            st = model_status(d)
        except Exception as e:  # noqa: BLE001 - show the problem instead of failing the page
            st = f"error: {e}"
        models.append((label, d, st))
    installed = sorted(p.name for p in settings.models_dir.glob("*") if p.is_dir() and not p.name.startswith(".")) \
        if settings.models_dir.is_dir() else []
    jobs = {}
    try:
        from hotline_api.db.session import make_engine
        from hotline_api.services import transcription

        jobs = transcription.job_counts(make_engine(settings.db_url))
    except Exception:  # noqa: BLE001 - ASR tables absent
        jobs = {}
    return render(request, "admin/asr.html", {"models": models, "installed": installed, "jobs": jobs}, active="asr")


# ----------------------------------------------------------------------------- recording pipeline
@router.get("/admin/pipeline")
def pipeline_page(request: Request, session: SessionDep, settings: SettingsDep, user: AdminUser) -> Response:
    """How many recordings are in each stage of the recording chain, the oldest in each, and the ones
    stuck or quarantined (ids, ages and reasons only: no content, no caller)."""
    from hotline_api.db.session import session_factory
    from hotline_api.services import pipeline

    st = pipeline.status(session_factory(settings.db_url), settings)
    return render(request, "admin/pipeline.html", {"st": st, "order": pipeline.STAGES,
                                                   "fmt_age": _fmt_age}, active="pipeline")


def _fmt_age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(seconds)
    if s < 60:
        return f"{s} 秒"
    if s < 3600:
        return f"{s // 60} 分 {s % 60} 秒"
    if s < 86400:
        return f"{s // 3600} 小时 {s % 3600 // 60} 分"
    return f"{s // 86400} 天 {s % 86400 // 3600} 小时"


__all__ = ["router", "ROLE_LABELS"]
