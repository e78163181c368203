"""Who may see which content: the visibility policy in one place, plus identity masking of what is
shown.

The per-recording rule is ``services.auth.content_access`` (least privilege):

* operator: the calls they handled (``calls.operator_id``), for ``operator_view_hours`` after the
  call ended;
* recording_manager: what is assigned to them (``ReviewAssignment.manager_id``);
* supervisor: everything in their unit (the unit of the assigned manager or of the operator; a
  supervisor without a unit sees everything);
* auditor, admin: never content (auditors read the audit trail, admins manage users/settings).

This module builds on it: ids are validated first (canonical UUIDs only, so a malformed id or a
path-traversal attempt is refused before anything is read), lists get the same rule as SQL
(``call_clause`` / ``visible_recording_ids``; a test checks both agree), and drafts and cases
inherit the visibility of their recording. Anything not permitted is reported exactly like
anything missing (the API answers 404: no enumeration).

Identity (caller number/URI, reporter name/phone) is masked for everyone without the ``identity``
permission: in fields (``masking.mask_identity_fields``) and in free text (transcripts, draft text,
summaries) with ``mask_text_aligned``, which keeps the text's length so evidence spans and word
timings still point at the right characters.
"""
from __future__ import annotations

import difflib
import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable, Iterator

from sqlalchemy import and_, exists, false, func, or_, select, true
from sqlalchemy.orm import Session

from hotline_api.models.calls import Call, Recording
from hotline_api.models.cases import Case, CaseDeadline, CaseFacet, Draft
from hotline_api.models.governance import ReviewAssignment, User
from hotline_api.services import auth, masking

CONTENT_ROLES = ("operator", "recording_manager", "supervisor")


class NotVisible(LookupError):
    """Missing or not permitted: the API answers 404 either way."""


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(timezone.utc)).astimezone(timezone.utc)


# ------------------------------------------------------------------------------------------ ids
def check_id(value: Any) -> str:
    """A canonical UUID string, or ``NotVisible``. Rejects ``..``, slashes, encoded separators,
    over-long values and anything else before a single row or file is read."""
    if not isinstance(value, str) or len(value) != 36:
        raise NotVisible("bad id")
    try:
        canonical = str(uuid.UUID(value))
    except ValueError:
        raise NotVisible("bad id") from None
    if canonical != value.lower():
        raise NotVisible("bad id")
    return canonical


def is_id(value: Any) -> bool:
    try:
        check_id(value)
        return True
    except NotVisible:
        return False


# ------------------------------------------------------------------------------- per object
def can_see_recording(session: Session, user: User, recording_id: str, now: datetime | None = None,
                      settings: Any = None) -> bool:
    if not is_id(recording_id):
        return False
    return auth.content_access(session, user, recording_id.lower(), now=now, settings=settings)


def visible_recording(session: Session, user: User, recording_id: str, now: datetime | None = None,
                      settings: Any = None) -> Recording:
    if not can_see_recording(session, user, recording_id, now, settings):
        raise NotVisible("not found")
    rec = session.get(Recording, recording_id.lower())
    if rec is None:  # pragma: no cover - content_access already needs the row
        raise NotVisible("not found")
    return rec


def _operator_window(settings: Any) -> timedelta:
    return timedelta(hours=float(getattr(settings, "operator_view_hours", 24)) if settings is not None else 24.0)


def can_see_call_row(session: Session, user: User, call: Call, now: datetime | None = None,
                     settings: Any = None) -> bool:
    """A call's metadata (the calls list): the SQL rule of ``call_clause`` for one row."""
    if call is None or user is None or not user.active:
        return False
    clause = call_clause(session, user, now, settings)
    return bool(session.execute(select(func.count()).select_from(Call).where(Call.id == call.id, clause)).scalar())


def can_see_draft(session: Session, user: User, draft: Draft | None, now: datetime | None = None,
                  settings: Any = None) -> bool:
    """A draft is content of its recording; a draft without a recording (typed in, CLI) is seen by
    supervisors, and by the operator of its call while their window is open."""
    if draft is None or user is None or not user.active or user.role not in CONTENT_ROLES:
        return False
    if draft.recording_id:
        return auth.content_access(session, user, draft.recording_id, now=now, settings=settings)
    if user.role == "supervisor":
        return True
    if user.role == "operator" and draft.call_id:
        call = session.get(Call, draft.call_id)
        return call is not None and can_see_call_row(session, user, call, now, settings)
    return False


def visible_draft(session: Session, user: User, draft_id: str, now: datetime | None = None,
                  settings: Any = None) -> Draft:
    d = session.get(Draft, check_id(draft_id))
    if not can_see_draft(session, user, d, now, settings):
        raise NotVisible("not found")
    return d


def visible_case(session: Session, user: User, case_id: str, now: datetime | None = None,
                 settings: Any = None) -> Case:
    """Cases are the supervisors' work; a unit supervisor sees the cases of drafts they can see."""
    c = session.get(Case, check_id(case_id))
    if c is None or user.role != "supervisor":
        raise NotVisible("not found")
    if not can_see_draft(session, user, session.get(Draft, c.draft_id), now, settings):
        raise NotVisible("not found")
    return c


