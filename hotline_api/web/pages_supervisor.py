"""Supervisor pages: draft review (fields with their evidence highlighted in the transcript, edit,
register as a case), the case list with filters, the case page (history, deadlines, reporter
feedback, lifecycle actions), urgent and review alerts to acknowledge, the duty roster.

Unit scoping is the content API's (``services.access``): a supervisor of a unit sees and acts on
the drafts, cases and alerts of that unit only (anything else answers the 404 page, as a missing
id); a supervisor without a unit on every unit's. Duplicate links never name another unit's draft
or case (``services.case_links.duplicate_links``)."""
from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from hotline_api.db.session import session_factory
from hotline_api.drafting.classify import CATEGORIES
from hotline_api.drafting.lexicon import ISSUE_RULES
from hotline_api.models.calls import Call, Recording
from hotline_api.models.cases import HANDLING_MODES, Case, CaseDeadline, Draft, DraftCorrection, UrgentAlert
from hotline_api.models.governance import DutyRoster, ReviewAlert, User
from hotline_api.services import access, audit, case_links, cases as case_svc, masking, review
from hotline_api.services.calendar import WorkCalendar
from hotline_api.web import queries
from hotline_api.web.core import (
    PageNotFound,
    PageRoute,
    SessionDep,
    SettingsDep,
    SupervisorUser,
    client_ip,
    page_number,
    render,
)
from hotline_api.web.transcript_view import FIELD_LABELS, evidence_pieces, join_list, masker, split_list

router = APIRouter(route_class=PageRoute, include_in_schema=False)

ISSUE_TYPES = tuple(ISSUE_RULES)
_SUBJECT_KEY = re.compile(r"^subject_(?:name|title|unit)_(\d{1,3})$")
EDITABLE = ("category", "issue_types", "subjects", "places", "amount_yuan", "real_name", "urgent", "duplicate_hint",
            "summary")


def _page_url(request: Request):
    def make(page: int) -> str:
        q = dict(request.query_params)
        q["page"] = str(page)
        return request.url.path + "?" + urlencode(q)
    return make


def _today(settings) -> date:
    return datetime.now(queries.tz_of(settings)).date()


# ------------------------------------------------------------------------------------ drafts
@router.get("/drafts")
def drafts(request: Request, session: SessionDep, user: SupervisorUser, status: str = "draft", urgent: int = 0,
           page: int = 1) -> Response:
    if status not in queries.DRAFT_STATUS_LABELS:
        status = "draft"
    res = queries.drafts_page(session, user, status=status, page=page_number(page), urgent_only=bool(urgent))
    items = [(d, json.loads(d.fields_json or "{}")) for (d,) in res.items]
    return render(request, "sup/drafts.html", {"res": res, "pager": res, "items": items, "status": status,
                                               "urgent": bool(urgent), "page_url": _page_url(request),
                                               "status_labels": queries.DRAFT_STATUS_LABELS}, active="drafts")


def _load_draft(session, user, draft_id: str, settings) -> Draft:
    try:
        return access.visible_draft(session, user, draft_id, settings=settings)
    except access.NotVisible:
        raise PageNotFound() from None


def _draft_ctx(session, d: Draft, settings, user: User) -> dict[str, Any]:
    doc = json.loads(d.fields_json or "{}")
    call = session.get(Call, d.call_id) if d.call_id else None
    mask = masker(access.identity_terms(session, recording_id=d.recording_id, draft=d, call=call))
    pieces = evidence_pieces(d.input_text, doc.get("evidence"), mask)
    summary_masked = mask(doc.get("summary") or "")
    evidence_fields = {k for k, v in (doc.get("evidence") or {}).items() if v}
    case_row = session.get(Case, d.case_id) if d.case_id else None
    # another unit's earlier draft is never named: no id, no case number (case_links.duplicate_links)
    links = case_links.duplicate_links(session, user, d, settings=settings)
    hidden_reasons = access.unique(l.reason for l in links if not l.visible)
    corrections = session.execute(select(DraftCorrection).where(DraftCorrection.draft_id == d.id)
                                  .order_by(DraftCorrection.id)).scalars().all()
    alert = session.execute(select(UrgentAlert).where(UrgentAlert.draft_id == d.id)).scalars().first()
    subjects = doc.get("subjects") or []
    return {
        "d": d, "doc": doc, "pieces": pieces, "call": call,
        "reporter_name_masked": masking.mask_name(doc.get("reporter_name")) if doc.get("reporter_name") else "",
        "reporter_phone_masked": masking.mask_phone(doc.get("reporter_phone")) if doc.get("reporter_phone") else "",
        "summary_text": summary_masked, "summary_editable": summary_masked == (doc.get("summary") or ""),
        "evidence_fields": evidence_fields, "categories": CATEGORIES,
        "issue_types": list(ISSUE_TYPES) + [t for t in (doc.get("issue_types") or []) if t not in ISSUE_TYPES],
        "subjects": subjects, "places_text": join_list(doc.get("places")), "case_row": case_row,
        "links": [l for l in links if l.visible], "hidden_link_reasons": hidden_reasons,
        "other_unit_text": case_links.OTHER_UNIT_TEXT, "corrections": corrections, "alert": alert,
        "FIELD_LABELS": FIELD_LABELS,
        "confidence": doc.get("confidence") or {}, "routing": doc.get("routing"),
    }


