"""sipp scenarios (generated per test: sipp 3.6 does not substitute keywords inside rtp_stream or
pause attributes) and process helpers for the telephony tests."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

SIPP = shutil.which("sipp")

_HEAD = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="{name}">
"""

_INVITE = """  <send retrans="500">
    <![CDATA[
      INVITE sip:{dialled}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "test caller" <sip:13800000000@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{dialled}@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:13800000000@[local_ip]:[local_port]>
      Max-Forwards: 70
{extra}      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [rtpstream_audio_port] RTP/AVP {fmts}
{rtpmaps}      a=sendrecv
    ]]>
  </send>
"""

_ACK2XX = """  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "test caller" <sip:13800000000@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{dialled}@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      [routes]
      CSeq: 1 ACK
      Contact: <sip:13800000000@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
"""

_ACK_ERR = """  <send>
    <![CDATA[
      ACK sip:{dialled}@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: "test caller" <sip:13800000000@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{dialled}@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
"""

_BYE = """  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "test caller" <sip:13800000000@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{dialled}@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      [routes]
      CSeq: {cseq} BYE
      Contact: <sip:13800000000@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200" crlf="true"/>
"""

_INFO = """  <send retrans="500">
    <![CDATA[
      INFO [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "test caller" <sip:13800000000@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{dialled}@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      [routes]
      CSeq: {cseq} INFO
      Contact: <sip:13800000000@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal={digit}
      Duration=160
    ]]>
  </send>
  <recv response="200"/>
"""

_CANCEL = """  <send>
    <![CDATA[
      CANCEL sip:{dialled}@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: "test caller" <sip:13800000000@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{dialled}@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 CANCEL
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200"/>
  <recv response="487"/>
"""

#: the 200 OK a caller scenario sends to the BYE it just received
ANSWER_BYE = """  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
"""

CODECS = {
    "PCMU": ("0", "a=rtpmap:0 PCMU/8000"),
    "PCMA": ("8", "a=rtpmap:8 PCMA/8000"),
    "G722": ("9", "a=rtpmap:9 G722/8000"),
    "GSM": ("3", "a=rtpmap:3 GSM/8000"),
    "speex": ("97", "a=rtpmap:97 speex/8000"),
    "telephone-event": ("101", "a=rtpmap:101 telephone-event/8000\n      a=fmtp:101 0-16"),
}


def _invite(dialled: str, codecs: list[str], headers: dict[str, str] | None) -> str:
    fmts = " ".join(CODECS[c][0] for c in codecs)
    rtpmaps = "".join(f"      {CODECS[c][1]}\n" for c in codecs)
    extra = "".join(f"      {k}: {v}\n" for k, v in (headers or {}).items())
    return _INVITE.format(dialled=dialled, fmts=fmts, rtpmaps=rtpmaps, extra=extra)


def _answered(name: str, dialled: str, codecs: list[str] | None = None, headers: dict | None = None) -> str:
    """Scenario head: INVITE, the hotline's 100/180/200, our ACK (the call is up)."""
    x = _HEAD.format(name=name) + _invite(dialled, codecs or ["PCMU", "telephone-event"], headers)
    x += """  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true" crlf="true" rrs="true"/>
"""
    return x + _ACK2XX.format(dialled=dialled)


def call_scenario(audio: Path | None = None, hold_ms: int = 5000, dialled: str = "12388",
                  codecs: tuple[str, ...] = ("PCMU", "telephone-event"), headers: dict | None = None,
                  info_dtmf: str = "", info_after_ms: int = 1000, info_gap_ms: int = 300) -> str:
    """Answered call: optional RTP stream of ``audio`` (8 kHz mu-law WAV, PT 0), optional SIP INFO
    DTMF digits, then BYE after ``hold_ms`` (counted from the ACK)."""
    x = _answered("hotline caller", dialled, list(codecs), headers)
    if audio is not None:
        x += f'  <nop><action><exec rtp_stream="{audio},1,0"/></action></nop>\n'
    used = 0
    cseq = 2
    if info_dtmf:
        x += f'  <pause milliseconds="{info_after_ms}"/>\n'
        used += info_after_ms
        for d in info_dtmf:
            x += _INFO.format(dialled=dialled, cseq=cseq, digit=d)
            x += f'  <pause milliseconds="{info_gap_ms}"/>\n'
            used += info_gap_ms
            cseq += 1
    x += f'  <pause milliseconds="{max(0, hold_ms - used)}"/>\n'
    x += _BYE.format(dialled=dialled, cseq=cseq)
    return x + "</scenario>\n"


