"""kamailio front door for the agent worker pool: config generation and the child process.

``render(KamailioConfig)`` produces a complete kamailio.cfg (kamailio 5.6, Debian base package
modules only) from plain data; ``write_config`` writes it with its data files (dispatcher list,
trunk address list) into the run dir; ``check_config`` runs ``kamailio -c``; ``KamailioProcess``
runs it in the foreground (``-DD -E``) as a child with its own run dir, pid file and ctl socket.

What the generated config does (route names in brackets):

* [REQINIT] classifies the source (agent worker = a dispatcher destination, matched on IP and
  port; trunk = ``trunk_allow`` CIDRs via the permissions module's address file; anything else),
  rate-limits floods with pike (sources outside the trunk ACL by default; see ``pike_trunk``),
  banning a flooding IP in an htable for ``pike_ban_seconds``; enforces Max-Forwards and runs
  the sanity checks (malformed requests get 400 or are dropped).
* [WITHINDLG] relays in-dialog requests (BYE, ACK, re-INVITE, INFO, UPDATE...) along the
  Record-Route set, both directions; a BYE releases the call load of its worker.
* [REGISTRAR] is the extension point for operator softphones (issue 3): by default REGISTER is
  refused with 403. A ``CfgExtension`` that defines route ``REGISTRAR`` replaces it (see below).
* [FROM_WORKER] handles new requests that agent workers send (e.g. dialling an operator in
  issue 3). By default they are refused with 404; an extension replaces it.
* [FROM_TRUNK] answers 403 to sources outside ``trunk_allow``, 405 to methods other than
  INVITE, 404 to numbers other than the hotline number(s), then [DISPATCH].
* [DISPATCH] enforces ``max_concurrent_calls`` (dialog profile, 503 + Retry-After), picks the
  worker with the fewest active calls (dispatcher algorithm 10, call load) among those under
  their ``maxload`` (= legs - reserved legs), adds ``X-Hotline-Source: <source IP>`` (any such
  header from outside is removed first), record-routes and relays. If every worker is full or
  down the caller gets 503 at once.
* failure_route [DS_FAILOVER]: a worker that does not answer at all is marked inactive (and
  probed with OPTIONS until it answers again); on timeout/408/486/500/503 the call goes to the
  next worker; when none is left, 503. Load is released on every failure.
* Dispatcher OPTIONS probing of every worker (``ping_interval_s``, ``probing_threshold``,
  ``inactive_threshold``) takes dead workers out and brings restarted ones back; the pool
  supervisor also marks a worker down the moment its process exits (``KamailioProcess.rpc``).

Extending: pass ``CfgExtension(modules=[...], modparams=[...], routes={"REGISTRAR": "...",
"FROM_WORKER": "..."}, files={...})`` in ``KamailioConfig.extensions``. Route bodies are kamailio
script; ``@@RUN_DIR@@`` in them and in modparam values is replaced with the run dir.

Operator registrar (issue 3): ``telephony.routing.registrar_extension(realm)`` is that extension
(Debian base package modules only):

* REGISTER from operator softphones: digest authentication with ``auth``'s
  ``pv_www_authenticate`` against the HA1 kept in the in-memory htable ``subs`` (SIP user ->
  md5(user:realm:password)); the authenticated user must be the AOR's user; then
  ``save("location")`` (usrloc in memory, ``db_mode`` 0, no domain).
* Credentials are never in the config: the service pushes them over the ctl socket
  (``htable.sets subs <user> <ha1>``, ``htable.delete``), see
  ``telephony.routing.push_credentials`` and ``hotline_api.sip_routing.RegistrarSync`` (keeps the
  htable equal to the DB, full push after a kamailio restart). Changes apply without restart.
* [FROM_WORKER]: an agent worker dials an operator as ``sip:<user>@<kamailio>``; kamailio
  ``lookup("location")`` (404 Not Registered when the softphone is gone: the worker tries the next
  operator), record-routes and relays; in-dialog requests follow [WITHINDLG].
* capacity: an operator leg lives in the caller's worker, so set ``reserved_legs`` = 2 (maxload
  = 4 - 2 = 2 callers per worker, matching the worker's own ``max_callers``).

Confidentiality: the generated config never logs From/To/R-URI/Contact (caller numbers); log
lines carry the method, source IP and Call-ID only.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Sequence

from telephony.logfiles import rotate_if_large

_log = logging.getLogger(__name__)

KAMAILIO_BIN = "kamailio"
KAMCMD_BIN = "kamcmd"
MODULES_DIR = "/usr/lib/x86_64-linux-gnu/kamailio/modules"
DISPATCHER_SET = 1
TRUNK_GROUP = 1
_UNIX_PATH_MAX = 107  # sun_path is 108 bytes including the NUL


class KamailioError(RuntimeError):
    """kamailio could not be configured, checked or started; the message says why."""


@dataclass(frozen=True)
class Backend:
    """One agent worker behind kamailio."""

    host: str
    port: int
    legs: int = 4  # pjsua2 wheel: PJSUA_MAX_CALLS = 4
    name: str = ""  # dispatcher duid; default w<port>
    transport: str = "udp"  # how kamailio reaches it: udp or tcp

    @property
    def duid(self) -> str:
        return self.name or f"w{self.port}"

    @property
    def uri(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        uri = f"sip:{host}:{self.port}"
        if self.transport != "udp":
            uri += f";transport={self.transport}"
        return uri


@dataclass
class CfgExtension:
    """A piece of kamailio config added by a later feature (e.g. the operator registrar).

    ``routes`` maps a route name to its body; a name that exists by default (``REGISTRAR``,
    ``FROM_WORKER``) replaces the default body. ``files`` are written into the run dir
    (name -> content), e.g. an htable or db_text file. ``request_hooks`` are route names called
    at the start of [FROM_TRUNK]-bound processing for initial requests (after in-dialog
    handling), before the REGISTER/worker/trunk split; they may ``exit``."""

    modules: list[str] = field(default_factory=list)
    modparams: list[tuple[str, str, str | int]] = field(default_factory=list)
    routes: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    request_hooks: list[str] = field(default_factory=list)
    globals: list[str] = field(default_factory=list)


@dataclass
class KamailioConfig:
    run_dir: Path
    backends: list[Backend] = field(default_factory=list)
    listen_host: str = "127.0.0.1"
    listen_port: int = 5060
    advertised_host: str = ""  # Record-Route/Via address if different from listen_host
    trunk_allow: list[str] = field(default_factory=lambda: ["127.0.0.0/8"])
    hotline_numbers: list[str] = field(default_factory=lambda: ["12388"])
    reserved_legs: int = 0  # per worker, kept free for operator bridges: maxload = legs - reserved
    max_concurrent_calls: int = 200  # across the pool; past it: 503
    max_call_seconds: int = 3600  # the dialog is torn down (BYE both ways) 60 s after this
    # flood limits (pike): requests per source IP per interval
    pike_reqs_per_interval: int = 60
    pike_interval_s: int = 2
    pike_ban_seconds: int = 300
    pike_trunk: bool = False  # also rate-limit trunk sources (a carrier trunk carries all calls)
    # worker health
    ping_interval_s: int = 2
    probing_threshold: int = 2  # failed probes before a worker is taken out
    inactive_threshold: int = 1  # good probes before it is taken back
    fr_timer_ms: int = 2000  # no reply at all from a worker within this -> fail over
    fr_inv_timer_ms: int = 60000  # no final reply after a provisional one
    retry_after_s: int = 30
    # process
    children: int = 4
    tcp_children: int = 2
    shm_mb: int = 64
    pkg_mb: int = 8
    debug_level: int = 1  # kamailio -d level: 0 warnings .. 3 debug
    log_calls: bool = False  # one log line per new call (Call-ID, worker), never caller ids
    extensions: list[CfgExtension] = field(default_factory=list)

    # ------------------------------------------------------------------ derived
    @property
    def cfg_path(self) -> Path:
        return Path(self.run_dir) / "kamailio.cfg"

    @property
    def ctl_socket(self) -> Path:
        return Path(self.run_dir) / "kamailio_ctl"

    @property
    def pid_file(self) -> Path:
        return Path(self.run_dir) / "kamailio.pid"

    @property
    def dispatcher_file(self) -> Path:
        return Path(self.run_dir) / "dispatcher.list"

    @property
    def address_file(self) -> Path:
        return Path(self.run_dir) / "trunk.address"

    def maxload(self, b: Backend) -> int:
        return b.legs - self.reserved_legs

    def validate(self) -> None:
        if not self.backends:
            raise KamailioError("kamailio: no agent worker backends configured")
        if len({b.duid for b in self.backends}) != len(self.backends):
            raise KamailioError("kamailio: backend names (duid) must be unique")
        for b in self.backends:
            if self.maxload(b) < 1:
                raise KamailioError(
                    f"kamailio: reserved_legs={self.reserved_legs} leaves no leg for new calls "
                    f"on backend {b.duid} ({b.legs} legs)")
            if b.transport not in ("udp", "tcp"):
                raise KamailioError(f"kamailio: backend transport {b.transport!r} (udp or tcp)")
        if not (0 < self.listen_port < 65536):
            raise KamailioError(f"kamailio: bad listen port {self.listen_port}")
        for n in self.trunk_allow:
            try:
                ipaddress.ip_network(n, strict=False)
            except ValueError as e:
                raise KamailioError(f"kamailio: bad trunk_allow entry {n!r}: {e}") from None
        for num in self.hotline_numbers:
            if not re.fullmatch(r"[0-9A-Za-z+*#._-]+", num):
                raise KamailioError(f"kamailio: bad hotline number {num!r}")
        if len(str(Path(self.run_dir).resolve() / "kamailio_ctl")) > _UNIX_PATH_MAX:
            raise KamailioError(
                f"kamailio: run dir path too long for a unix socket: {self.run_dir}")


# ---------------------------------------------------------------------------------------------
# rendering

_BASE_MODULES = [
    "kex", "corex", "tm", "tmx", "sl", "rr", "pv", "maxfwd", "textops", "siputils", "xlog",
    "sanity", "ctl", "cfg_rpc", "htable", "pike", "permissions", "dialog", "dispatcher",
]


def _q(v: str | int) -> str:
    if isinstance(v, int):
        return str(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _host_for_listen(h: str) -> str:
    return f"[{h}]" if ":" in h else h


def _default_routes(cfg: KamailioConfig) -> dict[str, str]:
    nums = "|".join(re.escape(n) for n in cfg.hotline_numbers)
    pike_cond = "$var(src) != 1" if cfg.pike_trunk else "$var(src) == 0"
    call_log = (
        '\txlog("L_INFO", "new call $ci from $si to agent $du\\n");\n' if cfg.log_calls else "")
    return {
        "REQINIT": f"""
