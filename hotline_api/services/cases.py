"""Draft cases and their lifecycle.

- ``create_draft``: transcript -> stored draft, linked to earlier cases with the same reported
  person (pinyin-equal name, overlapping unit) or the same caller (salted hash) within a window;
  urgent drafts raise an ``UrgentAlert`` (acknowledged by the on-duty supervisor), a log line
  without identity, and an event on the bus.
- ``on_transcript_completed``: the ASR stage's completion hook.
- ``correct_draft``: field corrections before registration, each kept.
- ``register_draft``: draft -> case with a number ``12388-YYYY-NNNNNN`` unique and gap-free per
  year (per-year counter row updated inside the registering transaction, taken with
  BEGIN IMMEDIATE on SQLite / SELECT ... FOR UPDATE elsewhere).
- ``start_handling`` (自办/转办/交办 to a named unit) -> ``close_case`` -> ``archive_case``,
  ``record_feedback`` (notice sent, result sent, objection); every step is a ``CaseEvent``.
- ``remind_due_soon`` / ``remind_overdue``: plain job functions for the scheduler.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable
from zoneinfo import ZoneInfo

from pypinyin import lazy_pinyin
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from hotline_api.db.base import utcnow
from hotline_api.drafting import DRAFT_KEYS, DraftInputError, make_draft
from hotline_api.models.cases import (
    HANDLING_MODES,
    Case,
    CaseDeadline,
    CaseEvent,
    CaseSequence,
    DeadlineRule,
    Draft,
    DraftCorrection,
    DraftLink,
    DraftSubject,
    ReporterFeedback,
    UrgentAlert,
)
from hotline_api.services.calendar import DEFAULT_RULES, WorkCalendar, compute_deadlines

log = logging.getLogger(__name__)

DEFAULT_DUPLICATE_WINDOW_DAYS = 365
DEFAULT_TZ = "Asia/Shanghai"
NUMBER_PREFIX = "12388"


class CaseError(ValueError):
    """A request the case lifecycle refuses (wrong state, unknown field, ...)."""


# =========================================================================== event bus
class EventBus:
    """In-process publish/subscribe for console events (urgent alerts, reminders). The lead
    wires a subscriber that forwards to the console (SSE/WebSocket). Subscribers must not raise;
    exceptions are logged and swallowed."""

    def __init__(self) -> None:
        self._subs: list[Callable[[dict], None]] = []
        self._lock = threading.Lock()

    def subscribe(self, fn: Callable[[dict], None]) -> None:
        with self._lock:
            if fn not in self._subs:
                self._subs.append(fn)

    def unsubscribe(self, fn: Callable[[dict], None]) -> None:
        with self._lock:
            if fn in self._subs:
                self._subs.remove(fn)

    def publish(self, event: dict) -> None:
        for fn in list(self._subs):
            try:
                fn(event)
            except Exception:  # pragma: no cover - defensive
                log.exception("case event subscriber failed for %s", event.get("type"))


bus = EventBus()


# =========================================================================== caller hash
def normalize_number(number: str) -> str:
    digits = re.sub(r"\D", "", number or "")
    if len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    if digits.startswith("0086"):
        digits = digits[4:]
    return digits


def caller_hash(number: str, salt: bytes | str) -> str:
    """Salted hash (HMAC-SHA256, hex) of a phone number's digits: the only form in which a
    caller's number is compared across cases."""
    key = salt.encode() if isinstance(salt, str) else salt
    return hmac.new(key, normalize_number(number).encode(), hashlib.sha256).hexdigest()


def load_caller_salt(settings) -> bytes:
    """``settings.caller_hash_salt``, else the key file ``<data>/keys/caller_salt.key`` (created
    with mode 0600 on first use)."""
    if settings.caller_hash_salt:
        return settings.caller_hash_salt.encode()
    path = settings.keys_dir / "caller_salt.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


# =========================================================================== helpers
def _tz(settings=None) -> ZoneInfo:
    return ZoneInfo(getattr(settings, "timezone", None) or DEFAULT_TZ)


def local_date(dt: datetime, settings=None) -> date:
    return dt.astimezone(_tz(settings)).date()


