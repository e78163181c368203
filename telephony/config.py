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

    def __post_init__(self) -> None:
        self.max_calls = max(1, min(int(self.max_calls), PJSUA_MAX_CALLS))
        for n in list(self.trunk_allow) + list(self.trusted_proxies):
            ipaddress.ip_network(n, strict=False)  # ValueError names the bad entry

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