def hung_up_by_hotline_scenario(audio: Path, dialled: str = "12388", wait_bye_ms: int = 40000) -> str:
    """Answered call streaming ``audio`` that waits for the hotline's BYE and answers it 200."""
    x = _answered("caller outlasting the limit", dialled)
    x += f'  <nop><action><exec rtp_stream="{audio},-1,0"/></action></nop>\n'
    x += f'  <recv request="BYE" timeout="{wait_bye_ms}"/>\n'
    return x + ANSWER_BYE + "</scenario>\n"


_STREAM_UAC = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="{name}">
  <send retrans="500"><![CDATA[

INVITE sip:12388@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{user}@[local_ip]:[local_port]>;tag=[pid]{tag}[call_number]
To: <sip:12388@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:{user}@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [rtpstream_audio_port] RTP/AVP {fmts}
a=rtpmap:0 PCMU/8000
{dtmf_map}a=sendrecv

]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rrs="true"/>
  <send><![CDATA[

ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[routes]
From: <sip:{user}@[local_ip]:[local_port]>;tag=[pid]{tag}[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
  <nop><action><exec rtp_stream="@AUDIO@,{loops},0"/></action></nop>
  <pause milliseconds="@HOLD_MS@"/>
{stop_stream}  <send retrans="500"><![CDATA[

BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[routes]
From: <sip:{user}@[local_ip]:[local_port]>;tag=[pid]{tag}[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 2 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
</scenario>
"""


def stream_uac_scenario(name: str = "caller streaming audio through kamailio", user: str = "caller", tag: str = "s",
                        loop: bool = False, telephone_event: bool = True, stop_stream: bool = False) -> str:
    """A sipp caller in the raw layout (``[next_url]``/``[routes]``, through kamailio): INVITE with
    PCMU (and telephone-event), ACK, RTP stream of ``@AUDIO@`` (once, or looped), a pause of
    ``@HOLD_MS@``, BYE. The two placeholders are filled by the caller."""
    return _STREAM_UAC.format(name=name, user=user, tag=tag, fmts="0 101" if telephone_event else "0",
                              dtmf_map="a=rtpmap:101 telephone-event/8000\n" if telephone_event else "",
                              loops="-1" if loop else "1",
                              stop_stream='  <nop><action><exec rtp_stream="pause"/></action></nop>\n' if stop_stream else "")


def reject_scenario(code: int, dialled: str = "12388", codecs: tuple[str, ...] = ("PCMU",),
                    headers: dict | None = None) -> str:
    """INVITE that must be refused with ``code`` (sipp fails on any other final response)."""
    x = _HEAD.format(name=f"expect {code}") + _invite(dialled, list(codecs), headers)
    x += f"""  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="{code}"/>
"""
    x += _ACK_ERR.format(dialled=dialled)
    return x + "</scenario>\n"


def cancel_scenario(dialled: str = "12388", wait_ms: int = 500) -> str:
    """INVITE, 180 Ringing, then CANCEL before the answer."""
    x = _HEAD.format(name="cancel") + _invite(dialled, ["PCMU"], None)
    x += f"""  <recv response="100" optional="true"/>
  <recv response="180"/>
  <pause milliseconds="{wait_ms}"/>
"""
    x += _CANCEL.format(dialled=dialled)
    x += _ACK_ERR.format(dialled=dialled)
    return x + "</scenario>\n"


# ---------------------------------------------------------------- ports and processes
def free_port(kind: str = "udp+tcp", host: str = "127.0.0.1") -> int:
    """A port free for UDP (and TCP) on host, chosen by the OS."""
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind((host, 0))
        port = u.getsockname()[1]
        ok = True
        if "tcp" in kind:
            t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                t.bind((host, port))
            except OSError:
                ok = False
            finally:
                t.close()
        u.close()
        if ok:
            return port
    raise RuntimeError("no free port")


def free_even_port_pair(host: str = "127.0.0.1") -> int:
    """An even port with port+1..port+3 free (sipp uses media_port and a few above it)."""
    for _ in range(200):
        p = free_port("udp", host)
        p -= p % 2
        socks = []
        try:
            for q in range(p, p + 4):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind((host, q))
            return p
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


def run_sipp(scenario_xml: str, target: str, tmp: Path, name: str, local_ip: str = "127.0.0.1",
             timeout: float = 60, background: bool = False, extra: list[str] | None = None):
    """Run one sipp call (``-m 1``). Returns CompletedProcess (foreground) or Popen (background).
    sipp's exit code: 0 = the scenario ran as written (all expected messages received)."""
    d = tmp / f"sipp-{name}"
    d.mkdir(parents=True, exist_ok=True)
    sf = d / "scenario.xml"
    sf.write_text(scenario_xml, encoding="utf-8")
    cmd = [SIPP, target, "-sf", str(sf), "-i", local_ip, "-mi", local_ip, "-p", str(free_port("udp", local_ip)),
           "-mp", str(free_even_port_pair(local_ip)), "-m", "1", "-l", "1", "-nostdin", "-trace_err",
           "-error_file", str(d / "errors.log"), "-timeout", f"{int(timeout)}s", "-timeout_error",
           "-recv_timeout", "20s"] + (extra or [])
    out = open(d / "stdout.log", "wb")
    if background:
        return subprocess.Popen(cmd, cwd=d, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        return subprocess.run(cmd, cwd=d, stdout=out, stderr=subprocess.STDOUT, timeout=timeout + 15)
    finally:
        out.close()


def sipp_errors(tmp: Path, name: str) -> str:
    p = tmp / f"sipp-{name}" / "errors.log"
    return p.read_text(errors="replace")[-3000:] if p.exists() else ""


def stop_process(p: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, sig) if _is_group_leader(p) else p.send_signal(sig)
    except ProcessLookupError:
        return
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        try:  # a hung agent worker writes its threads' stacks to its log (faulthandler), then dies
            p.send_signal(signal.SIGUSR1)
            time.sleep(1.0)
        except ProcessLookupError:
            pass
        p.kill()
        p.wait(5)


def _is_group_leader(p: subprocess.Popen) -> bool:
    try:
        return os.getpgid(p.pid) == p.pid
    except ProcessLookupError:
        return False


def wait_for(pred, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


_REINVITE = """  <send retrans="500">
    <![CDATA[
      INVITE sip:{dialled}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "test caller" <sip:13800000000@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{dialled}@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} INVITE
      Contact: <sip:13800000000@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 {version} IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [rtpstream_audio_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a={direction}
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="200"/>
  <send>
    <![CDATA[
      ACK sip:{dialled}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "test caller" <sip:13800000000@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{dialled}@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} ACK
      Contact: <sip:13800000000@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
"""


def hold_scenario(audio: Path, hold_at_ms: int = 1500, hold_for_ms: int = 1500, total_ms: int = 7000,
                  dialled: str = "12388") -> str:
    """Answered call streaming ``audio``; the caller puts the call on hold (re-INVITE sendonly),
    resumes (re-INVITE sendrecv), and hangs up at ``total_ms`` after the ACK."""
    x = _answered("hold and resume", dialled)
    x += f'  <nop><action><exec rtp_stream="{audio},1,0"/></action></nop>\n'
    x += f'  <pause milliseconds="{hold_at_ms}"/>\n'
    x += _REINVITE.format(dialled=dialled, cseq=2, version=2353687638, direction="sendonly")
    x += f'  <pause milliseconds="{hold_for_ms}"/>\n'
    x += _REINVITE.format(dialled=dialled, cseq=3, version=2353687639, direction="sendrecv")
    x += f'  <pause milliseconds="{max(0, total_ms - hold_at_ms - hold_for_ms)}"/>\n'
    x += _BYE.format(dialled=dialled, cseq=4)
    return x + "</scenario>\n"


# ---------------------------------------------------------------------------------- process tree
def ppid(pid: int) -> int | None:
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def descendants(root: int) -> set[int]:
    """Every live process below ``root`` (other runs' processes on this machine are not counted)."""
    parent = {int(d): ppid(int(d)) for d in os.listdir("/proc") if d.isdigit()}
    found, frontier = set(), {root}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier and p not in found}
        found |= frontier
    return found


def cmdline(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/cmdline").read().replace("\0", " ")
    except OSError:
        return ""
