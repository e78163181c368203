"""Callback tasks: when no operator is free the queue offers voicemail (1) or a callback (2); a
caller who chose the callback ends in flow state ``callback`` (``telephony.attendant.Callback``),
recorded in ``calls.flow_path``. This service turns every such ended call into one
``CallbackTask`` and tracks the attempts to call back.

* ``ensure_tasks(session, now)``: a task for each ended call whose flow reached ``callback`` and
  that has none (idempotent: ``call_id`` is unique). Due by the end of the next working day after
  the call (``review.compute_due`` over the project's working-day calendar, as review assignments).
  Run every minute by the scheduler (``ensure_tasks_job``) and, right after the call's recording
  is queued, by the recording pipeline (``hotline_api.services.pipeline``).
* ``record_attempt(session, task, user, outcome)``: ``reached`` -> done; ``wrong_number`` ->
  unreachable at once (a stranger is never called twice about a report); the 3rd ``no_answer``
  -> unreachable.
* Visibility: operators see every open task (any operator may call back); supervisors see the
  tasks of the calls of their unit (the rule of ``services.access``: the unit of the call's
  operator or of the manager its recording is assigned to; a call without recording is seen by
  every supervisor, as drafts without recording; a supervisor without unit sees all); nobody else.
  Anything not visible is ``access.NotVisible`` (the API answers 404).
* The caller's number is masked everywhere (``masking.mask_phone``); ``reveal_number`` shows it to
  a user holding ``identity`` through ``masking.reveal`` (audited ``identity.view`` on the call).

Every change is audited in the same transaction (``callback.create``, ``callback.attempt``);
audit details never hold the number or the note.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import exists, false, or_, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from hotline_api.models.callbacks import OUTCOMES, TASK_STATUSES, CallbackTask
from hotline_api.models.calls import Call, Recording
from hotline_api.models.governance import ReviewAssignment, User
from hotline_api.services import access, audit, masking, review

log = logging.getLogger(__name__)

CALLBACK_STATE = "callback"  # telephony.attendant.Callback.name
MAX_FAILED_ATTEMPTS = 3
NOTE_MAX = 500
ROLES = ("operator", "supervisor")
#: ``ensure_tasks`` looks at calls started in this window (the scheduler runs every minute; the
#: window only bounds the scan, so a scheduler stopped for less than this loses nothing)
SCAN_WINDOW = timedelta(days=30)


class CallbackError(ValueError):
    """A bad request on a task (unknown outcome, task no longer open): the API answers 400/409."""


class TaskChanged(CallbackError):
    """Someone else recorded an attempt on the task meanwhile (reload and retry)."""


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(timezone.utc)).astimezone(timezone.utc)


def requested_callback(flow_path: str | None) -> bool:
    """Did the call's flow reach the ``callback`` state? (``flow_path`` is ``a>b>c``.)"""
    return CALLBACK_STATE in (flow_path or "").split(">")


# --------------------------------------------------------------------------------- creation
def _candidates(now: datetime, window: timedelta):
    """Ended calls of the window whose flow path mentions the callback state and have no task."""
    has_task = exists(select(CallbackTask.id).where(CallbackTask.call_id == Call.id))
    return (select(Call).where(Call.created_at >= now - window, Call.ended_at.is_not(None),
                               Call.flow_path.like(f"%{CALLBACK_STATE}%"), ~has_task)
            .order_by(Call.ended_at))


def ensure_tasks(session: Session, now: datetime | None = None, *, settings: Any = None,
                 calendar: review.Calendar | None = None, window: timedelta = SCAN_WINDOW) -> list[CallbackTask]:
    """Create the missing tasks (flushed, not committed). Returns the tasks created."""
    now = _now(now)
    calls = [c for c in session.execute(_candidates(now, window)).scalars() if requested_callback(c.flow_path)]
    if not calls:
        return []
    cfg = review.ReviewConfig(deadline_workdays=1, timezone=getattr(settings, "timezone", None) or "Asia/Shanghai")
    calendar = calendar or review.default_calendar(session)
    made = []
    for call in calls:
        due, provisional = review.compute_due(call.ended_at, cfg, calendar)
        task = CallbackTask(call_id=call.id, status="open", attempts=0, due_at=due, created_at=now, updated_at=now)
        session.add(task)
        session.flush()
        audit.record(session, "callback.create", actor_name="system", object_type="callback_task", object_id=task.id,
                     detail={"call_id": call.id, "due_at": due.isoformat(), "due_provisional": provisional}, at=now)
        made.append(task)
    return made


def ensure_tasks_job(factory: sessionmaker[Session], settings: Any = None, now: datetime | None = None) -> int:
    """Scheduler job / completion hook body: ``ensure_tasks`` in a write transaction of its own.
    A concurrent creator (hook vs. scheduler) makes the unique ``call_id`` refuse the second task;
    that run is rolled back and the next one finds nothing left to do. Returns the number created."""
    from hotline_api.db.session import write_session

    with factory() as s:  # a plain read first: the write lock only when there is something to do
        if not any(requested_callback(c.flow_path) for c in s.execute(_candidates(_now(now), SCAN_WINDOW)).scalars()):
            return 0
    with write_session(factory) as s:
        try:
            made = ensure_tasks(s, now, settings=settings)
            s.commit()
        except IntegrityError:
            s.rollback()
            log.info("callback tasks: created concurrently by another process")
            return 0
    if made:
        log.info("callback tasks: %d created", len(made))
    return len(made)