# ----------------------------------------------------------------------------------- as SQL
def _unit_users(user: User):
    return select(User.id).where(User.unit == user.unit)


def call_clause(session: Session, user: User, now: datetime | None = None, settings: Any = None):
    """WHERE clause over ``Call`` for the calls ``user`` may list (same rule as content_access)."""
    if user is None or not user.active or user.role not in CONTENT_ROLES:
        return false()
    if user.role == "operator":
        ended = func.coalesce(Call.ended_at, Call.answered_at, Call.created_at)
        return and_(Call.operator_id == user.id, ended >= _now(now) - _operator_window(settings))
    assigned = (select(ReviewAssignment.id).join(Recording, Recording.id == ReviewAssignment.recording_id)
                .where(Recording.call_id == Call.id))
    if user.role == "recording_manager":
        return exists(assigned.where(ReviewAssignment.manager_id == user.id))
    if not user.unit:
        return true()
    unit_users = _unit_users(user)
    return or_(Call.operator_id.in_(unit_users), exists(assigned.where(ReviewAssignment.manager_id.in_(unit_users))))


def visible_recording_ids(user: User, now: datetime | None = None, settings: Any = None):
    """SELECT of the recording ids ``user`` may see (content_access as SQL)."""
    if user is None or not user.active or user.role not in CONTENT_ROLES:
        return select(Recording.id).where(false())
    base = (select(Recording.id).outerjoin(Call, Call.id == Recording.call_id)
            .outerjoin(ReviewAssignment, ReviewAssignment.recording_id == Recording.id))
    if user.role == "operator":
        ended = func.coalesce(Call.ended_at, Call.answered_at, Call.created_at)
        return base.where(Call.operator_id == user.id, ended >= _now(now) - _operator_window(settings))
    if user.role == "recording_manager":
        return base.where(ReviewAssignment.manager_id == user.id)
    if not user.unit:
        return select(Recording.id)
    unit_users = _unit_users(user)
    return base.where(or_(ReviewAssignment.manager_id.in_(unit_users), Call.operator_id.in_(unit_users)))


# ------------------------------------------------------------------------------------ lists
def list_calls(session: Session, user: User, limit: int = 50, offset: int = 0, now: datetime | None = None,
               settings: Any = None) -> list[Call]:
    """Visible calls, newest first."""
    stmt = (select(Call).where(call_clause(session, user, now, settings))
            .order_by(Call.created_at.desc(), Call.id.desc()).limit(limit).offset(offset))
    return list(session.execute(stmt).scalars())


@dataclass
class CaseFilter:
    status: str | None = None
    category: str | None = None
    issue_type: str | None = None
    place: str | None = None
    deadline_state: str | None = None  # overdue / due_soon / open / none
    limit: int = 50
    offset: int = 0


DEADLINE_STATES = ("overdue", "due_soon", "open", "none")


def list_cases(session: Session, user: User, f: CaseFilter, today: date, due_soon_until: date,
               now: datetime | None = None, settings: Any = None) -> list[Case]:
    """Visible cases, newest registration first, filtered. Issue types and places live in the case
    document (encrypted); ``case_facets`` holds them in clear for the filter."""
    if user.role != "supervisor":
        return []
    stmt = select(Case).join(Draft, Draft.id == Case.draft_id)
    if user.unit:
        stmt = stmt.where(or_(Draft.recording_id.is_(None), Draft.recording_id.in_(visible_recording_ids(user, now, settings))))
    if f.status:
        stmt = stmt.where(Case.status == f.status)
    if f.category:
        stmt = stmt.where(Case.category == f.category)
    for key, value in (("issue_types", f.issue_type), ("places", f.place)):
        if value:
            stmt = stmt.where(exists(select(CaseFacet.id).where(CaseFacet.case_id == Case.id, CaseFacet.facet == key,
                                                               CaseFacet.value == value.strip())))
    open_dl = select(CaseDeadline.id).where(CaseDeadline.case_id == Case.id, CaseDeadline.done_at.is_(None))
    if f.deadline_state == "overdue":
        stmt = stmt.where(exists(open_dl.where(CaseDeadline.due_on < today)))
    elif f.deadline_state == "due_soon":
        stmt = stmt.where(exists(open_dl.where(CaseDeadline.due_on >= today, CaseDeadline.due_on <= due_soon_until)),
                          ~exists(open_dl.where(CaseDeadline.due_on < today)))
    elif f.deadline_state == "open":
        stmt = stmt.where(exists(open_dl))
    elif f.deadline_state == "none":
        stmt = stmt.where(~exists(open_dl))
    stmt = stmt.order_by(Case.registered_at.desc(), Case.id.desc())
    return list(session.execute(stmt.limit(f.limit).offset(f.offset)).scalars())


