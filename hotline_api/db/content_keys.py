"""Per-call content keys: report content derived from one call (the live transcript, the
recording's transcript, the draft's text, subjects and corrections) is sealed under a random key of
that call, wrapped by the master key in ``content_keys``. A retention purge destroys the wrapped
key, so every copy of that content -- rows, free database pages, the WAL, a backup -- becomes
unreadable at once, while other calls' content stays under their own keys.

This module is below the models (it uses plain SQL on ``content_keys``) and below the services:

* ``key_for_call(session, call_id)``: the call's key, created in the session's transaction if
  missing (so the key and the first content commit together);
* ``resolve(key_id)``: the key for reading, from a process cache or the database (a short read
  on the engine that is executing, ``None`` once destroyed);
* ``destroy_for_call(session, call_id)``: crypto-shredding (the service calls it on purge);
* ``set_master_key``: the master key the service checked at start (else loaded lazily).
"""
from __future__ import annotations

import contextvars
import os
import threading
import uuid
from collections import OrderedDict
from datetime import datetime, timezone

from sqlalchemy import LargeBinary, String, event, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from hotline_api.db.base import Base, UTCDateTime, utcnow
from recordings.keys import KEY_LEN, MasterKey, WrongMasterKey

_lock = threading.Lock()
_cache: "OrderedDict[str, bytes]" = OrderedDict()  # key id -> content key (unwrapped)
_CACHE_MAX = 20000
_master: MasterKey | None = None
#: the engine of the ORM statement being executed (set by the session hook in ``models.content``)
current_engine: contextvars.ContextVar[Engine | None] = contextvars.ContextVar("content_key_engine", default=None)


class ContentKey(Base):
    """One call's content key, wrapped by the master key; ``wrapped_key`` NULL = destroyed (purged)."""

    __tablename__ = "content_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(36), unique=True)
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    master_kcv: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ContentKeyDestroyed(LookupError):
    """The call's content was purged: its key is gone."""


def set_master_key(master: MasterKey | None) -> None:
    global _master
    _master = master


def _master_key() -> MasterKey:
    if _master is not None:
        return _master
    from hotline_api.core.config import get_settings
    from hotline_api.core.keys import _load_master

    master = _load_master(get_settings(), create=True, db_kcv=None)  # as the field key's lazy load
    set_master_key(master)  # a later rotation is followed through the database's key check value
    return master


def clear_cache() -> None:
    with _lock:
        _cache.clear()


def forget(key_id: str) -> None:
    with _lock:
        _cache.pop(key_id, None)


def _remember(key_id: str, key: bytes) -> None:
    with _lock:
        _cache[key_id] = key
        _cache.move_to_end(key_id)
        while len(_cache) > _CACHE_MAX:
            _cache.popitem(last=False)


def follow(kcv: str) -> MasterKey | None:
    """After a rotation by another process: the master key ``kcv`` from the provider, installed as
    this process's master key (None when the provider holds no such key)."""
    global _master
    from hotline_api.core.config import get_settings
    from hotline_api.core.keys import load_master_with_kcv

    new = load_master_with_kcv(get_settings(), kcv)
    if new is not None:
        _master = new
    return new


def current_master(session) -> MasterKey:
    """The master key that wraps now, read in the session's transaction under the rotation lock
    (the ``crypto_state`` row: shared on PostgreSQL, SQLite's write transactions are serialized
    anyway; ``storage.commit_rotation_db`` locks it for update). A key wrapped with it and written in
    the same transaction is then either re-wrapped by a rotation committed after it, or written after
    the rotation with the new key. Raises ``WrongMasterKey`` when the named key cannot be loaded."""
    share = " FOR SHARE" if session.get_bind().dialect.name == "postgresql" else ""
    kcv = session.execute(text("SELECT master_kcv FROM crypto_state WHERE id = 1" + share)).scalar()
    master = _master_key()
    if kcv and kcv != master.kcv:
        master = follow(kcv)
        if master is None:
            raise WrongMasterKey(f"the stored keys are wrapped by master key {kcv}, which this process cannot load")
    return master


