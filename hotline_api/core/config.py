"""The one settings object: environment variables > TOML file (``HOTLINE_CONFIG``) > defaults.

Every setting has an environment variable named ``HOTLINE_`` + the field name in upper case
(for example ``sip_port`` -> ``HOTLINE_SIP_PORT``). The TOML file uses the field names as keys,
at the top level or under a ``[hotline]`` table.

``Settings.load()`` builds the effective configuration; ``hotline config show`` prints it with
secrets masked (see ``Settings.public_dict``).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

ENV_PREFIX = "HOTLINE_"
SECRET_FIELDS = frozenset({"master_key", "secret_key", "caller_hash_salt", "database_url_password"})


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names the setting."""


def _split_list(value: str) -> list[str]:
    return [p.strip() for p in value.split(",") if p.strip()]


@dataclass
class Settings:
    # Storage
    data_dir: Path = Path("./var")
    database_url: str = ""  # default: sqlite file in data_dir
    # SIP: the public port (kamailio's when the pool runs behind it)
    sip_host: str = "127.0.0.1"
    sip_port: int = 5060
    sip_workers: int = 1
    sip_worker_base_port: int = 15060  # workers listen on base, base+1, ... (loopback)
    sip_use_kamailio: bool = False  # False: single worker on sip_port, no kamailio (development)
    sip_public_address: str = ""  # address put in SDP/Contact; default: sip_host
    sip_clock_rate: int = 16000  # conference bridge = recording rate; 8000 halves media CPU (no G.722 wide band)
    sip_reserved_legs: int = 2  # legs per worker kept for operator bridges: kamailio sends 4 - 2 = 2 callers
    rtp_port_base: int = 20000
    hotline_number: str = "12388"
    trunk_allow: list[str] = field(default_factory=lambda: ["127.0.0.0/8"])
    max_concurrent_calls: int = 200  # across the pool; past it: 503 from kamailio / 486 from a worker
    max_call_seconds: int = 3600  # past it the call gets a closing prompt and is ended
    pike_reqs_per_interval: int = 60  # flood limit per source IP (kamailio pike)
    pike_interval_s: int = 2
    # Operators, queue and auto-attendant
    operator_wrap_up_seconds: int = 30
    queue_ring_timeout_seconds: int = 20
    queue_max_wait_seconds: int = 120  # then voicemail (press 1) or a callback is offered
    queue_announce_every_seconds: int = 20
    attendant_menu_timeout_seconds: int = 6
    voicemail_max_seconds: int = 300
    voicemail_silence_seconds: int = 5  # silence that ends a voicemail
    voicemail_vad: str = "webrtc"  # webrtc / energy
    sip_registrar_realm: str = "12388"  # digest realm for operator softphones at kamailio
    # HTTP
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    # ASR
    vosk_model: str = ""  # live (small) model directory; default: data_dir/models/vosk-model-small-cn-0.22
    vosk_batch_model: str = ""  # batch model; default: vosk_model
    asr_workers: int = 1
    asr_max_attempts: int = 3
    live_asr: bool = True  # live transcript of the caller during calls (needs the live model)
    # Calendar / time
    timezone: str = "Asia/Shanghai"
    # Secrets
    master_key: str = ""  # base64 master key; default: key file data_dir/keys/master.key
    secret_key: str = ""  # session/token signing; default: generated into data_dir/keys/secret.key
    caller_hash_salt: str = ""  # default: generated into data_dir/keys/caller_salt.key
    # Users, sessions, review (recording governance)
    login_max_failures: int = 5  # per user name and address
    login_ip_max_failures: int = 30  # per address, checked before any password hash
    login_failure_window_minutes: int = 15
    login_lockout_minutes: int = 15
    token_ttl_minutes: int = 480
    session_ttl_minutes: int = 480
    password_min_length: int = 10
    cookie_secure: bool = True
    review_deadline_workdays: int = 1  # designated staff: listen/store/organize by end of next working day
    review_listened_threshold: float = 0.9
    operator_view_hours: int = 24  # operators see the calls they handled for this long
    import_max_mb: float = 200  # largest audio file accepted by POST /api/recordings/import
    export_ttl_hours: float = 72  # an approved export bundle expires after this
    export_max_objects: int = 50
    pipeline_stuck_minutes: float = 10  # a recording this long in an unfinished pipeline stage is "stuck"
    pipeline_scan_seconds: float = 60  # how often recordings/incoming is searched for files nobody reported
    audit_anchor_file: str = ""  # audit chain anchors (default data_dir/audit/anchors.log); best on another volume
    # Logging
    log_level: str = "INFO"

    # ------------------------------------------------------------------ derived values
    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'hotline.db').resolve()}"

    @property
    def recordings_dir(self) -> Path:
        return self.data_dir / "recordings"

    @property
    def spool_dir(self) -> Path:
        """Where calls in progress are written (plain PCM, needed for crash recovery)."""
        return self.data_dir / "spool"

    @property
    def prompts_dir(self) -> Path:
        return self.data_dir / "prompts"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def audit_anchor_path(self) -> Path:
        return Path(self.audit_anchor_file) if self.audit_anchor_file else self.data_dir / "audit" / "anchors.log"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def live_model_dir(self) -> Path:
        return Path(self.vosk_model) if self.vosk_model else self.models_dir / "vosk-model-small-cn-0.22"

    @property
    def batch_model_dir(self) -> Path:
        return Path(self.vosk_batch_model) if self.vosk_batch_model else self.live_model_dir

    @property
    def trunk_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(n, strict=False) for n in self.trunk_allow]

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, config_file: str | Path | None = None) -> "Settings":
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        path = config_file or env.get(ENV_PREFIX + "CONFIG")
        if path:
            p = Path(path)
            if not p.is_file():
                raise ConfigError(f"HOTLINE_CONFIG: file not found: {p}")
            try:
                data = tomllib.loads(p.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
                raise ConfigError(f"HOTLINE_CONFIG: {p} is not valid TOML: {e}") from e
            data = data.get("hotline", data)
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(data) - known)
            if unknown:
                raise ConfigError(f"{p}: unknown settings: {', '.join(unknown)}")
            values.update(data)
        for f in fields(cls):
            key = ENV_PREFIX + f.name.upper()
            if key in env:
                values[f.name] = env[key]
        settings = cls()
        for name, raw in values.items():
            setattr(settings, name, _coerce(cls, name, raw))
        settings.validate()
        return settings

    def validate(self) -> None:
        for name in ("sip_port", "http_port", "sip_worker_base_port", "rtp_port_base"):
            v = getattr(self, name)
            if not 1 <= v <= 65535:
                raise ConfigError(f"{name}: {v} is not a port number (1-65535)")
        if self.sip_workers < 1:
            raise ConfigError("sip_workers must be at least 1")
        if self.sip_clock_rate not in (8000, 16000):
            raise ConfigError(f"sip_clock_rate must be 8000 or 16000, got {self.sip_clock_rate}")
        if self.max_call_seconds < 10:
            raise ConfigError("max_call_seconds must be at least 10")
        try:
            self.trunk_networks
        except ValueError as e:
            raise ConfigError(f"trunk_allow: {e}") from e
        if not self.hotline_number.isdigit():
            raise ConfigError(f"hotline_number must be digits, got {self.hotline_number!r}")

    def public_dict(self) -> dict[str, Any]:
        """The effective configuration with secrets masked (for ``hotline config show``)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in SECRET_FIELDS:
                v = "********" if v else "(from key file)"
            elif f.name == "database_url":
                v = _mask_url_password(self.db_url)
            elif isinstance(v, Path):
                v = str(v)
            out[f.name] = v
        return out

    def ensure_dirs(self) -> None:
        """The data dir and its folders, created 0700 (and set to 0700 when they exist already):
        they hold the database, keys, the call spool and recordings of reporters' calls."""
        for d in (self.data_dir, self.recordings_dir, self.spool_dir, self.prompts_dir, self.models_dir, self.run_dir,
                  self.keys_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                if d.stat().st_mode & 0o777 != 0o700:
                    os.chmod(d, 0o700)
            except PermissionError:  # not ours (e.g. a data dir prepared by root): leave it as it is
                if d == self.keys_dir:
                    raise

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)


