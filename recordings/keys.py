"""Master key, key providers, data-key wrapping and field encryption.

* ``MasterKey``: 32 random bytes. Its key check value (KCV, an HMAC of a fixed label) identifies
  it without revealing it; a stored KCV lets the service refuse a wrong master key before it
  touches any data.
* ``KeyProvider``: where the master key comes from. ``FileKeyProvider`` (a 0600 file in the keys
  dir, created at set-up) and ``EnvKeyProvider`` (base64 in an environment variable). A KMS could
  implement the same two methods later.
* Data keys (one per recording) and the field key are wrapped with AES key wrap (RFC 3394).
* ``FieldCipher``: AES-256-GCM for short text fields (identity, transcripts), bound to a context
  string (e.g. ``"calls.caller_number"``) so a value cannot be moved to another column.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

KEY_LEN = 32
_KCV_LABEL = b"hotline master key check v1"


class KeyError_(Exception):  # noqa: N801 - avoid shadowing the builtin KeyError
    """Base class of key problems."""


class MasterKeyMissing(KeyError_):
    pass


class BadMasterKey(KeyError_):
    """Unreadable key material (wrong length, not base64, bad permissions)."""


class WrongMasterKey(KeyError_):
    """The master key does not match the one that wrapped the stored keys."""


def key_check_value(key: bytes) -> str:
    return hmac.new(key, _KCV_LABEL, hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True)
class MasterKey:
    key: bytes

    def __post_init__(self) -> None:
        if len(self.key) != KEY_LEN:
            raise BadMasterKey(f"master key must be {KEY_LEN} bytes, got {len(self.key)}")

    @property
    def kcv(self) -> str:
        return key_check_value(self.key)

    def __repr__(self) -> str:  # never print key material
        return f"MasterKey(kcv={self.kcv})"

    def wrap(self, data_key: bytes) -> bytes:
        return aes_key_wrap(self.key, data_key)

    def unwrap(self, wrapped: bytes) -> bytes:
        try:
            return aes_key_unwrap(self.key, wrapped)
        except InvalidUnwrap as e:
            raise WrongMasterKey("a wrapped key does not unwrap with this master key") from e

    @classmethod
    def generate(cls) -> "MasterKey":
        return cls(os.urandom(KEY_LEN))


def encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def decode_key(text: str, what: str = "master key") -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as e:
        raise BadMasterKey(f"{what} is not valid base64") from e
    if len(raw) != KEY_LEN:
        raise BadMasterKey(f"{what} must decode to {KEY_LEN} bytes, got {len(raw)}")
    return raw


class KeyProvider(Protocol):
    """Supplies the master key. ``describe()`` names the source for messages (never the key)."""

    def load(self) -> MasterKey: ...

    def describe(self) -> str: ...


class EnvKeyProvider:
    def __init__(self, value: str, var: str = "HOTLINE_MASTER_KEY"):
        self._value = value
        self.var = var

    def load(self) -> MasterKey:
        return MasterKey(decode_key(self._value, self.var))

    def describe(self) -> str:
        return f"environment variable {self.var}"


class FileKeyProvider:
    """``keys_dir/master.key``: base64 text, mode 0600. During rotation the new key is written
    beside it as ``master.key.new`` and switched in only after the database commit."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def pending_path(self) -> Path:
        return self.path.with_name(self.path.name + ".new")

    def describe(self) -> str:
        return f"key file {self.path}"

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> MasterKey:
        return self._load(self.path)

    def load_pending(self) -> MasterKey | None:
        return self._load(self.pending_path) if self.pending_path.is_file() else None

    def _load(self, path: Path) -> MasterKey:
        if not path.is_file():
            raise MasterKeyMissing(f"master key file {path} not found (run `hotline keys init`)")
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise BadMasterKey(f"master key file {path} has mode {mode:o}; it must be 0600 (chmod 600 {path})")
        return MasterKey(decode_key(path.read_text(encoding="ascii"), f"key file {path}"))

    def create(self, key: MasterKey | None = None) -> MasterKey:
        """Create the key file (fails if it exists: never overwrite a master key)."""
        key = key or MasterKey.generate()
        write_secret_file(self.path, encode_key(key.key) + "\n", exclusive=True)
        return key

    def write_pending(self, key: MasterKey) -> None:
        write_secret_file(self.pending_path, encode_key(key.key) + "\n", exclusive=False)

    def commit_pending(self) -> None:
        os.replace(self.pending_path, self.path)
        fsync_dir(self.path.parent)

    def discard_pending(self) -> None:
        self.pending_path.unlink(missing_ok=True)


