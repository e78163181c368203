"""The database side of the SIP agent: an EventSink that turns telephony events into rows.

``publish`` is called on the agent's pjsua2 thread, so it only enqueues; a writer thread applies
each event in its own short transaction, retried (in order) while the database is locked or away.

A ``RecordingCompleted`` marks the recording's row ``stage = completed`` in the same transaction:
that row is what the durable recording pipeline (``hotline_api.services.pipeline``, another
process) works from, so storing, review assignment and transcription never depend on one attempt
inside a SIP worker. Completion hooks (tests) run after the commit; a failing hook is logged.

Confidential fields (caller URI/number) are written to the DB only; log lines name the call by
its random id.
"""
from __future__ import annotations

import logging
import queue
import re
import threading
from datetime import datetime
from typing import Callable

from sqlalchemy.orm import Session, sessionmaker

from hotline_api.db.session import write_session
from hotline_api.models.calls import Call, DtmfEvent, Recording
from telephony import events as ev

log = logging.getLogger(__name__)

CompletionHook = Callable[[ev.RecordingCompleted], None]

_STOP = object()


def caller_number_from_uri(uri: str) -> str:
    """The user part of a SIP URI (`"Name" <sip:13800000000@host>` → 13800000000)."""
    m = re.search(r"(?:sips?|tel):([^@;>]+)", uri or "")
    return m.group(1) if m else ""