\t# Source: 1 = agent worker (dispatcher destination, IP+port), 2 = trunk ACL, 0 = other.
\t$var(src) = 0;
\tif (ds_is_from_list("{DISPATCHER_SET}", "2")) {{
\t\t$var(src) = 1;
\t}} else if (allow_source_address("{TRUNK_GROUP}")) {{
\t\t$var(src) = 2;
\t}}
\t# Flood protection (pike): a flooding IP is dropped for pike_ban_seconds.
\tif ({pike_cond}) {{
\t\tif ($sht(ipban=>$si) != $null) {{
\t\t\texit;
\t\t}}
\t\tif (!pike_check_req()) {{
\t\t\txlog("L_ALERT", "flood from $si: requests dropped for {cfg.pike_ban_seconds} s\\n");
\t\t\t$sht(ipban=>$si) = 1;
\t\t\texit;
\t\t}}
\t}}
\tif (!mf_process_maxfwd_header("10")) {{
\t\tsl_send_reply("483", "Too Many Hops");
\t\texit;
\t}}
\tif (!sanity_check("17895", "7")) {{
\t\txlog("L_NOTICE", "malformed $rm from $si dropped\\n");
\t\texit;
\t}}
""",
        "WITHINDLG": """
\tif (!has_totag()) {
\t\treturn;
\t}
\tif (loose_route()) {
\t\tif (is_method("BYE")) {
\t\t\tds_load_update();
\t\t}
\t\troute(RELAY);
\t\texit;
\t}
\tif (is_method("ACK")) {
\t\tif (t_check_trans()) {
\t\t\troute(RELAY);
\t\t}
\t\texit;
\t}
\tsl_send_reply("404", "Not Here");
\texit;
""",
        "REGISTRAR": """
