"""Exports of recordings and cases: the two-supervisor rule, the bundle, expiry.

1. ``request_export``: a supervisor asks, with a reason, for recordings or cases they can see.
2. ``approve``: a *different* supervisor, who can see the same objects, approves (own approval is
   refused: ``SelfApproval``, the API answers 400; the database has a CHECK for it too). The bundle
   is built at once, so it is a snapshot of what was approved:

   ``export-<id>.zip``:
     * ``recordings/<rid>.wav``: the decrypted audio (checked against the sha256 stored at ingest)
     * ``recordings/<rid>.transcript.json``: the transcript, reporter identity masked unless the
       requester holds ``identity``
     * ``recordings/<rid>.json``: recording/call metadata (caller masked likewise)
     * ``cases/<case id>.json``: for case exports, the case with history and feedback
     * ``manifest.json``: export id, reason, requester, approver, times (requested, approved,
       expires), whether identity is included, and the sha256 and size of every other file.

   The bundle is stored encrypted at rest like recordings (AES-256-GCM, chunked) under a fresh
   data key; that key sits beside it in ``<id>.key``, encrypted with the field key (which survives
   master-key rotation, being re-wrapped, not replaced).
3. ``open_download``: only the requester, only while not expired; audited.
4. ``expire_exports`` (scheduler job, also run lazily on download): past ``expires_at`` the key file
   and the bundle are deleted (crypto-shredding) and the request is marked ``expired``.

Settings read via ``getattr`` (defaults): ``export_ttl_hours`` (72), ``export_max_objects`` (50).
Every step is audited: ``export.request``, ``export.approve``, ``export.reject``,
``export.download``, ``export.expire`` (plus ``identity.view`` for a download that carries identity).
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import zipfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from hotline_api.models.calls import Call, Recording
from hotline_api.models.cases import Case, Draft
from hotline_api.models.governance import ExportRequest, SelfApprovalError, User, approve_export
from hotline_api.services import access, audit, masking, storage
from recordings import crypto

log = logging.getLogger(__name__)

OBJECT_TYPES = ("recording", "case")


class ExportError(ValueError):
    """Bad request (400)."""


class SelfApproval(ExportError):
    """An export approved by its own requester (400)."""


class ExportConflict(Exception):
    """The export is not in a state that allows this (409)."""


class ExportNotFound(LookupError):
    """Missing or not permitted (404)."""


class ExportGone(Exception):
    """Expired: the bundle was destroyed (410, to the requester only)."""


@dataclass(frozen=True)
class ExportConfig:
    ttl: timedelta = timedelta(hours=72)
    max_objects: int = 50

    @classmethod
    def from_settings(cls, settings: Any) -> "ExportConfig":
        return cls(ttl=timedelta(hours=float(getattr(settings, "export_ttl_hours", 72))),
                   max_objects=int(getattr(settings, "export_max_objects", 50)))


def exports_dir(settings: Any) -> Path:
    d = Path(settings.data_dir) / "exports"
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    return d


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(timezone.utc)).astimezone(timezone.utc)


def _iso(dt: datetime | None) -> str | None:
    return dt.astimezone(timezone.utc).isoformat() if dt else None


# ------------------------------------------------------------------------------- visibility
def _can_see(session: Session, user: User, object_type: str, oid: str, settings: Any, now: datetime) -> bool:
    if object_type == "recording":
        return access.can_see_recording(session, user, oid, now=now, settings=settings)
    try:
        access.visible_case(session, user, oid, now=now, settings=settings)
        return True
    except access.NotVisible:
        return False


def _recordings_of(session: Session, req: ExportRequest) -> list[str]:
    if req.object_type == "recording":
        return list(req.object_ids)
    out = []
    for cid in req.object_ids:
        c = session.get(Case, cid)
        d = session.get(Draft, c.draft_id) if c is not None else None
        if d is not None and d.recording_id:
            out.append(d.recording_id)
    return access.unique(out)


# ---------------------------------------------------------------------------------- request
def request_export(session: Session, user: User, object_type: str, object_ids: Any, reason: Any, *,
                   settings: Any, ip: str | None = None, now: datetime | None = None) -> ExportRequest:
    now = _now(now)
    cfg = ExportConfig.from_settings(settings)
    if user.role != "supervisor":
        raise ExportNotFound("not found")
    if object_type not in OBJECT_TYPES:
        raise ExportError(f"object_type must be one of {', '.join(OBJECT_TYPES)}")
    if not isinstance(reason, str) or not reason.strip():
        raise ExportError("an export needs a reason")
    if len(reason) > 2000:
        raise ExportError("reason too long (2000 characters at most)")
    if not isinstance(object_ids, list) or not object_ids or len(object_ids) > cfg.max_objects:
        raise ExportError(f"object_ids must list 1 to {cfg.max_objects} ids")
    ids = []
    for oid in object_ids:
        try:
            ids.append(access.check_id(oid))
        except access.NotVisible:
            raise ExportNotFound("not found") from None
    ids = access.unique(ids)
    for oid in ids:
        if not _can_see(session, user, object_type, oid, settings, now):
            raise ExportNotFound("not found")
    if object_type == "recording":
        for oid in ids:
            try:
                storage.get_blob(session, oid)
            except storage.RecordingNotFound:
                raise ExportError(f"recording {oid} has no stored audio (not stored yet, or purged)") from None
    req = ExportRequest(requester_id=user.id, reason=reason.strip(), object_type=object_type, status="pending",
                        requested_at=now)
    req.object_ids_json = json.dumps(ids)
    session.add(req)
    session.flush()
    audit.record(session, "export.request", actor=user, object_type="export", object_id=req.id, ip=ip,
                 reason=req.reason, detail={"object_type": object_type, "object_ids": ids}, at=now)
    return req


def get_visible(session: Session, user: User, export_id: str, settings: Any, now: datetime | None = None) -> ExportRequest:
    """The requester sees their request; other supervisors see it when they can see its objects."""
    try:
        eid = access.check_id(export_id)
    except access.NotVisible:
        raise ExportNotFound("not found") from None
    req = session.get(ExportRequest, eid)
    if req is None or user.role != "supervisor":
        raise ExportNotFound("not found")
    if req.requester_id != user.id and not all(_can_see(session, user, req.object_type, o, settings, _now(now))
                                               for o in req.object_ids):
        raise ExportNotFound("not found")
    return req


def list_visible(session: Session, user: User, settings: Any, limit: int = 100) -> list[ExportRequest]:
    if user.role != "supervisor":
        return []
    rows = session.execute(select(ExportRequest).order_by(ExportRequest.requested_at.desc()).limit(1000)).scalars()
    now = _now(None)
    out = []
    for r in rows:
        if r.requester_id == user.id or all(_can_see(session, user, r.object_type, o, settings, now) for o in r.object_ids):
            out.append(r)
            if len(out) >= limit:
                break
    return out


def export_json(session: Session, req: ExportRequest) -> dict[str, Any]:
    def name(uid):
        u = session.get(User, uid) if uid else None
        return u.username if u else None

    return {"id": req.id, "status": req.status, "object_type": req.object_type, "object_ids": req.object_ids,
            "reason": req.reason, "requester": name(req.requester_id), "approver": name(req.approver_id),
            "requested_at": _iso(req.requested_at), "decided_at": _iso(req.decided_at),
            "expires_at": _iso(req.expires_at), "manifest_sha256": req.manifest_sha256}


# ---------------------------------------------------------------------------------- approve
def approve(session: Session, ctx: storage.CryptoContext, settings: Any, export_id: str, approver: User, *,
            ip: str | None = None, now: datetime | None = None) -> ExportRequest:
    """Second-supervisor approval; builds the bundle. Flushes; the caller commits (and on an
    exception, ``discard_bundle`` has already removed any file written)."""
    now = _now(now)
    cfg = ExportConfig.from_settings(settings)
    try:
        eid = access.check_id(export_id)
    except access.NotVisible:
        raise ExportNotFound("not found") from None
    req = session.get(ExportRequest, eid)
    if req is None or approver.role != "supervisor":
        raise ExportNotFound("not found")
    if req.requester_id == approver.id:
        raise SelfApproval("an export cannot be approved by its own requester; a second supervisor must approve it")
    if not all(_can_see(session, approver, req.object_type, o, settings, now) for o in req.object_ids):
        raise ExportNotFound("not found")
    if req.status != "pending":
        raise ExportConflict(f"export is {req.status}, not pending")
    try:
        approve_export(req, approver, now, ttl_hours=1)
    except SelfApprovalError as e:  # pragma: no cover - checked above
        raise SelfApproval(str(e)) from None
    req.expires_at = now + cfg.ttl
    requester = session.get(User, req.requester_id)
    try:
        manifest_sha, files, identity = _build_bundle(session, ctx, settings, req, requester, approver, now)
    except Exception:
        discard_bundle(settings, req.id)
        raise
    req.bundle_rel_path = f"exports/{req.id}.hle"
    req.manifest_sha256 = manifest_sha
    session.flush()
    audit.record(session, "export.approve", actor=approver, object_type="export", object_id=req.id, ip=ip,
                 detail={"requester": requester.username if requester else None, "manifest_sha256": manifest_sha,
                         "files": len(files), "identity": identity, "expires_at": _iso(req.expires_at)}, at=now)
    return req


def reject(session: Session, export_id: str, user: User, reason: str | None, *, settings: Any, ip: str | None = None,
           now: datetime | None = None) -> ExportRequest:
    """A supervisor who can see it rejects a pending request (the requester may withdraw it)."""
    now = _now(now)
    req = get_visible(session, user, export_id, settings, now)
    if req.status != "pending":
        raise ExportConflict(f"export is {req.status}, not pending")
    req.status, req.decided_at = "rejected", now
    audit.record(session, "export.reject", actor=user, object_type="export", object_id=req.id, ip=ip, reason=reason,
                 detail={"by_requester": user.id == req.requester_id}, at=now)
    return req


# ----------------------------------------------------------------------------------- bundle
def _paths(settings: Any, export_id: str) -> tuple[Path, Path, Path]:
    d = exports_dir(settings)
    eid = access.check_id(export_id)
    return d / f"{eid}.hle", d / f"{eid}.key", d / f"{eid}.zip.part"


def discard_bundle(settings: Any, export_id: str) -> bool:
    """Crypto-shred: the key file first, then the bundle."""
    bundle, key, part = _paths(settings, export_id)
    removed = False
    for p in (key, bundle, part):
        try:
            p.unlink()
            removed = True
        except FileNotFoundError:
            pass
    return removed


def _user_ref(u: User | None) -> dict[str, Any] | None:
    if u is None:
        return None
    return {"id": u.id, "username": u.username, "display_name": u.display_name, "unit": u.unit}


def _recording_meta(session: Session, rid: str, show: bool) -> dict[str, Any]:
    rec = session.get(Recording, rid)
    call = session.get(Call, rec.call_id) if rec is not None and rec.call_id else None
    number = call.caller_number if call is not None else None
    return {
        "recording_id": rid, "kind": rec.kind if rec else None, "duration": rec.duration if rec else None,
        "sample_rate": rec.sample_rate if rec else None, "channels": rec.channels if rec else None,
        "sha256": rec.sha256 if rec else None, "completed_at": _iso(rec.completed_at) if rec else None,
        "call": None if call is None else {
            "id": call.id, "started_at": _iso(call.created_at), "ended_at": _iso(call.ended_at),
            "channel": call.channel, "status": call.status, "dialled": call.dialled,
            "caller": number if show else masking.mask_phone(number)},
        "identity_masked": not show,
    }


def _case_doc(session: Session, case: Case, show: bool) -> dict[str, Any]:
    from hotline_api.services import cases as cases_svc

    fields = json.loads(case.fields_json or "{}")
    fields.pop("duplicates", None)  # ids of other drafts and cases (maybe another unit's): not in a bundle
    draft = session.get(Draft, case.draft_id)
    if not show:
        fields = access.mask_draft_fields(fields, access.identity_terms(session, draft.recording_id if draft else None,
                                                                        draft=draft))
    return {"id": case.id, "number": case.number, "status": case.status, "fields": fields,
            "received_on": case.received_on.isoformat() if case.received_on else None,
            "registered_at": _iso(case.registered_at), "handling_mode": case.handling_mode,
            "handling_unit": case.handling_unit, "result": case.result,
            "history": cases_svc.history(session, case.id),
            "feedback": [{"kind": f.kind, "at": _iso(f.at), "actor": f.actor, "note": f.note} for f in case.feedback],
            "identity_masked": not show}


def _json_bytes(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8")


def _build_bundle(session: Session, ctx: storage.CryptoContext, settings: Any, req: ExportRequest, requester: User,
                  approver: User, now: datetime) -> tuple[str, list[dict], bool]:
    from hotline_api.services import transcription

    show = access.has_identity(requester)
    bundle, key_path, part = _paths(settings, req.id)
    files: list[dict[str, Any]] = []

    def add_bytes(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
        zf.writestr(name, data)
        files.append({"path": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})

    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for rid in _recordings_of(session, req):
                with storage.open_reader(session, ctx, rid) as rec:
                    h = hashlib.sha256()
                    info = zipfile.ZipInfo(f"recordings/{rid}.wav", date_time=now.timetuple()[:6])
                    info.compress_type = zipfile.ZIP_STORED
                    with zf.open(info, "w", force_zip64=True) as out:
                        for piece in rec.iter_range(0, rec.size):
                            h.update(piece)
                            out.write(piece)
                    if h.hexdigest() != rec.sha256:
                        raise storage.IntegrityError(f"recording {rid}: sha256 mismatch while exporting")
                    files.append({"path": f"recordings/{rid}.wav", "sha256": h.hexdigest(), "size": rec.size})
                doc = transcription.load_transcript(session, rid)
                if doc is not None:
                    if not show:
                        doc = access.mask_transcript(doc, access.identity_terms(session, rid))
                    add_bytes(zf, f"recordings/{rid}.transcript.json", _json_bytes(doc))
                add_bytes(zf, f"recordings/{rid}.json", _json_bytes(_recording_meta(session, rid, show)))
            if req.object_type == "case":
                for cid in req.object_ids:
                    add_bytes(zf, f"cases/{cid}.json", _json_bytes(_case_doc(session, session.get(Case, cid), show)))
            manifest = {
                "export_id": req.id, "object_type": req.object_type, "object_ids": req.object_ids,
                "reason": req.reason, "requester": _user_ref(requester), "approver": _user_ref(approver),
                "requested_at": _iso(req.requested_at), "approved_at": _iso(now), "expires_at": _iso(req.expires_at),
                "identity_included": show, "files": files,
                "note": "sha256 of each file as stored in this bundle; audio sha256 equals the hash recorded at ingest",
            }
            mbytes = _json_bytes(manifest)
            zf.writestr("manifest.json", mbytes)
        dek = crypto.generate_data_key()
        res = crypto.encrypt_file(part, bundle, dek, key_id=req.id)
        token = ctx.field.encrypt(json.dumps({"key": base64.b64encode(dek).decode("ascii"), "sha256": res.sha256,
                                              "size": res.plain_len}), f"export:{req.id}")
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(token)
            f.flush()
            os.fsync(f.fileno())
    finally:
        part.unlink(missing_ok=True)
    return hashlib.sha256(mbytes).hexdigest(), files, show


# --------------------------------------------------------------------------------- download
@dataclass
class Download:
    export: ExportRequest
    filename: str
    size: int
    chunks: Iterator[bytes]


def _expire(session: Session, settings: Any, req: ExportRequest, now: datetime, actor_name: str = "system:exports") -> None:
    discard_bundle(settings, req.id)
    req.status = "expired"
    audit.record(session, "export.expire", actor_name=actor_name, object_type="export", object_id=req.id,
                 detail={"expires_at": _iso(req.expires_at)}, at=now)


def open_download(session: Session, ctx: storage.CryptoContext, settings: Any, export_id: str, user: User, *,
                  ip: str | None = None, now: datetime | None = None) -> Download:
    """Only the requester, only an approved export, only before it expires. Audits the download
    (the caller commits). Raises ``ExportNotFound`` / ``ExportConflict`` / ``ExportGone``."""
    now = _now(now)
    try:
        eid = access.check_id(export_id)
    except access.NotVisible:
        raise ExportNotFound("not found") from None
    req = session.get(ExportRequest, eid)
    if req is None or req.requester_id != user.id or user.role != "supervisor":
        raise ExportNotFound("not found")
    if req.status == "expired":
        raise ExportGone("export expired; its bundle was destroyed")
    if req.status != "approved":
        raise ExportConflict(f"export is {req.status}: only an approved export can be downloaded")
    if req.expires_at is None or now >= req.expires_at:
        _expire(session, settings, req, now)
        session.commit()
        raise ExportGone("export expired; its bundle was destroyed")
    bundle, key_path, _ = _paths(settings, req.id)
    try:
        meta = json.loads(ctx.field.decrypt(key_path.read_text(encoding="ascii"), f"export:{req.id}"))
        reader = crypto.EncryptedReader.open(bundle, base64.b64decode(meta["key"]), expected_key_id=req.id)
    except FileNotFoundError:
        raise ExportGone("export bundle is gone") from None
    requester_identity = access.has_identity(user)
    audit.record(session, "export.download", actor=user, object_type="export", object_id=req.id, ip=ip,
                 detail={"size": reader.size, "manifest_sha256": req.manifest_sha256}, at=now)
    if requester_identity:
        audit.record(session, "identity.view", actor=user, object_type="export", object_id=req.id, ip=ip,
                     detail={"fields": ["caller", "reporter_name", "reporter_phone", "transcript_text"]}, at=now)

    def chunks() -> Iterator[bytes]:
        h = hashlib.sha256()
        try:
            for piece in reader.iter_range(0, reader.size):
                h.update(piece)
                yield piece
            if h.hexdigest() != meta["sha256"]:
                log.error("export %s: bundle sha256 mismatch on download", req.id)
                raise storage.IntegrityError(f"export {req.id}: bundle sha256 mismatch")
        finally:
            reader.close()

    return Download(req, f"export-{req.id}.zip", reader.size, chunks())


def expire_exports(factory: sessionmaker, settings: Any, now: datetime | None = None) -> int:
    """Scheduler job (e.g. hourly): destroy the bundles of expired exports."""
    now = _now(now)
    n = 0
    with factory() as s:
        rows = s.execute(select(ExportRequest).where(ExportRequest.status == "approved",
                                                     ExportRequest.expires_at <= now)).scalars().all()
        for req in rows:
            _expire(s, settings, req, now)
            n += 1
        s.commit()
    if n:
        log.info("exports: %d expired bundle(s) destroyed", n)
    return n
