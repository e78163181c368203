"""Configuration of one agent worker process: a plain dataclass (no hotline_api import).

The composition root builds it from the project settings; ``python -m telephony.worker`` reads it
from a JSON file with the same field names.
"""
from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

#: pjsua2-python is built with PJSUA_MAX_CALLS = 4: one process holds at most 4 call legs.
PJSUA_MAX_CALLS = 4


@dataclass
class WorkerConfig:
    worker_id: str = "w0"
    sip_host: str = "127.0.0.1"  # UDP and TCP transports bind here
    sip_port: int = 5060
    public_address: str = ""  # address put in SDP/Contact; default: sip_host
    hotline_number: str = "12388"  # request-URI user the worker answers (else 404)
    trunk_allow: list[str] = field(default_factory=lambda: ["127.0.0.0/8"])  # source CIDRs (else 403)
    # Requests from these addresses (e.g. kamailio) may carry the original source IP in the
    # X-Hotline-Source header; the ACL then checks that address. Others' headers are ignored.
    trusted_proxies: list[str] = field(default_factory=list)
    max_calls: int = PJSUA_MAX_CALLS  # concurrent call legs in this worker (capped at 4); past it: 486
    max_call_seconds: int = 3600  # then the "too_long" prompt and BYE
    answer_delay_s: float = 0.0  # ring time between 180 Ringing and 200 OK
    rtp_port: int = 0  # first RTP port; 0 = any free port
    rtp_port_range: int = 0  # 0 = no limit
    clock_rate: int = 16000  # conference bridge rate = recording sample rate
    spool_dir: str = "./var/spool/w0"  # in-progress recordings (this worker's own directory)
    recordings_dir: str = "./var/recordings"  # completed recordings
    prompts_dir: str = "./var/prompts"
    pjsip_log_level: int = 1  # pjsip's own console log (0-6); never above 3 in production
    transports: list[str] = field(default_factory=lambda: ["udp", "tcp"])
    # ---- routing to operators and the auto-attendant (used when the worker runs with a Router and
    # OpenHours, see telephony.routing; without them the flow is notice -> record until hang-up)
    # Keep one leg free per caller for its operator bridge: a worker with 4 legs admits 2 callers
    # (the 3rd INVITE gets 486; kamailio's dispatcher maxload should be max_callers).
    reserve_operator_legs: bool = True
    ring_timeout_s: float = 20.0  # ring one operator this long, then the next
    queue_max_wait_s: float = 120.0  # then voicemail is offered
    queue_announce_every_s: float = 20.0  # the "please wait" announcement between hold music
    queue_retry_s: float = 2.0  # ask again for a free operator this often while nobody is free
    decision_budget_s: float = 3.0  # wait this long after the notice for the open-hours answer
    operator_announce: bool = True  # play "12388 来电" to the operator before bridging
    menu_timeout_s: float = 6.0  # no DTMF this long after the menu prompt = no input
    menu_max_tries: int = 3  # no/invalid input this many times -> straight to recording
    voicemail_max_s: float = 300.0  # a voicemail is cut after this long
    voicemail_silence_s: float = 5.0  # this much silence after the beep ends the voicemail
    vad: str = "webrtc"  # webrtc (webrtcvad) / energy
    vad_aggressiveness: int = 2  # webrtcvad mode 0-3
    vad_energy_dbfs: float = -45.0  # energy detector: a frame above this level is speech
    # ---- live transcript of the caller's channel (used when the worker gets a live-transcriber
    # factory): caller frames wait at most this long for the transcriber; older ones are dropped
    # (live ASR degrades, the recording never waits)
    live_buffer_s: float = 10.0

    def __post_init__(self) -> None:
        self.max_calls = max(1, min(int(self.max_calls), PJSUA_MAX_CALLS))
        if self.vad not in ("webrtc", "energy"):
            raise ValueError(f"vad must be 'webrtc' or 'energy', got {self.vad!r}")
        for name in ("ring_timeout_s", "queue_max_wait_s", "queue_announce_every_s", "queue_retry_s",
                     "menu_timeout_s", "voicemail_max_s", "voicemail_silence_s"):
            if float(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive")
        for n in list(self.trunk_allow) + list(self.trusted_proxies):
            ipaddress.ip_network(n, strict=False)  # ValueError names the bad entry

    @property
    def max_callers(self) -> int:
        """Callers this worker admits when it routes to operators (each needs a second leg)."""
        return max(1, self.max_calls // 2) if self.reserve_operator_legs else self.max_calls

    @property
    def trunk_networks(self):
        return [ipaddress.ip_network(n, strict=False) for n in self.trunk_allow]

    @property
    def proxy_networks(self):
        return [ipaddress.ip_network(n, strict=False) for n in self.trusted_proxies]

    @classmethod
    def from_mapping(cls, data: dict) -> "WorkerConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown worker settings: {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_json_file(cls, path: str | Path) -> "WorkerConfig":
        return cls.from_mapping(json.loads(Path(path).read_text(encoding="utf-8")))

    def to_dict(self) -> dict:
        return asdict(self)
