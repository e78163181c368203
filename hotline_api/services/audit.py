"""The audit log: who, what, when, from where, why, on which object, with a JSON detail.

Entries are hash-chained (``recordings/audit_chain.py``), append-only (ORM guard + DB triggers) and
never removed by retention. Two ways to write:

* ``record(session, ...)``: inside the caller's transaction (changes: the entry commits with them);
* ``append(session_factory, ...)``: its own short transaction with retries (reads such as playback
  or views, logins), so a busy business transaction never holds up the log.

Detail must never contain identity values (caller number, reporter name/phone) in clear.

Anchors (``recordings/audit_anchor.py``): the chain's head is written to a file outside the
database every 15 minutes (``anchor_and_record``: only after the entries since the last anchor were
checked, so a forged chain is never anchored) and after the daily full ``verify``. Each anchor
written is then recorded in the chain itself (an ``audit.anchor`` entry with the file's anchor
count), so a deleted or truncated anchor file is reported as tampering, not read as "no anchors".
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from hotline_api.models.governance import AuditEntry
from recordings.audit_anchor import Anchor, AnchorError, AnchorLog, RecordedAnchor, check_anchors, check_recorded
from recordings.audit_chain import (GENESIS, ChainKey, ChainProblem, ChainResult, canonical_json, entry_hash,
                                    verify_chain)

log = logging.getLogger(__name__)

CHAIN_KEY_FILE = "audit_chain.key"
_chain_keys: dict[str, ChainKey] = {}


def _chain_key_path():
    from hotline_api.core.config import get_settings

    return get_settings().keys_dir / CHAIN_KEY_FILE


def load_chain_key() -> ChainKey | None:
    """The chain's sealing key from ``keys/audit_chain.key`` (None before the first sealed entry)."""
    import base64

    path = _chain_key_path()
    cached = _chain_keys.get(str(path))
    if cached is not None:
        return cached
    try:
        data = json.loads(path.read_text(encoding="ascii"))
        key = ChainKey(base64.b64decode(data["key"]), int(data["since_seq"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as e:
        raise AuditKeyError(f"audit chain key {path} is damaged") from e
    _chain_keys[str(path)] = key
    return key


class AuditKeyError(RuntimeError):
    pass


def _chain_key_for(seq: int) -> ChainKey:
    """The sealing key, created at the first entry written with this version (``since_seq``)."""
    import base64
    import os

    from recordings.keys import write_secret_file

    key = load_chain_key()
    if key is not None:
        return key
    path = _chain_key_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_secret_file(path, json.dumps({"key": base64.b64encode(os.urandom(32)).decode("ascii"),
                                            "since_seq": seq}) + "\n", exclusive=True)
    except FileExistsError:
        pass  # another process made it first: theirs
    return load_chain_key()


def clear_key_cache() -> None:
    _chain_keys.clear()


def _seal_problem(session: Session) -> str | None:
    """A missing chain key file while sealed entries exist is tampering (or a lost key), not "no seal"."""
    if load_chain_key() is not None:
        return None
    if session.execute(select(AuditEntry.seq).where(AuditEntry.mac.is_not(None)).limit(1)).first() is not None:
        return f"audit chain key {_chain_key_path()} is missing, but the log holds sealed entries (deleted?)"
    return None


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
        "mac": e.mac,
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
    entry.mac = _chain_key_for(seq).seal(entry.hash)
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


def iter_entries(session: Session, batch: int = 1000, after: int = 0) -> Iterator[dict[str, Any]]:
    """Every entry after entry ``after``, in sequence order (read in batches)."""
    last = after
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


# ------------------------------------------------------------------------------------- anchors
ANCHOR_ACTION = "audit.anchor"  # the audit log's own record that an anchor was written


def _recorded(fields: dict[str, Any]) -> RecordedAnchor | str:
    d = fields.get("detail") or {}
    try:
        return RecordedAnchor(int(d["count"]), int(d["seq"]), str(d["hash"]), fields.get("seq"))
    except (KeyError, TypeError, ValueError):
        return f"{ANCHOR_ACTION} entry #{fields.get('seq')} is unreadable: {d!r}"


def _latest_recorded(session: Session) -> RecordedAnchor | str | None:
    e = session.execute(select(AuditEntry).where(AuditEntry.action == ANCHOR_ACTION)
                        .order_by(AuditEntry.seq.desc()).limit(1)).scalar_one_or_none()
    return None if e is None else _recorded(entry_fields(e))


def _hashes(session: Session, seqs: Iterable[int]) -> dict[int, str]:
    """The stored hashes of entries ``seqs`` (batched lookups by primary key)."""
    wanted, out = sorted(set(seqs)), {}
    for i in range(0, len(wanted), 500):
        out.update((seq, h) for seq, h in session.execute(select(AuditEntry.seq, AuditEntry.hash)
                                                            .where(AuditEntry.seq.in_(wanted[i:i + 500]))))
    return out


def _broken(result: ChainResult, seq: int | None, reason: str) -> ChainResult:
    return ChainResult(False, result.count, result.head_seq, result.head_hash, ChainProblem(seq, result.count, reason))


def _check_anchors(session: Session, anchors: AnchorLog, result: ChainResult,
                   recorded: Iterable[RecordedAnchor | str] = ()) -> ChainResult:
    """Every anchored entry is still there with its anchored hash, and the file still holds every
    anchor the audit log records as written (``recorded``)."""
    try:
        marks = anchors.read()
    except AnchorError as e:
        return _broken(result, None, str(e))
    hashes = _hashes(session, (a.seq for a in marks))
    problem = check_anchors(marks, hashes.get, result.head_seq)
    if problem:
        return _broken(result, next((a.seq for a in marks if hashes.get(a.seq) != a.hash), None), problem)
    for rec in reversed(list(recorded)):  # the latest record first: it names the most anchors
        problem = rec if isinstance(rec, str) else check_recorded(marks, rec, anchors.path)
        if problem:
            return _broken(result, None, problem)
    return result


def verify(session: Session, anchors: AnchorLog | None = None) -> ChainResult:
    """The hash chain, entry by entry; with ``anchors``, also that every anchored entry is still
    there unchanged (a removed tail shows) and that the anchor file still holds every anchor the log
    records as written (a deleted or truncated file shows)."""
    recorded: list[RecordedAnchor | str] = []

    def walk() -> Iterator[dict[str, Any]]:
        for e in iter_entries(session):
            if e["action"] == ANCHOR_ACTION:
                recorded.append(_recorded(e))
            yield e

    problem = _seal_problem(session)
    if problem:
        return ChainResult(False, 0, None, GENESIS, ChainProblem(None, 0, problem))
    result = verify_chain(walk(), key=load_chain_key())
    if anchors is None or not result.ok:
        return result
    return _check_anchors(session, anchors, result, recorded)


def verify_since_anchor(session: Session, anchors: AnchorLog) -> ChainResult:
    """The cheap check before anchoring: the file is intact and holds what the log records as
    written; the last anchored entry is unchanged (its stored hash is the anchored one and still
    matches its content); every entry written since links to it and matches its hash; the earlier
    anchored entries keep their anchored hashes. Only the entries after the last anchor are read
    (no anchor yet: the whole chain). The daily ``verify`` walks everything."""
    try:
        marks = anchors.read()
    except AnchorError as e:
        return ChainResult(False, 0, None, GENESIS, ChainProblem(None, 0, str(e)))
    last = marks[-1] if marks else None
    rec = _latest_recorded(session)
    if rec is not None:
        problem = rec if isinstance(rec, str) else check_recorded(marks, rec, anchors.path)
        if problem:
            return ChainResult(False, 0, None, GENESIS, ChainProblem(None, 0, problem))
    problem = _seal_problem(session)
    if problem:
        return ChainResult(False, 0, None, GENESIS, ChainProblem(None, 0, problem))
    if last is None:
        result = verify_chain(iter_entries(session), key=load_chain_key())
    else:
        e = session.get(AuditEntry, last.seq)
        start = ChainResult(True, last.seq, last.seq, last.hash)
        if e is None or e.hash != last.hash:
            head = session.execute(select(func.max(AuditEntry.seq))).scalar()
            return _broken(start, last.seq, check_anchors([last], {last.seq: e.hash if e else None}.get, head))
        if entry_hash(entry_fields(e)) != e.hash:
            return _broken(start, last.seq, f"content does not match its hash (entry edited; it was anchored on "
                                            f"{last.at} with this hash)")
        result = verify_chain(iter_entries(session, after=last.seq), after_seq=last.seq, after_hash=last.hash,
                              key=load_chain_key())
    if not result.ok:
        return result
    return _check_anchors(session, anchors, result)


def anchor(session: Session, anchors: AnchorLog) -> ChainResult:
    """Record the chain's current head in the anchor file after ``verify_since_anchor`` (cheap enough
    to run often: only the entries since the last anchor are walked). Returns the check's result;
    nothing is anchored when it failed."""
    return _anchor(session, anchors)[0]


def _only_records_since(session: Session, last_seq: int, head_seq: int) -> bool:
    """Are the entries after the last anchor (up to ``head_seq``) all ``audit.anchor`` records?
    Then the head did not move: anchoring it would only write another record, forever."""
    n = session.execute(select(func.count()).select_from(AuditEntry).where(
        AuditEntry.seq > last_seq, AuditEntry.seq <= head_seq, AuditEntry.action != ANCHOR_ACTION)).scalar()
    return not n


def _anchor(session: Session, anchors: AnchorLog) -> tuple[ChainResult, Anchor | None]:
    result = verify_since_anchor(session, anchors)
    if not result.ok or result.head_seq is None:
        return result, None
    last = anchors.last()
    if last is not None and (last.seq >= result.head_seq or _only_records_since(session, last.seq, result.head_seq)):
        return result, None
    return result, anchors.append(result.head_seq, result.head_hash)


def record_anchor(factory: sessionmaker, anchors: AnchorLog, written: Anchor) -> int | None:
    """Record in the audit log that ``written`` is now in the anchor file (and how many anchors the
    file holds): from then on a deleted or truncated file is tampering. Returns the entry's seq."""
    try:
        marks = anchors.read()
        # its position in the file (found, not assumed last: another process may have appended since)
        count = next(i for i in range(len(marks), 0, -1)
                     if (marks[i - 1].seq, marks[i - 1].hash) == (written.seq, written.hash))
        return append(factory, ANCHOR_ACTION, actor_name="system", object_type="audit", object_id=str(written.seq),
                      detail={"count": count, "seq": written.seq, "hash": written.hash, "at": written.at,
                              "file": str(anchors.path)})
    except Exception:  # the anchor itself is written; the file being ahead of the log is no tampering
        log.exception("audit anchor of #%s written, but not recorded in the audit log", written.seq)
        return None


def anchor_head(factory: sessionmaker, anchors: AnchorLog, result: ChainResult) -> Anchor | None:
    """After a successful full ``verify`` (``result``): anchor its head and record it, unless the
    head did not move since the last anchor. Returns the anchor written, if any."""
    if not result.ok or result.head_seq is None:
        return None
    last = anchors.last()
    if last is not None:
        if last.seq >= result.head_seq:
            return None
        with factory() as s:
            if _only_records_since(s, last.seq, result.head_seq):
                return None
    written = anchors.append(result.head_seq, result.head_hash)
    record_anchor(factory, anchors, written)
    return written


def anchor_and_record(factory: sessionmaker, anchors: AnchorLog) -> ChainResult:
    """The 15-minute job: ``anchor`` (check since the last anchor, then anchor the head) and record
    the anchor in the audit log. Nothing is anchored when the check failed."""
    with factory() as s:
        result, written = _anchor(s, anchors)
    if written is not None:
        record_anchor(factory, anchors, written)
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