@router.get("/drafts/{draft_id}")
def draft_page(request: Request, draft_id: str, session: SessionDep, settings: SettingsDep, user: SupervisorUser,
               msg: str = "") -> Response:
    d = _load_draft(session, user, draft_id, settings)
    audit.append(session_factory(settings.db_url), "draft.view", actor=user, object_type="draft", object_id=d.id,
                 ip=client_ip(request))
    ctx = _draft_ctx(session, d, settings, user)
    ctx["msg"] = msg[:200]
    return render(request, "sup/draft.html", ctx, active="drafts")


def _form_values(form, doc: dict) -> tuple[dict[str, Any], list[str]]:
    """The editable fields from the submitted form, and input errors (Chinese)."""
    errors: list[str] = []
    out: dict[str, Any] = {}
    cat = form.get("category")
    if cat is not None:
        if cat not in CATEGORIES:
            errors.append("类别无效")
        else:
            out["category"] = cat
    out["issue_types"] = [t for t in form.getlist("issue_types") if isinstance(t, str) and t.strip()]
    idx = sorted({int(m.group(1)) for k in form.keys() if (m := _SUBJECT_KEY.match(k))})
    subjects = []
    for i in idx[:50]:
        sj = {k: (form.get(f"subject_{k}_{i}") or "").strip()[:128] for k in ("name", "title", "unit")}
        if any(sj.values()):
            subjects.append(sj)
    out["subjects"] = subjects
    out["places"] = split_list(form.get("places"))
    raw_amount = (form.get("amount_yuan") or "").strip().replace(",", "").replace("，", "")
    if raw_amount:
        try:
            amount = int(float(raw_amount))
            if amount < 0:
                raise ValueError
            out["amount_yuan"] = amount
        except ValueError:
            errors.append("涉及金额须为非负整数（单位：元）")
    else:
        out["amount_yuan"] = None
    for flag in ("real_name", "urgent", "duplicate_hint"):
        out[flag] = form.get(flag) == "1"
    if "summary" in form:
        out["summary"] = (form.get("summary") or "").strip()[:2000]
    return out, errors