def _event(session: Session, actor: str, action: str, *, case: Case | None = None, draft_id: str | None = None,
           frm: str | None = None, to: str | None = None, **detail: Any) -> CaseEvent:
    ev = CaseEvent(case_id=case.id if case else None, draft_id=draft_id, actor=actor, action=action,
                   from_status=frm, to_status=to, detail=json.dumps(detail, ensure_ascii=False) if detail else None)
    session.add(ev)
    return ev


def _pinyin_key(name: str) -> str:
    return " ".join(lazy_pinyin(name)) if name else ""


def units_overlap(a: str, b: str) -> bool:
    a, b = "".join((a or "").split()), "".join((b or "").split())
    if not a or not b:
        return False
    if a in b or b in a:
        return True
    # a common part of three or more characters (XX派出所 / XX镇派出所)
    for n in range(min(len(a), len(b)), 2, -1):
        for i in range(len(a) - n + 1):
            if a[i:i + n] in b:
                return True
    return False


def draft_fields(d: Draft) -> dict:
    return json.loads(d.fields_json)


# =========================================================================== drafts
@dataclass
class DraftResult:
    draft: Draft
    links: list[DraftLink]
    alert: UrgentAlert | None


def create_draft(session: Session, *, text: str | None = None, turns: list[dict] | None = None,
                 recording_id: str | None = None, transcript_id: str | None = None, call_id: str | None = None,
                 caller_hash_value: str | None = None, received_at: datetime | None = None, source: str = "api",
                 actor: str = "system", settings=None, salt: bytes | None = None,
                 window_days: int = DEFAULT_DUPLICATE_WINDOW_DAYS, event_bus: EventBus | None = None,
                 started: float | None = None, commit: bool = True) -> DraftResult:
    """Draft a case from a transcript and store it (raises DraftInputError on bad input, with
    nothing stored). ``started`` is a ``time.monotonic()`` stamp of when the transcript was ready
    (for the alert latency)."""
    started = started if started is not None else time.monotonic()
    received_at = received_at or utcnow()
    cal = WorkCalendar.from_db(session)
    doc = make_draft(text=text, turns=turns, received=local_date(received_at, settings), calendar=cal,
                     deadlines=compute_deadlines)
    hashes: list[str] = []
    if caller_hash_value:
        hashes.append(caller_hash_value)
    if salt is None and settings is not None:
        salt = load_caller_salt(settings)
    if doc.get("reporter_phone") and salt:
        hashes.append(caller_hash(doc["reporter_phone"], salt))
    if call_id and not caller_hash_value:
        from hotline_api.models.calls import Call

        call = session.get(Call, call_id)
        if call is not None and call.caller_hash:
            hashes.insert(0, call.caller_hash)
    input_text = doc.pop("input", None)
    raw = "\n".join(t.get("text", "") for t in turns) if turns is not None else text
    d = Draft(source=source, recording_id=recording_id, transcript_id=transcript_id, call_id=call_id,
              caller_hash=hashes[0] if hashes else None, received_at=received_at, category=doc["category"],
              urgent=bool(doc["urgent"]), real_name=bool(doc["real_name"]), duplicate_hint=bool(doc["duplicate_hint"]),
              input_mode=(input_text or {}).get("mode"), input_text=raw)
    d.fields_json = json.dumps(doc, ensure_ascii=False)
    d.original_json = d.fields_json
    session.add(d)
    session.flush()
    _index_subjects(session, d, doc["subjects"])
    links = _link_duplicates(session, d, doc["subjects"], hashes, window_days)
    if links:
        d.duplicate_hint = True
        doc["duplicate_hint"] = True
        doc["duplicates"] = [{"draft_id": l.earlier_draft_id, "case_id": l.earlier_case_id, "reason": l.reason}
                             for l in links]
        d.fields_json = json.dumps(doc, ensure_ascii=False)
    _event(session, actor, "draft_created", draft_id=d.id, to="draft", source=source,
           recording_id=recording_id, links=len(links))
    alert = None
    if d.urgent:
        alert = UrgentAlert(draft_id=d.id, kinds=",".join(doc.get("urgent_kinds") or []),
                            latency_s=time.monotonic() - started)
        session.add(alert)
        session.flush()
        _event(session, "system", "urgent_alert", draft_id=d.id, alert_id=alert.id, kinds=alert.kinds)
    if commit:
        session.commit()
    if alert is not None:
        # no identity in the log line or the event: ids and kinds only
        log.warning("URGENT draft %s (alert %s, kinds=%s, recording=%s): on-duty supervisor must acknowledge",
                    d.id, alert.id, alert.kinds or "-", recording_id or "-")
        (event_bus or bus).publish({"type": "urgent_alert", "alert_id": alert.id, "draft_id": d.id,
                                    "recording_id": recording_id, "call_id": call_id, "kinds": alert.kinds,
                                    "category": d.category, "created_at": alert.created_at.isoformat()})
    return DraftResult(d, links, alert)


