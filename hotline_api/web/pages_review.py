"""Recording manager pages: the assigned queue with deadline countdowns; one recording with the
player (audio streamed with HTTP Range by the content API), the transcript beside it (two channels
as two speakers), and the stored / organized actions. "Listened" is computed on the server from
the byte ranges served to the manager; the page only shows it."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy import select

from hotline_api.db.session import session_factory
from hotline_api.models.calls import Call, Recording
from hotline_api.models.cases import Case
from hotline_api.models.governance import ReviewAssignment, User
from hotline_api.services import access, audit, case_links, masking, review, storage
from hotline_api.web import queries
from hotline_api.web.core import (
    ManagerUser,
    PageNotFound,
    PageRoute,
    SessionDep,
    SettingsDep,
    client_ip,
    crypto_context,
    page_number,
    render,
)
from hotline_api.web.transcript_view import masker, segments_of, split_list

router = APIRouter(route_class=PageRoute, include_in_schema=False)

def audio_url(rid: str) -> str:
    """The content API's audio endpoint (HTTP Range, audited, counted as listening coverage)."""
    return f"/api/recordings/{rid}/audio"


def _page_url(request: Request):
    def make(page: int) -> str:
        q = dict(request.query_params)
        q["page"] = str(page)
        return request.url.path + "?" + "&".join(f"{k}={v}" for k, v in q.items())
    return make


@router.get("/review")
def queue(request: Request, session: SessionDep, user: ManagerUser, done: int = 0, page: int = 1) -> Response:
    res = queries.review_queue(session, user, done=bool(done), page=page_number(page))
    return render(request, "review/queue.html", {
        "res": res, "pager": res, "page_url": _page_url(request), "done": bool(done),
        "counts": queries.review_counts(session, user), "now": datetime.now(timezone.utc),
    }, active="review-done" if done else "review")


def _load(session, user, rid: str, settings) -> tuple[ReviewAssignment, Recording, Call | None]:
    try:
        rec = access.visible_recording(session, user, rid, settings=settings)
    except access.NotVisible:
        raise PageNotFound() from None
    rid = rec.id
    a = review.get_assignment(session, rid)
    rec = session.get(Recording, rid)
    if a is None or rec is None:
        raise PageNotFound()
    call = session.get(Call, rec.call_id) if rec.call_id else None
    return a, rec, call


def _status_ctx(session, a: ReviewAssignment, rec: Recording, user: User, settings: Any) -> dict:
    case_number = None
    if a.case_id:  # named only when the user may see the case (a link made before the check: not)
        try:
            case_number = case_links.linkable_case(session, user, a.case_id, settings=settings).number
        except access.NotVisible:
            case_number = None
    return {"a": a, "rec": rec, "case_number": case_number, "now": datetime.now(timezone.utc),
            "threshold": review.ReviewConfig().listened_threshold}


@router.get("/review/{rid}")
def detail(request: Request, rid: str, session: SessionDep, settings: SettingsDep, user: ManagerUser) -> Response:
    a, rec, call = _load(session, user, rid, settings)
    from hotline_api.services import transcription

    rid = rec.id
    transcript = transcription.load_transcript(session, rid)
    segments = segments_of(transcript, masker(access.identity_terms(session, recording_id=rid, call=call)))
    job_status = None
    try:
        from hotline_api.models.asr import TranscriptionJob

        job = session.execute(select(TranscriptionJob).where(TranscriptionJob.recording_id == rid)).scalar_one_or_none()
        job_status = job.status if job else None
    except Exception:  # noqa: BLE001 - ASR tables not migrated: no status to show
        session.rollback()
    factory = session_factory(settings.db_url)
    audit.append(factory, "transcript.view" if transcript is not None else "recording.view", actor=user, object_type="recording", object_id=rid, ip=client_ip(request),
                 detail={"page": "review", "transcript": transcript is not None})
    ctx = _status_ctx(session, a, rec, user, settings)
    ctx.update({"call": call, "segments": segments, "has_transcript": transcript is not None, "job_status": job_status,
                "audio_url": audio_url(rid), "caller_masked": masking.mask_phone(call.caller_number) if call else None,
                "cfg_threshold": review.ReviewConfig.from_settings(settings).listened_threshold})
    return render(request, "review/detail.html", ctx, active="review")


