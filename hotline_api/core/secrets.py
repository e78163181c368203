"""Small secrets kept in the data dir's key folder (0600 files in a 0700 folder), created on first
use, unless given through the environment/config (then that value wins)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from hotline_api.core.config import Settings


def load_or_create(settings: Settings, name: str, configured: str = "", nbytes: int = 32) -> bytes:
    """The secret `name`: the configured value (base64 or text) if set, else the key file
    data_dir/keys/<name>.key, created with random bytes on first use."""
    if configured:
        try:
            return base64.b64decode(configured, validate=True)
        except ValueError:
            return configured.encode("utf-8")
    keys = settings.keys_dir
    keys.mkdir(parents=True, exist_ok=True)
    os.chmod(keys, 0o700)
    path = keys / f"{name}.key"
    if not path.exists():
        raw = secrets.token_bytes(nbytes)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(base64.b64encode(raw) + b"\n")
        try:
            os.link(tmp, path)  # atomic: a concurrent creator keeps the first key
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return base64.b64decode(Path(path).read_bytes().strip())


def caller_salt(settings: Settings) -> bytes:
    return load_or_create(settings, "caller_salt", settings.caller_hash_salt)


def caller_hash(number: str, salt: bytes) -> str:
    """Salted hash of a caller number (digits only), for duplicate detection without the number."""
    digits = "".join(ch for ch in number if ch.isdigit()) or number
    return hmac.new(salt, digits.encode("utf-8"), hashlib.sha256).hexdigest()
