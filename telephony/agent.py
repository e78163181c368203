"""The pjsua2 glue of one agent worker: endpoint, transports, account, calls, media.

Thread discipline (enforced by :meth:`Agent._own`, which every pjsua2-touching method calls):

* ONE thread owns every pjsua2 object. It is the thread that calls :meth:`Agent.run`: it creates
  the Endpoint (``uaConfig.threadCnt = 0``, ``mainThreadOnly = True``), then loops on
  ``libHandleEvents(10 ms)``; all SIP processing and pjsua2 callbacks happen inside that call, on
  that thread. Calls, players, media ports and the account are created, used and destroyed there.
* Other threads never touch pjsua2. They talk to the owner through :meth:`Agent.post` (a
  thread-safe queue the loop drains each turn) or by setting the stop event. A pjsua2 callback
  that arrives on another thread anyway is re-posted to the owner with plain values.
* Exception: :meth:`_SinkPort.onFrameReceived` runs on pjmedia's clock thread (the null sound
  device's master clock that drives the conference bridge; checked on this build). It only reads
  the frame it is given and hands its bytes to the port's ``sink``, which appends them to a deque
  (:class:`telephony.media.StereoMixer`; the voice-activity tap while a voicemail is recorded,
  which the owner drains each turn): no other pjsua2 object, no lock, no I/O. The
  :class:`telephony.media.RecordingWriter` thread writes to disk, so the media clock never waits
  for the disk. Sink ports are reused, never destroyed while the worker runs (:class:`_PortPool`).
* Routing (with a Router/OpenHours, see telephony.routing): the open-hours decision, operator
  claims/releases (database calls in the composition root) and DNS lookups of operator URIs run on
  :class:`telephony.routing.RoutingClient` helper threads, never on the owner. Their results come
  back through :meth:`Agent.post` and reach the call flow as signals; the owner loop never waits
  for them (the caller hears hold audio meanwhile).
* Live transcript (with a ``live_transcriber`` factory, see telephony.events.LiveTranscriberFactory):
  the caller's channel-0 sink port also appends each frame's bytes (the same object the
  mixer gets) to a bounded deque of a :class:`_LiveFeed`. One helper thread per call creates the
  transcriber (the factory may wait for a model), moves the frames to ``feed`` and, after the
  hang-up, calls ``close``. Nothing of the transcriber runs on the media clock thread or on the
  owner: a slow, blocked or failing transcriber only makes the deque drop its oldest frames (or
  switches live ASR off for that call); the recording never waits. Results are published as
  :class:`telephony.events.LiveTranscript` from the transcriber's thread, not through the owner
  (whose loop also receives the RTP packets). The text is never logged.
* A :class:`_Call` dies while its pjsua call slot is still its own: references are dropped in the
  callback where the call disconnects (or right after a rejected INVITE's 4xx), so CPython frees
  it as that callback returns, as pjsua2 documents (``delete this`` in ``onCallState``). Never
  keep one past that turn: ``pj::Call::~Call`` clears the user data of, and hangs up, whatever
  call then holds its slot id, and pjsua reuses a slot within the same ``libHandleEvents`` when
  a BYE and the next INVITE arrive together (seen under load: the next caller got a BYE and its
  recording was never finished). :meth:`Agent._drop_call` is the one place a call is let go.
* The SWIG bindings release the GIL inside C calls (``libHandleEvents`` included), so the media
  thread's Python callbacks are not blocked by the owner's loop.

Media: the conference bridge runs at ``clock_rate`` (16 kHz), mono, 20 ms frames. Per call, two
:class:`_SinkPort` sink ports: the caller's call media feeds port 0; the prompt player and the
operator leg (once bridged) feed port 1, and, in parallel, the caller. The two ports' frames are
interleaved into the stereo recording, which therefore runs unchanged across queue, bridge and
voicemail.

Operator legs: the worker dials the operator from the same endpoint (B2BUA; both legs in one
conference bridge), directly for a static URI or through kamailio for a registered AOR. Each
caller may need a second leg, so with routing the worker admits ``max_callers`` (= 2 of pjsua's
4 legs) callers and answers 486 beyond.
"""
from __future__ import annotations

import gc
import logging
import queue
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pjsua2 as pj

from telephony.admission import decide
from telephony.config import PJSUA_MAX_CALLS, WorkerConfig
from telephony.attendant import VoiceActivity, make_vad
from telephony.events import (CallAnswered, CallBridged, CallEnded, CallRejected, CallStarted, DtmfReceived,
                              EventSink, FlowChanged, LiveText, LiveTranscriberFactory, LiveTranscript,
                              OperatorAnswered, OperatorFailed, OperatorHangup, OperatorRinging, RecordingCompleted,
                              RoutingDecided, VoicemailEnded, VoicemailStarted)
from telephony.flow import CallFlow
from telephony.recorder import _write_json_atomic
from telephony.routing import HotlineFlow, OpenHours, OperatorTarget, Router, RoutingClient, build_extra_prompts
from telephony.media import RecordingWriter, StereoMixer
from telephony.prompts import PromptSet, build_prompts
from telephony.recorder import RecordingResult, SpoolRecorder
from telephony.recovery import recover_spool, remove_call_marker, write_call_marker
from telephony.sipmsg import ALLOWED_CODECS, header_uri, parse_request, uri_user

log = logging.getLogger("telephony.agent")

FRAME_MS = 20
#: codec priorities: only these are offered/accepted (G.722 wide-band first)
CODEC_PRIORITY = {"G722": 255, "PCMA": 254, "PCMU": 253}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _make_frame_reader() -> Callable[[Any], bytes]:
    """``frame.buf`` (a SWIG ``std::vector<unsigned char>``) as bytes.

    ``bytes(frame.buf)`` walks the vector through SWIG's iterator, one Python call per byte: about
    230 us for a 20 ms frame at 16 kHz, i.e. 2-3 % of a core per call for two channels. The fast
    path reads the vector's begin/end pointers (libstdc++'s layout) and copies the bytes in one
    ``ctypes.string_at``: about 1.5 us. It is checked against ``bytes()`` on probe vectors at
    import; on any mismatch the slow, always-correct path is used."""
    import ctypes

    pair = ctypes.c_void_p * 2

    def fast(vec) -> bytes:
        begin, end = pair.from_address(int(vec.this))
        if not begin or end is None or end <= begin:
            return b""
        return ctypes.string_at(begin, end - begin)

    try:
        probes = [pj.ByteVector(), pj.ByteVector([7]), pj.ByteVector([(i * 37) % 256 for i in range(640)])]
        if all(fast(v) == bytes(v) for v in probes):
            return fast
    except Exception:  # an unexpected binding: keep the slow path
        pass
    log.warning("pjsua2 frame buffers: fast copy unavailable, using bytes()")
    return bytes