def _index_subjects(session: Session, d: Draft, subjects: list[dict]) -> None:
    for sj in subjects:
        session.add(DraftSubject(draft_id=d.id, name=sj.get("name") or "", name_pinyin=_pinyin_key(sj.get("name") or ""),
                                 title=sj.get("title") or "", unit=sj.get("unit") or ""))
    session.flush()


def _link_duplicates(session: Session, d: Draft, subjects: list[dict], hashes: list[str],
                     window_days: int) -> list[DraftLink]:
    since = d.received_at - timedelta(days=window_days)
    links: dict[tuple[str, str], DraftLink] = {}
    for sj in subjects:
        name = sj.get("name") or ""
        if not name:
            continue
        rows = session.execute(
            select(DraftSubject, Draft).join(Draft, Draft.id == DraftSubject.draft_id)
            .where(DraftSubject.name_pinyin == _pinyin_key(name), Draft.id != d.id,
                   Draft.received_at >= since, Draft.status != "discarded")).all()
        for ds, other in rows:
            if not units_overlap(sj.get("unit") or "", ds.unit):
                continue
            key = (other.id, "same_subject")
            if key not in links:
                links[key] = DraftLink(draft_id=d.id, earlier_draft_id=other.id, earlier_case_id=other.case_id,
                                       reason="same_subject", detail=json.dumps({"title": ds.title}, ensure_ascii=False))
    if hashes:
        rows = session.execute(select(Draft).where(Draft.caller_hash.in_(hashes), Draft.id != d.id,
                                                   Draft.received_at >= since, Draft.status != "discarded")).scalars()
        for other in rows:
            key = (other.id, "same_caller")
            if key not in links:
                links[key] = DraftLink(draft_id=d.id, earlier_draft_id=other.id, earlier_case_id=other.case_id,
                                       reason="same_caller")
    for l in links.values():
        session.add(l)
    session.flush()
    return list(links.values())


def on_transcript_completed(session: Session, recording_id: str, transcript_json: dict | str, *,
                            settings=None, event_bus: EventBus | None = None) -> Draft | None:
    """Completion hook of the ASR stage: drafts the transcript, linked to the recording and the
    transcript. Idempotent per recording. Returns None when the transcript has nothing to draft."""
    started = time.monotonic()
    from hotline_api.models.calls import Recording

    existing = session.execute(select(Draft).where(Draft.recording_id == recording_id)).scalars().first()
    if existing is not None:
        return existing
    tj = json.loads(transcript_json) if isinstance(transcript_json, str) else transcript_json
    turns = tj.get("turns") if isinstance(tj, dict) else None
    text = tj.get("text") if isinstance(tj, dict) else None
    if turns:
        turns = [{"speaker": t.get("speaker") if t.get("speaker") in ("caller", "operator", "voicemail") else "caller",
                  "text": t.get("text") or ""} for t in turns]
        if not any(t["text"].strip() for t in turns):
            turns = None
    rec = session.get(Recording, recording_id)
    transcript_id = None
    try:
        from hotline_api.models.asr import Transcript

        transcript_id = session.execute(select(Transcript.id).where(Transcript.recording_id == recording_id)).scalar()
    except Exception:  # transcripts table absent (parallel branch not migrated)
        session.rollback()
    received = (rec.call.created_at if rec is not None and rec.call is not None else None) or \
        (rec.created_at if rec is not None else None)
    try:
        res = create_draft(session, text=None if turns else text, turns=turns, recording_id=recording_id,
                           transcript_id=transcript_id, call_id=rec.call_id if rec is not None else None,
                           received_at=received, source="transcript", settings=settings, event_bus=event_bus,
                           started=started)
    except DraftInputError as e:
        log.info("recording %s: no draft (%s)", recording_id, e)
        return None
    return res.draft


