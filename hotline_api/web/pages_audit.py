"""Auditor page: the audit log, searchable, newest first, with the hash chain's verification status
(computed on request, loaded by htmx so the list renders at once)."""
from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from hotline_api.services import audit
from hotline_api.web import queries
from hotline_api.web.core import AuditorUser, PageRoute, SessionDep, SettingsDep, page_number, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PER_PAGE = 50
_ACTION = re.compile(r"^[a-z_.*]{1,64}$")

ACTION_LABELS = {
    "auth.login": "登录", "auth.login_failed": "登录失败", "auth.login_locked": "登录锁定", "auth.logout": "退出",
    "user.create": "创建用户", "user.password": "修改密码", "user.update": "修改用户",
    "recording.store": "录音入库", "recording.play": "播放录音", "recording.view": "查看录音", "transcript.view": "查看转写",
    "review.assign": "分配审听", "review.stored": "确认存储", "review.organize": "整理录音", "review.escalate": "逾期上报",
    "review.alert_ack": "确认逾期提醒", "roster.set": "设置值班", "draft.view": "查看草稿", "draft.correct": "修改草稿",
    "case.view": "查看案件", "case.register": "受理登记", "identity.view": "查看身份信息", "retention.policy": "修改保留策略",
    "retention.purge": "销毁录音", "keys.rotate": "轮换密钥", "export.request": "申请导出", "export.approve": "批准导出",
    "alert.ack": "确认紧急提醒",
}


def _day(raw: str | None) -> date | None:
    """A filter day, or None when absent, malformed or outside 2000..2100 (no overflow further on)."""
    try:
        d = date.fromisoformat(raw) if raw else None
    except ValueError:
        return None
    return d if d is not None and 2000 <= d.year <= 2100 else None


@router.get("/audit")
def audit_page(request: Request, session: SessionDep, settings: SettingsDep, user: AuditorUser, action: str = "",
               actor: str = "", object_id: str = "", since: str = "", until: str = "", page: int = 1) -> Response:
    tz = queries.tz_of(settings)
    page = page_number(page)
    since_d, until_d = _day(since), _day(until)
    q = audit.AuditQuery(
        action=action.strip() if _ACTION.match(action.strip() or "-") else None,
        actor_name=actor.strip()[:64] or None, object_id=object_id.strip()[:64] or None,
        since=datetime.combine(since_d, time(0), tzinfo=tz) if since_d else None,
        until=datetime.combine(until_d + timedelta(days=1), time(0), tzinfo=tz) if until_d else None,
        limit=PER_PAGE + 1, offset=(page - 1) * PER_PAGE)
    rows = audit.search(session, q)
    has_next = len(rows) > PER_PAGE
    rows = rows[:PER_PAGE]
    params = {k: v for k, v in {"action": action, "actor": actor, "object_id": object_id, "since": since,
                                "until": until}.items() if v}
    return render(request, "audit/log.html", {
        "rows": rows, "page": page, "has_next": has_next, "f": params, "labels": ACTION_LABELS,
        "prev_url": "/audit?" + urlencode({**params, "page": page - 1}) if page > 1 else None,
        "next_url": "/audit?" + urlencode({**params, "page": page + 1}) if has_next else None,
        "bad_action": bool(action.strip()) and q.action is None,
    }, active="audit")


@router.get("/audit/verify")
def verify(request: Request, session: SessionDep, settings: SettingsDep, user: AuditorUser) -> Response:
    r = audit.verify(session, audit.anchor_log(settings))
    return render(request, "audit/_verify.html", {"r": r, "checked_at": datetime.now()})