def visible_urgent_alerts(session: Session, user: User, open_only: bool = True, now: datetime | None = None,
                          settings: Any = None) -> list:
    from hotline_api.models.cases import UrgentAlert

    if user.role != "supervisor":
        return []
    stmt = select(UrgentAlert)
    if open_only:
        stmt = stmt.where(UrgentAlert.status == "open")
    out = []
    for a in session.execute(stmt.order_by(UrgentAlert.created_at.desc()).limit(500)).scalars():
        if can_see_draft(session, user, session.get(Draft, a.draft_id), now, settings):
            out.append(a)
    return out


# --------------------------------------------------------------------------------- identity
def has_identity(user: User | None) -> bool:
    return bool(user is not None and user.has_permission("identity"))


@dataclass
class IdentityTerms:
    """The identity values known for a recording/draft, used to mask them wherever they appear."""

    names: list[str]
    phones: list[str]

    def __bool__(self) -> bool:
        return bool(self.names or self.phones)


def identity_terms(session: Session, recording_id: str | None = None, draft: Draft | None = None,
                   call: Call | None = None) -> IdentityTerms:
    names: set[str] = set()
    phones: set[str] = set()
    drafts: list[Draft] = [draft] if draft is not None else []
    if recording_id:
        drafts += list(session.execute(select(Draft).where(Draft.recording_id == recording_id)).scalars())
        rec = session.get(Recording, recording_id)
        if call is None and rec is not None and rec.call_id:
            call = session.get(Call, rec.call_id)
    if call is None and draft is not None and draft.call_id:
        call = session.get(Call, draft.call_id)
    if call is not None and call.caller_number:
        phones.add(call.caller_number)
    for d in drafts:
        for doc in (d.fields_json, d.original_json):
            try:
                fields = json.loads(doc or "{}")
            except ValueError:
                continue
            if fields.get("reporter_name"):
                names.add(str(fields["reporter_name"]))
            if fields.get("reporter_phone"):
                phones.add(str(fields["reporter_phone"]))
    return IdentityTerms(sorted(names), sorted(phones))


def mask_text_aligned(text: str | None, terms: IdentityTerms | None = None) -> str | None:
    """``masking.mask_text`` that keeps the length and the positions of every other character, so
    evidence spans and word offsets computed on the original still fit. Masking runs on the text
    without whitespace (Vosk puts spaces between words, also between the digits of a spoken
    number), and the result is written back around the original spaces."""
    if not text:
        return text
    terms = terms or IdentityTerms([], [])
    idx = [i for i, c in enumerate(text) if not c.isspace()]
    stripped = "".join(text[i] for i in idx)
    masked = masking.mask_text(stripped, names=terms.names, phones=terms.phones)
    if masked == stripped:
        return text
    if len(masked) != len(stripped):  # a masker changed the length: mark what differs
        chars = list(stripped)
        sm = difflib.SequenceMatcher(a=stripped, b=masked, autojunk=False)
        for op, i1, i2, _j1, _j2 in sm.get_opcodes():
            if op in ("replace", "delete"):
                for i in range(i1, i2):
                    chars[i] = "*"
        masked = "".join(chars)
    out = list(text)
    for j, i in enumerate(idx):
        out[i] = masked[j]
    return "".join(out)


def _mask_words(words: list[dict], terms: IdentityTerms) -> list[dict]:
    pieces = [str(w.get("word", "")) for w in words]
    joined = "".join(pieces)
    masked = mask_text_aligned(joined, terms)
    if masked == joined:
        return words
    out, pos = [], 0
    for w, p in zip(words, pieces):
        nw = dict(w)
        nw["word"] = masked[pos:pos + len(p)]
        pos += len(p)
        out.append(nw)
    return out


def mask_transcript(doc: Any, terms: IdentityTerms) -> Any:
    """A copy of a transcript document (``hotline transcribe --json``) with identity masked in every
    ``text`` and in the ``words`` of each segment."""
    if isinstance(doc, list):
        return [mask_transcript(x, terms) for x in doc]
    if not isinstance(doc, dict):
        return doc
    out: dict[str, Any] = {}
    for k, v in doc.items():
        if k == "text" and isinstance(v, str):
            out[k] = mask_text_aligned(v, terms)
        elif k == "words" and isinstance(v, list) and all(isinstance(w, dict) for w in v):
            out[k] = _mask_words(v, terms)
        elif isinstance(v, (dict, list)):
            out[k] = mask_transcript(v, terms)
        else:
            out[k] = v
    return out


def mask_draft_fields(fields: dict, terms: IdentityTerms) -> dict:
    """Draft/case document with the reporter's identity masked (fields and free text)."""
    out = masking.mask_identity_fields(fields, fields=("reporter_name", "reporter_phone"))
    if isinstance(out.get("summary"), str):
        out["summary"] = mask_text_aligned(out["summary"], terms)
    return out


def iter_chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


def unique(values: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for v in values:
        seen.setdefault(v, None)
    return list(seen)
