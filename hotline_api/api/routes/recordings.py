"""Recordings: metadata, audio (decrypted on read, HTTP Range), transcript, the designated-staff
actions, legal holds, and import of an audio file.

* ``GET  /api/recordings/{id}``             metadata (``duration``, ``sample_rate``, ``channels``,
  ``sha256``, ``status``, ``transcription``) and the review status
* ``GET  /api/recordings/{id}/audio``       ``audio/wav``; ``Range: bytes=a-b`` -> 206. A malformed
  Range -> 400; a range outside the file -> 416 with ``Content-Range: bytes */SIZE`` (RFC 7233).
  Both are answered before any audio is decrypted or any playback is recorded. Every playback is
  audited with the byte range actually delivered (``recording.play``) and counts toward the
  assigned manager's listening coverage.
* ``GET  /api/recordings/{id}/transcript``  the transcript JSON (``hotline transcribe --json``) with
  the reporter's identity masked in every text and word unless the user holds ``identity``
  (``identity_masked`` says which); audited (``transcript.view``, ``identity.view``)
* ``POST /api/recordings/{id}/stored``      re-check the integrity hash, mark stored
* ``POST /api/recordings/{id}/organize``    ``{"case": id-or-number, "no_content_reason", "tags"}``
* ``POST /api/recordings/{id}/hold``        ``{"reason"}`` legal hold (supervisor)
* ``GET  /api/review/queue``                the manager's open items (a supervisor: the unit's)
* ``GET  /api/review/alerts``, ``POST /api/review/alerts/{id}/ack``, ``GET /api/review/report?month=YYYY-MM``
* ``POST /api/recordings/import``           raw body (``?filename=x.wav``) or multipart field
  ``file``; at most ``import_max_mb`` (default 200) MB, else 413 with nothing stored. The file is
  validated (400 if it is not readable audio), encrypted into storage, assigned for review and
  handed to the transcription queue.

Not visible, malformed id, missing: 404 alike.
"""
from __future__ import annotations

import logging
import os
import re
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as StarletteRequest

from hotline_api.api.deps import SessionDep, SettingsDep, client_ip, not_found
from hotline_api.api.routes._common import (
    ContentUser,
    CryptoDep,
    ManagerOrSupervisor,
    Month,
    Offset,
    SupervisorUser,
    audit_read,
    bad_request,
    factory,
    iso,
    month_parts,
    now_utc,
    visible,
)
from hotline_api.models.asr import TranscriptionJob
from hotline_api.models.calls import Recording
from hotline_api.models.cases import Case
from hotline_api.models.governance import LegalHold, ReviewAlert, ReviewAssignment, User
from hotline_api.services import access, audit, retention, review, storage, transcription
from recordings.ranges import RangeError

log = logging.getLogger(__name__)

router = APIRouter(tags=["recordings"])

DEFAULT_IMPORT_MAX_MB = 200
_FILENAME_OK = re.compile(r"^[^/\\\x00-\x1f]{1,255}$")


# ------------------------------------------------------------------------------------ helpers
def _job_json(job: TranscriptionJob | None) -> dict[str, Any]:
    if job is None:
        return {"status": "none"}
    return {"status": job.status, "attempts": job.attempts, "progress": job.progress, "error": job.last_error,
            "updated_at": iso(job.updated_at), "finished_at": iso(job.finished_at)}


def recording_json(session, rec: Recording, user: User) -> dict[str, Any]:
    job = session.execute(select(TranscriptionJob).where(TranscriptionJob.recording_id == rec.id)).scalar_one_or_none()
    a = review.get_assignment(session, rec.id)
    holds = session.execute(select(LegalHold.id).where(LegalHold.target_type == "recording",
                                                       LegalHold.target_id == rec.id,
                                                       LegalHold.released_at.is_(None))).scalars().all()
    return {
        "id": rec.id, "call_id": rec.call_id, "kind": rec.kind, "status": rec.status, "duration": rec.duration,
        "sample_rate": rec.sample_rate, "channels": rec.channels, "sha256": rec.sha256, "size_bytes": rec.size_bytes,
        "created_at": iso(rec.created_at), "completed_at": iso(rec.completed_at),
        "transcription": _job_json(job), "transcription_status": job.status if job else "none",
        "review": review.status_of(a, now_utc()) if a is not None else None,
        "legal_hold": bool(holds),
    }


def _visible_rec(session, user, rid: str, settings) -> Recording:
    with visible():
        return access.visible_recording(session, user, rid, settings=settings)


# --------------------------------------------------------------------------------- metadata
@router.get("/recordings/{rid}")
def get_recording(rid: str, session: SessionDep, settings: SettingsDep, user: ContentUser) -> dict:
    rec = _visible_rec(session, user, rid, settings)
    return recording_json(session, rec, user)