FIELD_COLUMNS = {"category": "category", "urgent": "urgent", "real_name": "real_name", "duplicate_hint": "duplicate_hint"}


def correct_draft(session: Session, draft_id: str, field: str, value: Any, actor: str, reason: str | None = None,
                  commit: bool = True) -> DraftCorrection:
    """Correct one draft field before registration; the old and new values are kept."""
    d = session.get(Draft, draft_id)
    if d is None:
        raise CaseError(f"no draft {draft_id}")
    if d.status != "draft":
        raise CaseError(f"draft {draft_id} is {d.status}; corrections are only possible before registration")
    if field not in DRAFT_KEYS:
        raise CaseError(f"unknown draft field {field!r}")
    _validate_field(field, value)
    doc = draft_fields(d)
    old = doc.get(field)
    doc[field] = value
    d.fields_json = json.dumps(doc, ensure_ascii=False)
    if field in FIELD_COLUMNS:
        setattr(d, FIELD_COLUMNS[field], value)
    if field == "subjects":
        for row in session.execute(select(DraftSubject).where(DraftSubject.draft_id == d.id)).scalars():
            session.delete(row)
        _index_subjects(session, d, value)
    d.updated_at = utcnow()
    c = DraftCorrection(draft_id=d.id, field=field, old_json=json.dumps(old, ensure_ascii=False),
                        new_json=json.dumps(value, ensure_ascii=False), actor=actor, reason=reason)
    session.add(c)
    _event(session, actor, "draft_corrected", draft_id=d.id, field=field)
    if commit:
        session.commit()
    return c


def _validate_field(field: str, value: Any) -> None:
    from hotline_api.drafting.classify import CATEGORIES

    if field == "category" and value not in CATEGORIES:
        raise CaseError(f"category must be one of {', '.join(CATEGORIES)}")
    if field in ("urgent", "real_name", "duplicate_hint") and not isinstance(value, bool):
        raise CaseError(f"{field} must be true or false")
    if field in ("issue_types", "places") and not (isinstance(value, list) and all(isinstance(x, str) for x in value)):
        raise CaseError(f"{field} must be a list of strings")
    if field == "subjects":
        if not isinstance(value, list) or not all(isinstance(x, dict) and set(x) <= {"name", "title", "unit"} for x in value):
            raise CaseError("subjects must be a list of {name, title, unit}")
    if field == "amount_yuan" and value is not None and not (isinstance(value, int) and value >= 0):
        raise CaseError("amount_yuan must be a non-negative integer or null")
    if field in ("reporter_name", "reporter_phone", "summary") and not isinstance(value, str):
        raise CaseError(f"{field} must be text")


def drafting_quality(session: Session) -> dict[str, Any]:
    """How often staff corrected each field (drafting quality on real use)."""
    total = session.query(Draft).filter(Draft.status != "discarded").count()
    per_field: dict[str, int] = {}
    for (field, draft_id) in session.execute(select(DraftCorrection.field, DraftCorrection.draft_id).distinct()):
        per_field[field] = per_field.get(field, 0) + 1
    return {"drafts": total, "corrected_drafts_per_field": per_field}


def discard_draft(session: Session, draft_id: str, actor: str, reason: str) -> None:
    d = session.get(Draft, draft_id)
    if d is None or d.status != "draft":
        raise CaseError(f"draft {draft_id} cannot be discarded")
    d.status = "discarded"
    _event(session, actor, "draft_discarded", draft_id=d.id, frm="draft", to="discarded", reason=reason)
    session.commit()