class CallStore:
    """Applies agent events to the database. Thread-safe ``publish``; ``apply`` is synchronous."""

    #: at most one stored ``partial`` live event per call in this many seconds (event time)
    PARTIAL_INTERVAL_S = 0.5

    def __init__(self, sessions: sessionmaker[Session], hash_caller: Callable[[str], str] | None = None):
        self.sessions = sessions
        self.hash_caller = hash_caller
        self.completion_hooks: list[CompletionHook] = []
        self._last_partial: dict[str, datetime] = {}  # call id -> time of its last stored partial

    def add_completion_hook(self, hook: CompletionHook) -> None:
        self.completion_hooks.append(hook)

    # ------------------------------------------------------------------ applying events
    def apply(self, event: ev.AgentEvent) -> None:
        handler = getattr(self, "_on_" + type(event).__name__, None)
        if handler is None:
            log.debug("no handler for %s", type(event).__name__)
            return
        if isinstance(event, ev.LiveTranscript) and not self._live_text_due(event):
            return  # a partial coalesced away: no transaction at all
        with write_session(self.sessions) as s:  # many workers write: take the lock first, wait for it
            handler(s, event)
            s.commit()
        if isinstance(event, ev.RecordingCompleted):
            self._run_hooks(event)

    def apply_batch(self, events: list) -> None:
        """Apply several events in one transaction (the SIP host's writer under load: one commit
        instead of one per event). Each event runs in a savepoint, so one that names an unknown call
        (``LookupError``) is dropped alone; any other error rolls the whole batch back for a retry."""
        todo = [e for e in events if not (isinstance(e, ev.LiveTranscript) and not self._live_text_due(e))]
        if not todo:
            return
        done = []
        with write_session(self.sessions) as s:
            for e in todo:
                handler = getattr(self, "_on_" + type(e).__name__, None)
                if handler is None:
                    continue
                try:
                    with s.begin_nested():
                        handler(s, e)
                except LookupError as err:
                    log.error("dropping %s: %s", type(e).__name__, err)
                    continue
                done.append(e)
            s.commit()
        for e in done:
            if isinstance(e, ev.RecordingCompleted):
                self._run_hooks(e)

    def _run_hooks(self, event: ev.RecordingCompleted) -> None:
        for hook in self.completion_hooks:
            try:
                hook(event)
            except Exception:  # noqa: BLE001 - the row and the file are safe; the pipeline goes on
                log.exception("completion hook %s failed for recording %s",
                              getattr(hook, "__name__", hook), event.recording_id)

    def _call(self, s: Session, call_uuid: str) -> Call:
        call = s.get(Call, call_uuid)
        if call is None:
            raise LookupError(f"unknown call {call_uuid}")
        return call

    def _on_CallStarted(self, s: Session, e: ev.CallStarted) -> None:
        if s.get(Call, e.call_uuid) is not None:
            return
        number = e.caller_number or caller_number_from_uri(e.caller_uri)
        s.add(Call(
            id=e.call_uuid, sip_call_id=e.sip_call_id, caller_uri=e.caller_uri, caller_number=number,
            caller_hash=self.hash_caller(number) if (self.hash_caller and number) else None,
            dialled=e.dialled, channel=e.channel, status="ringing", worker_id=e.worker_id, created_at=e.at,
        ))
        log.info("call %s started on worker %s", e.call_uuid, e.worker_id)

    def _on_CallRejected(self, s: Session, e: ev.CallRejected) -> None:
        log.info("INVITE rejected with %d (%s) on worker %s", e.code, e.reason, e.worker_id)

    def _on_CallAnswered(self, s: Session, e: ev.CallAnswered) -> None:
        call = self._call(s, e.call_uuid)
        call.answered_at = e.at
        call.status = "answered"
        if s.get(Recording, e.recording_id) is None:
            s.add(Recording(id=e.recording_id, call_id=call.id, kind=call.channel, path=e.recording_path,
                            status="recording", sample_rate=e.sample_rate, channels=e.channels, created_at=e.at))

    def _on_DtmfReceived(self, s: Session, e: ev.DtmfReceived) -> None:
        self._call(s, e.call_uuid)
        s.add(DtmfEvent(call_id=e.call_uuid, digit=e.digit, at=e.at, offset_s=e.offset_s, method=e.method))

    def _on_FlowChanged(self, s: Session, e: ev.FlowChanged) -> None:
        call = self._call(s, e.call_uuid)
        if e.state in ("voicemail",):
            call.channel = "voicemail"
        call.flow_path = ((call.flow_path + ">") if call.flow_path else "") + e.state
        call.flow_path = call.flow_path[-64:]

    def _on_CallEnded(self, s: Session, e: ev.CallEnded) -> None:
        call = self._call(s, e.call_uuid)
        call.ended_at = e.at
        call.status = e.status
        call.hangup_cause = e.hangup_cause
        call.hangup_reason = e.hangup_reason[:255]
        call.hung_up_by = e.hung_up_by
        self._live(s, e, "call_ended", status=e.status, by=e.hung_up_by)
        log.info("call %s ended: %s %d by %s", e.call_uuid, e.status, e.hangup_cause, e.hung_up_by)

    def _on_RecordingCompleted(self, s: Session, e: ev.RecordingCompleted) -> None:
        rec = s.get(Recording, e.recording_id)
        if rec is None:
            call = s.get(Call, e.call_uuid)
            rec = Recording(id=e.recording_id, call_id=call.id if call else None, kind=e.kind, created_at=e.at)
            s.add(rec)
        rec.path = e.path
        rec.status = e.status
        rec.kind = e.kind
        rec.duration = e.duration
        rec.sample_rate = e.sample_rate
        rec.channels = e.channels
        rec.sha256 = e.sha256
        rec.size_bytes = e.size_bytes
        rec.completed_at = e.at
        if e.kind == "voicemail" and rec.call is not None:
            rec.call.channel = "voicemail"
        if rec.stage in (None, "recording"):  # never moves a recording back (a replayed event)
            rec.stage = "failed" if e.status == "failed" else "completed"
            rec.stage_at = e.at
        log.info("recording %s %s (%.1f s)", rec.id, e.status, e.duration)

    # -------------------------------------------- routing / attendant events (issue 3, owner: queue work)
    # Each becomes a live call event (hotline_api.services.live) for the console; none carries
    # the caller's identity. The Call row is not required (events may arrive for a call whose
    # CallStarted row failed); CallBridged records which operator took the call.
    def _live(self, s: Session, e, type_: str, operator_id: str | None = None, **data) -> None:
        from hotline_api.services import live

        live.publish(s, e.call_uuid, type_, operator_id=operator_id, at=e.at, data=data)

    def _on_RoutingDecided(self, s: Session, e) -> None:
        self._live(s, e, "routed", path=e.path, reason=e.reason, provisional=e.provisional)

    def _on_OperatorRinging(self, s: Session, e) -> None:
        self._live(s, e, "ringing", e.operator_id, attempt=e.attempt)

    def _on_OperatorFailed(self, s: Session, e) -> None:
        self._live(s, e, "operator_failed", e.operator_id, outcome=e.outcome, code=e.code)

    def _on_OperatorAnswered(self, s: Session, e) -> None:
        self._live(s, e, "answered", e.operator_id)

    def _on_CallBridged(self, s: Session, e) -> None:
        from hotline_api.models.operators import Operator

        call = s.get(Call, e.call_uuid)
        if call is not None:  # calls.operator_id is the operator's user id (what access rules compare)
            op = s.get(Operator, e.operator_id)
            call.operator_id = op.user_id if op is not None else e.operator_id
        self._live(s, e, "bridged", e.operator_id, wait_s=e.wait_s)

    def _on_OperatorHangup(self, s: Session, e) -> None:
        self._live(s, e, "hangup", e.operator_id, by=e.by, talk_s=e.talk_s)

    def _on_VoicemailStarted(self, s: Session, e) -> None:
        self._live(s, e, "voicemail_started", offset_s=e.offset_s, reason=e.reason)

    def _on_VoicemailEnded(self, s: Session, e) -> None:
        self._live(s, e, "voicemail_ended", offset_s=e.offset_s, reason=e.reason)

    # -------------------------------------------- live transcript of the caller (issue 4)
    # Partials come several times a second: at most one per call per PARTIAL_INTERVAL_S is stored
    # (by event time; a final result always is, and lets the next partial through). The text is
    # report content: it is stored masked (phone-like digit runs, self-introduced names, the
    # caller's own number), since supervisors read every call's events (?all=1); the unmasked
    # words come with the recording's transcript. It is never logged.
    def _live_text_due(self, e: ev.LiveTranscript) -> bool:
        if e.final:
            self._last_partial.pop(e.call_uuid, None)
            return True
        last = self._last_partial.get(e.call_uuid)
        if last is not None and 0 <= (e.at - last).total_seconds() < self.PARTIAL_INTERVAL_S:
            return False
        if len(self._last_partial) > 10000:  # calls whose final never came
            self._last_partial.clear()
        self._last_partial[e.call_uuid] = e.at
        return True

    def _on_LiveTranscript(self, s: Session, e: ev.LiveTranscript) -> None:
        from hotline_api.services.masking import mask_text
        from hotline_api.services.operators import get_for_user

        call = s.get(Call, e.call_uuid)
        operator_id = None
        phones: list[str] = []
        if call is not None:
            if call.operator_id:  # users.id of the bridged operator; live events are keyed by operators.id
                op = get_for_user(s, call.operator_id)
                operator_id = op.id if op is not None else None
            if call.caller_number:
                phones.append(call.caller_number)
        text = mask_text(e.text, phones=phones) or ""
        self._live(s, e, "transcript" if e.final else "partial", operator_id, text=text,
                   start=round(e.start, 2), end=round(e.end, 2), speaker=e.speaker)


