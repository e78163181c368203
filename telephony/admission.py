"""Whether an incoming INVITE is answered, and if not, with which SIP response. Pure logic.

Order of checks: capacity (486) is decided first so an overloaded worker never does more work;
then the trunk ACL (403) on the effective source address, the dialled number (404), and the
codecs of the offer (488).
"""
from __future__ import annotations

from dataclasses import dataclass

from telephony.sipmsg import (SipRequest, has_allowed_codec, ip_in, normalise_number, parse_host,
                              sdp_audio_codecs)

SOURCE_HEADER = "X-Hotline-Source"


@dataclass(frozen=True)
class Decision:
    code: int  # 0 = accept; else the SIP response code
    reason: str
    source_ip: str = ""

    @property
    def accepted(self) -> bool:
        return self.code == 0


def effective_source(src_addr: str, req: SipRequest, trusted_proxies) -> str:
    """The caller's network address: the packet source, or, when the packet comes from a trusted
    proxy (kamailio), the address the proxy put in ``X-Hotline-Source``."""
    ip = parse_host(src_addr)
    if trusted_proxies and ip_in(ip, trusted_proxies):
        hdr = req.header(SOURCE_HEADER)
        if hdr:
            return parse_host(hdr.split(",")[0].strip())
    return ip


def decide(src_addr: str, req: SipRequest, *, trunk_allow, trusted_proxies, hotline_number: str,
           active_calls: int, max_calls: int) -> Decision:
    if active_calls >= max_calls:
        return Decision(486, "Busy Here")
    ip = effective_source(src_addr, req, trusted_proxies)
    if not ip_in(ip, trunk_allow):
        return Decision(403, "Forbidden", ip)
    if normalise_number(req.request_user) != normalise_number(hotline_number):
        return Decision(404, "Not Found", ip)
    if req.body.strip():
        if not has_allowed_codec(sdp_audio_codecs(req.body)):
            return Decision(488, "Not Acceptable Here", ip)
    return Decision(0, "OK", ip)