@router.get("/review/{rid}/status")
def status_fragment(request: Request, rid: str, session: SessionDep, settings: SettingsDep, user: ManagerUser) -> Response:
    a, rec, _ = _load(session, user, rid, settings)
    return render(request, "review/_status.html", _status_ctx(session, a, rec, user, settings))


@router.post("/review/{rid}/stored")
def mark_stored(request: Request, rid: str, session: SessionDep, settings: SettingsDep, user: ManagerUser) -> Response:
    a, rec, _ = _load(session, user, rid, settings)
    ctx_crypto = crypto_context(request, settings)
    error = None
    try:
        review.confirm_stored(session, ctx_crypto, rid, user, ip=client_ip(request))
        session.commit()
    except (storage.IntegrityError, storage.TamperedError):
        session.rollback()
        error = "完整性校验失败：录音文件与入库时的哈希不一致，已记录，请报告管理员。"
        audit.append(session_factory(settings.db_url), "review.stored_failed", actor=user, object_type="recording",
                     object_id=rid, ip=client_ip(request))
    except storage.RecordingNotFound:
        session.rollback()
        error = "录音文件不可用（可能已按保留策略销毁）。"
    session.refresh(a)
    ctx = _status_ctx(session, a, rec, user, settings)
    ctx["error"] = error
    return render(request, "review/_status.html", ctx, status_code=200 if error is None else 409)


# the same answer for a number that does not exist and for a case the user may not see (another
# unit's): the page never tells whether a case exists, nor echoes its number
CASE_NOT_LINKABLE = "未找到该案件，或您无权关联该案件（只能关联您有权查看的案件），请核对案件编号"


def _linkable_case(session, user: User, number: str, settings: Any) -> Case | None:
    """The case with this number if ``user`` may link to it (``case_links.linkable_case``), else None."""
    c = session.execute(select(Case).where(Case.number == number)).scalar_one_or_none()
    if c is None:
        return None
    try:
        return case_links.linkable_case(session, user, c.id, settings=settings)
    except access.NotVisible:
        return None


@router.post("/review/{rid}/organize")
def organize(request: Request, rid: str, session: SessionDep, settings: SettingsDep, user: ManagerUser,
             mode: Annotated[str, Form(max_length=16)] = "",
             case_number: Annotated[str, Form(max_length=64)] = "",
             reason: Annotated[str, Form(max_length=2000)] = "",
             tags: Annotated[str, Form(max_length=500)] = "") -> Response:
    a, rec, _ = _load(session, user, rid, settings)
    error = None
    kwargs: dict = {"tags": split_list(tags)}
    if mode == "case":
        num = case_number.strip()
        c = _linkable_case(session, user, num, settings) if num else None
        if c is None:
            error = CASE_NOT_LINKABLE if num else "请填写要关联的案件编号"
        else:
            kwargs["case_id"] = c.id
    elif mode == "no_content":
        kwargs["no_content_reason"] = reason
    elif mode != "tags":
        error = "请选择整理方式"
    if error is None:
        try:
            review.organize(session, rid, user, ip=client_ip(request), settings=settings, **kwargs)
            session.commit()
        except review.NotPermitted:
            session.rollback()
            error = CASE_NOT_LINKABLE
        except review.ReviewError as e:
            session.rollback()
            error = {"a no-content mark needs a reason": "标记“无实质内容”须填写原因",
                     "link a case, mark no content with a reason, or add tags": "请关联案件、标记无实质内容（附原因）或添加标签"
                     }.get(str(e), str(e))
    session.refresh(a)
    ctx = _status_ctx(session, a, rec, user, settings)
    ctx["error"] = error
    return render(request, "review/_status.html", ctx, status_code=200 if error is None else 400)


__all__ = ["router", "audio_url"]