# ------------------------------------------------------------------------------- visibility
def _task_clause(user: User | None):
    """WHERE over ``CallbackTask`` joined with ``Call``: the tasks ``user`` may see (any status)."""
    if user is None or not user.active or user.role not in ROLES:
        return false()
    if user.role == "operator":
        return CallbackTask.status == "open"
    if not user.unit:
        return true()
    unit_users = select(User.id).where(User.unit == user.unit)
    recs = select(Recording.id).where(Recording.call_id == Call.id)
    assigned = (select(ReviewAssignment.id).join(Recording, Recording.id == ReviewAssignment.recording_id)
                .where(Recording.call_id == Call.id, ReviewAssignment.manager_id.in_(unit_users)))
    return or_(Call.operator_id.in_(unit_users), exists(assigned), ~exists(recs))


def _base(user: User | None):
    return select(CallbackTask, Call).join(Call, Call.id == CallbackTask.call_id).where(_task_clause(user))


def visible_task(session: Session, user: User, task_id: str) -> CallbackTask:
    """The task, or ``access.NotVisible`` (missing, malformed id, or not permitted)."""
    tid = access.check_id(task_id)
    row = session.execute(_base(user).where(CallbackTask.id == tid)).first()
    if row is None:
        raise access.NotVisible("not found")
    return row[0]


def list_tasks(session: Session, user: User, status: str = "open", limit: int = 200,
               offset: int = 0) -> list[tuple[CallbackTask, Call]]:
    """Visible tasks of ``status`` (operators: open only), the earliest due first."""
    if status not in TASK_STATUSES:
        raise CallbackError(f"unknown status {status!r} (known: {', '.join(TASK_STATUSES)})")
    order = (CallbackTask.due_at, CallbackTask.created_at) if status == "open" else (CallbackTask.updated_at.desc(),)
    stmt = _base(user).where(CallbackTask.status == status).order_by(*order, CallbackTask.id)
    return [(t, c) for t, c in session.execute(stmt.limit(limit).offset(offset)).all()]


def list_open(session: Session, user: User, limit: int = 200, offset: int = 0) -> list[tuple[CallbackTask, Call]]:
    return list_tasks(session, user, "open", limit, offset)


# ------------------------------------------------------------------------------------ views
@dataclass
class TaskView:
    """What a list or page shows of a task: the number masked (also inside the note)."""

    id: str
    call_id: str
    status: str
    attempts: int
    max_attempts: int
    due_at: datetime
    created_at: datetime
    updated_at: datetime
    requested_at: datetime | None
    caller_masked: str | None
    has_number: bool
    last_outcome: str | None
    last_attempt_at: datetime | None
    handled_by: str | None
    outcome_note: str | None


def view(task: CallbackTask, call: Call) -> TaskView:
    number = call.caller_number or None
    return TaskView(
        id=task.id, call_id=call.id, status=task.status, attempts=task.attempts, max_attempts=MAX_FAILED_ATTEMPTS,
        due_at=task.due_at, created_at=task.created_at, updated_at=task.updated_at,
        requested_at=call.ended_at or call.created_at, caller_masked=masking.mask_phone(number) if number else None,
        has_number=bool(number), last_outcome=task.last_outcome, last_attempt_at=task.last_attempt_at,
        handled_by=task.handled_by, outcome_note=masking.mask_text(task.outcome_note, phones=[number] if number else []),
    )


def reveal_number(session: Session, user: User, task: CallbackTask, *, ip: str | None = None) -> str | None:
    """The caller's number for the one who calls back: unmasked for a user holding ``identity``
    (audited ``identity.view`` on the call, in the session's transaction), masked otherwise."""
    call = session.get(Call, task.call_id)
    number = call.caller_number if call is not None else None
    if not number:
        return None
    vals = masking.reveal(session, user, "call", call.id, {"caller_number": number}, ip=ip,
                          reason=f"callback {task.id}")
    return vals["caller_number"]


# ---------------------------------------------------------------------------------- attempts
def record_attempt(session: Session, task: CallbackTask, user: User, outcome: str, note: str | None = None, *,
                   now: datetime | None = None, ip: str | None = None) -> CallbackTask:
    """One callback attempt by ``user`` (flushed, not committed). ``reached`` closes the task as
    done; ``wrong_number`` at once as unreachable (calling a stranger again about a report would
    put the reporter at risk); the ``MAX_FAILED_ATTEMPTS``-th ``no_answer`` as unreachable.
    The update is conditional on the attempts count read, so two users recording at once do not
    lose one (the second gets ``TaskChanged``)."""
    if outcome not in OUTCOMES:
        raise CallbackError(f"unknown outcome {outcome!r} (known: {', '.join(OUTCOMES)})")
    if task.status != "open":
        raise CallbackError(f"task is {task.status}, not open")
    now = _now(now)
    note = (note or "").strip()[:NOTE_MAX] or None
    attempts = task.attempts + 1
    failed = outcome != "reached"
    if not failed:
        status = "done"
    elif outcome == "wrong_number" or attempts >= MAX_FAILED_ATTEMPTS:  # earlier attempts all failed
        status = "unreachable"
    else:
        status = "open"
    res = session.execute(
        update(CallbackTask)
        .where(CallbackTask.id == task.id, CallbackTask.status == "open", CallbackTask.attempts == task.attempts)
        .values(status=status, attempts=attempts, last_outcome=outcome, outcome_note=note, handled_by=user.id,
                last_attempt_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if res.rowcount != 1:
        raise TaskChanged("the task was updated by someone else meanwhile")
    session.refresh(task)
    audit.record(session, "callback.attempt", actor=user, object_type="callback_task", object_id=task.id, ip=ip,
                 detail={"call_id": task.call_id, "outcome": outcome, "attempt": attempts, "status": status,
                         "note": bool(note)}, at=now)
    return task