# ------------------------------------------------------------------------------------ audio
@router.get("/recordings/{rid}/audio")
def get_audio(rid: str, request: Request, session: SessionDep, settings: SettingsDep, user: ContentUser,
              ctx: CryptoDep, reason: Annotated[str | None, Query(max_length=500)] = None):
    rec = _visible_rec(session, user, rid, settings)
    try:
        plan = storage.plan_audio(session, ctx, rec.id, request.headers.get("range"))
    except storage.RecordingNotFound:
        raise not_found() from None
    except RangeError as e:
        if e.status == 416:
            size = storage.get_blob(session, rec.id).plain_size
            raise HTTPException(416, detail=str(e), headers={"Content-Range": f"bytes */{size}"}) from None
        raise bad_request(str(e)) from None
    done = review.playback_recorder(factory(settings), rec.id, user, ip=client_ip(request), settings=settings,
                                    reason=reason)
    return StreamingResponse(storage.stream_range(plan.reader, plan.start, plan.stop, on_done=done),
                             status_code=plan.status, headers=plan.headers, media_type="audio/wav")


# ------------------------------------------------------------------------------- transcript
@router.get("/recordings/{rid}/transcript")
def get_transcript(rid: str, request: Request, session: SessionDep, settings: SettingsDep, user: ContentUser) -> dict:
    rec = _visible_rec(session, user, rid, settings)
    doc = transcription.load_transcript(session, rec.id)
    if doc is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="transcript not available (yet)")
    show = access.has_identity(user)
    terms = access.identity_terms(session, rec.id)
    if not show:
        doc = access.mask_transcript(doc, terms)
    doc = dict(doc)
    doc.update(recording_id=rec.id, identity_masked=not show)
    audit_read(settings, request, user, "transcript.view", "recording", rec.id, detail={"identity": show})
    if show:
        audit_read(settings, request, user, "identity.view", "recording", rec.id,
                   detail={"fields": ["transcript_text"], "known_terms": bool(terms)})
    return doc


# --------------------------------------------------------------------------- review actions
@router.post("/recordings/{rid}/stored")
def mark_stored(rid: str, request: Request, session: SessionDep, settings: SettingsDep, user: ManagerOrSupervisor,
                ctx: CryptoDep) -> dict:
    rec = _visible_rec(session, user, rid, settings)
    try:
        a = review.confirm_stored(session, ctx, rec.id, user, ip=client_ip(request))
    except review.NotPermitted:
        session.rollback()
        raise not_found() from None
    except storage.RecordingNotFound:
        session.rollback()
        raise not_found() from None
    except (storage.IntegrityError, storage.TamperedError) as e:
        session.rollback()
        log.error("recording %s: integrity check failed on store confirmation", rec.id)
        audit.append(factory(settings), "review.stored_failed", actor=user, object_type="recording",
                     object_id=rec.id, ip=client_ip(request), detail={"error": type(e).__name__})
        raise HTTPException(status.HTTP_409_CONFLICT, detail="完整性校验失败：录音文件与入库时的哈希不一致") from None
    session.commit()
    return review.status_of(a, now_utc())


def _resolve_case(session, value: Any) -> str:
    if not isinstance(value, str):
        raise bad_request("case must be a case id or a number like 12388-2026-000123")
    value = value.strip()
    if access.is_id(value):
        c = session.get(Case, value.lower())
    elif re.fullmatch(r"12388-\d{4}-\d{6}", value):
        c = session.execute(select(Case).where(Case.number == value)).scalar_one_or_none()
    else:
        raise bad_request("case must be a case id or a number like 12388-2026-000123")
    if c is None:  # answered as a case the user may not link (404): no probing of other units' numbers
        raise not_found()
    return c.id