_frame_bytes = _make_frame_reader()


class _SinkPort(pj.AudioMediaPort):
    """A sink port of the bridge whose frames go to ``sink`` (a callable taking the frame's
    bytes, or None for a frame without audio). ``onFrameReceived`` runs on the media clock
    thread: it only copies bytes (see module doc). Ports are reused across calls through
    :class:`_PortPool` and never destroyed while the worker runs (see there)."""

    def __init__(self) -> None:
        super().__init__()
        self.sink: Callable[[bytes | None], None] | None = None
        self.quiet = 0  # consecutive frames without audio: 0 while some source still transmits

    def onFrameReceived(self, frame) -> None:  # media clock thread
        try:
            if frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO:
                self.quiet = 0
                sink = self.sink
                if sink is not None:
                    sink(_frame_bytes(frame.buf))
            else:
                self.quiet += 1
                sink = self.sink
                if sink is not None:
                    sink(None)
        except Exception:  # never raise into pjmedia
            pass


def _channel_sink(mixer: StereoMixer, channel: int, live: "_LiveFeed | None") -> Callable[[bytes | None], None]:
    """One channel of a recording (the recording first, always), and the live transcript."""
    push = mixer.push
    if live is None:
        return lambda data: push(channel, data)

    def sink(data: bytes | None) -> None:
        push(channel, data)
        live.push(data)

    return sink


class _PortPool:
    """The agent's sink ports, reused from call to call (owner thread only).

    Why never destroyed: the conference bridge of pjsip 2.15.1 removes ports asynchronously (at
    its next clock tick), but ``pj::AudioMediaPort::~AudioMediaPort`` frees the port at once. A
    port destroyed while the clock thread was delivering a frame to it crashed the worker (seen
    under load, SIGSEGV in onFrameReceived; pjproject fixed this after 2.15.1, PR 4200). So a
    port, once created, stays in the bridge for the worker's life.

    A port given back is quarantined until it has received only empty frames for
    ``quiet_frames`` ticks: no source is connected to it any more, so nothing of the previous
    call can reach the next one. At shutdown the ports are handed to C++ (``__disown__``) and
    left to the process's end, after ``libDestroy``."""

    def __init__(self, fmt_factory: Callable[[], Any], quiet_frames: int = 10) -> None:
        self._fmt = fmt_factory
        self.quiet_frames = quiet_frames
        self._free: list[_SinkPort] = []
        self._quarantine: list[_SinkPort] = []
        self.created = 0

    def get(self, sink: Callable[[bytes | None], None]) -> _SinkPort:
        self._promote()
        if self._free:
            port = self._free.pop()
        else:
            port = _SinkPort()
            port.createPort(f"sink{self.created}", self._fmt())
            self.created += 1
        port.sink = sink
        return port

    def put(self, port: _SinkPort | None) -> None:
        if port is None:
            return
        port.sink = None
        port.quiet = 0
        self._quarantine.append(port)

    def _promote(self) -> None:
        still = []
        for port in self._quarantine:
            (self._free if port.quiet >= self.quiet_frames else still).append(port)
        self._quarantine = still

    @property
    def size(self) -> int:
        return self.created

    def close(self) -> None:
        for port in self._free + self._quarantine:
            port.sink = None
            port.__disown__()  # C++ keeps it (and it, the Python object): never destroyed
        self._free, self._quarantine = [], []


class _LiveFeed:
    """The caller's frames on their way to a live transcriber (see the module doc).

    ``push`` runs on the media clock thread: a bounded ``deque.append`` (oldest frames fall out
    when the transcriber lags) and a counter, nothing else. Everything else runs on this object's
    own thread: the factory call, ``feed``, ``close``. ``emit`` gets each result (any thread).
    After ``max_errors`` consecutive failures of ``feed`` live ASR is switched off for the call."""

    POLL_S = 0.04

    def __init__(self, call_uuid: str, rate: int, samples_per_frame: int, factory: LiveTranscriberFactory,
                 emit: Callable[[LiveText], None], buffer_s: float = 10.0, max_errors: int = 5) -> None:
        self.call_uuid = call_uuid
        self.rate = rate
        self.factory = factory
        self.emit = emit
        self.max_errors = max_errors
        self._silence = bytes(2 * samples_per_frame)
        self.frames: deque = deque(maxlen=max(5, int(buffer_s * 1000 / FRAME_MS)))
        self.on = True  # read by the media thread: False = stop collecting frames
        self.pushed = 0  # frames offered by the media thread
        self.taken = 0  # frames moved to the transcriber (or given up when it failed)
        self.errors = 0
        self.lead_s = 0.0  # caller audio dropped before the transcriber got its first frame
        self.state = "starting"  # starting / running / unavailable / failed / closed
        self._stop = False
        self.thread = threading.Thread(target=self._run, name=f"live-{call_uuid[:8]}", daemon=True)

    # media clock thread
    def push(self, data: bytes | None) -> None:
        if self.on:
            self.frames.append(data)
            self.pushed += 1

    # owner thread
    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """The call ended: feed what is buffered, then close (on this object's thread)."""
        self._stop = True

    @property
    def dropped(self) -> int:
        return max(0, self.pushed - self.taken - len(self.frames))

    def _emit(self, res: LiveText) -> None:
        """Results in seconds since the answer (the transcriber counts from its first frame)."""
        if self.lead_s:
            res = LiveText(res.final, res.text, res.start + self.lead_s, res.end + self.lead_s)
        self.emit(res)

    # own thread
    def _batch(self) -> bytes:
        out = []
        frames = self.frames
        while True:
            try:
                d = frames.popleft()
            except IndexError:
                break
            out.append(d if d else self._silence)
        self.taken += len(out)
        return b"".join(out)

    def _run(self) -> None:
        uid = self.call_uuid
        try:
            t = self.factory(uid, self.rate, self._emit)
        except Exception as e:  # noqa: BLE001 - the call goes on without live ASR
            log.warning("call %s: live transcription could not start (%s)", uid, type(e).__name__)
            t = None
        if t is None:
            self.on = False
            self.frames.clear()
            self.state = "unavailable"
            log.info("call %s: no live transcription", uid)
            return
        self.lead_s = self.dropped * FRAME_MS / 1000  # (a slow factory, e.g. a model still loading)
        self.state = "running"
        log.info("call %s: live transcription started", uid)
        failures = 0
        while True:
            stopping = self._stop
            pcm = self._batch()
            if pcm:
                try:
                    t.feed(pcm)
                    failures = 0
                except Exception as e:  # noqa: BLE001 - never reaches the call or the recording
                    failures += 1
                    self.errors += 1
                    if failures >= self.max_errors:
                        log.warning("call %s: live transcription switched off after %d failures (%s)",
                                    uid, failures, type(e).__name__)
                        self.state = "failed"
                        break
            elif stopping:
                break
            else:
                time.sleep(self.POLL_S)
        self.on = False
        self.taken += len(self.frames)
        self.frames.clear()
        try:
            t.close()
        except Exception as e:  # noqa: BLE001
            log.warning("call %s: closing live transcription failed (%s)", uid, type(e).__name__)
        if self.state == "running":
            self.state = "closed"
        # counts only: the text is report content and never logged
        log.info("call %s: live transcription ended (%s; %.1f s fed, %.1f s dropped, %d feed error(s))", uid,
                 self.state, (self.pushed - self.dropped) * FRAME_MS / 1000, self.dropped * FRAME_MS / 1000,
                 self.errors)


