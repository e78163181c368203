"""Live call events for the operators' console: published into the ``call_events`` table (so every
process -- SIP workers, API -- shares them through the database) and tailed by id.

Event types: ``routed``, ``ringing``, ``operator_failed``, ``answered`` (by an operator),
``bridged``, ``hangup``, ``voicemail_started``, ``voicemail_ended``, ``call_ended``, and the live
transcript of the caller's channel: ``partial`` (a hypothesis the next one replaces) and
``transcript`` (a final utterance), data ``{"text", "start", "end", "speaker"}`` with the text
masked (hotline_api.services.masking.mask_text). Each carries the call id and
never the caller's number or URI: :func:`publish` drops such keys from ``data`` whatever the
caller passes.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

from sqlalchemy import false, or_, select
from sqlalchemy.orm import Session

from hotline_api.models.operators import CallEvent

FORBIDDEN_KEYS = frozenset({"caller_uri", "caller_number", "caller", "from", "from_uri", "caller_hash"})
TYPES = ("routed", "ringing", "operator_failed", "answered", "bridged", "hangup", "voicemail_started",
         "voicemail_ended", "call_ended", "partial", "transcript")


def publish(session: Session, call_id: str, type_: str, *, operator_id: str | None = None, at: datetime | None = None,
            data: dict | None = None) -> CallEvent:
    """Add one event in ``session``'s transaction (flushed, not committed)."""
    if type_ not in TYPES:
        raise ValueError(f"unknown live event type {type_!r}")
    clean = {k: v for k, v in (data or {}).items() if k.lower() not in FORBIDDEN_KEYS}
    ev = CallEvent(call_id=call_id, operator_id=operator_id, type=type_, at=at or datetime.now(timezone.utc),
                   data_json=json.dumps(clean, ensure_ascii=False, default=str))
    session.add(ev)
    session.flush()
    return ev


TEXT_TYPES = ("partial", "transcript")  # the caller's words: report content


def tail(session: Session, after_id: int = 0, operator_id: str | None = None, limit: int = 200,
         all_operators: bool = False, *, user=None, settings=None) -> list[CallEvent]:
    """Events with id > ``after_id``, oldest first: those of ``operator_id`` (an operator's view),
    or all of them with ``all_operators`` (supervisors, admins).

    The live transcript (``partial``/``transcript``) is report content. With ``user`` given it is
    returned only where that user may read it: to the operator on the call while the call lasts,
    and to users whose content rights cover the call (``access.call_clause``: a supervisor of the
    call's unit); never to admins or auditors. Without ``user`` no text event is returned."""
    q = select(CallEvent).where(CallEvent.id > after_id)
    if not all_operators:
        q = q.where(CallEvent.operator_id == operator_id)
    q = q.where(or_(CallEvent.type.not_in(TEXT_TYPES), CallEvent.call_id.in_(_text_calls(session, user, settings))))
    return list(session.execute(q.order_by(CallEvent.id).limit(limit)).scalars())


def _text_calls(session: Session, user, settings):
    """SELECT of the call ids whose live text ``user`` may read."""
    from hotline_api.models.calls import Call
    from hotline_api.services import access

    if user is None or not user.active:
        return select(Call.id).where(false())
    if user.role == "operator":  # while the call lasts, and only their own
        return select(Call.id).where(Call.operator_id == user.id, Call.ended_at.is_(None))
    return select(Call.id).where(access.call_clause(session, user, settings=settings))


def last_id(session: Session) -> int:
    v = session.execute(select(CallEvent.id).order_by(CallEvent.id.desc()).limit(1)).scalar()
    return int(v or 0)


def event_json(ev: CallEvent) -> dict:
    return {"id": ev.id, "type": ev.type, "call_id": ev.call_id, "operator_id": ev.operator_id,
            "at": ev.at.isoformat() if ev.at else None, "data": ev.data}