@router.post("/drafts/{draft_id}")
async def draft_save(request: Request, draft_id: str, session: SessionDep, settings: SettingsDep,
                     user: SupervisorUser) -> Response:
    d = _load_draft(session, user, draft_id, settings)
    form = await request.form()
    action = form.get("action") or "save"
    if d.status != "draft":
        return RedirectResponse(f"/drafts/{d.id}", status_code=303)
    doc = json.loads(d.fields_json or "{}")
    values, errors = _form_values(form, doc)
    if errors:
        ctx = _draft_ctx(session, d, settings, user)
        ctx["errors"] = errors
        return render(request, "sup/draft.html", ctx, status_code=400, active="drafts")
    changed = []
    reason = (form.get("reason") or "").strip()[:500] or None
    try:
        for field in EDITABLE:
            if field not in values:
                continue
            old = doc.get(field)
            new = values[field]
            if field in ("issue_types", "places") and sorted(old or []) == sorted(new):
                continue
            if field == "subjects" and [{k: (s.get(k) or "") for k in ("name", "title", "unit")} for s in (old or [])] == new:
                continue
            if field == "summary" and (old or "") == new:
                continue
            if field not in ("issue_types", "places", "subjects", "summary") and old == new:
                continue
            case_svc.correct_draft(session, d.id, field, new, actor=user.username, reason=reason, commit=False)
            changed.append(field)
        if changed:
            audit.record(session, "draft.correct", actor=user, object_type="draft", object_id=d.id,
                         ip=client_ip(request), detail={"fields": changed})
        session.commit()
    except case_svc.CaseError as e:
        session.rollback()
        ctx = _draft_ctx(session, d, settings, user)
        ctx["errors"] = [f"保存失败：{e}"]
        return render(request, "sup/draft.html", ctx, status_code=400, active="drafts")
    if action == "register":
        try:
            c = case_svc.register_draft(session_factory(settings.db_url), d.id, user.username, settings=settings)
        except case_svc.CaseError as e:
            ctx = _draft_ctx(session, d, settings, user)
            ctx["errors"] = [f"受理失败：{e}"]
            return render(request, "sup/draft.html", ctx, status_code=409, active="drafts")
        audit.append(session_factory(settings.db_url), "case.register", actor=user, object_type="case", object_id=c.id,
                     ip=client_ip(request), detail={"number": c.number, "draft_id": d.id})
        return RedirectResponse(f"/drafts/{d.id}?msg=registered", status_code=303)
    if action == "discard":
        why = reason or "主管审核作废"
        case_svc.discard_draft(session, d.id, user.username, why)
        return RedirectResponse(f"/drafts/{d.id}?msg=discarded", status_code=303)
    return RedirectResponse(f"/drafts/{d.id}?msg={'saved' if changed else 'unchanged'}", status_code=303)


@router.get("/drafts/{draft_id}/identity")
def draft_identity(request: Request, draft_id: str, session: SessionDep, settings: SettingsDep,
                   user: SupervisorUser) -> Response:
    """Reveal the reporter's name and phone (``identity`` permission only; audited)."""
    d = _load_draft(session, user, draft_id, settings)
    if not user.has_permission("identity"):
        raise PageNotFound()
    doc = json.loads(d.fields_json or "{}")
    vals = masking.reveal(session, user, "draft", d.id, {"reporter_name": doc.get("reporter_name") or "",
                                                         "reporter_phone": doc.get("reporter_phone") or ""},
                          ip=client_ip(request))
    session.commit()
    return render(request, "sup/_identity.html", {"vals": vals})


# ------------------------------------------------------------------------------------- cases
@router.get("/cases")
def case_list(request: Request, session: SessionDep, settings: SettingsDep, user: SupervisorUser,
              status: str = "", category: str = "", issue_type: str = "", place: str = "", deadline: str = "",
              number: str = "", page: int = 1) -> Response:
    f = queries.CaseFilters(status=status if status in queries.CASE_STATUS_LABELS else None,
                            category=category if category in CATEGORIES else None,
                            issue_type=issue_type[:32] or None, place=place[:64] or None,
                            deadline=deadline if deadline in queries.DEADLINE_STATES else None, number=number[:32] or None)
    today = _today(settings)
    cal = WorkCalendar.from_db(session)
    soon_until, _ = cal.add_working_days(today, 3)
    res = queries.cases_page(session, user, f, today, soon_until, page=page_number(page))
    return render(request, "sup/cases.html", {
        "res": res, "pager": res, "f": f, "page_url": _page_url(request), "today": today, "soon_until": soon_until,
        "categories": CATEGORIES, "issue_types": ISSUE_TYPES, "status_labels": queries.CASE_STATUS_LABELS,
        "deadline_states": queries.DEADLINE_STATES, "dl_labels": queries.DEADLINE_KIND_LABELS,
    }, active="cases")


def _load_case(session, user, case_id: str, settings) -> Case:
    try:
        return access.visible_case(session, user, case_id, settings=settings)
    except access.NotVisible:
        raise PageNotFound() from None