# =========================================================================== rules
def get_rules(session: Session) -> dict[str, int]:
    rules = dict(DEFAULT_RULES)
    for r in session.execute(select(DeadlineRule)).scalars():
        if r.enabled:
            rules[r.kind] = r.working_days
        else:
            rules.pop(r.kind, None)
    return rules


def set_rule(session: Session, kind: str, working_days: int, enabled: bool = True) -> None:
    if working_days < 1:
        raise CaseError("working_days must be at least 1")
    r = session.get(DeadlineRule, kind) or DeadlineRule(kind=kind)
    r.working_days, r.enabled, r.updated_at = working_days, enabled, utcnow()
    session.add(r)
    session.commit()


def _add_deadline(session: Session, case: Case, kind: str, start: date, cal: WorkCalendar, rules: dict) -> None:
    n = rules.get(kind)
    if not n:
        return
    due, prov = cal.add_working_days(start, n)
    session.add(CaseDeadline(case_id=case.id, kind=kind, start_on=start, due_on=due, working_days=n, provisional=prov))


# =========================================================================== registration
def _engine_of(target) -> Engine:
    if isinstance(target, Engine):
        return target
    if isinstance(target, sessionmaker):
        return target.kw["bind"]
    if isinstance(target, Session):
        return target.get_bind()
    raise TypeError("expected an Engine, sessionmaker or Session")


def register_draft(target, draft_id: str, actor: str, *, settings=None, note: str | None = None) -> Case:
    """受理: turns a draft into a case with the next number of the year, in one transaction that
    holds the write lock on the year's counter row. Returns the (detached) case."""
    engine = _engine_of(target)
    for attempt in range(5):
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                conn.info["begin_mode"] = "IMMEDIATE"
            with Session(bind=conn, expire_on_commit=False) as s:
                try:
                    case = _register_in_tx(s, engine.dialect.name, draft_id, actor, settings, note)
                    s.commit()
                    return case
                except _Retry:
                    s.rollback()
                    continue
    raise CaseError("could not register: counter contention")


class _Retry(Exception):
    pass


class MissingReporterName(CaseError):
    """A real-name (实名) report without the reporter's name cannot be registered."""


def _check_registrable(doc: dict) -> None:
    """What a draft needs before it becomes a case: a 实名 report names its reporter (the name is
    what makes it real-name; without one the reporter can get neither notice nor result)."""
    if doc.get("real_name") and not str(doc.get("reporter_name") or "").strip():
        raise MissingReporterName("实名举报须填写举报人姓名（或将“实名”改为否后再受理）")


def _register_in_tx(s: Session, dialect: str, draft_id: str, actor: str, settings, note) -> Case:
    from sqlalchemy.exc import IntegrityError

    d = s.get(Draft, draft_id)
    if d is None:
        raise CaseError(f"no draft {draft_id}")
    if d.status != "draft":
        raise CaseError(f"draft {draft_id} is already {d.status}")
    _check_registrable(draft_fields(d))
    now = utcnow()
    year = local_date(now, settings).year
    q = select(CaseSequence).where(CaseSequence.year == year)
    if dialect != "sqlite":
        q = q.with_for_update()
    seq_row = s.execute(q).scalar_one_or_none()
    if seq_row is None:
        try:
            with s.begin_nested():
                seq_row = CaseSequence(year=year, last_seq=0)
                s.add(seq_row)
                s.flush()
        except IntegrityError as e:  # another registrar created it first (PostgreSQL)
            raise _Retry() from e
        if dialect != "sqlite":
            seq_row = s.execute(q).scalar_one()
    seq_row.last_seq += 1
    number = f"{NUMBER_PREFIX}-{year}-{seq_row.last_seq:06d}"
    doc = draft_fields(d)
    received_on = local_date(d.received_at, settings)
    case = Case(number=number, year=year, seq=seq_row.last_seq, draft_id=d.id, status="registered",
                category=doc.get("category"), urgent=bool(doc.get("urgent")), real_name=bool(doc.get("real_name")),
                fields_json=d.fields_json, received_on=received_on, registered_at=now, registered_by=actor)
    s.add(case)
    s.flush()
    d.status = "registered"
    d.case_id = case.id
    d.updated_at = now
    # links from later drafts to this draft now point at the case too
    for l in s.execute(select(DraftLink).where(DraftLink.earlier_draft_id == d.id)).scalars():
        l.earlier_case_id = case.id
    cal = WorkCalendar.from_db(s)
    rules = get_rules(s)
    if case.real_name:
        _add_deadline(s, case, "acceptance_notice", received_on, cal, rules)
    _event(s, actor, "registered", case=case, draft_id=d.id, frm="draft", to="registered", number=number, note=note)
    s.flush()
    return case


