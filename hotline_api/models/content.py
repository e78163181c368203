"""Which columns hold report content derived from a call, and the flush hook that seals them
under that call's content key (``hotline_api.db.content_keys``).

Writers keep assigning plain strings; just before a flush every changed content value of these
models is wrapped in a ``ContentValue`` of its call's key, which ``EncryptedText`` seals when it
binds. Rows of a draft typed in without a call stay under the global field key. The hook finds
the call through the row itself (``call_id``), its recording, or its draft.
"""
from __future__ import annotations

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from hotline_api.db import content_keys
from hotline_api.db.crypto_types import ContentValue
from hotline_api.models.asr import Transcript
from hotline_api.models.calls import Recording
from hotline_api.models.cases import Draft, DraftCorrection, DraftSubject
from hotline_api.models.operators import CallEvent

#: the live-event types whose data is report content (the caller's words)
TEXT_EVENT_TYPES = ("partial", "transcript")

CONTENT_COLUMNS: dict[type, tuple[str, ...]] = {
    Transcript: ("data", "text"),
    Draft: ("fields_json", "original_json", "input_text"),
    DraftCorrection: ("old_json", "new_json"),
    DraftSubject: ("name", "title", "unit"),
    CallEvent: ("data_json",),
}


def _call_of_recording(session: Session, recording_id: str | None) -> str | None:
    if not recording_id:
        return None
    rec = session.get(Recording, recording_id)
    return rec.call_id if rec is not None else None


def _call_of_draft(session: Session, draft: Draft | None) -> str | None:
    if draft is None:
        return None
    return draft.call_id or _call_of_recording(session, draft.recording_id)


def call_id_of(session: Session, obj) -> str | None:
    """The call whose content ``obj`` holds (None: not call content)."""
    if isinstance(obj, CallEvent):
        return obj.call_id if obj.type in TEXT_EVENT_TYPES else None
    if isinstance(obj, Transcript):
        return _call_of_recording(session, obj.recording_id)
    if isinstance(obj, Draft):
        return _call_of_draft(session, obj)
    if isinstance(obj, (DraftCorrection, DraftSubject)):
        with session.no_autoflush:
            return _call_of_draft(session, obj.draft if isinstance(obj, DraftCorrection) and obj.draft is not None
                                  else session.get(Draft, obj.draft_id) if obj.draft_id else None)
    return None


@event.listens_for(Session, "before_flush")
def _seal_content(session: Session, flush_context, instances) -> None:
    pending = [o for o in list(session.new) + list(session.dirty) if type(o) in CONTENT_COLUMNS]
    if not pending:
        return
    with session.no_autoflush:
        for obj in pending:
            state = inspect(obj)
            changed = [a for a in CONTENT_COLUMNS[type(obj)]
                       if isinstance(getattr(obj, a), str) and not isinstance(getattr(obj, a), ContentValue)
                       and (state.pending or state.attrs[a].history.has_changes())]
            if not changed:
                continue
            call_id = call_id_of(session, obj)
            if not call_id:
                continue
            try:
                kid, key = content_keys.key_for_call(session, call_id)
            except content_keys.ContentKeyDestroyed:
                continue  # content arriving after its call was purged stays under the field key
            for a in changed:
                setattr(obj, a, ContentValue(getattr(obj, a), kid, key))