@router.get("/cases/{case_id}")
def case_page(request: Request, case_id: str, session: SessionDep, settings: SettingsDep, user: SupervisorUser,
              msg: str = "", err: str = "") -> Response:
    c = _load_case(session, user, case_id, settings)
    audit.append(session_factory(settings.db_url), "case.view", actor=user, object_type="case", object_id=c.id,
                 ip=client_ip(request))
    doc = json.loads(c.fields_json or "{}")
    d = session.get(Draft, c.draft_id)
    mask = masker(access.identity_terms(session, recording_id=d.recording_id if d else None, draft=d))
    hist = case_svc.history(session, c.id)
    for h in hist:
        h["at_dt"] = datetime.fromisoformat(h["at"])
    today = _today(settings)
    return render(request, "sup/case.html", {
        "c": c, "doc": doc, "draft": d, "history": hist, "deadlines": c.deadlines, "feedback": c.feedback, "today": today,
        "summary": mask(doc.get("summary") or ""),
        "reporter_name_masked": masking.mask_name(doc.get("reporter_name")) if doc.get("reporter_name") else "",
        "reporter_phone_masked": masking.mask_phone(doc.get("reporter_phone")) if doc.get("reporter_phone") else "",
        "status_labels": queries.CASE_STATUS_LABELS, "dl_labels": queries.DEADLINE_KIND_LABELS,
        "fb_labels": queries.FEEDBACK_LABELS, "modes": HANDLING_MODES, "msg": msg[:200], "err": err[:300],
        "action_labels": ACTION_LABELS, "FIELD_LABELS": FIELD_LABELS,
    }, active="cases")


ACTION_LABELS = {"draft_created": "生成草稿", "draft_corrected": "修改草稿", "urgent_alert": "紧急提醒", "registered": "受理登记",
                 "handling": "开始办理", "closed": "了结", "archived": "归档", "draft_discarded": "作废草稿",
                 "alert_acknowledged": "确认紧急提醒", "feedback_notice_sent": "发送受理告知",
                 "feedback_result_sent": "反馈处理结果", "feedback_objection": "举报人异议"}


@router.post("/cases/{case_id}/action")
async def case_action(request: Request, case_id: str, session: SessionDep, settings: SettingsDep,
                      user: SupervisorUser) -> Response:
    c = _load_case(session, user, case_id, settings)
    form = await request.form()
    action = form.get("action")
    note = (form.get("note") or "").strip()[:2000] or None
    try:
        if action == "handling":
            case_svc.start_handling(session, c.id, form.get("mode") or "", form.get("unit") or "", user.username, note)
        elif action == "close":
            case_svc.close_case(session, c.id, user.username, (form.get("result") or "").strip(), settings=settings)
        elif action == "archive":
            case_svc.archive_case(session, c.id, user.username)
        elif action == "feedback":
            case_svc.record_feedback(session, c.id, form.get("kind") or "", user.username, note)
        else:
            raise case_svc.CaseError("unknown action")
    except case_svc.CaseError as e:
        session.rollback()
        return RedirectResponse(f"/cases/{c.id}?{urlencode({'err': _case_error_text(str(e))})}", status_code=303)
    audit.append(session_factory(settings.db_url), f"case.{action}", actor=user, object_type="case", object_id=c.id,
                 ip=client_ip(request))
    return RedirectResponse(f"/cases/{c.id}?msg={action}", status_code=303)


def _case_error_text(msg: str) -> str:
    table = (("the handling unit must be named", "请填写承办单位"), ("mode must be one of", "请选择办理方式"),
             ("a result is required", "了结须填写处理结果"), ("has not been sent to the reporter", "尚未向举报人反馈处理结果，不能归档"),
             ("an objection follows a result", "须先反馈处理结果，才能记录异议"), ("cannot go to", "当前状态不允许此操作"),
             ("cannot record", "当前状态不能记录该反馈"))
    for key, text in table:
        if key in msg:
            return text
    return "操作未完成"


# ------------------------------------------------------------------------------------ alerts
@router.get("/alerts")
def alerts(request: Request, session: SessionDep, settings: SettingsDep, user: SupervisorUser) -> Response:
    """The alerts of the supervisor's unit (the API's rule: urgent ones of the drafts they may see,
    review ones of their unit or of none; a supervisor without a unit sees every unit's)."""
    return render(request, "sup/alerts.html", {
        "urgent": queries.open_urgent_alerts(session, user, settings),
        "acked": queries.recent_acknowledged_alerts(session, user, settings),
        "review_alerts": queries.open_review_alerts(session, user),
    }, active="alerts")