class _Account(pj.Account):
    def __init__(self, agent: "Agent") -> None:
        super().__init__()
        self.agent = agent

    def onIncomingCall(self, prm) -> None:
        self.agent._on_incoming(self, prm)


class _Call(pj.Call):
    def __init__(self, agent: "Agent", acc: pj.Account, call_id: int) -> None:
        super().__init__(acc, call_id)
        self.agent = agent
        self.ctx: CallCtx | None = None
        self.leg: OpLeg | None = None  # set on an operator leg (outgoing call)

    def onCallState(self, prm) -> None:
        if self.leg is not None:
            self.agent._dispatch(self.agent._on_leg_state, self)
        else:
            self.agent._dispatch(self.agent._on_call_state, self)

    def onCallMediaState(self, prm) -> None:
        if self.leg is not None:
            self.agent._dispatch(self.agent._on_leg_media, self)
        else:
            self.agent._dispatch(self.agent._on_media_state, self)

    def onDtmfDigit(self, prm) -> None:
        if self.leg is not None:
            return  # the operator's keypad does not drive the caller's menu
        method = "sip_info" if prm.method == pj.PJSUA_DTMF_METHOD_SIP_INFO else "rfc2833"
        self.agent._dispatch(self.agent._on_dtmf, self, str(prm.digit), method)


@dataclass
class CallCtx:
    call_uuid: str
    sip_call_id: str
    call: _Call | None
    started_mono: float
    state: str = "incoming"  # incoming / answered / ended
    answer_at: float = 0.0
    answered_mono: float | None = None
    answered_at: datetime | None = None
    local_hangup: str = ""  # reason, when the hotline ended the call
    flow: CallFlow | None = None
    mixer: StereoMixer | None = None
    recorder: SpoolRecorder | None = None
    ports: list = field(default_factory=list)
    player: Any = None
    audio: Any = None  # the call's AudioMedia while media is up
    pending: int = 0  # events still to emit before the call marker can go
    bridged_leg: "OpLeg | None" = None
    vm: dict | None = None  # voicemail: start/end offsets and reasons
    tap: Any = None  # a _SinkPort (with .frames) while a voicemail is recorded
    vad: Any = None
    live: "_LiveFeed | None" = None  # the caller's frames for the live transcriber


@dataclass
class OpLeg:
    """The outgoing call to one operator for one caller."""

    leg_id: str
    ctx: CallCtx
    operator_id: str
    uris: list = field(default_factory=list)  # [(dial_uri, error)] still to try
    call: _Call | None = None
    state: str = "resolving"  # resolving / calling / ringing / ended
    confirmed: bool = False
    audio: Any = None
    player: Any = None
    cancelled: str = ""  # the flow ended it (outcome), no signal back
    bridged: bool = False
    answered_mono: float | None = None
    tried: int = 0


def _failure_outcome(code: int) -> str:
    if code in (486, 600):
        return "busy"
    if code in (603, 403):
        return "rejected"
    if code in (408, 480, 487):
        return "no_answer"
    return "unreachable"


class _Control:
    """:class:`telephony.flow.FlowControl` for one call (runs on the owner thread)."""

    def __init__(self, agent: "Agent", ctx: CallCtx) -> None:
        self.agent, self.ctx = agent, ctx

    def play(self, prompt: str) -> float:
        return self.agent._play(self.ctx, prompt)

    def stop_playback(self) -> None:
        self.agent._stop_player(self.ctx)

    def hangup(self, reason: str) -> None:
        self.agent._hangup(self.ctx, reason)

    def state_changed(self, state: str, detail: str = "") -> None:
        self.agent._emit(FlowChanged(self.ctx.call_uuid, state, utcnow(), detail))


class _RoutingControl(_Control):
    """:class:`telephony.routing.RoutingControl` for one call (owner thread)."""

    def request_decision(self) -> None:
        a, ctx = self.agent, self.ctx
        a.rclient.decide(lambda d: a._signal(ctx, "decision", decision=d))

    def request_claim(self, exclude: frozenset[str]) -> None:
        a, ctx = self.agent, self.ctx
        a.rclient.claim(ctx.call_uuid, exclude, lambda r: a._signal(ctx, "claim", result=r))

    def dial(self, target: OperatorTarget) -> str:
        return self.agent._dial(self.ctx, target)

    def cancel_leg(self, leg: str, outcome: str) -> None:
        self.agent._cancel_leg(leg, outcome)

    def play_to_leg(self, leg: str, prompt: str) -> float:
        return self.agent._play_to_leg(leg, prompt)

    def bridge(self, leg: str) -> None:
        self.agent._bridge(self.ctx, leg)

    def router_answered(self, operator_id: str) -> None:
        self.agent.rclient.answered(operator_id, self.ctx.call_uuid)

    def release(self, operator_id: str | None, outcome: str) -> None:
        if operator_id:
            self.agent.rclient.release(operator_id, self.ctx.call_uuid, outcome)

    def routing_decided(self, path: str, reason: str, provisional: bool) -> None:
        self.agent._emit(RoutingDecided(self.ctx.call_uuid, utcnow(), path, reason, provisional))
        log.info("call %s: routed to %s (%s%s)", self.ctx.call_uuid, path, reason,
                 ", provisional holiday data" if provisional else "")

    def start_voicemail(self, reason: str) -> None:
        self.agent._start_voicemail(self.ctx, reason)

    def stop_voicemail(self, reason: str) -> None:
        self.agent._stop_voicemail(self.ctx, reason)