\t# Extension point: operator softphone registration (digest auth) is added by a
\t# CfgExtension that defines route REGISTRAR. Until then REGISTER is refused.
\tsl_send_reply("403", "Registration Not Enabled");
\texit;
""",
        "FROM_WORKER": """
\t# Extension point: new requests from agent workers (e.g. dialling an operator) are routed
\t# by a CfgExtension that defines route FROM_WORKER. Until then there is no route.
\tsl_send_reply("404", "No Route From Agent");
\texit;
""",
        "FROM_TRUNK": f"""
\tif (is_method("ACK")) {{
\t\texit;
\t}}
\tif ($var(src) != 2) {{
\t\txlog("L_NOTICE", "$rm from $si refused: outside the trunk ACL\\n");
\t\tsl_send_reply("403", "Forbidden");
\t\texit;
\t}}
\tif (!is_method("INVITE")) {{
\t\tappend_to_reply("Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE\\r\\n");
\t\tsl_send_reply("405", "Method Not Allowed");
\t\texit;
\t}}
\tif (!($rU =~ "^({nums})$")) {{
\t\tsl_send_reply("404", "Not Found");
\t\texit;
\t}}
\troute(DISPATCH);
""",
        "DISPATCH": f"""
\tif (get_profile_size("calls", "$var(ncalls)") && $var(ncalls) >= {cfg.max_concurrent_calls}) {{
\t\txlog("L_WARN", "call $ci refused: {cfg.max_concurrent_calls} concurrent calls\\n");
\t\tappend_to_reply("Retry-After: {cfg.retry_after_s}\\r\\n");
\t\tsl_send_reply("503", "Service Unavailable");
\t\texit;
\t}}
\tremove_hf("X-Hotline-Source");
\tif (!ds_select_dst("{DISPATCHER_SET}", "10", "{len(cfg.backends)}")) {{
\t\txlog("L_WARN", "call $ci refused: every agent worker is full or down\\n");
\t\tappend_to_reply("Retry-After: {cfg.retry_after_s}\\r\\n");
\t\tsl_send_reply("503", "Service Unavailable");
\t\texit;
\t}}
\tdlg_manage();
\tset_dlg_profile("calls");
\t$dlg_ctx(timeout_bye) = 1;
\trecord_route();
\tappend_hf("X-Hotline-Source: $si\\r\\n");
{call_log}\tt_on_failure("DS_FAILOVER");
\tt_on_reply("DS_REPLY");
\troute(RELAY);
""",
        "NEXT_WORKER": """
