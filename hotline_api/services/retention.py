"""Retention on the database: policies, legal holds, and the purge by crypto-shredding.

The decision logic is pure (``recordings/retention.py``). Here: gather the facts of every stored
recording (kind, completion time, "no content" mark and case link from the review, legal holds on
the recording or on its case, the case's archive time), decide, and purge what is due:

1. in one transaction: re-check the facts, destroy the wrapped data key, mark the recording
   ``purged``, write a ``PurgeStub`` (reason, time) and an audit entry; commit;
2. then delete the encrypted file (already unreadable: its key is gone).

Cases live in another module, passed as two callables (defaults: ``services.case_links``):
``case_links(session, recording_ids) -> {recording_id: case_id}`` (links besides the review's) and
``case_archived(session, case_ids) -> {case_id: archived_at or None}``. The content derived from a
purged recording is shredded in the same transaction (``services.content``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from hotline_api.models.calls import Recording
from hotline_api.models.governance import LegalHold, PurgeStub, RecordingBlob, RetentionPolicyRow, ReviewAssignment
from recordings.retention import KINDS, Decision, RecordingFacts, RetentionPolicy, decide
from recordings.store import EncryptedStore

log = logging.getLogger(__name__)

CaseLinks = Callable[[Session, list[str]], dict[str, str]]
CaseArchived = Callable[[Session, list[str]], dict[str, datetime | None]]
PurgeHook = Callable[[Session, str], None]


class RetentionError(ValueError):
    pass


# ------------------------------------------------------------------------------------ policies
def load_policy(session: Session) -> RetentionPolicy:
    rows = session.execute(select(RetentionPolicyRow)).scalars().all()
    return RetentionPolicy.from_mapping({r.kind: r.days for r in rows if r.kind in KINDS})


def set_policy(session: Session, kind: str, days: int | None, actor: Any = None) -> RetentionPolicyRow:
    from hotline_api.services import audit

    if kind not in KINDS:
        raise RetentionError(f"unknown retention kind {kind!r} (known: {', '.join(KINDS)})")
    if days is not None and days < 0:
        raise RetentionError("days must be >= 0 (or empty to keep forever)")
    row = session.get(RetentionPolicyRow, kind)
    old = row.days if row else getattr(RetentionPolicy(), f"{kind}_days")
    if row is None:
        row = RetentionPolicyRow(kind=kind)
        session.add(row)
    row.days, row.updated_at, row.updated_by = days, datetime.now(timezone.utc), getattr(actor, "id", None)
    audit.record(session, "retention.policy", actor=actor, actor_name=None if actor else "system",
                 object_type="policy", object_id=kind, detail={"old_days": old, "days": days})
    return row


# -------------------------------------------------------------------------------------- holds
def place_hold(session: Session, target_type: str, target_id: str, reason: str, actor: Any = None,
               ip: str | None = None) -> LegalHold:
    from hotline_api.services import audit

    if target_type not in ("recording", "case"):
        raise RetentionError("a legal hold targets a recording or a case")
    if not reason or not reason.strip():
        raise RetentionError("a legal hold needs a reason")
    hold = LegalHold(target_type=target_type, target_id=target_id, reason=reason.strip(),
                     created_by=getattr(actor, "id", None))
    session.add(hold)
    session.flush()
    audit.record(session, "retention.hold", actor=actor, actor_name=None if actor else "system",
                 object_type=target_type, object_id=target_id, ip=ip, reason=reason, detail={"hold_id": hold.id})
    return hold


def release_hold(session: Session, hold_id: str, actor: Any = None, reason: str | None = None,
                 ip: str | None = None) -> LegalHold:
    from hotline_api.services import audit

    hold = session.get(LegalHold, hold_id)
    if hold is None or hold.released_at is not None:
        raise RetentionError("no such active hold")
    hold.released_at, hold.released_by = datetime.now(timezone.utc), getattr(actor, "id", None)
    audit.record(session, "retention.release", actor=actor, actor_name=None if actor else "system",
                 object_type=hold.target_type, object_id=hold.target_id, ip=ip, reason=reason,
                 detail={"hold_id": hold.id})
    return hold


def _active_holds(session: Session) -> tuple[set[str], set[str]]:
    rows = session.execute(select(LegalHold.target_type, LegalHold.target_id)
                           .where(LegalHold.released_at.is_(None))).all()
    return {i for t, i in rows if t == "recording"}, {i for t, i in rows if t == "case"}


# -------------------------------------------------------------------------------------- facts
def gather_facts(session: Session, case_links: CaseLinks | None = None, case_archived: CaseArchived | None = None,
                 recording_ids: Iterable[str] | None = None) -> list[RecordingFacts]:
    stmt = (select(RecordingBlob.recording_id, Recording.kind, Recording.completed_at, Recording.created_at,
                   RecordingBlob.stored_at, ReviewAssignment.case_id, ReviewAssignment.no_content_reason)
            .join(Recording, Recording.id == RecordingBlob.recording_id)
            .outerjoin(ReviewAssignment, ReviewAssignment.recording_id == RecordingBlob.recording_id)
            .where(RecordingBlob.wrapped_key.is_not(None)))
    if recording_ids is not None:
        stmt = stmt.where(RecordingBlob.recording_id.in_(list(recording_ids)))
    rows = session.execute(stmt).all()
    ids = [r[0] for r in rows]
    links = dict(case_links(session, ids)) if case_links and ids else {}
    case_of = {r[0]: (r[5] or links.get(r[0])) for r in rows}
    case_ids = sorted({c for c in case_of.values() if c})
    archived = dict(case_archived(session, case_ids)) if case_archived and case_ids else {}
    held_recs, held_cases = _active_holds(session)
    facts = []
    for rid, kind, completed_at, created_at, stored_at, _case, no_content in rows:
        cid = case_of[rid]
        facts.append(RecordingFacts(
            recording_id=rid, kind=kind or "call", completed_at=completed_at or created_at or stored_at,
            no_content=no_content is not None, case_id=cid, case_archived_at=archived.get(cid) if cid else None,
            held=rid in held_recs or (cid is not None and cid in held_cases),
        ))
    return facts


# -------------------------------------------------------------------------------------- purge
@dataclass
class RetentionReport:
    now: datetime
    dry_run: bool
    decisions: list[Decision] = field(default_factory=list)
    purged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (recording_id, why) changed since planning
    files_removed: int = 0

    @property
    def due(self) -> list[Decision]:
        return [d for d in self.decisions if d.purge]


def _purge_one(session: Session, rid: str, decision: Decision, now: datetime, actor_name: str) -> bool:
    from hotline_api.services import audit

    blob = session.get(RecordingBlob, rid)
    if blob is None or blob.wrapped_key is None:
        return False
    rec = session.get(Recording, rid)
    session.add(PurgeStub(recording_id=rid, call_id=rec.call_id if rec else None, kind=rec.kind if rec else None,
                          rule=decision.rule, reason=decision.reason, sha256=blob.sha256, plain_size=blob.plain_size,
                          recorded_at=(rec.completed_at or rec.created_at) if rec else None, purged_at=now,
                          purged_by=actor_name))
    blob.wrapped_key, blob.master_kcv, blob.destroyed_at = None, None, now
    if rec is not None:
        rec.status, rec.path = "purged", None
    audit.record(session, "retention.purge", actor_name=actor_name, object_type="recording", object_id=rid,
                 reason=decision.reason, detail={"rule": decision.rule, "sha256": blob.sha256,
                                                 "due_at": decision.due_at.isoformat() if decision.due_at else None},
                 at=now)
    return True


def run_retention(factory: sessionmaker, settings: Any, now: datetime | None = None, dry_run: bool = False,
                  case_links: CaseLinks | None = None, case_archived: CaseArchived | None = None,
                  on_purged: Iterable[PurgeHook] | None = None, actor_name: str = "system:retention",
                  progress: Callable[[int, int], None] | None = None) -> RetentionReport:
    """Apply the retention policies now (``dry_run``: only report). ``on_purged`` hooks run inside
    each purge transaction; by default the content derived from the recording is shredded
    (``services.content.purge_recording_content``: transcript, live text, draft text, the call's
    content key). ``case_links`` / ``case_archived`` default to the real case lookups
    (``services.case_links``), so every caller keeps a recording of an open case."""
    from hotline_api.services import case_links as links
    from hotline_api.services import content

    case_links = case_links or links.case_links
    case_archived = case_archived or links.case_archived
    on_purged = (content.purge_recording_content,) if on_purged is None else tuple(on_purged)
    now = now or datetime.now(timezone.utc)
    report = RetentionReport(now, dry_run)
    with factory() as s:
        policy = load_policy(s)
        facts = gather_facts(s, case_links, case_archived)
        report.decisions = [decide(f, policy, now) for f in facts]
    if dry_run:
        return report
    store = EncryptedStore(settings.recordings_dir)
    due = report.due
    for i, d in enumerate(due, 1):
        with factory() as s:
            if s.get_bind().dialect.name == "sqlite":
                s.execute(text("PRAGMA secure_delete=ON"))  # overwrite freed pages (the old wrapped key)
            fresh = gather_facts(s, case_links, case_archived, recording_ids=[d.recording_id])
            again = decide(fresh[0], load_policy(s), now) if fresh else None
            if again is None or not again.purge:
                report.skipped.append((d.recording_id, again.reason if again else "already purged"))
                continue
            if _purge_one(s, d.recording_id, again, now, actor_name):
                for hook in on_purged:
                    hook(s, d.recording_id)
                s.commit()
                report.purged.append(d.recording_id)
        if store.delete(d.recording_id):
            report.files_removed += 1
        if progress:
            progress(i, len(due))
    report.files_removed += _remove_orphans(factory, store)
    if report.purged:
        _checkpoint(factory)
    return report


def _checkpoint(factory: sessionmaker) -> None:
    """SQLite: move the WAL (which still holds the old pages with wrapped keys) into the database
    file, where secure_delete has zeroed them, and truncate it."""
    engine = factory.kw["bind"]
    if engine.dialect.name != "sqlite":
        return
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        cur.close()
    except Exception as e:  # noqa: BLE001 - best effort; the key is already destroyed logically
        log.warning("retention: WAL checkpoint failed: %s", e)
    finally:
        raw.close()


def _remove_orphans(factory: sessionmaker, store: EncryptedStore) -> int:
    """Files whose key was destroyed but which survived a crash between commit and unlink."""
    n = 0
    with factory() as s:
        for (rid,) in s.execute(select(RecordingBlob.recording_id).where(RecordingBlob.wrapped_key.is_(None))):
            if store.delete(rid):
                n += 1
    return n
