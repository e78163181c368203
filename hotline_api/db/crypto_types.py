"""``EncryptedText``: a column type that stores text encrypted (AES-256-GCM, ``recordings.keys``).

Use it for transcripts and identity fields::

    caller_number: Mapped[str | None] = mapped_column(EncryptedText("calls.caller_number"))

The context string is bound into each ciphertext, so a value copied into another column does not
decrypt. The field key is a random key wrapped by the master key (``data_dir/keys/field.key``);
``hotline_api.services.storage.open_crypto`` loads it (and checks the master key) at service start;
used before that, it is loaded lazily from the settings (``hotline_api.core.keys``: the database
layer never imports a service). Values written before a column switched to
encryption (plain text) are returned as they are; ``reencrypt_plain_values`` converts them.

Encrypted columns cannot be searched or compared in SQL; keep a salted hash column beside when a
lookup is needed (as ``calls.caller_hash``).
"""
from __future__ import annotations

import threading

from sqlalchemy import Text, TypeDecorator

from recordings.keys import FieldCipher, FieldDecryptError, content_key_id, is_encrypted_field, open_content, seal_content

_lock = threading.Lock()
_ciphers: dict[tuple, FieldCipher] = {}
_explicit: FieldCipher | None = None


def set_field_cipher(cipher: FieldCipher | None) -> None:
    """Install the process-wide field cipher (service start, tests). ``None`` = load lazily."""
    global _explicit
    _explicit = cipher


def get_field_cipher() -> FieldCipher:
    if _explicit is not None:
        return _explicit
    from hotline_api.core.config import get_settings

    settings = get_settings()
    cache_key = (str(settings.keys_dir.resolve()), settings.master_key)
    with _lock:
        c = _ciphers.get(cache_key)
        if c is None:
            from hotline_api.core.keys import load_field_cipher

            c = load_field_cipher(settings)
            _ciphers[cache_key] = c
        return c


def clear_cache() -> None:
    with _lock:
        _ciphers.clear()


class ContentValue(str):
    """A plain value that is to be sealed under a call's content key when written
    (``hotline_api.models.content`` wraps report content in it just before a flush; to every
    reader it is the plain string)."""

    __slots__ = ("key_id", "key")

    def __new__(cls, value: str, key_id: str, key: bytes):
        obj = super().__new__(cls, value)
        obj.key_id, obj.key = key_id, key
        return obj


#: what a reader gets for content whose call key was destroyed (purged) -- never the ciphertext
PURGED = None


class EncryptedText(TypeDecorator):
    impl = Text
    cache_ok = True

    def __init__(self, context: str, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.context = context

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, ContentValue):
            return seal_content(value.key_id, value.key, str(value), self.context)
        if content_key_id(value) is not None:  # already sealed (copied from a row as stored)
            return value
        return get_field_cipher().encrypt(str(value), self.context)

    def process_result_value(self, value, dialect):
        if value is None or not is_encrypted_field(value):
            return value
        kid = content_key_id(value)
        if kid is None:
            return get_field_cipher().decrypt(value, self.context)
        from hotline_api.db import content_keys

        key = content_keys.resolve(kid)
        if key is None:
            return PURGED
        try:
            return open_content(value, key, self.context)
        except FieldDecryptError:
            content_keys.forget(kid)  # a stale cache entry cannot be the cause twice
            raise

    def copy(self, **kw):
        return EncryptedText(self.context)

    def __repr__(self) -> str:  # rendered into alembic autogenerate output
        return f"EncryptedText({self.context!r})"


def reencrypt_plain_values(session, model, column_name: str) -> int:
    """Encrypt values stored in clear before ``column_name`` became an ``EncryptedText`` column."""
    from sqlalchemy import cast, select

    table = model.__table__
    col = table.c[column_name]
    pk = list(table.primary_key.columns)[0]
    raw = select(pk, cast(col, Text))  # raw stored text, no decryption
    n = 0
    for key, value in session.execute(raw).all():
        if value is not None and not is_encrypted_field(value):
            session.execute(table.update().where(pk == key).values({column_name: value}))
            n += 1
    return n