def _load_urgent_alert(session, user, alert_id: str, settings) -> UrgentAlert:
    """An urgent alert of a draft the user may see, else a 404 page (as ``POST /api/alerts/{id}/ack``)."""
    try:
        a = session.get(UrgentAlert, access.check_id(alert_id))
    except access.NotVisible:
        raise PageNotFound() from None
    if a is None or not access.can_see_draft(session, user, session.get(Draft, a.draft_id), settings=settings):
        raise PageNotFound()
    return a


def _load_review_alert(session, user, alert_id: str) -> ReviewAlert:
    """A review alert of the user's unit (or of no unit), else a 404 page (as ``POST
    /api/review/alerts/{id}/ack``: a supervisor without a unit may acknowledge any)."""
    try:
        a = session.get(ReviewAlert, access.check_id(alert_id))
    except access.NotVisible:
        raise PageNotFound() from None
    if a is None or (user.unit and a.unit not in (None, user.unit)):
        raise PageNotFound()
    return a


@router.post("/alerts/urgent/{alert_id}/ack")
async def ack_urgent(request: Request, alert_id: str, session: SessionDep, settings: SettingsDep,
                     user: SupervisorUser) -> Response:
    a = _load_urgent_alert(session, user, alert_id, settings)
    form = await request.form()
    try:
        case_svc.acknowledge_alert(session, a.id, user.username, (form.get("note") or "").strip()[:500] or None)
    except case_svc.CaseError:
        session.rollback()
    audit.append(session_factory(settings.db_url), "alert.ack", actor=user, object_type="alert",
                 object_id=a.id, ip=client_ip(request), detail={"kind": "urgent"})
    return RedirectResponse("/alerts", status_code=303)


@router.post("/alerts/review/{alert_id}/ack")
def ack_review(request: Request, alert_id: str, session: SessionDep, user: SupervisorUser) -> Response:
    a = _load_review_alert(session, user, alert_id)
    try:
        review.acknowledge_alert(session, a.id, user)
        session.commit()
    except review.NotPermitted:
        raise PageNotFound() from None
    return RedirectResponse("/alerts", status_code=303)


# ------------------------------------------------------------------------------------ roster
@router.get("/roster")
def roster(request: Request, session: SessionDep, settings: SettingsDep, user: SupervisorUser, msg: str = "",
           err: str = "") -> Response:
    today = _today(settings)
    managers = session.execute(select(User).where(User.role == "recording_manager", User.active.is_(True))
                               .order_by(User.username)).scalars().all()
    names = {m.id: (m.display_name or m.username) for m in session.execute(select(User)).scalars()}
    default = session.execute(select(DutyRoster).where(DutyRoster.day.is_(None))).scalars().first()
    rows = session.execute(select(DutyRoster).where(DutyRoster.day >= today - timedelta(days=7),
                                                    DutyRoster.day <= today + timedelta(days=60))
                           .order_by(DutyRoster.day, DutyRoster.start_time)).scalars().all()
    now = datetime.now(timezone.utc)
    on_duty = review.manager_on_duty(session, now, getattr(settings, "timezone", "Asia/Shanghai"))
    return render(request, "sup/roster.html", {"managers": managers, "names": names, "default": default, "rows": rows,
                                               "today": today, "on_duty": on_duty, "msg": msg[:100], "err": err[:200]},
                  active="roster")


@router.post("/roster")
async def roster_set(request: Request, session: SessionDep, user: SupervisorUser) -> Response:
    form = await request.form()
    manager = session.get(User, form.get("manager_id") or "")
    if manager is None or manager.role != "recording_manager":
        return RedirectResponse("/roster?" + urlencode({"err": "请选择录音管理员"}), status_code=303)
    raw_day = (form.get("day") or "").strip()
    try:
        day = date.fromisoformat(raw_day) if raw_day else None
    except ValueError:
        return RedirectResponse("/roster?" + urlencode({"err": "日期格式应为 YYYY-MM-DD"}), status_code=303)
    try:
        review.set_roster(session, day, manager, shift=(form.get("shift") or "day").strip()[:32] or "day",
                          start=(form.get("start") or "00:00").strip(), end=(form.get("end") or "00:00").strip(), actor=user)
        session.commit()
    except review.ReviewError as e:
        session.rollback()
        return RedirectResponse("/roster?" + urlencode({"err": f"保存失败：{e}"}), status_code=303)
    return RedirectResponse("/roster?msg=saved", status_code=303)


__all__ = ["router", "Recording", "ReviewAlert", "CaseDeadline"]
