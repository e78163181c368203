"""kamailio front door: generated config, trunk ACL, load distribution, failover, bad input.

Real kamailio and real sipp on 127.0.0.1 with dynamic ports. Until the pjsua2 worker exists,
the backends here are sipp UAS instances (a scenario that answers OPTIONS probes and INVITEs,
holds the call until BYE and logs one line per INVITE it answers); the acceptance test with
real workers is in test_pool.py.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from telephony.kamailio import (
    Backend,
    CfgExtension,
    KamailioConfig,
    KamailioError,
    KamailioProcess,
    check_config,
    render,
    write_config,
)

needs_sip = pytest.mark.skipif(
    shutil.which("kamailio") is None or shutil.which("sipp") is None,
    reason="kamailio and sipp (Debian kamailio, sip-tester) are required")


# ------------------------------------------------------------------------------------ helpers

def free_port(proto: str = "both", host: str = "127.0.0.1") -> int:
    """A port free for UDP and TCP on host (bind to 0, read it, release)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port = u.getsockname()[1]
            if proto == "udp":
                return port
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                    t.bind((host, port))
                    return port
            except OSError:
                continue
    raise RuntimeError("no free port")


def short_run_dir(prefix: str = "kam") -> Path:
    """kamailio's ctl unix socket needs a short path; pytest's tmp_path can be too long."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


UAS_XML = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="hotline backend stand-in">
  <recv request="INVITE|OPTIONS" regexp_match="true">
    <action>
      <ereg regexp="^[A-Z]+" search_in="msg" check_it="true" assign_to="method"/>
      <strcmp assign_to="cmp" variable="method" value="OPTIONS"/>
      <test assign_to="isopt" variable="cmp" compare="equal" value="0"/>
      <ereg regexp="[0-9a-fA-F.:]+" search_in="hdr" header="X-Hotline-Source:" check_it="false" assign_to="src"/>
    </action>
  </recv>
  <nop next="10" test="isopt"/>
  <nop><action><log message="INVITE [call_id] source=[$src]"/></action></nop>
  <send><![CDATA[

SIP/2.0 100 Trying
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <send retrans="500"><![CDATA[

SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]b[call_number]
[last_Call-ID:]
[last_CSeq:]
[last_Record-Route:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000

]]></send>
  <recv request="ACK"/>
  <recv request="BYE"/>
  <send><![CDATA[

SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <nop next="20"/>
  <label id="10"/>
  <send><![CDATA[

SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]o[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <label id="20"/>
  <nop/>
</scenario>
"""