\tif (ds_next_dst()) {
\t\tt_on_failure("DS_FAILOVER");
\t\tt_on_reply("DS_REPLY");
\t\tif (t_relay()) {
\t\t\texit;
\t\t}
\t}
\tds_load_unset();
\tappend_to_reply("Retry-After: %d\\r\\n");
\tt_reply("503", "Service Unavailable");
\texit;
""".replace("%d", str(cfg.retry_after_s)),
        "RELAY": """
\tif (!t_relay()) {
\t\tsl_reply_error();
\t}
\texit;
""",
    }


def render(cfg: KamailioConfig) -> str:
    """The complete kamailio.cfg text for ``cfg``."""
    cfg.validate()
    run_dir = str(Path(cfg.run_dir).resolve())
    routes = _default_routes(cfg)
    modules = list(_BASE_MODULES)
    modparams: list[tuple[str, str, str | int]] = []
    hooks: list[str] = []
    extra_globals: list[str] = []
    for ext in cfg.extensions:
        for m in ext.modules:
            if m not in modules:
                modules.append(m)
        modparams.extend(ext.modparams)
        routes.update(ext.routes)
        hooks.extend(ext.request_hooks)
        extra_globals.extend(ext.globals)

    lh = _host_for_listen(cfg.listen_host)
    adv = ""
    if cfg.advertised_host and cfg.advertised_host != cfg.listen_host:
        adv = f" advertise {_host_for_listen(cfg.advertised_host)}:{cfg.listen_port}"
    dlg_timeout = cfg.max_call_seconds + 60
    out: list[str] = []
    w = out.append
    w("#!KAMAILIO")
    w("# Generated by telephony.kamailio from the hotline settings. Do not edit: regenerate.")
    w("")
    w("####### Global parameters #######")
    w(f"debug={cfg.debug_level}")
    w("log_stderror=yes")
    w('log_prefix="{$mt $ci} "')
    w("memdbg=5")
    w("memlog=5")
    w(f"children={cfg.children}")
    w(f"tcp_children={cfg.tcp_children}")
    w("auto_aliases=no")
    w("dns=no")
    w("rev_dns=no")
    w("use_dns_cache=off")
    w("dns_try_ipv6=no")
    w(f"listen=udp:{lh}:{cfg.listen_port}{adv}")
    w(f"listen=tcp:{lh}:{cfg.listen_port}{adv}")
    w(f"alias=udp:{lh}:{cfg.listen_port}")
    w(f"alias=tcp:{lh}:{cfg.listen_port}")
    w("tcp_connection_lifetime=3605")
    w('server_header="Server: hotline-front"')
    w('user_agent_header="User-Agent: hotline-front"')
    w("sip_warning=0")
    w(f'mpath="{MODULES_DIR}"')
    for g in extra_globals:
        w(g.replace("@@RUN_DIR@@", run_dir))
    w("")
    w("####### Modules #######")
    for m in modules:
        w(f'loadmodule "{m}.so"')
    w("")
    w("####### Module parameters #######")
    base_params: list[tuple[str, str, str | int]] = [
        ("ctl", "binrpc", f"unix:{run_dir}/kamailio_ctl"),
        ("tm", "fr_timer", cfg.fr_timer_ms),
        ("tm", "fr_inv_timer", cfg.fr_inv_timer_ms),
        ("tm", "failure_reply_mode", 3),
        ("rr", "enable_full_lr", 0),
        ("rr", "append_fromtag", 1),
        ("pike", "sampling_time_unit", cfg.pike_interval_s),
        ("pike", "reqs_density_per_unit", cfg.pike_reqs_per_interval),
        ("pike", "remove_latency", max(4, 2 * cfg.pike_interval_s)),
        ("htable", "htable", f"ipban=>size=8;autoexpire={cfg.pike_ban_seconds};"),
        ("permissions", "address_file", f"{run_dir}/trunk.address"),
        ("dialog", "default_timeout", dlg_timeout),
        ("dialog", "profiles_no_value", "calls"),
        ("dialog", "enable_stats", 1),
        ("dispatcher", "list_file", f"{run_dir}/dispatcher.list"),
        ("dispatcher", "flags", 2),
        ("dispatcher", "xavp_dst", "_dsdst_"),
        ("dispatcher", "ds_hash_size", 9),
        ("dispatcher", "ds_hash_expire", dlg_timeout + 60),
        ("dispatcher", "ds_hash_initexpire", max(60, cfg.fr_inv_timer_ms // 1000 + 30)),
        ("dispatcher", "ds_hash_check_interval", 10),
        ("dispatcher", "ds_ping_interval", cfg.ping_interval_s),
        ("dispatcher", "ds_ping_from", f"sip:front@{lh}:{cfg.listen_port}"),
        ("dispatcher", "ds_probing_mode", 1),
        ("dispatcher", "ds_probing_threshold", cfg.probing_threshold),
        ("dispatcher", "ds_inactive_threshold", cfg.inactive_threshold),
        ("dispatcher", "ds_ping_reply_codes", "class=2"),
    ]
    for mod, name, val in base_params + modparams:
        if isinstance(val, str):
            val = val.replace("@@RUN_DIR@@", run_dir)
        w(f"modparam({_q(mod)}, {_q(name)}, {_q(val)})")
    w("")
    w("####### Routing logic #######")
    w("request_route {")
    w("\troute(REQINIT);")
    w('\tif (is_method("CANCEL")) {')
    w("\t\tif (t_check_trans()) {")
    w("\t\t\troute(RELAY);")
    w("\t\t}")
    w("\t\texit;")
    w("\t}")
    w('\tif (!is_method("ACK")) {')
    w("\t\tif (t_precheck_trans()) {")
    w("\t\t\tt_check_trans();")
    w("\t\t\texit;")
    w("\t\t}")
    w("\t\tt_check_trans();")
    w("\t}")
    w("\troute(WITHINDLG);")
    w("\t# initial requests")
    w('\tremove_hf("Route");')
    for h in hooks:
        w(f"\troute({h});")
    w('\tif (is_method("REGISTER")) {')
    w("\t\troute(REGISTRAR);")
    w("\t\texit;")
    w("\t}")
    w('\tif (is_method("OPTIONS") && uri == myself && $rU == $null) {')
    w('\t\tsl_send_reply("200", "OK");')
    w("\t\texit;")
    w("\t}")
    w("\tif ($var(src) == 1) {")
    w("\t\troute(FROM_WORKER);")
    w("\t\texit;")
    w("\t}")
    w("\troute(FROM_TRUNK);")
    w("}")
    w("")
    for name, body in routes.items():
        w(f"route[{name}] {{")
        w(body.strip("\n").replace("@@RUN_DIR@@", run_dir))
        w("}")
        w("")
    w("onreply_route[DS_REPLY] {")
    w('\tif (is_method("INVITE") && status =~ "^2[0-9][0-9]$") {')
    w("\t\tds_load_update();")
    w("\t}")
    w("}")
    w("")
    w("failure_route[DS_FAILOVER] {")
    w("\tif (t_is_canceled()) {")
    w("\t\tds_load_unset();")
    w("\t\texit;")
    w("\t}")
    w("\tif (t_branch_timeout() && !t_branch_replied()) {")
    w('\t\txlog("L_WARN", "agent worker $du did not answer call $ci: marked down\\n");')
    w('\t\tds_mark_dst("ip");')
    w("\t\troute(NEXT_WORKER);")
    w("\t}")
    w('\tif (t_branch_timeout() || t_check_status("408|486|500|503")) {')
    w("\t\troute(NEXT_WORKER);")
    w("\t}")
    w("\tds_load_unset();")
    w("}")
    w("")
    w("event_route[dispatcher:dst-down] {")
    w('\txlog("L_WARN", "agent worker down: $ru\\n");')
    w("}")
    w("")
    w("event_route[dispatcher:dst-up] {")
    w('\txlog("L_NOTICE", "agent worker up: $ru\\n");')
    w("}")
    w("")
    return "\n".join(out)


def render_dispatcher_list(cfg: KamailioConfig) -> str:
    lines = ["# setid destination flags priority attrs  (generated; flags 8 = probing)"]
    for b in cfg.backends:
        lines.append(
            f"{DISPATCHER_SET} {b.uri} 8 0 duid={b.duid};maxload={cfg.maxload(b)}")
    return "\n".join(lines) + "\n"


def render_address_file(cfg: KamailioConfig) -> str:
    lines = ["# group address netmask port  (generated from trunk_allow)"]
    for n in cfg.trunk_allow:
        net = ipaddress.ip_network(n, strict=False)
        lines.append(f"{TRUNK_GROUP} {net.network_address} {net.prefixlen} 0")
    return "\n".join(lines) + "\n"


def write_config(cfg: KamailioConfig) -> Path:
    """Write kamailio.cfg and its data files into ``cfg.run_dir``; returns the cfg path."""
    text = render(cfg)
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    files = {
        "dispatcher.list": render_dispatcher_list(cfg),
        "trunk.address": render_address_file(cfg),
    }
    for ext in cfg.extensions:
        for name, content in ext.files.items():
            if "/" in name or name.startswith("."):
                raise KamailioError(f"kamailio: extension file name {name!r} must be plain")
            files[name] = content.replace("@@RUN_DIR@@", str(run.resolve()))
    for name, content in files.items():
        _atomic_write(run / name, content)
    _atomic_write(cfg.cfg_path, text)
    return cfg.cfg_path


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def check_config(cfg_path: Path | str, kamailio_bin: str = KAMAILIO_BIN) -> str:
    """Run ``kamailio -c -f cfg``; return its output, raise KamailioError when it fails."""
    if shutil.which(kamailio_bin) is None:
        raise KamailioError(f"kamailio binary not found: {kamailio_bin}")
    p = subprocess.run(
        [kamailio_bin, "-c", "-f", str(cfg_path), "-L", MODULES_DIR],
        capture_output=True, text=True, timeout=60)
    out = (p.stdout or "") + (p.stderr or "")
    if p.returncode != 0 or "config file ok" not in out:
        raise KamailioError(f"kamailio config check failed for {cfg_path}:\n{out.strip()}")
    return out


def command(cfg: KamailioConfig, kamailio_bin: str = KAMAILIO_BIN) -> list[str]:
    """argv for running kamailio in the foreground, logging to stderr."""
    run = str(Path(cfg.run_dir).resolve())
    return [kamailio_bin, "-DD", "-E", "-f", str(Path(cfg.cfg_path).resolve()),
            "-P", str(Path(cfg.pid_file).resolve()), "-Y", run, "-w", run,
            "-m", str(cfg.shm_mb), "-M", str(cfg.pkg_mb)]


def parse_rpc_records(text: str) -> list[dict]:
    """kamcmd's output (``{`` / ``key: value`` / ``name: {`` ... ``}``) as a list of top-level
    records, nested blocks as dicts; a key seen twice in a block becomes a list."""
    records: list[dict] = []
    stack: list[dict] = []

    def put(block: dict, key: str, value) -> None:
        if key in block:
            old = block[key]
            block[key] = (old if isinstance(old, list) else [old]) + [value]
        else:
            block[key] = value

    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line == "{":
            stack = [{}]
            records.append(stack[0])
            continue
        if line == "}":
            if stack:
                stack.pop()
            continue
        if not stack:
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if value == "{":
            child: dict = {}
            put(stack[-1], key, child)
            stack.append(child)
        else:
            put(stack[-1], key, value)
    return records


def find_blocks(block, key: str):
    """Every dict under ``key`` anywhere in ``block`` (lists followed)."""
    if isinstance(block, list):
        for b in block:
            yield from find_blocks(b, key)
    elif isinstance(block, dict):
        for k, v in block.items():
            if k == key:
                yield from (v if isinstance(v, list) else [v])
            else:
                yield from find_blocks(v, key)


def _contact_hostport(uri: str) -> tuple[str, int] | None:
    m = re.search(r"@?(\[[^\]]+\]|[^@:;>]+):(\d+)", uri.split("sip:", 1)[-1])
    if not m:
        return None
    return m.group(1).strip("[]"), int(m.group(2))


def sip_options_ping(host: str, port: int, timeout: float = 1.0) -> int | None:
    """Send one SIP OPTIONS over UDP; return the status code of the reply, or None."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        lport = s.getsockname()[1]
        hh = f"[{host}]" if ":" in host else host
        branch = "z9hG4bK" + uuid.uuid4().hex[:16]
        msg = (
            f"OPTIONS sip:{hh}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {hh}:{lport};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{hh}>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <sip:{hh}:{port}>\r\n"
            f"Call-ID: {uuid.uuid4().hex}@probe\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n")
        s.settimeout(timeout)
        try:
            s.sendto(msg.encode(), (host, port))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                data, _ = s.recvfrom(65535)
                m = re.match(rb"SIP/2\.0 (\d{3})", data)
                if m and int(m.group(1)) >= 200:
                    return int(m.group(1))
        except (socket.timeout, OSError):
            return None
    return None


