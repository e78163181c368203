"""The audit log: who, what, when, from where, why, on which object, with a JSON detail.

Entries are hash-chained (``recordings/audit_chain.py``), append-only (ORM guard + DB triggers) and
never removed by retention. Two ways to write:

* ``record(session, ...)``: inside the caller's transaction (changes: the entry commits with them);
* ``append(session_factory, ...)``: its own short transaction with retries (reads such as playback
  or views, logins), so a busy business transaction never holds up the log.

Detail must never contain identity values (caller number, reporter name/phone) in clear.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from hotline_api.models.governance import AuditEntry
from recordings.audit_anchor import AnchorError, AnchorLog, check_anchors
from recordings.audit_chain import GENESIS, ChainProblem, ChainResult, canonical_json, entry_hash, verify_chain

log = logging.getLogger(__name__)


def _iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat(timespec="microseconds")


def entry_fields(e: AuditEntry) -> dict[str, Any]:
    try:
        detail = json.loads(e.detail or "{}")
    except ValueError:
        detail = {"_unparseable": e.detail}
    return {
        "seq": e.seq,
        "at": _iso(e.at) if e.at else None,
        "actor_id": e.actor_id,
        "actor_name": e.actor_name,
        "action": e.action,
        "object_type": e.object_type,
        "object_id": e.object_id,
        "ip": e.ip,
        "reason": e.reason,
        "detail": detail,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    }


def record(
    session: Session,
    action: str,
    *,
    actor: Any = None,
    actor_name: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    ip: str | None = None,
    reason: str | None = None,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    """Append one entry in ``session``'s transaction (flushed, not committed)."""
    at = (at or datetime.now(timezone.utc)).astimezone(timezone.utc)
    last = session.execute(select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)).first()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    detail_json = canonical_json(detail or {}).decode("utf-8")
    fields = {
        "seq": seq,
        "at": _iso(at),
        "actor_id": getattr(actor, "id", None),
        "actor_name": actor_name or getattr(actor, "username", None),
        "action": action,
        "object_type": object_type,
        "object_id": None if object_id is None else str(object_id),
        "ip": ip,
        "reason": reason,
        "detail": json.loads(detail_json),
        "prev_hash": prev,
    }
    entry = AuditEntry(
        seq=seq, at=at, actor_id=fields["actor_id"], actor_name=fields["actor_name"], action=action,
        object_type=object_type, object_id=fields["object_id"], ip=ip, reason=reason, detail=detail_json,
        prev_hash=prev, hash=entry_hash(fields),
    )
    session.add(entry)
    session.flush()
    return entry


def append(factory: sessionmaker, action: str, attempts: int = 8, **kw: Any) -> int:
    """Append in a transaction of its own (on SQLite ``BEGIN IMMEDIATE``, so the read of the chain
    head and the insert are serialized); retried when another writer got there first. Returns seq."""
    engine = factory.kw["bind"]
    delay = 0.01
    for i in range(attempts):
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                conn.info["begin_mode"] = "IMMEDIATE"
            with Session(bind=conn, expire_on_commit=False) as s:
                try:
                    e = record(s, action, **kw)
                    s.commit()
                    return e.seq
                except (IntegrityError, OperationalError):
                    s.rollback()
                    if i == attempts - 1:
                        raise
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    raise RuntimeError("unreachable")


def iter_entries(session: Session, batch: int = 1000) -> Iterator[dict[str, Any]]:
    last = 0
    while True:
        rows = session.execute(
            select(AuditEntry).where(AuditEntry.seq > last).order_by(AuditEntry.seq).limit(batch)
        ).scalars().all()
        if not rows:
            return
        for e in rows:
            yield entry_fields(e)
        last = rows[-1].seq
        session.expunge_all()


def anchor_log(settings) -> AnchorLog:
    """The chain's anchors outside the database (``recordings.audit_anchor``), HMAC'd with the
    ``audit_anchor`` key of the key folder."""
    from hotline_api.core.secrets import load_or_create

    return AnchorLog(settings.audit_anchor_path, load_or_create(settings, "audit_anchor"))


def _check_anchors(session: Session, anchors: AnchorLog, result: ChainResult) -> ChainResult:
    try:
        marks = anchors.read()
    except AnchorError as e:
        return ChainResult(False, result.count, result.head_seq, result.head_hash,
                           ChainProblem(None, result.count, str(e)))

    def hash_at(seq: int) -> str | None:
        return session.execute(select(AuditEntry.hash).where(AuditEntry.seq == seq)).scalar()

    problem = check_anchors(marks, hash_at, result.head_seq)
    if not problem:
        return result
    seq = next((a.seq for a in marks if hash_at(a.seq) != a.hash), None)
    return ChainResult(False, result.count, result.head_seq, result.head_hash,
                       ChainProblem(seq, result.count, problem))


def verify(session: Session, anchors: AnchorLog | None = None) -> ChainResult:
    """The hash chain, entry by entry; with ``anchors``, also that every anchored entry is still
    there unchanged (a removed tail shows)."""
    result = verify_chain(iter_entries(session))
    if anchors is None or not result.ok:
        return result
    return _check_anchors(session, anchors, result)


def anchor(session: Session, anchors: AnchorLog) -> ChainResult:
    """Record the chain's current head in the anchor file, if the earlier anchors still hold (the
    whole chain is not re-walked: cheap enough to run often). Returns the check's result."""
    head = session.execute(select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)).first()
    count = session.execute(select(func.count()).select_from(AuditEntry)).scalar() or 0
    result = ChainResult(True, count, head[0] if head else None, head[1] if head else GENESIS)
    result = _check_anchors(session, anchors, result)
    if result.ok and head is not None:
        anchors.append(head[0], head[1])
    return result


@dataclass
class AuditQuery:
    action: str | None = None
    actor_name: str | None = None
    object_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100
    offset: int = 0


def search(session: Session, q: AuditQuery) -> list[dict[str, Any]]:
    """Newest first, for the auditor's view."""
    stmt = select(AuditEntry)
    if q.action:
        stmt = stmt.where(AuditEntry.action.like(q.action.replace("*", "%")))
    if q.actor_name:
        stmt = stmt.where(AuditEntry.actor_name == q.actor_name)
    if q.object_id:
        stmt = stmt.where(AuditEntry.object_id == q.object_id)
    if q.since:
        stmt = stmt.where(AuditEntry.at >= q.since)
    if q.until:
        stmt = stmt.where(AuditEntry.at < q.until)
    stmt = stmt.order_by(AuditEntry.seq.desc()).limit(min(max(q.limit, 1), 1000)).offset(max(q.offset, 0))
    return [entry_fields(e) for e in session.execute(stmt).scalars()]