def _unwrap(wrapped: bytes, kcv: str | None = None) -> bytes:
    try:
        return _master_key().unwrap(bytes(wrapped))
    except WrongMasterKey:
        if not kcv or follow(kcv) is None:
            raise
        return _master_key().unwrap(bytes(wrapped))


def key_for_call(session, call_id: str) -> tuple[str, bytes]:
    """(key id, key) of ``call_id``'s content key, created if the call has none yet. Raises
    ``ContentKeyDestroyed`` when the call's content was purged."""
    q = select(ContentKey.id, ContentKey.wrapped_key, ContentKey.master_kcv).where(ContentKey.call_id == call_id)
    row = session.execute(q).first()
    if row is None:
        kid, key = str(uuid.uuid4()), os.urandom(KEY_LEN)
        master = current_master(session)
        try:
            with session.connection().begin_nested():  # a savepoint that does not flush (called at flush)
                session.execute(ContentKey.__table__.insert().values(
                    id=kid, call_id=call_id, wrapped_key=master.wrap(key), master_kcv=master.kcv,
                    created_at=utcnow()))
        except Exception:  # noqa: BLE001 - another process created it first (unique call_id)
            row = session.execute(q).first()
            if row is None:
                raise
        else:
            _remember(kid, key)
            return kid, key
    kid, wrapped, kcv = row
    if wrapped is None:
        raise ContentKeyDestroyed(call_id)
    with _lock:
        key = _cache.get(kid)
    if key is None:
        key = _unwrap(wrapped, kcv)
        _remember(kid, key)
    return kid, key


def resolve(key_id: str) -> bytes | None:
    """The content key ``key_id`` (None when destroyed or unknown)."""
    with _lock:
        key = _cache.get(key_id)
    if key is not None:
        return key
    engine = current_engine.get()
    if engine is None:
        return None
    with engine.connect() as conn:
        row = conn.execute(text("SELECT wrapped_key, master_kcv FROM content_keys WHERE id = :i"),
                           {"i": key_id}).first()
    if row is None or row[0] is None:
        return None
    try:
        key = _unwrap(row[0], row[1])
    except WrongMasterKey:
        return None
    _remember(key_id, key)
    return key


def destroy_for_call(session, call_id: str, now: datetime | None = None) -> bool:
    """Destroy ``call_id``'s content key in the session's transaction. True if one was destroyed."""
    kid = session.execute(select(ContentKey.id).where(ContentKey.call_id == call_id,
                                                       ContentKey.wrapped_key.is_not(None))).scalar()
    if kid is None:
        return False
    session.execute(update(ContentKey).where(ContentKey.id == kid)
                    .values(wrapped_key=None, master_kcv=None, destroyed_at=now or datetime.now(timezone.utc)))
    forget(kid)
    return True


def rewrap_all(session, old: MasterKey, new: MasterKey) -> int:
    """Key rotation: re-wrap every live content key from ``old`` to ``new`` (in the session's
    transaction). Returns the number re-wrapped."""
    n = 0
    for kid, wrapped in session.execute(select(ContentKey.id, ContentKey.wrapped_key)
                                        .where(ContentKey.wrapped_key.is_not(None))).all():
        key = old.unwrap(bytes(wrapped))
        session.execute(update(ContentKey).where(ContentKey.id == kid)
                        .values(wrapped_key=new.wrap(key), master_kcv=new.kcv))
        n += 1
    return n


@event.listens_for(Engine, "before_cursor_execute")
def _note_engine(conn, cursor, statement, parameters, context, executemany):  # pragma: no cover - trivial
    """Remember which engine is executing, so a sealed value in its result can fetch its key."""
    current_engine.set(conn.engine)