@router.post("/recordings/{rid}/organize")
def organize(rid: str, request: Request, session: SessionDep, settings: SettingsDep, user: ManagerOrSupervisor,
             body: Annotated[dict, Body()]) -> dict:
    rec = _visible_rec(session, user, rid, settings)
    unknown = set(body) - {"case", "case_id", "no_content_reason", "tags"}
    if unknown:
        raise bad_request(f"unknown field(s): {', '.join(sorted(unknown))}")
    case_ref = body.get("case") or body.get("case_id")
    tags = body.get("tags")
    if tags is not None and not (isinstance(tags, list) and all(isinstance(t, str) and len(t) <= 64 for t in tags)
                                 and len(tags) <= 50):
        raise bad_request("tags must be a list of short strings")
    reason = body.get("no_content_reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 2000):
        raise bad_request("no_content_reason must be text")
    case_id = _resolve_case(session, case_ref) if case_ref else None
    try:
        a = review.organize(session, rec.id, user, case_id=case_id, no_content_reason=reason, tags=tags,
                            ip=client_ip(request))
    except review.NotPermitted:
        session.rollback()
        raise not_found() from None
    except review.ReviewError as e:
        session.rollback()
        raise bad_request(str(e)) from None
    session.commit()
    return review.status_of(a, now_utc())


@router.post("/recordings/{rid}/hold", status_code=201)
def hold(rid: str, request: Request, session: SessionDep, settings: SettingsDep, user: SupervisorUser,
         body: Annotated[dict, Body()]) -> dict:
    rec = _visible_rec(session, user, rid, settings)
    reason = body.get("reason")
    if not isinstance(reason, str) or len(reason) > 2000:
        raise bad_request("a legal hold needs a reason")
    try:
        h = retention.place_hold(session, "recording", rec.id, reason, actor=user, ip=client_ip(request))
    except retention.RetentionError as e:
        session.rollback()
        raise bad_request(str(e)) from None
    session.commit()
    return {"id": h.id, "target_type": h.target_type, "target_id": h.target_id, "reason": h.reason,
            "created_at": iso(h.created_at)}


# -------------------------------------------------------------------------------------- review
@router.get("/review/queue")
def review_queue(session: SessionDep, settings: SettingsDep, user: ManagerOrSupervisor,
                 include_done: bool = False, limit: Annotated[int, Query(ge=1, le=500)] = 100,
                 offset: Offset = 0) -> dict:
    now = now_utc()
    if user.role == "recording_manager":
        items = review.queue_for(session, user, include_done=include_done, limit=limit, offset=offset)
    else:
        stmt = select(ReviewAssignment).where(ReviewAssignment.recording_id.in_(
            access.visible_recording_ids(user, settings=settings)))
        if not include_done:
            stmt = stmt.where(ReviewAssignment.completed_at.is_(None))
        items = list(session.execute(stmt.order_by(ReviewAssignment.due_at).limit(limit).offset(offset)).scalars())
    out = []
    for a in items:
        rec = session.get(Recording, a.recording_id)
        row = review.status_of(a, now)
        row.update(kind=a.kind, assigned_at=iso(a.assigned_at),
                   duration=rec.duration if rec else None, call_id=a.call_id)
        out.append(row)
    return {"items": out, "limit": limit, "offset": offset}


@router.get("/review/alerts")
def review_alerts(session: SessionDep, user: SupervisorUser) -> dict:
    alerts = review.open_alerts(session, unit=user.unit or None)
    return {"items": [{"id": a.id, "kind": a.kind, "recording_id": a.recording_id, "message": a.message,
                       "created_at": iso(a.created_at)} for a in alerts]}


@router.post("/review/alerts/{alert_id}/ack")
def ack_review_alert(alert_id: str, session: SessionDep, user: SupervisorUser) -> dict:
    with visible():
        aid = access.check_id(alert_id)
        alert = session.get(ReviewAlert, aid)
        if alert is None or (user.unit and alert.unit not in (None, user.unit)):
            raise access.NotVisible("not found")
    try:
        a = review.acknowledge_alert(session, aid, user)
    except review.NotPermitted:
        session.rollback()
        raise not_found() from None
    session.commit()
    return {"id": a.id, "acknowledged_at": iso(a.acknowledged_at)}


@router.get("/review/report")
def review_report(session: SessionDep, settings: SettingsDep, user: SupervisorUser,
                  month: Month) -> dict:
    y, m = month_parts(month)
    return review.compliance_report(session, y, m, tz=settings.timezone).as_dict()


# -------------------------------------------------------------------------------------- import
class _TooLarge(Exception):
    pass


def _limited_receive(receive, cap: int):
    seen = 0

    async def _recv():
        nonlocal seen
        msg = await receive()
        if msg.get("type") == "http.request":
            seen += len(msg.get("body", b""))
            if seen > cap:
                raise _TooLarge()
        return msg

    return _recv


def _check_filename(name: str | None) -> str:
    """The client's file name is used for nothing but the format hint: never for a path."""
    if name is None or name == "":
        return ".wav"
    if not _FILENAME_OK.match(name) or name in (".", "..") or ".." in name.replace("\\", "/").split("/"):
        raise bad_request("bad file name")
    suffix = Path(name).suffix.lower()
    if suffix and not re.fullmatch(r"\.[a-z0-9]{1,8}", suffix):
        raise bad_request("bad file name")
    return suffix or ".wav"


def _too_large(max_bytes: int) -> HTTPException:
    return HTTPException(413,
                         detail=f"文件过大：导入的音频不能超过 {max_bytes // (1024 * 1024)} MB")


@router.post("/recordings/import", status_code=201)
async def import_recording(request: Request, settings: SettingsDep, user: ManagerOrSupervisor, ctx: CryptoDep,
                           filename: Annotated[str | None, Query(max_length=255)] = None) -> dict:
    max_bytes = int(float(getattr(settings, "import_max_mb", DEFAULT_IMPORT_MAX_MB)) * 1024 * 1024)
    ctype = request.headers.get("content-type", "").lower()
    multipart = ctype.startswith("multipart/form-data")
    overhead = 64 * 1024 if multipart else 0
    try:
        declared = int(request.headers.get("content-length", "0") or 0)
    except ValueError:
        raise bad_request("bad Content-Length") from None
    if declared > max_bytes + overhead:
        raise _too_large(max_bytes)
    suffix = _check_filename(filename)
    tmp_dir = settings.spool_dir / "imports"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f"{uuid.uuid4()}.part"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            size = 0
            if multipart:
                limited = StarletteRequest(request.scope, receive=_limited_receive(request.receive, max_bytes + overhead))
                try:
                    form = await limited.form(max_files=1, max_fields=5)
                except _TooLarge:
                    raise _too_large(max_bytes) from None
                try:
                    upload = form.get("file")
                    if upload is None or isinstance(upload, str):
                        raise bad_request("multipart upload needs a file field named 'file'")
                    suffix = _check_filename(upload.filename or filename)
                    while chunk := await upload.read(1 << 20):
                        size += len(chunk)
                        if size > max_bytes:
                            raise _too_large(max_bytes)
                        out.write(chunk)
                finally:
                    await form.close()
            else:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > max_bytes:
                        raise _too_large(max_bytes)
                    out.write(chunk)
        if size == 0:
            raise bad_request("empty upload: no audio received")
        return await run_in_threadpool(_ingest_import, settings, ctx, tmp, suffix, user, client_ip(request))
    finally:
        tmp.unlink(missing_ok=True)


def _ingest_import(settings, ctx, tmp: Path, suffix: str, user: User, ip: str | None) -> dict:
    from asr.audio import DecodedTooLarge, convert_to_wav, probe
    from asr.errors import AudioInputError

    try:
        info = probe(tmp)
    except AudioInputError as e:
        raise bad_request(str(e).replace(tmp.name, "上传的文件")) from None
    src = tmp
    converted = None
    if info.format not in ("WAV", "WAVEX"):
        # the import limit holds for the decoded audio too (a small FLAC can decode into gigabytes);
        # convert_to_wav leaves no file behind when it refuses or fails
        max_bytes = int(float(getattr(settings, "import_max_mb", DEFAULT_IMPORT_MAX_MB)) * 1024 * 1024)
        converted = tmp.with_suffix(".wav.part")
        try:
            info = convert_to_wav(tmp, converted, max_bytes)
        except DecodedTooLarge:
            raise HTTPException(413, detail=f"文件过大：导入的音频解码后超过 {max_bytes // (1024 * 1024)} MB"
                                            "（上限按解码后的大小计算）") from None
        except AudioInputError as e:
            raise bad_request(str(e).replace(tmp.name, "上传的文件")) from None
        src = converted
    rid = str(uuid.uuid4())
    now = now_utc()
    try:
        with factory(settings)() as s:
            try:
                s.add(Recording(id=rid, call_id=None, kind="import", status="complete", duration=info.duration,
                                sample_rate=info.sample_rate, channels=info.channels, created_at=now,
                                completed_at=now, stage="queued", stage_at=now))
                s.flush()
                res = storage.ingest_recording(s, ctx, rid, src, now=now)
                review.assign_at_completion(s, rid, call_id=None, kind="import", completed_at=now, settings=settings)
                job = transcription.enqueue(s, rid, settings)
                audit.record(s, "recording.import", actor=user, object_type="recording", object_id=rid, ip=ip,
                             detail={"sha256": res.sha256, "size": res.plain_size, "format": info.format,
                                     "duration": round(info.duration, 3), "job_id": job.id})
                s.commit()
            except Exception:
                s.rollback()
                ctx.store.delete(rid)
                raise
            log.info("recording %s imported (%.1f s), transcription job %s %s", rid, info.duration, job.id, job.status)
            return {"recording_id": rid, "job_id": job.id, "job_status": job.status, "sha256": res.sha256,
                    "duration": info.duration, "sample_rate": info.sample_rate, "channels": info.channels}
    finally:
        if converted is not None:
            converted.unlink(missing_ok=True)