class KamailioProcess:
    """kamailio as a child process: ``start()`` writes and checks the config, starts it and
    waits until it answers SIP OPTIONS; ``stop()`` sends SIGTERM, then SIGKILL."""

    def __init__(self, cfg: KamailioConfig, *, kamailio_bin: str = KAMAILIO_BIN,
                 kamcmd_bin: str = KAMCMD_BIN, log: IO | int | None = None,
                 check: bool = True) -> None:
        self.cfg = cfg
        self.kamailio_bin = kamailio_bin
        self.kamcmd_bin = kamcmd_bin
        self.log = log
        self.check = check
        self.proc: subprocess.Popen | None = None
        self._log_fh: IO | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def log_path(self) -> Path:
        return Path(self.cfg.run_dir) / "kamailio.log"

    def reap_stale(self, timeout: float = 5.0) -> int | None:
        """Stop a kamailio left running by an earlier supervisor of this run dir (killed before it
        could stop its kamailio): its pid file names a live process whose command line is kamailio
        with this very config file. It would hold the public port and answer with stale routes.
        Returns the pid stopped, or None. Any other process is left alone."""
        try:
            pid = int(Path(self.cfg.pid_file).read_text().split()[0])
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            return None
        cfg_path = str(Path(self.cfg.cfg_path).resolve()).encode()
        if not argv or b"kamailio" not in os.path.basename(argv[0]) or cfg_path not in argv:
            return None
        try:
            pgid = os.getpgid(pid)
        except ProcessLookupError:
            return None
        sig_target = (lambda sig: os.killpg(pgid, sig)) if pgid == pid else (lambda sig: os.kill(pid, sig))
        try:
            sig_target(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                time.sleep(0.05)
            if Path(f"/proc/{pid}").exists():
                sig_target(signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return pid

    def start(self, timeout: float = 15.0) -> None:
        cfg_path = write_config(self.cfg)
        if self.check:
            check_config(cfg_path, self.kamailio_bin)
        stale_pid = self.reap_stale()
        if stale_pid is not None:
            _log.warning("stopped a stale kamailio (pid %d) left by an earlier run in %s", stale_pid,
                         self.cfg.run_dir)
        for stale in (self.cfg.ctl_socket, self.cfg.pid_file):
            try:
                stale.unlink()
            except FileNotFoundError:
                pass
        log = self.log
        if log is None:
            rotate_if_large(self.log_path())
            self._log_fh = open(self.log_path(), "ab")
            log = self._log_fh
        self.proc = subprocess.Popen(
            command(self.cfg, self.kamailio_bin), stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise KamailioError(
                    f"kamailio exited with {self.proc.returncode} at start; see {self.log_path()}")
            if sip_options_ping(self.cfg.listen_host, self.cfg.listen_port, 0.5) is not None:
                return
            time.sleep(0.1)
        raise KamailioError(f"kamailio did not answer on {self.cfg.listen_host}:"
                            f"{self.cfg.listen_port} within {timeout} s; see {self.log_path()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rpc(self, *args: str, timeout: float = 5.0) -> str:
        """Run a kamailio RPC command over the ctl socket (kamcmd); returns its output."""
        p = subprocess.run(
            [self.kamcmd_bin, "-s", f"unix:{Path(self.cfg.ctl_socket).resolve()}", *args],
            capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            raise KamailioError(f"kamcmd {' '.join(args)} failed: {(p.stderr or p.stdout).strip()}")
        return p.stdout

    def set_backend_state(self, backend: Backend, state: str) -> None:
        """``state``: 'ip' (inactive + probing: taken out until it answers OPTIONS again),
        'ap' (active + probing), 'dp' (disabled)."""
        self.rpc("dispatcher.set_state", state, str(DISPATCHER_SET), backend.uri)

    def dialogs(self) -> list[dict]:
        """kamailio's dialogs (``dlg.list``), each a dict as the RPC prints it (nested dicts for
        ``caller`` / ``callee``)."""
        return parse_rpc_records(self.rpc("dlg.list"))

    def dispatcher_loads(self) -> dict[str, int]:
        """URI -> active calls the dispatcher counts for it (call-load algorithm)."""
        loads: dict[str, int] = {}
        for rec in parse_rpc_records(self.rpc("dispatcher.list")):
            for dest in find_blocks(rec, "DEST"):
                runtime = dest.get("RUNTIME") if isinstance(dest.get("RUNTIME"), dict) else {}
                try:
                    loads[str(dest.get("URI"))] = int(runtime.get("DLGLOAD", 0))
                except (TypeError, ValueError):
                    pass
        return loads

    def worker_dialogs(self, backend: Backend) -> list[dict]:
        """The confirmed dialogs whose callee is ``backend`` (calls answered by that worker)."""
        out = []
        for d in self.dialogs():
            callee = d.get("callee") if isinstance(d.get("callee"), dict) else {}
            if str(d.get("state")) in ("3", "4") and _contact_hostport(str(callee.get("contact", ""))) == \
                    (backend.host, backend.port):
                out.append(d)
        return out

    def end_dialogs(self, dialogs: Sequence[dict], reason: str = "agent worker failed",
                    timeout: float = 2.0) -> int:
        """Hang up ``dialogs`` of a worker that died: for each, a BYE in the worker's place (From =
        the callee's side of the dialog) sent to kamailio, which relays it to the caller like any
        in-dialog BYE: the caller hears the call end instead of silence, the dialog and its place
        in the ``calls`` profile end, and the dispatcher's call load of that worker is released
        (otherwise the restarted worker would look busy until the dialogs time out). Returns how
        many got a final response."""
        ended = 0
        lh = self.cfg.listen_host
        hh = f"[{lh}]" if ":" in lh else lh
        fam = socket.AF_INET6 if ":" in lh else socket.AF_INET
        for d in dialogs:
            caller = d.get("caller") if isinstance(d.get("caller"), dict) else {}
            callee = d.get("callee") if isinstance(d.get("callee"), dict) else {}
            try:
                cseq = int(callee.get("cseq") or 0) + 1
                # the dialog module's rr cookie (dlg_match_mode: by "did" only): h_entry.h_id, each in
                # kamailio's "reverse hex" (least significant digit first)
                did = f"{int(d.get('h_entry')):x}"[::-1] + "." + f"{int(d.get('h_id')):x}"[::-1]
            except (TypeError, ValueError):
                continue
            with socket.socket(fam, socket.SOCK_DGRAM) as sock:
                sock.bind((lh, 0))
                lport = sock.getsockname()[1]
                branch = "z9hG4bK" + uuid.uuid4().hex[:16]
                msg = (
                    f"BYE {caller.get('contact')} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP {hh}:{lport};branch={branch};rport\r\n"
                    f"Route: <sip:{hh}:{self.cfg.listen_port};lr;ftag={caller.get('tag')};did={did}>\r\n"
                    "Max-Forwards: 70\r\n"
                    f"From: <{d.get('to_uri')}>;tag={callee.get('tag')}\r\n"
                    f"To: <{d.get('from_uri')}>;tag={caller.get('tag')}\r\n"
                    f"Call-ID: {d.get('call-id')}\r\n"
                    f"CSeq: {cseq} BYE\r\n"
                    f'Reason: SIP;cause=500;text="{reason}"\r\n'
                    "Content-Length: 0\r\n\r\n").encode()
                deadline = time.monotonic() + timeout
                interval = 0.5  # RFC 3261 T1; retransmitted until a final response
                done = False
                while not done and time.monotonic() < deadline:
                    sock.sendto(msg, (lh, self.cfg.listen_port))
                    sock.settimeout(min(interval, max(0.01, deadline - time.monotonic())))
                    try:
                        while True:
                            data = sock.recv(65535)
                            m = re.match(rb"SIP/2\.0 (\d{3})", data)
                            if m and int(m.group(1)) >= 200:
                                done = True
                                break
                    except (socket.timeout, OSError):
                        interval = min(interval * 2, 4.0)
                ended += done
        return ended

    def backend_states(self) -> dict[str, str]:
        """URI -> dispatcher FLAGS (e.g. 'AP' active, 'IP' inactive, 'TP' trying)."""
        out = self.rpc("dispatcher.list")
        states: dict[str, str] = {}
        uri = None
        for line in out.splitlines():
            m = re.search(r"URI:\s*(\S+)", line)
            if m:
                uri = m.group(1)
                continue
            m = re.search(r"FLAGS:\s*(\S+)", line)
            if m and uri:
                states[uri] = m.group(1)
                uri = None
        return states

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM to kamailio's main process (it stops its children), SIGKILL after
        ``timeout``; then any process left in its process group (e.g. children orphaned when
        the main process was killed) is killed too."""
        p = self.proc
        if p is not None:
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    p.wait(timeout)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
            try:  # the group was created for this kamailio (start_new_session)
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def __enter__(self) -> "KamailioProcess":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def backends_for(host: str, ports: Sequence[int], legs: int = 4) -> list[Backend]:
    return [Backend(host=host, port=p, legs=legs, name=f"w{i}") for i, p in enumerate(ports)]