# =========================================================================== lifecycle
TRANSITIONS = {"registered": {"handling"}, "handling": {"handling", "closed"}, "closed": {"archived"}, "archived": set()}


def _case(session: Session, case_id: str) -> Case:
    c = session.get(Case, case_id)
    if c is None:
        raise CaseError(f"no case {case_id}")
    return c


def _move(session: Session, c: Case, to: str, actor: str, action: str, **detail) -> None:
    if to not in TRANSITIONS.get(c.status, set()):
        raise CaseError(f"case {c.number} is {c.status}; cannot go to {to}")
    frm = c.status
    c.status = to
    _event(session, actor, action, case=c, frm=frm, to=to, **detail)


def start_handling(session: Session, case_id: str, mode: str, unit: str, actor: str, note: str | None = None) -> Case:
    """registered -> handling: 自办 (by the commission itself), 转办 (transferred) or 交办
    (assigned with a report-back duty) to a named unit. Also allowed while handling (re-routing)."""
    if mode not in HANDLING_MODES:
        raise CaseError(f"mode must be one of {', '.join(HANDLING_MODES)}")
    if not unit or not unit.strip():
        raise CaseError("the handling unit must be named")
    c = _case(session, case_id)
    _move(session, c, "handling", actor, "handling", mode=mode, unit=unit.strip(), note=note)
    c.handling_mode, c.handling_unit = mode, unit.strip()
    session.commit()
    return c


def close_case(session: Session, case_id: str, actor: str, result: str, closed_on: date | None = None,
               settings=None) -> Case:
    """handling -> closed (了结). Real-name cases get the result-feedback deadline."""
    if not result or not result.strip():
        raise CaseError("a result is required to close a case")
    c = _case(session, case_id)
    _move(session, c, "closed", actor, "closed", result=result)
    now = utcnow()
    c.closed_at, c.result = now, result
    c.closed_on = closed_on or local_date(now, settings)
    if c.real_name:
        _add_deadline(session, c, "result_feedback", c.closed_on, WorkCalendar.from_db(session), get_rules(session))
    session.commit()
    return c


def archive_case(session: Session, case_id: str, actor: str) -> Case:
    c = _case(session, case_id)
    if c.real_name and any(dl.kind == "result_feedback" and dl.done_at is None for dl in c.deadlines):
        raise CaseError(f"case {c.number}: the result has not been sent to the reporter yet")
    _move(session, c, "archived", actor, "archived")
    c.archived_at = utcnow()
    session.commit()
    return c


FEEDBACK_KINDS = {"notice_sent": ("acceptance_notice", {"registered", "handling", "closed"}),
                  "result_sent": ("result_feedback", {"closed"}),
                  "objection": (None, {"closed", "handling"})}


def record_feedback(session: Session, case_id: str, kind: str, actor: str, note: str | None = None) -> ReporterFeedback:
    """Reporter feedback: acceptance notice sent, result sent, or the reporter's objection."""
    if kind not in FEEDBACK_KINDS:
        raise CaseError(f"feedback kind must be one of {', '.join(FEEDBACK_KINDS)}")
    c = _case(session, case_id)
    dl_kind, states = FEEDBACK_KINDS[kind]
    if c.status not in states:
        raise CaseError(f"case {c.number} is {c.status}: cannot record {kind}")
    if kind == "objection" and not any(f.kind == "result_sent" for f in c.feedback):
        raise CaseError(f"case {c.number}: an objection follows a result sent to the reporter")
    fb = ReporterFeedback(case_id=c.id, kind=kind, actor=actor, note=note)
    session.add(fb)
    if dl_kind:
        for dl in c.deadlines:
            if dl.kind == dl_kind and dl.done_at is None:
                dl.done_at = utcnow()
    _event(session, actor, f"feedback_{kind}", case=c, note=note)
    session.commit()
    return fb