class Agent:
    def __init__(self, cfg: WorkerConfig, sink: EventSink, stop_event: threading.Event | None = None,
                 router: Router | None = None, hours: OpenHours | None = None,
                 clock: Callable[[], datetime] | None = None,
                 live_transcriber: LiveTranscriberFactory | None = None) -> None:
        """``router`` + ``hours`` switch on routing and the auto-attendant after the notice
        (without them: notice, then record until hang-up). ``clock`` gives the UTC time used
        for the working-hours decision (injectable for tests). ``live_transcriber`` (a factory,
        see telephony.events.LiveTranscriberFactory) switches on the live transcript of the
        caller's channel; it is called on a helper thread per call."""
        self.cfg = cfg
        self.live_transcriber = live_transcriber
        self._live_feeds: list[_LiveFeed] = []
        self.router = router
        self.hours = hours
        self.clock = clock or utcnow
        self.routing = router is not None and hours is not None
        self.rclient: RoutingClient | None = None
        self._legs: dict[str, OpLeg] = {}
        self._timers: list[tuple[float, Callable, tuple]] = []
        self.sink = sink
        self.stop_event = stop_event or threading.Event()
        self._cmds: "queue.SimpleQueue[tuple[Callable, tuple]]" = queue.SimpleQueue()
        self._owner: int | None = None
        self._calls: dict[int, CallCtx] = {}  # pjsua call id -> ctx (calls not yet disconnected)
        self._finishing = 0  # recordings handed to the writer, completion not yet emitted
        self._next_sweep = 0.0
        self.ep: pj.Endpoint | None = None
        self.acc: _Account | None = None
        self.writer = RecordingWriter()
        self.ports = _PortPool(self._media_format)
        self.spool_dir = Path(cfg.spool_dir)
        self.recordings_dir = Path(cfg.recordings_dir)
        self.prompts: PromptSet | None = None
        self.ready = threading.Event()

    def _media_format(self):
        fmt = pj.MediaFormatAudio()
        fmt.init(pj.PJMEDIA_FORMAT_PCM, self.cfg.clock_rate, 1, FRAME_MS * 1000, 16)
        return fmt

    # ------------------------------------------------------------------ thread discipline
    def _own(self) -> None:
        assert threading.get_ident() == self._owner, "pjsua2 used outside its owning thread"

    def post(self, fn: Callable, *args) -> None:
        """Run ``fn(*args)`` on the owning thread (thread-safe, never blocks)."""
        self._cmds.put((fn, args))

    def _dispatch(self, fn: Callable, *args) -> None:
        if threading.get_ident() == self._owner:
            fn(*args)
        else:
            self.post(fn, *args)

    def _emit(self, event) -> None:
        try:
            self.sink.publish(event)
        except Exception:
            log.exception("event sink failed on %s", type(event).__name__)

    # ------------------------------------------------------------------ life cycle
    def run(self) -> None:
        """Start, serve until the stop event is set, shut down gracefully. The calling thread
        becomes the owner of every pjsua2 object."""
        self._owner = threading.get_ident()
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.recordings_dir.mkdir(parents=True, exist_ok=True)
        recovered = recover_spool(self.spool_dir, self.recordings_dir, self.sink, self.cfg.worker_id)
        if recovered:
            log.info("worker %s: recovered %d recording(s)", self.cfg.worker_id, len(recovered))
        build_prompts(Path(self.cfg.prompts_dir))  # only the missing defaults
        if self.routing:
            build_extra_prompts(Path(self.cfg.prompts_dir))
            self.rclient = RoutingClient(self.router, self.hours, self.post, self.clock)
        self.prompts = PromptSet(Path(self.cfg.prompts_dir), rate=self.cfg.clock_rate,
                                 cache_dir=self.spool_dir / ".prompts")
        self.writer.start()
        self._start_endpoint()
        self.ready.set()
        log.info("worker %s: listening on %s:%d", self.cfg.worker_id, self.cfg.sip_host, self.cfg.sip_port)
        try:
            while not self.stop_event.is_set():
                self._turn(10)
        finally:
            self._shutdown()

    def _turn(self, ms: int) -> None:
        self._own()
        self.ep.libHandleEvents(ms)
        while True:
            try:
                fn, args = self._cmds.get_nowait()
            except queue.Empty:
                break
            try:
                fn(*args)
            except Exception:
                log.exception("posted command failed")
        self._tick()

    def _start_endpoint(self) -> None:
        self._own()
        cfg = self.cfg
        ep = pj.Endpoint()
        ep.libCreate()
        ec = pj.EpConfig()
        ec.uaConfig.threadCnt = 0
        ec.uaConfig.mainThreadOnly = True
        ec.uaConfig.maxCalls = PJSUA_MAX_CALLS
        ec.uaConfig.userAgent = "hotline12388"
        ec.logConfig.level = cfg.pjsip_log_level
        ec.logConfig.consoleLevel = cfg.pjsip_log_level
        ec.medConfig.clockRate = cfg.clock_rate
        ec.medConfig.sndClockRate = cfg.clock_rate
        ec.medConfig.channelCount = 1
        ec.medConfig.audioFramePtime = FRAME_MS
        ec.medConfig.noVad = True
        ec.medConfig.ecTailLen = 0
        ep.libInit(ec)
        self.ep = ep
        tc = pj.TransportConfig()
        tc.port = cfg.sip_port
        tc.boundAddress = cfg.sip_host
        if cfg.public_address:
            tc.publicAddress = cfg.public_address
        kinds = {"udp": pj.PJSIP_TRANSPORT_UDP, "tcp": pj.PJSIP_TRANSPORT_TCP}
        for t in cfg.transports:
            ep.transportCreate(kinds[t.lower()], tc)
        ep.libStart()
        ep.audDevManager().setNullDev()
        for ci in ep.codecEnum2():
            name = ci.codecId.split("/")[0].upper()
            ep.codecSetPriority(ci.codecId, CODEC_PRIORITY.get(name, 0))
        ac = pj.AccountConfig()
        host = cfg.public_address or cfg.sip_host
        ac.idUri = f"sip:{cfg.hotline_number}@{host}:{cfg.sip_port}"
        ac.mediaConfig.transportConfig.port = cfg.rtp_port
        ac.mediaConfig.transportConfig.portRange = cfg.rtp_port_range
        ac.mediaConfig.transportConfig.boundAddress = cfg.sip_host
        if cfg.public_address:
            ac.mediaConfig.transportConfig.publicAddress = cfg.public_address
        acc = _Account(self)
        acc.create(ac, True)
        self.acc = acc

    def _shutdown(self) -> None:
        self._own()
        log.info("worker %s: shutting down (%d call(s))", self.cfg.worker_id, len(self._calls))
        for ctx in list(self._calls.values()):
            self._hangup(ctx, "shutdown")
        deadline = time.monotonic() + 3.0
        while (self._calls or self._legs) and time.monotonic() < deadline:
            self._turn(10)
        for ctx in list(self._calls.values()):  # the far end never answered our BYE
            self._end_call(ctx, 0, "shutdown", force=True)
        for leg in list(self._legs.values()):
            self._leg_gone(leg, 0, "shutdown")
        if self.rclient is not None:
            self.rclient.close(wait=True)  # operator releases reach the router
        deadline = time.monotonic() + 15.0
        while self._finishing and time.monotonic() < deadline:
            self._turn(10)
        deadline = time.monotonic() + 10.0  # last live results reach the sink before it is closed
        while any(f.thread.is_alive() for f in self._live_feeds) and time.monotonic() < deadline:
            self._turn(10)
        self.writer.stop()
        while True:
            try:
                fn, args = self._cmds.get_nowait()
            except queue.Empty:
                break
            fn(*args)
        self._calls.clear()
        self.prompts = None
        log.info("worker %s: %d sink port(s) served its calls", self.cfg.worker_id, self.ports.size)
        self.ports.close()  # sink ports outlive libDestroy() on purpose (see _PortPool)
        gc.collect()  # every other pjsua2 object must be gone before libDestroy()
        if self.acc is not None:
            try:
                self.acc.shutdown()
            except Exception:
                pass
            self.acc = None
        if self.ep is not None:
            self.ep.libDestroy()
            self.ep = None

    # ------------------------------------------------------------------ incoming calls
    def _on_incoming(self, acc: _Account, prm) -> None:
        self._own()
        raw = prm.rdata.wholeMsg
        src = prm.rdata.srcAddress
        req = parse_request(raw)
        call = _Call(self, acc, prm.callId)
        sip_call_id = req.header("call-id") or ""
        active = sum(1 for c in self._calls.values() if c.state != "ended")
        limit = self.cfg.max_callers if self.routing else self.cfg.max_calls
        d = decide(src, req, trunk_allow=self.cfg.trunk_networks, trusted_proxies=self.cfg.proxy_networks,
                   hotline_number=self.cfg.hotline_number, active_calls=active, max_calls=limit)
        if not d.accepted:
            log.info("rejected INVITE with %d %s", d.code, d.reason)
            op = pj.CallOpParam()
            op.statusCode = d.code
            op.reason = d.reason
            try:
                call.hangup(op)
            except pj.Error as e:
                log.warning("reject failed: %s", e.info())
            self._drop_call(call)
            del call  # freed here, while the slot is still this INVITE's
            self._emit(CallRejected(sip_call_id, d.code, d.reason, self.cfg.worker_id, utcnow()))
            return
        now = time.monotonic()
        ctx = CallCtx(call_uuid=str(uuid.uuid4()), sip_call_id=sip_call_id, call=call, started_mono=now,
                      answer_at=now + max(0.0, self.cfg.answer_delay_s))
        call.ctx = ctx
        self._calls[prm.callId] = ctx
        caller_uri = header_uri(req.header("from"))
        started = utcnow()
        write_call_marker(self.spool_dir, ctx.call_uuid, self.cfg.worker_id, started)
        self._emit(CallStarted(call_uuid=ctx.call_uuid, sip_call_id=sip_call_id, caller_uri=caller_uri,
                               caller_number=uri_user(caller_uri), dialled=req.request_user,
                               worker_id=self.cfg.worker_id, at=started))
        log.info("call %s: incoming", ctx.call_uuid)
        if self.cfg.answer_delay_s <= 0:
            # Answered at once: no 180 first. A proxy relays replies on several processes, so a 180
            # sent a moment before the 200 can overtake it, and a strict caller then drops the call.
            self._answer(ctx)
            return
        op = pj.CallOpParam()
        op.statusCode = 180
        try:
            call.answer(op)
        except pj.Error as e:
            log.warning("call %s: 180 failed: %s", ctx.call_uuid, e.info())

    def _answer(self, ctx: CallCtx) -> None:
        self._own()
        if ctx.state != "incoming":
            return
        rate = self.cfg.clock_rate
        spf = rate * FRAME_MS // 1000
        rec_id = str(uuid.uuid4())
        try:
            recorder = SpoolRecorder(self.spool_dir, self.recordings_dir, rec_id, ctx.call_uuid, sample_rate=rate)
        except Exception as e:
            log.error("call %s: cannot start recording: %s", ctx.call_uuid, e)
            op = pj.CallOpParam()
            op.statusCode = 503
            op.reason = "Recording Unavailable"
            ctx.local_hangup = "recording_unavailable"
            ctx.call.hangup(op)
            return
        mixer = StereoMixer(spf)
        live = self._start_live(ctx, rate, spf)
        ports = [self.ports.get(_channel_sink(mixer, ch, live if ch == 0 else None)) for ch in (0, 1)]
        ctx.mixer, ctx.recorder, ctx.ports = mixer, recorder, ports
        self.writer.add(recorder, mixer)
        op = pj.CallOpParam()
        op.statusCode = 200
        try:
            ctx.call.answer(op)
        except pj.Error as e:
            log.warning("call %s: answer failed: %s", ctx.call_uuid, e.info())
        ctx.state = "answered"
        ctx.answered_mono = time.monotonic()
        ctx.answered_at = utcnow()
        if self.routing:
            ctx.flow = HotlineFlow(_RoutingControl(self, ctx), self.cfg)
        else:
            ctx.flow = CallFlow(_Control(self, ctx), self.cfg.max_call_seconds)
        self._emit(CallAnswered(ctx.call_uuid, ctx.answered_at, rec_id, str(recorder.path.resolve()), rate, 2))
        log.info("call %s: answered, recording %s", ctx.call_uuid, rec_id)

    # ------------------------------------------------------------------ call callbacks
    def _on_call_state(self, call: _Call) -> None:
        self._own()
        ctx = call.ctx
        if ctx is None:
            return
        try:
            ci = call.getInfo()
        except pj.Error as e:
            # No info for this call any more: if pjsua no longer has it, it is over.
            if not self._is_active(call):
                log.warning("call %s: gone (%s)", ctx.call_uuid, e.info())
                self._end_call(ctx, 0, "call lost")
            return
        if ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self._end_call(ctx, ci.lastStatusCode, ci.lastReason)

    def _drop_call(self, call: _Call | None) -> None:
        """Let a call object go: unlink it from its context so no reference cycle keeps it alive;
        the caller drops its own reference, and CPython frees it as the current callback returns
        (see the module docstring: never later than this turn)."""
        self._own()
        if call is not None:
            call.ctx = None
            call.leg = None

    @staticmethod
    def _is_active(call: _Call) -> bool:
        try:
            return bool(call.isActive())
        except pj.Error:
            return False

    def _sweep_lost_calls(self) -> None:
        """A call pjsua no longer has, but whose disconnect never reached us, still ends here and
        its recording is finished (once a second; normally finds nothing)."""
        self._own()
        for ctx in list(self._calls.values()):
            if ctx.state != "ended" and ctx.call is not None and not self._is_active(ctx.call):
                log.warning("call %s: gone without a disconnect event; ending it", ctx.call_uuid)
                self._end_call(ctx, 0, "call lost")

    def _on_media_state(self, call: _Call) -> None:
        self._own()
        ctx = call.ctx
        if ctx is None or ctx.state != "answered":
            return
        try:
            ci = call.getInfo()
        except pj.Error:
            return
        for mi in ci.media:
            if mi.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            if mi.status in (pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_REMOTE_HOLD,
                             pj.PJSUA_CALL_MEDIA_LOCAL_HOLD):
                try:
                    am = call.getAudioMedia(mi.index)
                except pj.Error:
                    continue
                # (Re)connect after answer, re-INVITE or hold: the recording goes on.
                am.startTransmit(ctx.ports[0])
                if ctx.player is not None:
                    ctx.player.startTransmit(am)
                ctx.audio = am
                if ctx.tap is not None:
                    am.startTransmit(ctx.tap)
                if ctx.bridged_leg is not None:
                    self._connect_bridge(ctx, ctx.bridged_leg)
                if ctx.flow is not None and ctx.flow.started_at is None:
                    ctx.flow.start(time.monotonic())
                break

    def _on_dtmf(self, call: _Call, digit: str, method: str) -> None:
        self._own()
        ctx = call.ctx
        if ctx is None or ctx.answered_mono is None or ctx.state == "ended":
            return
        now = time.monotonic()
        self._emit(DtmfReceived(ctx.call_uuid, digit, utcnow(), round(now - ctx.answered_mono, 3), method))
        if ctx.flow is not None:
            ctx.flow.on_dtmf(digit, now)

    # ------------------------------------------------------------------ media actions
    def _play(self, ctx: CallCtx, name: str) -> float:
        self._own()
        self._stop_player(ctx)
        prompt = self.prompts.get(name)
        player = pj.AudioMediaPlayer()
        player.createPlayer(str(prompt.path), pj.PJMEDIA_FILE_NO_LOOP)
        player.startTransmit(ctx.ports[1])
        if ctx.audio is not None:
            player.startTransmit(ctx.audio)
        ctx.player = player
        return prompt.duration

    def _stop_player(self, ctx: CallCtx) -> None:
        self._own()
        if ctx.player is not None:
            player, ctx.player = ctx.player, None
            del player  # the last reference: the player leaves the bridge now

    def _hangup(self, ctx: CallCtx, reason: str) -> None:
        self._own()
        if ctx.state == "ended":
            return
        ctx.local_hangup = ctx.local_hangup or reason
        op = pj.CallOpParam()
        if ctx.state == "incoming":
            op.statusCode = 503 if reason == "shutdown" else 480
        try:
            ctx.call.hangup(op)
        except pj.Error as e:
            log.warning("call %s: hangup failed: %s", ctx.call_uuid, e.info())

    def _tick(self) -> None:
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + 1.0
            self._sweep_lost_calls()
        if self._timers:
            due = [t for t in self._timers if t[0] <= now]
            self._timers = [t for t in self._timers if t[0] > now]
            for _, fn, args in due:
                try:
                    fn(*args)
                except Exception:
                    log.exception("deferred command failed")
        for ctx in list(self._calls.values()):
            if ctx.state == "incoming" and now >= ctx.answer_at:
                self._answer(ctx)
            elif ctx.state == "answered" and ctx.flow is not None:
                if ctx.tap is not None:
                    self._feed_vad(ctx, now)
                ctx.flow.tick(now)
                if ctx.flow.started_at is None and now - (ctx.answered_mono or now) > 5.0:
                    ctx.flow.start(now)  # no media state callback: run the flow anyway

    # ------------------------------------------------------------------ end of a call
    def _end_call(self, ctx: CallCtx, code: int, reason: str, force: bool = False) -> None:
        self._own()
        if ctx.state == "ended":
            return
        was_answered = ctx.state == "answered"
        ctx.state = "ended"
        reached = ctx.flow.reached_reporting_state if ctx.flow is not None else False
        try:
            self._release_call(ctx)
        except Exception:
            # Whatever failed, the call is over: its recording is still finished below.
            log.exception("call %s: releasing the call failed", ctx.call_uuid)
        if ctx.local_hangup:
            by = "system" if ctx.local_hangup in ("shutdown", "recording_unavailable") else "hotline"
            status = "ended"
        elif not was_answered:
            by = "caller" if code == 487 else "system"
            status = "abandoned"
        else:
            by = "caller"
            status = "ended" if reached else "abandoned"
        self._emit(CallEnded(ctx.call_uuid, utcnow(), status, int(code or 0),
                             (ctx.local_hangup or reason or "")[:255], by))
        log.info("call %s: ended (%s, %s, by %s)", ctx.call_uuid, status, code, by)
        for k, v in list(self._calls.items()):
            if v is ctx:
                del self._calls[k]
        call, ctx.call = ctx.call, None
        self._drop_call(call)
        del call
        if ctx.recorder is not None:
            self._finishing += 1
            rec = ctx.recorder
            # Runs on the writer thread; the result comes back to this thread through post().
            self.writer.finish(rec.recording_id,
                               lambda res, err, c=ctx, r=rec: self.post(self._recording_done, c, r, res, err))
        else:
            remove_call_marker(self.spool_dir, ctx.call_uuid)

    def _release_call(self, ctx: CallCtx) -> None:
        """Stop what a call holds: flow, prompt, operator legs, voicemail, recording ports, live ASR."""
        self._own()
        if ctx.flow is not None:
            ctx.flow.on_hangup(time.monotonic())
        self._stop_player(ctx)
        for leg in list(self._legs.values()):  # the flow already ended them; make sure
            if leg.ctx is ctx and not leg.cancelled:
                self._cancel_leg(leg.leg_id, "ended" if leg.answered_mono is not None else "abandoned")
        self._stop_voicemail(ctx, "hangup")
        ctx.bridged_leg = None
        ctx.audio = None
        ports, ctx.ports = ctx.ports, []
        for port in ports:
            self.ports.put(port)  # no frame reaches this recording after this point
        if ctx.live is not None:
            live, ctx.live = ctx.live, None
            live.stop()  # its thread feeds what is left and closes the transcriber

    def _recording_done(self, ctx: CallCtx, rec: SpoolRecorder, res: RecordingResult | None, err: str) -> None:
        self._finishing -= 1
        if res is None:
            ev = RecordingCompleted(rec.recording_id, ctx.call_uuid, str(rec.path.resolve()), "failed", 0.0,
                                    rec.sample_rate, rec.channels, "", 0,
                                    kind="voicemail" if ctx.vm is not None else "call", at=utcnow(),
                                    extra={"error": err})
        else:
            extra = {"error": err} if err else {}
            if ctx.vm is not None:
                extra.update({f"voicemail_{k}": v for k, v in ctx.vm.items()})
            ev = RecordingCompleted(res.recording_id, ctx.call_uuid, res.path, res.status, res.duration,
                                    res.sample_rate, res.channels, res.sha256, res.size_bytes,
                                    kind="voicemail" if ctx.vm is not None else "call", at=utcnow(),
                                    extra=extra)
        self._emit(ev)
        log.info("recording %s: %s (%.1f s)", rec.recording_id, ev.status, ev.duration)
        remove_call_marker(self.spool_dir, ctx.call_uuid)

    # ------------------------------------------------------------------ routing: operator legs
    def _signal(self, ctx: CallCtx, name: str, **data) -> None:
        """Deliver a signal to a call's flow (owner thread; posted by the routing helpers)."""
        self._own()
        if ctx.flow is not None:
            ctx.flow.signal(name, time.monotonic(), **data)

    def _dial(self, ctx: CallCtx, target: OperatorTarget) -> str:
        self._own()
        leg = OpLeg(leg_id=uuid.uuid4().hex[:12], ctx=ctx, operator_id=target.operator_id)
        self._legs[leg.leg_id] = leg
        if not target.uris:
            log.warning("call %s: operator %s has no SIP contact", ctx.call_uuid, target.operator_id)
        # DNS (if any) on a helper thread; the INVITE goes out when the answer is posted back
        self.rclient.resolve(tuple(target.uris), lambda res, lg=leg: self._leg_resolved(lg, res))
        return leg.leg_id

    def _leg_resolved(self, leg: OpLeg, resolved: list) -> None:
        self._own()
        if leg.cancelled or leg.state == "ended" or leg.ctx.state == "ended":
            self._leg_gone(leg, 0, "cancelled")
            return
        leg.uris = list(resolved)
        self._leg_dial_next(leg)

    def _later(self, delay: float, fn: Callable, *args) -> None:
        """Run ``fn(*args)`` on this thread after ``delay`` seconds (checked each loop turn)."""
        self._timers.append((time.monotonic() + delay, fn, args))

    def _leg_dial_next(self, leg: OpLeg, code: int = 0) -> None:
        self._own()
        ctx = leg.ctx
        if leg.state == "ended":
            return
        if leg.cancelled or ctx.state == "ended":
            self._leg_gone(leg, 0, "cancelled")
            return
        busy_legs = sum(1 for c in self._calls.values() if c.call is not None) + sum(
            1 for lg in self._legs.values() if lg.call is not None)
        if leg.uris and busy_legs >= PJSUA_MAX_CALLS:
            # a cancelled leg is still closing: wait for its slot rather than skip this operator
            self._later(0.2, self._leg_dial_next, leg, code)
            return
        while leg.uris:
            uri, err = leg.uris.pop(0)
            leg.tried += 1
            if err:
                log.warning("call %s: operator %s contact #%d does not resolve (%s): skipped",
                            ctx.call_uuid, leg.operator_id, leg.tried, err)
                continue
            call = _Call(self, self.acc, pj.PJSUA_INVALID_ID)
            call.leg = leg
            try:
                call.makeCall(uri, pj.CallOpParam(True))
            except pj.Error as e:
                log.warning("call %s: operator %s contact #%d cannot be called (%s): skipped",
                            ctx.call_uuid, leg.operator_id, leg.tried, e.info().splitlines()[0][:200])
                self._drop_call(call)
                del call
                continue
            leg.call = call
            leg.state = "calling"
            self._emit(OperatorRinging(ctx.call_uuid, leg.operator_id, utcnow(), leg.tried))
            log.info("call %s: ringing operator %s", ctx.call_uuid, leg.operator_id)
            return
        self._leg_failed(leg, "unreachable", code)

    def _leg_failed(self, leg: OpLeg, outcome: str, code: int) -> None:
        self._own()
        self._legs.pop(leg.leg_id, None)
        leg.state = "ended"
        outcome = leg.cancelled or outcome
        self._emit(OperatorFailed(leg.ctx.call_uuid, leg.operator_id, utcnow(), outcome, int(code or 0)))
        log.info("call %s: operator %s did not take the call (%s %s)", leg.ctx.call_uuid, leg.operator_id,
                 outcome, code or "")
        if not leg.cancelled and leg.ctx.state != "ended":
            self._signal(leg.ctx, "leg_failed", leg=leg.leg_id, outcome=outcome, code=int(code or 0))

    def _on_leg_state(self, call: _Call) -> None:
        self._own()
        leg = call.leg
        if leg is None:
            return
        try:
            ci = call.getInfo()
        except pj.Error:
            return
        if ci.state == pj.PJSIP_INV_STATE_EARLY and leg.state == "calling":
            leg.state = "ringing"
            self._signal(leg.ctx, "leg_ringing", leg=leg.leg_id)
        elif ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
            leg.confirmed = True
            self._leg_maybe_answered(leg)
        elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self._leg_gone(leg, ci.lastStatusCode, ci.lastReason)

    def _on_leg_media(self, call: _Call) -> None:
        self._own()
        leg = call.leg
        if leg is None:
            return
        try:
            ci = call.getInfo()
        except pj.Error:
            return
        for mi in ci.media:
            if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status in (
                    pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_REMOTE_HOLD, pj.PJSUA_CALL_MEDIA_LOCAL_HOLD):
                try:
                    leg.audio = call.getAudioMedia(mi.index)
                except pj.Error:
                    continue
                if leg.player is not None:
                    leg.player.startTransmit(leg.audio)
                if leg.bridged and leg.ctx.state != "ended":
                    self._connect_bridge(leg.ctx, leg)
                break
        self._leg_maybe_answered(leg)

    def _leg_maybe_answered(self, leg: OpLeg) -> None:
        if leg.confirmed and leg.audio is not None and leg.answered_mono is None and not leg.cancelled:
            leg.answered_mono = time.monotonic()
            self._emit(OperatorAnswered(leg.ctx.call_uuid, leg.operator_id, utcnow()))
            log.info("call %s: operator %s answered", leg.ctx.call_uuid, leg.operator_id)
            self._signal(leg.ctx, "leg_answered", leg=leg.leg_id)

    def _leg_gone(self, leg: OpLeg, code: int, reason: str) -> None:
        """The operator leg's INVITE session is over (or never started)."""
        self._own()
        if leg.state == "ended":
            return
        ctx = leg.ctx
        if leg.call is not None:
            call, leg.call = leg.call, None
            self._drop_call(call)
            del call
        leg.player = None
        leg.audio = None
        if ctx.bridged_leg is leg:
            ctx.bridged_leg = None
        if leg.answered_mono is None:
            if not leg.cancelled and leg.uris and code not in (486, 600, 603, 487):
                self._leg_dial_next(leg, code)  # the next contact of the same operator
                return
            self._leg_failed(leg, _failure_outcome(code), code)
            return
        self._legs.pop(leg.leg_id, None)
        leg.state = "ended"
        if not leg.cancelled:
            by = "operator"
        else:
            by = "caller" if ctx.state == "ended" and ctx.local_hangup == "" else "hotline"
        talk = time.monotonic() - leg.answered_mono
        self._emit(OperatorHangup(ctx.call_uuid, leg.operator_id, utcnow(), by, round(talk, 3)))
        log.info("call %s: operator %s leg ended (by %s)", ctx.call_uuid, leg.operator_id, by)
        if not leg.cancelled and ctx.state != "ended":
            self._signal(ctx, "leg_ended", leg=leg.leg_id, by=by)

    def _cancel_leg(self, leg_id: str, outcome: str) -> None:
        self._own()
        leg = self._legs.get(leg_id)
        if leg is None or leg.cancelled:
            return
        leg.cancelled = outcome or "cancelled"
        if leg.call is None:  # still resolving: nothing sent yet
            if leg.answered_mono is None:
                self._leg_failed(leg, leg.cancelled, 0)
            return
        try:
            leg.call.hangup(pj.CallOpParam())
        except pj.Error as e:
            log.warning("call %s: ending operator leg failed: %s", leg.ctx.call_uuid, e.info().splitlines()[0])
            self._leg_gone(leg, 0, "hangup failed")

    def _play_to_leg(self, leg_id: str, name: str) -> float:
        self._own()
        leg = self._legs.get(leg_id)
        if leg is None or leg.audio is None:
            return 0.0
        prompt = self.prompts.get(name)
        player = pj.AudioMediaPlayer()
        player.createPlayer(str(prompt.path), pj.PJMEDIA_FILE_NO_LOOP)
        player.startTransmit(leg.audio)
        leg.player = player
        return prompt.duration

    def _bridge(self, ctx: CallCtx, leg_id: str) -> None:
        self._own()
        leg = self._legs.get(leg_id)
        if leg is None or ctx.state == "ended":
            return
        self._stop_player(ctx)
        leg.player = None
        leg.bridged = True
        ctx.bridged_leg = leg
        self._connect_bridge(ctx, leg)
        q = getattr(ctx.flow, "queued_at", None)
        wait = (time.monotonic() - q) if q is not None else 0.0
        self._emit(CallBridged(ctx.call_uuid, leg.operator_id, utcnow(), round(wait, 3)))
        log.info("call %s: bridged to operator %s", ctx.call_uuid, leg.operator_id)

    def _connect_bridge(self, ctx: CallCtx, leg: OpLeg) -> None:
        """caller <-> operator, and the operator into the recording's channel 1."""
        if ctx.audio is None or leg.audio is None:
            return
        ctx.audio.startTransmit(leg.audio)
        leg.audio.startTransmit(ctx.audio)
        if len(ctx.ports) > 1:
            leg.audio.startTransmit(ctx.ports[1])

    # ------------------------------------------------------------------ live transcript
    def _start_live(self, ctx: CallCtx, rate: int, spf: int) -> "_LiveFeed | None":
        self._own()
        if self.live_transcriber is None:
            return None
        uid = ctx.call_uuid

        def emit(res: LiveText) -> None:  # the transcriber's thread
            try:
                ev = LiveTranscript(uid, utcnow(), bool(res.final), str(res.text or ""),
                                    round(float(res.start), 3), round(float(res.end), 3))
            except Exception:  # noqa: BLE001 - a malformed result is dropped
                return
            if ev.text:
                # Published from this thread, not posted to the owner: the owner's loop also reads
                # the RTP sockets, so live ASR adds no work there (sinks are thread-safe, see
                # telephony.events.LiveTranscript).
                self._emit(ev)

        feed = _LiveFeed(uid, rate, spf, self.live_transcriber, emit, buffer_s=self.cfg.live_buffer_s)
        self._live_feeds = [f for f in self._live_feeds if f.thread.is_alive()]
        self._live_feeds.append(feed)
        ctx.live = feed
        feed.start()
        return feed

    # ------------------------------------------------------------------ voicemail
    def _offset(self, ctx: CallCtx) -> float:
        return round(time.monotonic() - (ctx.answered_mono or time.monotonic()), 3)

    def _start_voicemail(self, ctx: CallCtx, reason: str) -> None:
        self._own()
        if ctx.vm is not None or ctx.state == "ended":
            return
        ctx.vm = {"start_s": self._offset(ctx), "reason": reason}
        rec = ctx.recorder
        if rec is not None:
            # The sidecar says "voicemail" too, so a crash-recovered file keeps its kind. Only this
            # thread writes the sidecar while the recording runs (the writer does at finish()).
            rec.kind = "voicemail"
            rec._meta["kind"] = "voicemail"
            try:
                _write_json_atomic(rec.sidecar, rec._meta)
            except OSError as e:
                log.warning("call %s: cannot update recording sidecar: %s", ctx.call_uuid, e)
        cfg = self.cfg
        ctx.vad = VoiceActivity(make_vad(cfg.vad, cfg.clock_rate, cfg.vad_aggressiveness, cfg.vad_energy_dbfs))
        frames: deque = deque(maxlen=500)
        tap = self.ports.get(frames.append)
        tap.frames = frames  # drained by the owner (_feed_vad)
        ctx.tap = tap
        if ctx.audio is not None:
            ctx.audio.startTransmit(tap)
        self._emit(VoicemailStarted(ctx.call_uuid, utcnow(), ctx.vm["start_s"], reason))
        log.info("call %s: voicemail started (%s)", ctx.call_uuid, reason)

    def _stop_voicemail(self, ctx: CallCtx, reason: str) -> None:
        self._own()
        if ctx.vm is None or "end_s" in ctx.vm:
            return
        ctx.vm["end_s"] = self._offset(ctx)
        ctx.vm["end_reason"] = reason
        tap, ctx.tap = ctx.tap, None
        if tap is not None:
            tap.frames = None
            self.ports.put(tap)  # no frame reaches the VAD after this point
        ctx.vad = None
        self._emit(VoicemailEnded(ctx.call_uuid, utcnow(), ctx.vm["end_s"], reason))
        log.info("call %s: voicemail ended (%s, %.1f s)", ctx.call_uuid, reason, ctx.vm["end_s"] - ctx.vm["start_s"])

    def _feed_vad(self, ctx: CallCtx, now: float) -> None:
        frames = ctx.tap.frames
        speech = False
        while frames:
            try:
                f = frames.popleft()
            except IndexError:
                break
            speech = ctx.vad.feed(f) or speech
        if speech:
            ctx.flow.on_audio(True, now)

    # ------------------------------------------------------------------ introspection
    @property
    def active_calls(self) -> int:
        return len(self._calls)