RING_UAS_XML = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="backend that rings until CANCEL">
  <recv request="INVITE|OPTIONS" regexp_match="true">
    <action>
      <ereg regexp="^[A-Z]+" search_in="msg" check_it="true" assign_to="method"/>
      <strcmp assign_to="cmp" variable="method" value="OPTIONS"/>
      <test assign_to="isopt" variable="cmp" compare="equal" value="0"/>
    </action>
  </recv>
  <nop next="10" test="isopt"/>
  <nop><action><log message="INVITE [call_id]"/></action></nop>
  <send><![CDATA[

SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]b[call_number]
[last_Call-ID:]
[last_CSeq:]
[last_Record-Route:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Length: 0

]]></send>
  <recv request="CANCEL"/>
  <send><![CDATA[

SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]b[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <send><![CDATA[

SIP/2.0 487 Request Terminated
[last_Via:]
[last_From:]
[last_To:];tag=[pid]b[call_number]
[last_Call-ID:]
CSeq: 1 INVITE
Content-Length: 0

]]></send>
  <recv request="ACK"/>
  <nop next="20"/>
  <label id="10"/>
  <send><![CDATA[

SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]o[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <label id="20"/>
  <nop/>
</scenario>
"""

CANCEL_UAC_XML = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="caller cancelling while it rings">
  <send retrans="500"><![CDATA[

INVITE sip:12388@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:caller@[local_ip]:[local_port]>;tag=[pid]x[call_number]
To: <sip:12388@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:caller@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="100" optional="true"/>
  <recv response="180"/>
  <pause milliseconds="200"/>
  <send retrans="500"><![CDATA[

CANCEL sip:12388@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-4]
From: <sip:caller@[local_ip]:[local_port]>;tag=[pid]x[call_number]
To: <sip:12388@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 CANCEL
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
  <recv response="487"/>
  <send><![CDATA[

ACK sip:12388@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-7]
From: <sip:caller@[local_ip]:[local_port]>;tag=[pid]x[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
</scenario>
"""


INFO_XML = """  <send retrans="500"><![CDATA[

INFO [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[routes]
From: <sip:caller[call_number]@[local_ip]:[local_port]>;tag=[pid]c[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 2 INFO
Max-Forwards: 70
Content-Type: application/dtmf-relay
Content-Length: [len]

Signal=5
Duration=160
]]></send>
  <recv response="200"/>
"""


def uac_xml(expect: int = 200, hold_ms: int = 1000, number: str = "12388",
            extra_headers: str = "", max_forwards: int = 70, info: bool = False) -> str:
    """A caller scenario whose calls succeed only when the final answer is ``expect``."""
    extra_headers = "".join("\n" + h for h in extra_headers.splitlines() if h.strip())
    head = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="caller expecting {expect}">
  <send retrans="500"><![CDATA[

INVITE sip:{number}@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:caller[call_number]@[local_ip]:[local_port]>;tag=[pid]c[call_number]
To: <sip:{number}@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:caller@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: {max_forwards}{extra_headers}
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 8
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000

]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
"""
    if expect == 200:
        body = f"""  <recv response="200" rrs="true"/>
  <send><![CDATA[

ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[routes]
From: <sip:caller[call_number]@[local_ip]:[local_port]>;tag=[pid]c[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
{INFO_XML if info else ""}  <pause milliseconds="{hold_ms}"/>
  <send retrans="500"><![CDATA[

BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[routes]
From: <sip:caller[call_number]@[local_ip]:[local_port]>;tag=[pid]c[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 3 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
</scenario>
"""
    else:
        body = f"""  <recv response="{expect}"/>
  <send><![CDATA[

ACK sip:{number}@[remote_ip]:[remote_port] SIP/2.0
[last_Via:]
From: <sip:caller[call_number]@[local_ip]:[local_port]>;tag=[pid]c[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
</scenario>
"""
    return head + body


@dataclass
class SippUas:
    """A sipp UAS standing in for an agent worker."""

    port: int
    workdir: Path
    name: str
    host: str = "127.0.0.1"
    xml_text: str = UAS_XML
    proc: subprocess.Popen | None = None
    log_file: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_file = self.workdir / f"{self.name}_calls.log"

    def start(self) -> "SippUas":
        xml = self.workdir / f"uas_{abs(hash(self.xml_text))}.xml"
        if not xml.exists():
            xml.write_text(self.xml_text)
        self.proc = subprocess.Popen(
            ["sipp", "-sf", str(xml), "-i", self.host, "-p", str(self.port), "-nostdin", "-aa",
             "-trace_logs", "-log_file", str(self.log_file), "-mp", str(free_port("udp"))],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            cwd=self.workdir, start_new_session=True)
        return self

    def sources(self) -> list[str]:
        """The X-Hotline-Source value of each INVITE this backend answered."""
        try:
            return [ln.split("source=", 1)[1].strip() for ln in self.log_file.read_text().splitlines()
                    if "INVITE" in ln and "source=" in ln]
        except FileNotFoundError:
            return []

    def invites(self) -> int:
        try:
            return sum(1 for line in self.log_file.read_text().splitlines() if "INVITE" in line)
        except FileNotFoundError:
            return 0

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@dataclass
class SippResult:
    returncode: int
    successful: int
    failed: int
    output: str


def run_uac(target_port: int, workdir: Path, *, calls: int = 1, expect: int = 200,
            hold_ms: int = 500, rate: float = 10, limit: int | None = None,
            source_ip: str = "127.0.0.1", transport: str = "u1", number: str = "12388",
            timeout_s: int = 60, background: bool = False, scenario: str | None = None,
            extra_headers: str = "", max_forwards: int = 70, info: bool = False):
    """Run a sipp caller against kamailio; returns SippResult (or the Popen if background)."""
    tag = f"uac{expect}_{time.monotonic_ns()}"
    xml = workdir / f"{tag}.xml"
    xml.write_text(scenario or uac_xml(expect, hold_ms, number, extra_headers, max_forwards, info))
    stf = workdir / f"{tag}.csv"
    cmd = ["sipp", f"127.0.0.1:{target_port}", "-sf", str(xml), "-i", source_ip,
           "-p", str(free_port("udp" if transport == "u1" else "both", source_ip)),
           "-t", transport, "-m", str(calls), "-r", str(rate), "-l", str(limit or calls),
           "-nostdin", "-timeout", f"{timeout_s}s", "-recv_timeout", "10000",
           "-trace_stat", "-stf", str(stf), "-mp", str(free_port("udp"))]
    if background:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, cwd=workdir,
                                start_new_session=True), stf
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       cwd=workdir, timeout=timeout_s + 30)
    return parse_result(p.returncode, stf, p.stdout + p.stderr)


def parse_result(returncode: int, stf: Path, output: str) -> SippResult:
    ok = failed = 0
    try:
        lines = [ln for ln in stf.read_text().splitlines() if ln.strip()]
        header = lines[0].split(";")
        last = lines[-1].split(";")
        ok = int(last[header.index("SuccessfulCall(C)")])
        failed = int(last[header.index("FailedCall(C)")])
    except (FileNotFoundError, IndexError, ValueError):
        pass
    return SippResult(returncode, ok, failed, output)


def wait_for(pred, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Front:
    """kamailio + sipp backends for one test."""

    def __init__(self, n_backends: int = 2, legs: int = 4, uas_xml: str = UAS_XML,
                 **cfg_kw) -> None:
        self.dir = short_run_dir()
        self.backends: list[SippUas] = []
        ports = [free_port() for _ in range(n_backends)]
        for i, p in enumerate(ports):
            self.backends.append(SippUas(port=p, workdir=self.dir, name=f"b{i}", xml_text=uas_xml))
        cfg_kw.setdefault("ping_interval_s", 1)
        cfg_kw.setdefault("fr_timer_ms", 1500)
        self.cfg = KamailioConfig(
            run_dir=self.dir / "run", listen_port=free_port(),
            backends=[Backend("127.0.0.1", p, legs=legs, name=f"b{i}") for i, p in enumerate(ports)],
            **cfg_kw)
        self.kam = KamailioProcess(self.cfg)

    def __enter__(self) -> "Front":
        for b in self.backends:
            b.start()
        try:
            self.kam.start()
            wait_for(lambda: all(f.startswith("A") for f in self.kam.backend_states().values()),
                     10, what="backends active")
        except Exception:
            self.close()
            raise
        return self

    def close(self) -> None:
        self.kam.stop()
        for b in self.backends:
            b.stop()

    def __exit__(self, *exc) -> None:
        self.close()
        if not any(exc):
            shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def port(self) -> int:
        return self.cfg.listen_port

    def log(self) -> str:
        try:
            return self.kam.log_path().read_text(errors="replace")
        except FileNotFoundError:
            return ""


# ------------------------------------------------------------------------------------ unit

def test_render_contains_required_parts(tmp_path):
    cfg = KamailioConfig(run_dir=tmp_path, backends=[Backend("127.0.0.1", 15060, legs=4)],
                         reserved_legs=2, trunk_allow=["10.1.0.0/16", "127.0.0.1"])
    text = render(cfg)
    for needle in ('ds_select_dst("1", "10"', "ds_next_dst()", "pike_check_req()",
                   "sanity_check(", "mf_process_maxfwd_header", "record_route()",
                   "X-Hotline-Source: $si", "route[REGISTRAR]", "route[FROM_WORKER]",
                   "failure_route[DS_FAILOVER]", '"ds_probing_mode", 1'):
        assert needle in text, needle
    write_config(cfg)
    assert "maxload=2" in (tmp_path / "dispatcher.list").read_text()
    addr = (tmp_path / "trunk.address").read_text()
    assert "1 10.1.0.0 16 0" in addr and "1 127.0.0.1 32 0" in addr
    # caller identities are never logged by the generated config (event routes log the
    # worker's own URI in $ru, which is not a caller's)
    text = text.split("event_route[")[0]
    for pv in ("$fu", "$tu", "$ru", "$fU", "$ct", "$ai"):
        assert not re.search(r'xlog\([^)]*' + re.escape(pv), text), pv


@pytest.mark.parametrize("bad", [
    dict(backends=[]),
    dict(reserved_legs=4),
    dict(trunk_allow=["not-a-net"]),
    dict(hotline_numbers=['12388"; exit; "']),
])
def test_bad_config_is_refused(tmp_path, bad):
    kw = dict(run_dir=tmp_path, backends=[Backend("127.0.0.1", 15060)])
    kw.update(bad)
    with pytest.raises(KamailioError):
        render(KamailioConfig(**kw))


@needs_sip
def test_generated_config_passes_kamailio_check(tmp_path):
    d = short_run_dir()
    try:
        cfg = KamailioConfig(run_dir=d, listen_port=free_port(),
                             backends=[Backend("127.0.0.1", free_port(), name=f"w{i}") for i in range(6)],
                             reserved_legs=1, trunk_allow=["127.0.0.1/32", "::1/128"])
        out = check_config(write_config(cfg))
        assert "config file ok" in out
        # a broken extension is caught by the same check
        cfg.extensions = [CfgExtension(routes={"REGISTRAR": "\tno_such_function();\n\texit;"})]
        with pytest.raises(KamailioError):
            check_config(write_config(cfg))
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------------------------------------ SIP

@needs_sip
@pytest.mark.sip
def test_call_is_answered_and_in_dialog_requests_relayed():
    # ACK, INFO (DTMF) and BYE follow the Record-Route set through kamailio to the backend
    with Front(n_backends=1) as f:
        r = run_uac(f.port, f.dir, calls=2, hold_ms=300, info=True)
        assert r.successful == 2, r.output
        assert f.backends[0].invites() == 2


@needs_sip
@pytest.mark.sip
def test_trunk_acl_rejects_outside_source_with_403():
    with Front(n_backends=1, trunk_allow=["127.0.0.1/32"]) as f:
        r = run_uac(f.port, f.dir, calls=1, expect=403, source_ip="127.0.0.2")
        assert r.successful == 1, r.output
        # allowed source still gets through
        r = run_uac(f.port, f.dir, calls=1, expect=200, source_ip="127.0.0.1", hold_ms=100)
        assert r.successful == 1, r.output
        assert f.backends[0].invites() == 1


@needs_sip
@pytest.mark.sip
def test_source_header_added_and_spoofed_one_removed():
    with Front(n_backends=1) as f:
        r = run_uac(f.port, f.dir, calls=1, hold_ms=100, source_ip="127.0.0.3",
                    extra_headers="X-Hotline-Source: 10.9.9.9")
        assert r.successful == 1, r.output
        assert f.backends[0].sources() == ["127.0.0.3"]


@needs_sip
@pytest.mark.sip
def test_max_forwards_exhausted_gives_483():
    with Front(n_backends=1) as f:
        r = run_uac(f.port, f.dir, calls=1, expect=483, max_forwards=0)
        assert r.successful == 1, r.output
        assert f.backends[0].invites() == 0


@needs_sip
@pytest.mark.sip
def test_wrong_number_404_and_register_hook_default():
    with Front(n_backends=1) as f:
        r = run_uac(f.port, f.dir, calls=1, expect=404, number="110")
        assert r.successful == 1, r.output
        assert f.backends[0].invites() == 0


@needs_sip
@pytest.mark.sip
@pytest.mark.slow
def test_calls_spread_by_load_and_full_backend_gets_no_more():
    # 2 backends x 2 usable legs (legs=3, 1 reserved): 4 calls held, then the 5th gets 503
    with Front(n_backends=2, legs=3, reserved_legs=1) as f:
        held, stf = run_uac(f.port, f.dir, calls=4, hold_ms=8000, rate=20, background=True)
        try:
            wait_for(lambda: sum(b.invites() for b in f.backends) == 4, 10, what="4 calls up")
            assert [b.invites() for b in f.backends] == [2, 2]
            r = run_uac(f.port, f.dir, calls=1, expect=503)
            assert r.successful == 1, r.output
            assert [b.invites() for b in f.backends] == [2, 2]
        finally:
            out, _ = held.communicate(timeout=40)
        res = parse_result(held.returncode, stf, out)
        assert res.successful == 4, out
        # once those calls ended (BYE released the load) new calls are taken again
        r = run_uac(f.port, f.dir, calls=2, hold_ms=100, rate=20)
        assert r.successful == 2, r.output


@needs_sip
@pytest.mark.sip
def test_cancel_is_relayed_and_releases_the_load():
    # one backend with a single usable leg: if CANCEL leaked the call load, the second call
    # would get 503 instead of ringing
    with Front(n_backends=1, legs=1, uas_xml=RING_UAS_XML) as f:
        for _ in range(2):
            r = run_uac(f.port, f.dir, calls=1, scenario=CANCEL_UAC_XML)
            assert r.successful == 1, r.output
        assert f.backends[0].invites() == 2


@needs_sip
@pytest.mark.sip
def test_dead_backend_is_skipped_and_calls_go_to_the_others():
    with Front(n_backends=3) as f:
        dead = f.backends[1]
        dead.kill()
        # fail over inside the call (INVITE to the dead one times out -> next), and probing
        # marks it inactive
        r = run_uac(f.port, f.dir, calls=6, hold_ms=200, rate=5)
        assert r.successful == 6, r.output
        wait_for(lambda: f.kam.backend_states()[f.cfg.backends[1].uri].startswith("I"), 10,
                 what="dead backend marked inactive")
        before = [b.invites() for b in f.backends]
        r = run_uac(f.port, f.dir, calls=6, hold_ms=200, rate=10)
        assert r.successful == 6, r.output
        after = [b.invites() for b in f.backends]
        assert after[1] == before[1] == 0
        assert after[0] + after[2] == 12
        # it comes back once it answers OPTIONS again
        revived = SippUas(port=dead.port, workdir=f.dir, name="b1r").start()
        try:
            wait_for(lambda: f.kam.backend_states()[f.cfg.backends[1].uri].startswith("A"), 10,
                     what="restarted backend active again")
        finally:
            revived.stop()


@needs_sip
@pytest.mark.sip
def test_all_backends_dead_gives_503_not_a_hang():
    with Front(n_backends=2) as f:
        for b in f.backends:
            b.kill()
        t0 = time.monotonic()
        r = run_uac(f.port, f.dir, calls=1, expect=503, timeout_s=30)
        assert r.successful == 1, r.output


@needs_sip
@pytest.mark.sip
def test_supervisor_can_take_a_backend_out_at_once():
    with Front(n_backends=2, ping_interval_s=30) as f:
        f.kam.set_backend_state(f.cfg.backends[0], "ip")
        assert f.kam.backend_states()[f.cfg.backends[0].uri].startswith("I")
        r = run_uac(f.port, f.dir, calls=4, hold_ms=100, rate=10)
        assert r.successful == 4, r.output
        assert [b.invites() for b in f.backends] == [0, 4]


@needs_sip
@pytest.mark.sip
def test_garbage_and_truncated_sip_do_not_stop_service():
    with Front(n_backends=1) as f:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for payload in (os.urandom(700), b"\x00" * 50, b"INVITE sip:12388@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP",
                            b"INVITE sip:12388@127.0.0.1 SIP/2.0\r\nContent-Length: 999999\r\n\r\nv=0",
                            b"SIP/2.0 200 OK\r\n\r\n", b"\r\n\r\n", "INVITE \u4e2d sip:".encode()):
                s.sendto(payload, ("127.0.0.1", f.port))
        with socket.create_connection(("127.0.0.1", f.port), timeout=2) as t:
            t.sendall(b"INVITE sip:12388@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;bra")
        with socket.create_connection(("127.0.0.1", f.port), timeout=2) as t:
            t.sendall(os.urandom(3000))
        # a request that parses but fails the sanity checks (CSeq method mismatch): 400
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            lport = s.getsockname()[1]
            s.settimeout(3)
            s.sendto((f"INVITE sip:12388@127.0.0.1:{f.port} SIP/2.0\r\n"
                      f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bKbad1\r\n"
                      "Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\n"
                      "To: <sip:12388@127.0.0.1>\r\nCall-ID: bad1\r\nCSeq: 1 BYE\r\n"
                      "Content-Length: 0\r\n\r\n").encode(), ("127.0.0.1", f.port))
            assert s.recv(4096).startswith(b"SIP/2.0 400")
        time.sleep(0.5)
        assert f.kam.alive()
        r = run_uac(f.port, f.dir, calls=2, hold_ms=100)
        assert r.successful == 2, r.output
        r = run_uac(f.port, f.dir, calls=1, hold_ms=100, transport="t1")
        assert r.successful == 1, r.output


@needs_sip
@pytest.mark.sip
def test_flood_from_untrusted_source_is_cut_by_pike():
    # 127.0.0.2 is outside the trunk ACL: first requests get 403, then pike drops them
    with Front(n_backends=1, trunk_allow=["127.0.0.1/32"], pike_reqs_per_interval=10,
               pike_interval_s=2) as f:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.2", 0))
            lport = s.getsockname()[1]
            for i in range(100):
                msg = (f"OPTIONS sip:x@127.0.0.1:{f.port} SIP/2.0\r\n"
                       f"Via: SIP/2.0/UDP 127.0.0.2:{lport};branch=z9hG4bKf{i}\r\n"
                       "Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.2>;tag=1\r\n"
                       f"To: <sip:x@127.0.0.1>\r\nCall-ID: flood{i}\r\nCSeq: 1 OPTIONS\r\n"
                       "Content-Length: 0\r\n\r\n")
                s.sendto(msg.encode(), ("127.0.0.1", f.port))
                if i % 10 == 9:
                    time.sleep(0.02)
            s.settimeout(1.0)
            replies = 0
            try:
                while True:
                    if s.recv(4096).startswith(b"SIP/2.0 403"):
                        replies += 1
            except socket.timeout:
                pass
        assert 0 < replies < 60, replies
        assert "flood from 127.0.0.2" in f.log()
        # the trunk is not affected
        r = run_uac(f.port, f.dir, calls=1, hold_ms=100)
        assert r.successful == 1, r.output


@needs_sip
@pytest.mark.sip
@pytest.mark.slow
def test_max_concurrent_calls_gives_503():
    with Front(n_backends=2, max_concurrent_calls=2) as f:
        held, stf = run_uac(f.port, f.dir, calls=2, hold_ms=6000, rate=20, background=True)
        try:
            wait_for(lambda: sum(b.invites() for b in f.backends) == 2, 10, what="2 calls up")
            r = run_uac(f.port, f.dir, calls=1, expect=503)
            assert r.successful == 1, r.output
        finally:
            out, _ = held.communicate(timeout=40)
        assert parse_result(held.returncode, stf, out).successful == 2, out


@needs_sip
@pytest.mark.sip
def test_registrar_extension_point_is_used():
    """The REGISTRAR route can be replaced by an extension (issue 3 plugs its registrar here).
    By default REGISTER is refused; with an extension its route runs."""
    with Front(n_backends=1) as f:
        assert _register(f.port) == 403
    ext = CfgExtension(routes={"REGISTRAR": '\tsl_send_reply("501", "Hook Reached");\n\texit;'})
    with Front(n_backends=1, extensions=[ext]) as f:
        assert _register(f.port) == 501


def _register(port: int) -> int | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        lport = s.getsockname()[1]
        s.settimeout(3)
        msg = (f"REGISTER sip:127.0.0.1:{port} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bKreg1\r\n"
               "Max-Forwards: 70\r\nFrom: <sip:op1@127.0.0.1>;tag=r1\r\n"
               "To: <sip:op1@127.0.0.1>\r\nCall-ID: reg1\r\nCSeq: 1 REGISTER\r\n"
               f"Contact: <sip:op1@127.0.0.1:{lport}>\r\nExpires: 60\r\nContent-Length: 0\r\n\r\n")
        s.sendto(msg.encode(), ("127.0.0.1", port))
        data = s.recv(4096)
        m = re.match(rb"SIP/2\.0 (\d{3})", data)
        return int(m.group(1)) if m else None
