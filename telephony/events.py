"""Events the SIP agent emits. Plain frozen data classes; the composition root (hotline_api)
supplies an ``EventSink`` and decides what to store. ``caller_uri``/``caller_number`` are
confidential: sinks must keep them out of logs, and the agent never puts them in file names or
log lines.

All times are timezone-aware UTC. ``call_uuid`` is the agent's random id for a call (also the
``calls.id`` primary key); ``recording_id`` is a random UUID naming the recording.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Optional, Protocol, Union


@dataclass(frozen=True)
class CallStarted:
    call_uuid: str
    sip_call_id: str
    caller_uri: str
    caller_number: str
    dialled: str
    worker_id: str
    at: datetime
    channel: str = "call"  # call / voicemail


@dataclass(frozen=True)
class CallRejected:
    """An INVITE refused before answer (ACL 403, wrong number 404, no codec 488, busy 486/503)."""

    sip_call_id: str
    code: int
    reason: str
    worker_id: str
    at: datetime


@dataclass(frozen=True)
class CallAnswered:
    call_uuid: str
    at: datetime
    recording_id: str
    recording_path: str  # where the in-progress file is written (spool)
    sample_rate: int
    channels: int


@dataclass(frozen=True)
class DtmfReceived:
    call_uuid: str
    digit: str
    at: datetime
    offset_s: float  # seconds since answer, i.e. position in the recording
    method: str  # rfc2833 / sip_info


@dataclass(frozen=True)
class FlowChanged:
    """The call moved to another state of the call flow (notice, record, queue, attendant...)."""

    call_uuid: str
    state: str
    at: datetime
    detail: str = ""


@dataclass(frozen=True)
class CallEnded:
    call_uuid: str
    at: datetime
    status: str  # ended / abandoned / recovered
    hangup_cause: int  # SIP status code (e.g. 200 after BYE, 487 after CANCEL)
    hangup_reason: str
    hung_up_by: str  # caller / hotline / system


@dataclass(frozen=True)
class RecordingCompleted:
    recording_id: str
    call_uuid: str
    path: str  # final file (absolute)
    status: str  # complete / recovered / empty
    duration: float
    sample_rate: int
    channels: int
    sha256: str
    size_bytes: int
    kind: str = "call"  # call / voicemail
    at: datetime | None = None
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------- routing and the auto-attendant
# Live-call events (published to the operators' console). None of them carries the caller's
# number or URI: the call is named by ``call_uuid`` only. ``operator_id`` is the routing
# back-end's id of the operator (hotline_api: ``operators.id``).


@dataclass(frozen=True)
class RoutingDecided:
    """After the notice: which path the call takes. ``path``: queue / attendant / voicemail_offer;
    ``reason`` e.g. open / closed_holiday / closed_hours / no_operators / decision_timeout;
    ``provisional``: the holiday data for that date is a fallback (see WorkCalendar)."""

    call_uuid: str
    at: datetime
    path: str
    reason: str = ""
    provisional: bool = False


@dataclass(frozen=True)
class OperatorRinging:
    """The worker is ringing an operator for this call."""

    call_uuid: str
    operator_id: str
    at: datetime
    attempt: int = 1


@dataclass(frozen=True)
class OperatorFailed:
    """An operator was tried and did not take the call (``outcome``: no_answer / busy / rejected /
    unreachable / cancelled), with the SIP code when there was one."""

    call_uuid: str
    operator_id: str
    at: datetime
    outcome: str
    code: int = 0


@dataclass(frozen=True)
class OperatorAnswered:
    """The operator picked up (the call is announced to them, then bridged)."""

    call_uuid: str
    operator_id: str
    at: datetime


@dataclass(frozen=True)
class CallBridged:
    """Caller and operator are connected (B2BUA bridge in the worker)."""

    call_uuid: str
    operator_id: str
    at: datetime
    wait_s: float = 0.0  # seconds the caller waited in the queue


@dataclass(frozen=True)
class OperatorHangup:
    """The operator's leg of the call ended (``by``: operator / caller / hotline)."""

    call_uuid: str
    operator_id: str
    at: datetime
    by: str
    talk_s: float = 0.0


@dataclass(frozen=True)
class VoicemailStarted:
    """The caller is leaving a voicemail; the call's recording becomes kind ``voicemail``.
    ``offset_s``: position of the beep in the recording."""

    call_uuid: str
    at: datetime
    offset_s: float
    reason: str = ""  # menu / offer / no_input / queue_timeout


@dataclass(frozen=True)
class VoicemailEnded:
    """The voicemail part ended (``reason``: hash / silence / max_length / hangup)."""

    call_uuid: str
    at: datetime
    offset_s: float
    reason: str


# ---------------------------------------------------------------- live transcript (caller channel)
@dataclass(frozen=True)
class LiveText:
    """One result of a live transcriber: a partial hypothesis (``final=False``, may change) or a
    final utterance. ``start``/``end``: seconds of the caller's stream since the call was answered
    (about the position in the recording); a partial's span is approximate."""

    final: bool
    text: str
    start: float = 0.0
    end: float = 0.0


class LiveTranscriber(Protocol):
    """What a live-transcriber factory returns for one call. ``feed`` gets 16-bit mono PCM at the
    rate given to the factory; it is called on a helper thread of the agent (never on the media
    clock thread), and ``close`` on the same thread once the call ended (it may block to finish
    the last utterance)."""

    def feed(self, pcm: bytes) -> None: ...

    def close(self) -> None: ...


#: ``factory(call_uuid, sample_rate, emit) -> LiveTranscriber | None`` (None: no live transcript
#: for this call, e.g. no model yet). Called on a helper thread of the agent; ``emit(LiveText)``
#: may be called from any thread.
LiveTranscriberFactory = Callable[[str, int, Callable[[LiveText], None]], Optional[LiveTranscriber]]


@dataclass(frozen=True)
class LiveTranscript:
    """A live transcript result for the caller's channel during the call (report content: sinks
    must keep ``text`` out of logs). ``final=False``: a partial hypothesis that later events
    replace. Unlike the other events, it is published from a helper thread of the agent (so that
    live ASR adds no work to the pjsua2 thread): ``publish`` must be thread-safe, as every sink of
    telephony.sinks and hotline_api's QueuedSink is; it may come after the call's CallEnded."""

    call_uuid: str
    at: datetime
    final: bool
    text: str
    start: float = 0.0
    end: float = 0.0
    speaker: str = "caller"


AgentEvent = Union[CallStarted, CallRejected, CallAnswered, DtmfReceived, FlowChanged, CallEnded, RecordingCompleted,
                   RoutingDecided, OperatorRinging, OperatorFailed, OperatorAnswered, CallBridged, OperatorHangup,
                   VoicemailStarted, VoicemailEnded, LiveTranscript]

#: the routing/attendant events (all carry call_uuid and never the caller's identity)
LIVE_EVENTS = (RoutingDecided, OperatorRinging, OperatorFailed, OperatorAnswered, CallBridged, OperatorHangup,
               VoicemailStarted, VoicemailEnded)


class EventSink(Protocol):
    """Receives agent events. ``publish`` is called from the agent's own thread and must not
    block for long (queue the work); it must never raise into the agent."""

    def publish(self, event: AgentEvent) -> None: ...


class ListSink:
    """An in-memory sink (unit tests, and the `hotline` CLI's one-off tools)."""

    def __init__(self) -> None:
        self.events: list[AgentEvent] = []

    def publish(self, event: AgentEvent) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]
