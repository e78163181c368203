"""Report content derived from a call, and its end: what a retention purge shreds.

Content derived from a call -- the live transcript events, the recording's transcript, the draft's
text, its reported persons and its corrections -- is sealed under the call's own content key
(``hotline_api.db.content_keys``, sealed at flush by ``hotline_api.models.content``). When the last
recording of a call is purged, :func:`purge_recording_content` (a retention ``on_purged`` hook, run
in the purge's transaction) destroys that key and deletes the rows, so neither the rows nor any
copy of their bytes (free pages, WAL, backups) can be read again.

What stays, for the statistics and the registry (no words of the report, no identity):

* the draft row's category, urgency, real-name flag, duplicate hint, dates and status, and its
  case id; its document is replaced by ``{"purged": true}``;
* non-text live events (routed, answered, hang-up... with times, never words);
* the call row's times, channel and masked hash, the recording's ``PurgeStub``.

A registered case is the commission's own record and follows the archive rules, not the
recording's: the recording of a case is purged only after the case was archived
(``case_archived_days``), and the case file itself is not touched here.
"""
from __future__ import annotations

import json
import logging

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from hotline_api.db import content_keys
from hotline_api.db.crypto_types import reencrypt_plain_values
from hotline_api.models.asr import Transcript
from hotline_api.models.calls import Recording
from hotline_api.models.cases import (Case, CaseEvent, Draft, DraftCorrection, DraftLink, DraftSubject, ReporterFeedback,
                                      UrgentAlert)
from hotline_api.models.governance import ReviewAssignment
from hotline_api.models.content import TEXT_EVENT_TYPES
from hotline_api.models.operators import CallEvent

log = logging.getLogger(__name__)

PURGED_DOC = json.dumps({"purged": True})


def purge_recording_content(session: Session, recording_id: str) -> None:
    """Delete what was derived from ``recording_id``; when no other recording of its call keeps
    content, destroy the call's content key and delete the call's live text too."""
    rec = session.get(Recording, recording_id)
    session.execute(delete(Transcript).where(Transcript.recording_id == recording_id))
    call_id = rec.call_id if rec is not None else None
    others = 0
    if call_id:
        others = session.execute(select(func.count()).select_from(Recording).where(
            Recording.call_id == call_id, Recording.id != recording_id, Recording.status != "purged")).scalar_one()
    drafts_q = select(Draft).where(Draft.recording_id == recording_id)
    if call_id and not others:
        drafts_q = select(Draft).where((Draft.recording_id == recording_id) | (Draft.call_id == call_id))
        content_keys.destroy_for_call(session, call_id)
        session.execute(delete(CallEvent).where(CallEvent.call_id == call_id, CallEvent.type.in_(TEXT_EVENT_TYPES)))
    for d in session.execute(drafts_q).scalars():
        session.execute(delete(DraftCorrection).where(DraftCorrection.draft_id == d.id))
        session.execute(delete(DraftSubject).where(DraftSubject.draft_id == d.id))
        d.fields_json = d.original_json = PURGED_DOC
        d.input_text = None
    session.flush()


def is_purged_doc(doc: dict | None) -> bool:
    return bool(doc) and doc.get("purged") is True


# Columns that became encrypted after data was written in clear (migration 0011): values stored
# before are encrypted in place by ``hotline db upgrade`` (and at service start).
PLAIN_BEFORE_0011 = ((Case, "result"), (CaseEvent, "detail"), (DraftSubject, "name"), (DraftSubject, "title"),
                     (DraftSubject, "unit"), (CallEvent, "data"), (DraftLink, "detail"), (DraftCorrection, "reason"),
                     (ReporterFeedback, "note"), (UrgentAlert, "note"), (ReviewAssignment, "no_content_reason"))


def encrypt_plain_values(factory: sessionmaker) -> int:
    """Encrypt every value of ``PLAIN_BEFORE_0011`` still stored in clear. Returns how many."""
    from hotline_api.db.session import write_session

    n = 0
    with write_session(factory) as s:
        for model, column in PLAIN_BEFORE_0011:
            n += reencrypt_plain_values(s, model, column)
        s.commit()
    if n:
        log.info("encrypted %d value(s) stored in clear by an earlier version", n)
    return n
