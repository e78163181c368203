"""Exports (two-supervisor rule; see ``services.exports``).

* ``POST /api/exports``                ``{"object_type": "recording"|"case", "object_ids": [...], "reason": "..."}``
* ``GET  /api/exports``                the requester's own and those the supervisor may approve
* ``GET  /api/exports/{id}``
* ``POST /api/exports/{id}/approve``   a second supervisor; own approval -> 400
* ``POST /api/exports/{id}/reject``    ``{"reason": ...}``
* ``GET  /api/exports/{id}/download``  the zip bundle, requester only, before expiry (expired: 410)
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Request, status
from fastapi.responses import StreamingResponse

from hotline_api.api.deps import SessionDep, SettingsDep, client_ip, not_found
from hotline_api.api.routes._common import CryptoDep, SupervisorUser, bad_request
from hotline_api.services import exports, storage

router = APIRouter(tags=["exports"])


def _http(e: Exception) -> HTTPException:
    if isinstance(e, exports.ExportNotFound):
        return not_found()
    if isinstance(e, exports.ExportGone):
        return HTTPException(status.HTTP_410_GONE, detail="导出已过期，文件已销毁")
    if isinstance(e, exports.ExportConflict):
        return HTTPException(status.HTTP_409_CONFLICT, detail=str(e))
    if isinstance(e, exports.SelfApproval):
        return bad_request("导出申请不能由申请人本人审批，须由另一名监督人员审批")
    return bad_request(str(e))


_ERRORS = (exports.ExportNotFound, exports.ExportGone, exports.ExportConflict, exports.ExportError)


@router.post("/exports", status_code=201)
def request_export(request: Request, session: SessionDep, settings: SettingsDep, user: SupervisorUser,
                   body: Annotated[dict, Body()]) -> dict:
    try:
        req = exports.request_export(session, user, body.get("object_type", "recording"), body.get("object_ids"),
                                     body.get("reason"), settings=settings, ip=client_ip(request))
    except _ERRORS as e:
        session.rollback()
        raise _http(e) from None
    session.commit()
    return exports.export_json(session, req)


@router.get("/exports")
def list_exports(session: SessionDep, settings: SettingsDep, user: SupervisorUser) -> dict:
    return {"items": [exports.export_json(session, r) for r in exports.list_visible(session, user, settings)]}


@router.get("/exports/{export_id}")
def get_export(export_id: str, session: SessionDep, settings: SettingsDep, user: SupervisorUser) -> dict:
    try:
        req = exports.get_visible(session, user, export_id, settings)
    except _ERRORS as e:
        raise _http(e) from None
    return exports.export_json(session, req)


@router.post("/exports/{export_id}/approve")
def approve(export_id: str, request: Request, session: SessionDep, settings: SettingsDep, user: SupervisorUser,
            ctx: CryptoDep) -> dict:
    try:
        req = exports.approve(session, ctx, settings, export_id, user, ip=client_ip(request))
        session.commit()
    except _ERRORS as e:
        session.rollback()
        raise _http(e) from None
    except (storage.RecordingNotFound, storage.IntegrityError, storage.TamperedError) as e:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"cannot build the export: {e}") from None
    except Exception:
        session.rollback()
        exports.discard_bundle(settings, export_id)
        raise
    return exports.export_json(session, req)


@router.post("/exports/{export_id}/reject")
def reject(export_id: str, request: Request, session: SessionDep, settings: SettingsDep, user: SupervisorUser,
           body: Annotated[dict | None, Body()] = None) -> dict:
    reason = (body or {}).get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 2000):
        raise bad_request("reason must be text")
    try:
        req = exports.reject(session, export_id, user, reason, settings=settings, ip=client_ip(request))
    except _ERRORS as e:
        session.rollback()
        raise _http(e) from None
    session.commit()
    return exports.export_json(session, req)


@router.get("/exports/{export_id}/download")
def download(export_id: str, request: Request, session: SessionDep, settings: SettingsDep, user: SupervisorUser,
             ctx: CryptoDep):
    try:
        dl = exports.open_download(session, ctx, settings, export_id, user, ip=client_ip(request))
    except _ERRORS as e:
        session.rollback()
        raise _http(e) from None
    session.commit()
    return StreamingResponse(dl.chunks, media_type="application/zip",
                             headers={"Content-Disposition": f'attachment; filename="{dl.filename}"',
                                      "Content-Length": str(dl.size), "Cache-Control": "no-store"})