def acknowledge_alert(session: Session, alert_id: str, actor: str, note: str | None = None) -> UrgentAlert:
    a = session.get(UrgentAlert, alert_id)
    if a is None:
        raise CaseError(f"no alert {alert_id}")
    if a.status == "acknowledged":
        raise CaseError(f"alert {alert_id} was already acknowledged by {a.acknowledged_by}")
    a.status, a.acknowledged_by, a.acknowledged_at, a.note = "acknowledged", actor, utcnow(), note
    _event(session, actor, "alert_acknowledged", draft_id=a.draft_id, alert_id=a.id)
    session.commit()
    return a


def history(session: Session, case_id: str) -> list[dict]:
    c = _case(session, case_id)
    rows = session.execute(select(CaseEvent).where((CaseEvent.case_id == c.id) | (CaseEvent.draft_id == c.draft_id))
                           .order_by(CaseEvent.id)).scalars()
    return [{"at": e.at.isoformat(), "actor": e.actor, "action": e.action, "from": e.from_status, "to": e.to_status,
             "detail": json.loads(e.detail) if e.detail else None} for e in rows]


# =========================================================================== reminders
def _open_deadlines(session: Session) -> list[tuple[CaseDeadline, Case]]:
    return list(session.execute(select(CaseDeadline, Case).join(Case, Case.id == CaseDeadline.case_id)
                                .where(CaseDeadline.done_at.is_(None))).all())


def remind_due_soon(sessions: sessionmaker, today: date | None = None, within: int = 3,
                    event_bus: EventBus | None = None) -> list[dict]:
    """Scheduler job: open deadlines due within ``within`` working days (not yet overdue),
    each reminded once. Returns the reminders published."""
    out: list[dict] = []
    with sessions() as s:
        today = today or local_date(utcnow())
        cal = WorkCalendar.from_db(s)
        for dl, c in _open_deadlines(s):
            if dl.reminded_soon_at is not None or dl.due_on < today:
                continue
            left, _ = cal.working_days_between(today, dl.due_on)
            if left <= within:
                dl.reminded_soon_at = utcnow()
                out.append({"type": "deadline_due_soon", "case_id": c.id, "number": c.number, "kind": dl.kind,
                            "due": dl.due_on.isoformat(), "working_days_left": left, "provisional": dl.provisional})
        s.commit()
    for r in out:
        log.info("deadline due soon: case %s %s due %s", r["number"], r["kind"], r["due"])
        (event_bus or bus).publish(r)
    return out


def remind_overdue(sessions: sessionmaker, today: date | None = None, event_bus: EventBus | None = None) -> list[dict]:
    """Scheduler job: open deadlines past due, each reminded once."""
    out: list[dict] = []
    with sessions() as s:
        today = today or local_date(utcnow())
        for dl, c in _open_deadlines(s):
            if dl.reminded_overdue_at is None and dl.due_on < today:
                dl.reminded_overdue_at = utcnow()
                out.append({"type": "deadline_overdue", "case_id": c.id, "number": c.number, "kind": dl.kind,
                            "due": dl.due_on.isoformat(), "provisional": dl.provisional})
        s.commit()
    for r in out:
        log.warning("deadline overdue: case %s %s was due %s", r["number"], r["kind"], r["due"])
        (event_bus or bus).publish(r)
    return out


def reminder_jobs(sessions: sessionmaker, event_bus: EventBus | None = None) -> list[tuple[Callable, dict]]:
    """(function, APScheduler cron kwargs) pairs the lead adds to the scheduler."""
    return [(lambda: remind_due_soon(sessions, event_bus=event_bus), {"hour": 8, "minute": 30}),
            (lambda: remind_overdue(sessions, event_bus=event_bus), {"hour": 8, "minute": 35})]