def _mask_url_password(url: str) -> str:
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        if ":" in creds:
            user = creds.split(":", 1)[0]
            return f"{scheme}://{user}:********@{host}"
    return url


def _coerce(cls: type, name: str, raw: Any) -> Any:
    ftype = {f.name: f for f in fields(cls)}[name].type
    try:
        if ftype in ("int", int):
            return int(raw)
        if ftype in ("float", float):
            return float(raw)
        if ftype in ("bool", bool):
            if isinstance(raw, bool):
                return raw
            s = str(raw).strip().lower()
            if s in ("1", "true", "yes", "on"):
                return True
            if s in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(f"not a boolean: {raw!r}")
        if ftype in ("Path", Path):
            return Path(str(raw))
        if ftype.startswith("list"):
            return list(raw) if isinstance(raw, list) else _split_list(str(raw))
        return str(raw)
    except ValueError as e:
        raise ConfigError(f"{name} ({ENV_PREFIX}{name.upper()}): {e}") from e


_settings: Settings | None = None


def get_settings() -> Settings:
    """Process-wide settings, loaded once."""
    global _settings
    if _settings is None:
        _settings = Settings.load()
    return _settings


def set_settings(s: Settings | None) -> None:
    """Replace the process-wide settings (tests, and `hotline` sub-processes)."""
    global _settings
    _settings = s
