"""Small, forgiving parsers for the parts of an incoming SIP request the agent decides on
(request URI user, a few headers, the SDP offer's audio codecs). Pure functions: no pjsua2.

pjsip has already parsed and validated the message before the agent sees it; these helpers read
the raw text pjsua2 hands over (``SipRxData.wholeMsg``) and never raise on odd input.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

# RFC 3261 compact header forms
_COMPACT = {"i": "call-id", "f": "from", "t": "to", "m": "contact", "v": "via", "c": "content-type",
            "l": "content-length", "k": "supported", "s": "subject", "e": "content-encoding"}

#: Codecs the hotline answers with (encoding name -> static payload type, None if dynamic only).
ALLOWED_CODECS = {"G722": 9, "PCMA": 8, "PCMU": 0}
_STATIC_PT = {0: "PCMU", 3: "GSM", 4: "G723", 8: "PCMA", 9: "G722", 18: "G729"}


@dataclass
class SipRequest:
    method: str = ""
    uri: str = ""
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: str = ""

    def header(self, name: str) -> str | None:
        vals = self.headers.get(name.lower())
        return vals[0] if vals else None

    @property
    def request_user(self) -> str:
        return uri_user(self.uri)


def parse_request(raw: str) -> SipRequest:
    raw = raw or ""
    head, _, body = raw.replace("\r\n", "\n").partition("\n\n")
    lines = head.split("\n")
    req = SipRequest(body=body)
    if lines:
        parts = lines[0].split()
        if len(parts) >= 2:
            req.method, req.uri = parts[0].upper(), parts[1]
    last = None
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t" and last:  # folded continuation
            req.headers[last][-1] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key = name.strip().lower()
        key = _COMPACT.get(key, key)
        req.headers.setdefault(key, []).append(value.strip())
        last = key
    return req


def uri_user(uri: str) -> str:
    """The user part of a SIP URI (``sip:12388@host;x=y`` -> ``12388``; ``tel:12388`` -> ``12388``)."""
    u = (uri or "").strip().strip("<>")
    m = re.match(r"^(sips?|tel):", u, flags=re.I)
    scheme = m.group(1).lower() if m else ""
    u = u[m.end():] if m else u
    if "@" in u:
        user = u.split("@", 1)[0]
    elif scheme == "tel":
        user = u
    else:
        return ""
    user = user.split(";", 1)[0]
    return user.replace("%2B", "+").replace("%2b", "+")


def normalise_number(user: str) -> str:
    """Digits of a dialled number (visual separators dropped)."""
    return re.sub(r"[\s\-().]", "", user or "")


def header_uri(value: str | None) -> str:
    """The URI inside a From/To header value (``"x" <sip:a@b>;tag=1`` -> ``sip:a@b``)."""
    if not value:
        return ""
    m = re.search(r"<([^>]*)>", value)
    if m:
        return m.group(1).strip()
    return value.split(";", 1)[0].strip()


def sdp_audio_codecs(sdp: str) -> list[str]:
    """Encoding names (upper case) offered on the first audio m-line of an SDP body."""
    if not sdp:
        return []
    pts: list[int] = []
    rtpmap: dict[int, str] = {}
    in_audio = False
    seen_audio = False
    for line in sdp.replace("\r\n", "\n").split("\n"):
        line = line.strip()
        if line.startswith("m="):
            if seen_audio:
                in_audio = False
                continue
            fields = line[2:].split()
            in_audio = bool(fields) and fields[0].lower() == "audio"
            if in_audio:
                seen_audio = True
                for f in fields[3:]:
                    if f.isdigit():
                        pts.append(int(f))
        elif in_audio and line.lower().startswith("a=rtpmap:"):
            m = re.match(r"a=rtpmap:(\d+)\s+([^/\s]+)", line, flags=re.I)
            if m:
                rtpmap[int(m.group(1))] = m.group(2).upper()
    return [rtpmap.get(pt) or _STATIC_PT.get(pt, f"PT{pt}") for pt in pts]


def has_allowed_codec(codecs: list[str]) -> bool:
    return any(c in ALLOWED_CODECS for c in codecs)


def parse_host(addr: str) -> str:
    """``127.0.0.1:5060`` / ``[::1]:5060`` / ``::1`` -> the IP part."""
    a = (addr or "").strip()
    if a.startswith("["):
        return a[1:].split("]", 1)[0]
    if a.count(":") == 1:
        return a.split(":", 1)[0]
    return a


def ip_in(ip: str, networks) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    for n in networks:
        net = n if not isinstance(n, str) else ipaddress.ip_network(n, strict=False)
        if addr.version == net.version and addr in net:
            return True
    return False
