"""SIP request parsing and the answer/reject decision."""
from __future__ import annotations

import ipaddress

from telephony.admission import decide, effective_source
from telephony.sipmsg import header_uri, parse_request, sdp_audio_codecs, uri_user

NETS = [ipaddress.ip_network("127.0.0.0/8")]
PROXY = [ipaddress.ip_network("10.0.0.5/32")]


def invite(user="12388", sdp_fmts="0 101", extra="", compact=False):
    body = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio 4000 RTP/AVP {sdp_fmts}\r\na=rtpmap:101 telephone-event/8000\r\n") if sdp_fmts else ""
    cid = "i" if compact else "Call-ID"
    frm = "f" if compact else "From"
    return (f"INVITE sip:{user}@127.0.0.1:5060;transport=udp SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n{frm}: \"x\" <sip:13800000000@127.0.0.1>;tag=1\r\n"
            f"To: <sip:{user}@127.0.0.1>\r\n{cid}: abc@host\r\nCSeq: 1 INVITE\r\n{extra}"
            f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}")


def _d(raw, src="127.0.0.1:5070", active=0, proxies=()):
    return decide(src, parse_request(raw), trunk_allow=NETS, trusted_proxies=list(proxies),
                  hotline_number="12388", active_calls=active, max_calls=4)


def test_parse():
    r = parse_request(invite(compact=True))
    assert r.method == "INVITE" and r.request_user == "12388"
    assert r.header("call-id") == "abc@host"
    assert header_uri(r.header("from")) == "sip:13800000000@127.0.0.1"
    assert sdp_audio_codecs(r.body) == ["PCMU", "TELEPHONE-EVENT"]
    assert uri_user("tel:12388") == "12388" and uri_user("sip:host.example") == ""
    assert parse_request("").method == "" and parse_request("garbage\x00\xff").headers == {}


def test_decisions():
    assert _d(invite()).accepted
    assert _d(invite(), src="192.0.2.1:5060").code == 403
    assert _d(invite(), src="[::1]:5060").code == 403  # IPv6 loopback is not in 127.0.0.0/8
    assert _d(invite(user="12345")).code == 404
    assert _d(invite(sdp_fmts="3")).code == 488
    assert _d(invite(sdp_fmts="97 101").replace("a=rtpmap:101", "a=rtpmap:97 speex/8000\r\na=rtpmap:101")).code == 488
    assert _d(invite(sdp_fmts="9")).accepted and _d(invite(sdp_fmts="8")).accepted
    assert _d(invite(sdp_fmts="")).accepted  # late offer: codecs are settled in the ACK
    assert _d(invite(), active=4).code == 486
    assert _d(invite(user="12345"), active=4).code == 486  # capacity first


def test_proxy_header_only_from_trusted_proxy():
    hdr = "X-Hotline-Source: 127.0.0.9\r\n"
    assert _d(invite(extra=hdr), src="10.0.0.5:5060", proxies=PROXY).accepted
    assert _d(invite(extra="X-Hotline-Source: 192.0.2.1\r\n"), src="10.0.0.5:5060", proxies=PROXY).code == 403
    assert _d(invite(extra=hdr), src="10.0.0.6:5060", proxies=PROXY).code == 403  # not the proxy
    assert _d(invite(), src="10.0.0.5:5060", proxies=PROXY).code == 403  # proxy itself not in ACL
    assert effective_source("10.0.0.5:5060", parse_request(invite(extra="X-Hotline-Source: [::1]:5\r\n")), PROXY) == "::1"