def write_secret_file(path: Path, text: str, exclusive: bool) -> None:
    """Write a 0600 file durably. ``exclusive``: fail with FileExistsError when it exists
    (atomic create-if-absent, safe against concurrent creators)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            os.link(tmp, path)  # atomic; raises FileExistsError when another writer won
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------- fields
FIELD_PREFIX = "enc1:"


class FieldDecryptError(KeyError_):
    pass


class FieldCipher:
    """AES-256-GCM for text fields: ``enc1:`` + base64url(nonce(12) || ciphertext || tag)."""

    def __init__(self, key: bytes):
        if len(key) != KEY_LEN:
            raise ValueError("field key must be 32 bytes")
        self._aes = AESGCM(key)
        self._key = key

    @property
    def kcv(self) -> str:
        """Identifies the key without revealing it."""
        return key_check_value(self._key)

    def encrypt(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(12)
        ct = self._aes.encrypt(nonce, plaintext.encode("utf-8"), context.encode("utf-8"))
        return FIELD_PREFIX + base64.urlsafe_b64encode(nonce + ct).decode("ascii")

    def decrypt(self, token: str, context: str) -> str:
        if not (isinstance(token, str) and token.startswith(FIELD_PREFIX)):
            raise FieldDecryptError("value is not an encrypted field")
        try:
            raw = base64.urlsafe_b64decode(token[len(FIELD_PREFIX):].encode("ascii"))
            return self._aes.decrypt(raw[:12], raw[12:], context.encode("utf-8")).decode("utf-8")
        except (InvalidTag, binascii.Error, ValueError) as e:
            raise FieldDecryptError(f"encrypted field ({context}) failed authentication") from e


def is_encrypted_field(value: object) -> bool:
    return isinstance(value, str) and (value.startswith(FIELD_PREFIX) or value.startswith(CONTENT_PREFIX))


# ------------------------------------------------------------------------------- content keys
# Report content derived from one call (live text, transcript, draft text) is sealed under that
# call's own random content key, itself wrapped by the master key like a recording's data key.
# Destroying the wrapped content key when the recording is purged shreds every copy of the text,
# wherever a byte of it survived (free database pages, WAL, backups).
CONTENT_PREFIX = "ck1:"


def seal_content(key_id: str, key: bytes, plaintext: str, context: str) -> str:
    """``ck1:<key id>:`` + the field encryption of ``plaintext`` under the content key."""
    if ":" in key_id:
        raise ValueError("content key id must not contain ':'")
    inner = FieldCipher(key).encrypt(plaintext, f"{context}|{key_id}")
    return f"{CONTENT_PREFIX}{key_id}:{inner}"


def content_key_id(token: str) -> str | None:
    """The content key id of a sealed value, or None for anything else."""
    if not isinstance(token, str) or not token.startswith(CONTENT_PREFIX):
        return None
    kid, sep, _ = token[len(CONTENT_PREFIX):].partition(":")
    return kid if sep and kid else None


def open_content(token: str, key: bytes, context: str) -> str:
    kid = content_key_id(token)
    if kid is None:
        raise FieldDecryptError("value is not sealed under a content key")
    inner = token[len(CONTENT_PREFIX) + len(kid) + 1:]
    return FieldCipher(key).decrypt(inner, f"{context}|{kid}")


class WrappedKeyFile:
    """A random key stored wrapped by the master key in a small JSON file (``field.key``).

    ``{"kcv": <master KCV>, "wrapped": <base64>}``; rotation writes ``field.key.new`` beside it."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def pending_path(self) -> Path:
        return self.path.with_name(self.path.name + ".new")

    @staticmethod
    def _read(path: Path) -> dict:
        try:
            data = json.loads(path.read_text(encoding="ascii"))
            return {"kcv": str(data["kcv"]), "wrapped": base64.b64decode(data["wrapped"])}
        except (ValueError, KeyError, TypeError) as e:
            raise BadMasterKey(f"key file {path} is damaged") from e

    def load(self, master: MasterKey, path: Path | None = None) -> bytes:
        path = path or self.path
        data = self._read(path)
        if data["kcv"] != master.kcv:
            raise WrongMasterKey(
                f"{path.name} was wrapped by master key {data['kcv']}, but the loaded master key is {master.kcv}"
            )
        return master.unwrap(data["wrapped"])

    def load_or_create(self, master: MasterKey) -> bytes:
        if not self.path.exists():
            key = os.urandom(KEY_LEN)
            try:
                self._write(self.path, master, key, exclusive=True)
            except FileExistsError:
                pass  # another process created it first; use theirs
        return self.load(master)

    def write_pending(self, master: MasterKey, key: bytes) -> None:
        self._write(self.pending_path, master, key, exclusive=False)

    def commit_pending(self) -> None:
        os.replace(self.pending_path, self.path)
        fsync_dir(self.path.parent)

    @staticmethod
    def _write(path: Path, master: MasterKey, key: bytes, exclusive: bool) -> None:
        text = json.dumps({"kcv": master.kcv, "wrapped": base64.b64encode(master.wrap(key)).decode("ascii")})
        write_secret_file(path, text + "\n", exclusive=exclusive)