class QueuedSink:
    """EventSink for the agent thread: ``publish`` enqueues, a writer thread applies in order."""

    def __init__(self, store: CallStore, name: str = "call-store"):
        self.store = store
        self._closing = False
        self._q: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def publish(self, event: ev.AgentEvent) -> None:
        self._q.put(event)

    #: other errors (a bug, a constraint) are tried this many times before the event is dropped
    MAX_OTHER_ATTEMPTS = 5
    #: back-off between tries: this many seconds times the try number, at most 5 s
    RETRY_STEP_S = 0.2

    #: at most this many queued events are written in one transaction
    BATCH = 200

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is _STOP:
                return
            batch = [item]
            stop = False
            while len(batch) < self.BATCH:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                batch.append(nxt)
            if len(batch) == 1:
                self._apply(item)
            else:
                self._apply_batch(batch)
            if stop:
                return

    def _apply_batch(self, batch: list) -> None:
        """The batch in one transaction, retried while the database is locked or away; any other
        error: the events one by one (so one bad event costs only itself)."""
        from sqlalchemy.exc import OperationalError

        attempt = 0
        while True:
            attempt += 1
            try:
                self.store.apply_batch(batch)
                return
            except (OperationalError, TimeoutError) as e:
                level = logging.WARNING if attempt in (1, 10) or attempt % 60 == 0 else logging.DEBUG
                log.log(level, "database unavailable for %d events (try %d): %s", len(batch), attempt,
                        str(e).splitlines()[0][:200])
                if self._closing and attempt >= 3 * self.MAX_OTHER_ATTEMPTS:
                    break
                threading.Event().wait(min(5.0, self.RETRY_STEP_S * attempt))
            except Exception:  # noqa: BLE001 - find the bad one
                log.warning("batch of %d events failed; applying them one by one", len(batch), exc_info=True)
                break
        for item in batch:
            self._apply(item)

    def _apply(self, item) -> None:
        """Apply one event; while the database is locked or unreachable, keep trying (in order: the
        next event may need this one's row), with back-off up to 5 s. Nothing is lost meanwhile: the
        recording file is on disk and the pipeline's scan finds it even if this process dies."""
        from sqlalchemy.exc import DBAPIError, OperationalError

        attempt = 0
        while True:
            attempt += 1
            try:
                self.store.apply(item)
                return
            except LookupError as e:
                log.error("dropping %s: %s", type(item).__name__, e)
                return
            except (OperationalError, TimeoutError) as e:  # locked, busy, connection lost
                level = logging.WARNING if attempt in (1, 10) or attempt % 60 == 0 else logging.DEBUG
                log.log(level, "database unavailable for %s (try %d): %s", type(item).__name__, attempt,
                        str(e).splitlines()[0][:200])
            except DBAPIError as e:
                if not e.connection_invalidated and attempt >= self.MAX_OTHER_ATTEMPTS:
                    log.error("dropping %s after %d tries: %s", type(item).__name__, attempt, e)
                    return
                log.warning("could not store %s (try %d): %s", type(item).__name__, attempt, e)
            except Exception:  # noqa: BLE001 - keep serving; the recording file stays on disk
                log.exception("could not store %s (try %d)", type(item).__name__, attempt)
                if attempt >= self.MAX_OTHER_ATTEMPTS:
                    return
            if self._closing and attempt >= 3 * self.MAX_OTHER_ATTEMPTS:
                log.error("stopping: %s not stored; the recording file stays on disk for the pipeline's scan",
                          type(item).__name__)
                return
            threading.Event().wait(min(5.0, self.RETRY_STEP_S * attempt))

    def close(self, timeout: float = 30.0) -> None:
        """Apply everything queued so far, then stop the writer."""
        self._closing = True
        self._q.put(_STOP)
        self._thread.join(timeout)
