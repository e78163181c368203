"""Encrypted recording storage composed with the database.

* ``open_crypto(settings, factory)``: at service start. Loads the master key from its provider,
  checks it against the key check value stored in the database (a wrong key is refused before any
  data is read or written), finishes an interrupted key rotation, loads the field key.
* ``ingest_recording``: a completed spool WAV -> encrypted file + wrapped data key row.
  (The durable completion chain, ingest then review assignment then transcription, is
  ``hotline_api.services.pipeline``: storage never imports review.)
* ``open_reader`` / ``stream_range``: decrypting byte-range reads for the audio endpoint.
* ``verify_integrity``: full decrypt + sha256 check ("stored" confirmation).
* ``rotate_master_key``: re-wraps every data key and the field key; crash-safe.
"""
from __future__ import annotations

import logging
import os
from dataclasses import astuple, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from sqlalchemy import Text, cast, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from hotline_api.core.config import Settings
from hotline_api.db import content_keys, crypto_types
from hotline_api.models.calls import Recording
from hotline_api.models.governance import CryptoState, RecordingBlob
from recordings import crypto
from hotline_api.core.keys import (  # noqa: F401 - re-exported: key loading lives below the services
    CryptoStartupError,
    _load_master,
    _recover_field_key,
    field_key_file,
    key_provider,
    load_field_cipher,
)
from recordings.keys import FieldCipher, FileKeyProvider, MasterKey, WrongMasterKey
from recordings.ranges import RangeError, parse_range  # noqa: F401 - re-exported for the API
from recordings.store import BadRecordingId, EncryptedStore, check_recording_id, wav_layout

log = logging.getLogger(__name__)


class StorageError(Exception):
    pass


class RecordingNotFound(StorageError):
    """No such (encrypted) recording: the API answers 404."""


class RecordingPurged(RecordingNotFound):
    """Purged by retention (data key destroyed): the API answers 404 (or 410 to privileged roles)."""


IntegrityError = crypto.IntegrityError
TamperedError = crypto.TamperedError


# --------------------------------------------------------------------------------------- keys




@dataclass
class CryptoContext:
    settings: Settings
    master: MasterKey
    field: FieldCipher
    store: EncryptedStore

    def data_key(self, blob: RecordingBlob) -> bytes:
        if blob.wrapped_key is None:
            raise RecordingPurged(f"recording {blob.recording_id} was purged")
        try:
            return self.master.unwrap(blob.wrapped_key)
        except WrongMasterKey:
            if not blob.master_kcv or not self.follow(blob.master_kcv):
                raise
            return self.master.unwrap(blob.wrapped_key)

    def follow(self, kcv: str) -> bool:
        """Switch to the master key ``kcv`` after a ``hotline keys rotate`` by another process (the
        provider holds it as the current or the pending key). True when switched."""
        if kcv == self.master.kcv:
            return True
        new = content_keys.follow(kcv)  # the process-wide key too (content keys, lazy readers)
        if new is None:
            return False
        self._switch(new)
        return True

    def _switch(self, new: MasterKey) -> None:
        if new.kcv != self.master.kcv:
            log.warning("master key rotated by another process: switching from %s to %s", self.master.kcv, new.kcv)
            self.master = new

    def current_master(self, session: Session) -> MasterKey:
        """The master key that wraps now (``content_keys.current_master``: read under the rotation
        lock in the session's transaction, followed from the key file after a rotation)."""
        try:
            self._switch(content_keys.current_master(session))
        except WrongMasterKey as e:
            raise StorageError(f"{e} ({key_provider(self.settings).describe()})") from None
        return self.master


def _db_kcv(session: Session) -> str | None:
    row = session.get(CryptoState, 1)
    if row is not None:
        return row.master_kcv
    # no state row, but keys exist: refuse to adopt a new master key silently
    kcv = session.execute(
        select(RecordingBlob.master_kcv).where(RecordingBlob.wrapped_key.is_not(None)).limit(1)
    ).scalar_one_or_none()
    return kcv


def init_keys(settings: Settings, factory: sessionmaker) -> tuple[MasterKey, bool]:
    """``hotline keys init``: create the master key file (0600) when absent and register its key
    check value. Returns (key, created)."""
    settings.ensure_dirs()
    provider = key_provider(settings)
    created = False
    if isinstance(provider, FileKeyProvider) and not provider.exists():
        with factory() as s:
            if _db_kcv(s) is not None:
                raise CryptoStartupError(
                    f"{provider.describe()} is missing but the database holds keys wrapped by master key "
                    f"{_db_kcv(s)}; restore the key file instead of creating a new one"
                )
        provider.create()
        created = True
    ctx = open_crypto(settings, factory, create=False)
    return ctx.master, created








def open_crypto(settings: Settings, factory: sessionmaker, create: bool = True) -> CryptoContext:
    """Load and check the master key. Raises ``CryptoStartupError`` with a clear message, before
    touching any data, when the key is missing or is not the one the stored keys were wrapped with."""
    with factory() as s:
        db_kcv = _db_kcv(s)
        state = s.get(CryptoState, 1)
        has_row, db_field_kcv = state is not None, state.field_kcv if state is not None else None
    master = _load_master(settings, create, db_kcv)
    provider = key_provider(settings)
    if db_kcv is not None and master.kcv != db_kcv:
        pending = provider.load_pending() if isinstance(provider, FileKeyProvider) else None
        if pending is not None and pending.kcv == db_kcv:
            log.warning("completing an interrupted key rotation: switching to the new master key file")
            provider.commit_pending()
            master = pending
        else:
            raise CryptoStartupError(
                f"wrong master key: {provider.describe()} has key check value {master.kcv}, but the stored "
                f"data keys were wrapped by {db_kcv}. Refusing to start; nothing was read or changed."
            )
    elif isinstance(provider, FileKeyProvider):
        provider.discard_pending()  # a rotation that never committed
    field = _recover_field_key(settings, master, db_field_kcv)
    if db_field_kcv is not None and field.kcv != db_field_kcv:
        raise CryptoStartupError(
            f"field key: {field_key_file(settings).path} has key check value {field.kcv}, but the database's "
            f"encrypted columns are under {db_field_kcv}. Refusing to start; restore the field key file.")
    if not has_row or db_field_kcv is None:
        with factory() as s:
            state = s.get(CryptoState, 1)
            if state is None:
                s.add(CryptoState(id=1, master_kcv=master.kcv, field_kcv=field.kcv))
            elif state.field_kcv is None:
                state.field_kcv = field.kcv
            s.commit()
    settings.recordings_dir.mkdir(parents=True, exist_ok=True)
    ctx = CryptoContext(settings, master, field, EncryptedStore(settings.recordings_dir))
    crypto_types.set_field_cipher(field)
    content_keys.set_master_key(master)
    return ctx


# ------------------------------------------------------------------------------------- ingest
@dataclass(frozen=True)
class StoredFile:
    """Where a recording's encrypted file is and what it holds."""

    recording_id: str
    rel_path: str
    sha256: str
    plain_size: int
    data_offset: int
    data_size: int


@dataclass(frozen=True)
class IngestResult(StoredFile):
    created: bool  # False: already stored before (idempotent replay)


@dataclass(frozen=True)
class EncryptedFile(StoredFile):
    """A recording encrypted into the store, not yet registered (``register_blob``)."""

    wrapped_key: bytes


def encrypt_into_store(ctx: CryptoContext, recording_id: str, src_path: str | Path,
                       expected_sha256: str | None = None) -> EncryptedFile:
    """Encrypt ``src_path`` under a new data key into the store (atomic write). No database access,
    so no transaction is held while the file is encrypted. Raises ``IntegrityError`` when the file is
    not the one recorded at completion (``expected_sha256``), ``StorageError`` when it is missing."""
    rid = check_recording_id(recording_id)
    src = Path(src_path)
    if not src.is_file():
        raise StorageError(f"recording {rid}: source file not found")
    dek = crypto.generate_data_key()
    result = ctx.store.put(rid, src, dek)
    if expected_sha256 and expected_sha256 != result.sha256:
        ctx.store.delete(rid)
        raise IntegrityError(f"recording {rid}: file sha256 differs from the one recorded at completion")
    with open(src, "rb") as f:
        head = f.read(64 * 1024)
    layout = wav_layout(head, result.plain_len)
    return EncryptedFile(rid, ctx.store.rel_path(rid), result.sha256, result.plain_len, layout.data_offset,
                         layout.data_size, ctx.master.wrap(dek))


def register_blob(session: Session, ctx: CryptoContext, enc: EncryptedFile, now: datetime | None = None) -> RecordingBlob:
    """Add the blob row of an encrypted file and point the recording at it (flushed, not committed).
    The data key was wrapped when the file was encrypted; if a key rotation committed since, it is
    re-wrapped here with the new master key (read in this transaction, see ``current_master``)."""
    wrapped_by = ctx.master
    master = ctx.current_master(session)
    wrapped = enc.wrapped_key if master is wrapped_by else master.wrap(wrapped_by.unwrap(enc.wrapped_key))
    blob = RecordingBlob(
        recording_id=enc.recording_id, rel_path=enc.rel_path, wrapped_key=wrapped, master_kcv=master.kcv,
        chunk_size=ctx.store.chunk_size, plain_size=enc.plain_size, sha256=enc.sha256,
        data_offset=enc.data_offset, data_size=enc.data_size, stored_at=now or datetime.now(timezone.utc),
    )
    session.add(blob)
    rec = session.get(Recording, enc.recording_id)
    if rec is not None:
        rec.path = str(Path(ctx.settings.recordings_dir.name) / enc.rel_path)
        rec.sha256 = enc.sha256
        rec.size_bytes = enc.plain_size
    session.flush()
    return blob


def ingest_recording(session: Session, ctx: CryptoContext, recording_id: str, src_path: str | Path,
                     expected_sha256: str | None = None, now: datetime | None = None) -> IngestResult:
    """Encrypt ``src_path`` into the store and add the blob row (flushed, not committed). The source
    file is left in place: remove it only after the commit. For one-off imports; the call recordings'
    chain (``hotline_api.services.pipeline``) encrypts outside any transaction."""
    rid = check_recording_id(recording_id)
    existing = session.get(RecordingBlob, rid)
    if existing is not None:
        return IngestResult(rid, existing.rel_path, existing.sha256, existing.plain_size, existing.data_offset,
                            existing.data_size, False)
    enc = encrypt_into_store(ctx, rid, src_path, expected_sha256)
    register_blob(session, ctx, enc, now)
    return IngestResult(*astuple(enc)[:-1], created=True)


# --------------------------------------------------------------------------------------- read
class PlainRecording:
    """Decrypting reader over one recording (use as a context manager)."""

    def __init__(self, blob: RecordingBlob, reader: crypto.EncryptedReader):
        self.blob = blob
        self.reader = reader

    @property
    def size(self) -> int:
        return self.reader.size

    @property
    def sha256(self) -> str:
        return self.blob.sha256

    def iter_range(self, start: int, stop: int) -> Iterator[bytes]:
        return self.reader.iter_range(start, stop)

    def read(self, start: int, stop: int) -> bytes:
        return self.reader.read(start, stop)

    def read_all(self) -> bytes:
        return self.reader.read_all(expected_sha256=self.blob.sha256)

    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> "PlainRecording":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def get_blob(session: Session, recording_id: str) -> RecordingBlob:
    try:
        rid = check_recording_id(recording_id)
    except BadRecordingId as e:
        raise RecordingNotFound(str(e)) from None
    blob = session.get(RecordingBlob, rid)
    if blob is None:
        raise RecordingNotFound(f"recording {rid} not found")
    if blob.wrapped_key is None or blob.destroyed_at is not None:
        raise RecordingPurged(f"recording {rid} was purged")
    return blob


def open_reader(session: Session, ctx: CryptoContext, recording_id: str) -> PlainRecording:
    blob = get_blob(session, recording_id)
    dek = ctx.data_key(blob)
    try:
        reader = ctx.store.open(blob.recording_id, dek)
    except FileNotFoundError:
        raise RecordingNotFound(f"recording {blob.recording_id}: encrypted file missing") from None
    return PlainRecording(blob, reader)


def stream_range(rec: PlainRecording, start: int, stop: int,
                 on_done: Callable[[int, int], None] | None = None,
                 piece_size: int = 256 * 1024) -> Iterator[bytes]:
    """Yield plaintext [start, stop): the first chunk at once (first-byte latency), then pieces of
    about ``piece_size`` (fewer hand-offs per byte in the HTTP server). ``on_done(start, end_sent)``
    is called with what was actually delivered, i.e. pieces the consumer came back for after taking
    them (also when the client goes away). A full read is checked against the sha256; on a mismatch
    the stream ends with ``IntegrityError`` (the connection is aborted)."""
    import hashlib

    sent = start
    full = start == 0 and stop == rec.size
    digest = hashlib.sha256() if full else None
    try:
        buf: list[bytes] = []
        buffered = 0
        first = True
        for piece in rec.iter_range(start, stop):
            if digest is not None:
                digest.update(piece)
            buf.append(piece)
            buffered += len(piece)
            if first or buffered >= piece_size:
                out = buf[0] if len(buf) == 1 else b"".join(buf)
                buf, buffered, first = [], 0, False
                yield out
                sent += len(out)
        if digest is not None and digest.hexdigest() != rec.sha256:
            log.error("recording %s: integrity check failed on full read", rec.blob.recording_id)
            raise IntegrityError(f"recording {rec.blob.recording_id}: sha256 mismatch")
        if buf:
            out = b"".join(buf)
            yield out
            sent += len(out)
    finally:
        rec.close()
        if on_done is not None:
            on_done(start, sent)


@dataclass
class AudioPlan:
    """What the audio endpoint sends: status 200 (whole file) or 206 (a range), headers, and the
    reader to stream from (``stream_range(plan.reader, plan.start, plan.stop, on_done=...)``)."""

    reader: PlainRecording
    start: int
    stop: int
    status: int
    headers: dict[str, str]


def plan_audio(session: Session, ctx: CryptoContext, recording_id: str, range_header: str | None) -> AudioPlan:
    """Validate the id and the Range header against the stored size BEFORE opening anything, then
    open the decrypting reader. Raises ``RecordingNotFound``/``RecordingPurged`` (404) or
    ``RangeError`` (``.status``: 400 malformed, 416 out of bounds)."""
    blob = get_blob(session, recording_id)
    size = blob.plain_size
    rng = parse_range(range_header, size)
    reader = open_reader(session, ctx, recording_id)
    start, stop = rng if rng is not None else (0, size)
    headers = {"Accept-Ranges": "bytes", "Content-Length": str(stop - start), "Cache-Control": "no-store",
               "Content-Type": "audio/wav"}
    if rng is not None:
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    return AudioPlan(reader, start, stop, 206 if rng is not None else 200, headers)


def verify_integrity(session: Session, ctx: CryptoContext, recording_id: str, now: datetime | None = None) -> str:
    """Decrypt the whole recording and compare with the sha256 recorded at ingest. Returns the hash;
    raises ``IntegrityError`` / ``TamperedError`` when it does not match."""
    with open_reader(session, ctx, recording_id) as rec:
        rec.reader.verify(rec.sha256)
        rec.blob.verified_at = now or datetime.now(timezone.utc)
        return rec.sha256


# ------------------------------------------------------------------------------------ rotation
@dataclass(frozen=True)
class RotationResult:
    old_kcv: str
    new_kcv: str
    rewrapped: int


def prepare_rotation(ctx: CryptoContext, new_master: MasterKey | None = None) -> MasterKey:
    """Step 1: write the new master key (file provider) and the re-wrapped field key beside the
    current ones (``*.new``). Nothing switches yet."""
    provider = key_provider(ctx.settings)
    if isinstance(provider, FileKeyProvider):
        new_master = new_master or MasterKey.generate()
        provider.write_pending(new_master)
    elif new_master is None:
        raise StorageError("the master key comes from HOTLINE_MASTER_KEY: give the new key (--new-key-stdin)")
    if new_master.kcv == ctx.master.kcv:
        raise StorageError("the new master key equals the current one")
    fk = field_key_file(ctx.settings)
    fk.write_pending(new_master, fk.load(ctx.master))
    return new_master


def commit_rotation_db(factory: sessionmaker, ctx: CryptoContext, new_master: MasterKey, actor: Any = None,
                       progress: Callable[[int, int], None] | None = None) -> int:
    """Step 2: re-wrap every data key and record the new key check value, in one transaction."""
    from hotline_api.services import audit

    from hotline_api.db.session import write_session

    now = datetime.now(timezone.utc)
    with write_session(factory) as s:
        # the rotation lock first: a process wrapping a new key waits for this commit (see
        # CryptoContext.current_master), and rows it committed before are all re-wrapped here
        s.execute(select(CryptoState).where(CryptoState.id == 1).with_for_update()).scalar()
        rows = s.execute(select(RecordingBlob.recording_id, RecordingBlob.wrapped_key)
                         .where(RecordingBlob.wrapped_key.is_not(None))).all()
        total = len(rows)
        for i, (rid, wrapped) in enumerate(rows, 1):
            dek = ctx.master.unwrap(wrapped)
            s.execute(update(RecordingBlob).where(RecordingBlob.recording_id == rid)
                      .values(wrapped_key=new_master.wrap(dek), master_kcv=new_master.kcv))
            if progress and (i % 500 == 0 or i == total):
                progress(i, total)
        content = content_keys.rewrap_all(s, ctx.master, new_master)
        state = s.get(CryptoState, 1)
        if state is None:
            state = CryptoState(id=1, master_kcv=new_master.kcv)
            s.add(state)
        state.master_kcv, state.rotated_at = new_master.kcv, now
        audit.record(s, "keys.rotate", actor=actor, actor_name=None if actor else "system", object_type="key",
                     object_id=new_master.kcv, detail={"old_kcv": ctx.master.kcv, "new_kcv": new_master.kcv,
                                                       "rewrapped": total, "content_keys": content})
        s.commit()
    return total


def switch_rotation_files(settings: Settings) -> None:
    """Step 3: switch the key files (atomic renames)."""
    fk = field_key_file(settings)
    if fk.pending_path.exists():
        fk.commit_pending()
    provider = key_provider(settings)
    if isinstance(provider, FileKeyProvider) and provider.pending_path.exists():
        provider.commit_pending()


def rotate_master_key(settings: Settings, factory: sessionmaker, new_master: MasterKey | None = None,
                      actor: Any = None, progress: Callable[[int, int], None] | None = None) -> RotationResult:
    """Re-wrap all data keys and the field key with a new master key, without re-encrypting audio.
    Crash-safe: before the database commit the old key stays valid (the ``.new`` files are
    discarded at next start); after it, the next start completes the file switch."""
    ctx = open_crypto(settings, factory, create=False)
    new_master = prepare_rotation(ctx, new_master)
    n = commit_rotation_db(factory, ctx, new_master, actor=actor, progress=progress)
    switch_rotation_files(settings)
    crypto_types.clear_cache()
    open_crypto(settings, factory, create=False) if not settings.master_key else None
    return RotationResult(ctx.master.kcv, new_master.kcv, n)


@dataclass(frozen=True)
class FieldRekeyResult:
    old_kcv: str
    new_kcv: str
    reencrypted: int


def _field_columns() -> list[tuple[Any, str, str]]:
    """(table, column name, context) of every column encrypted under the field key."""
    from hotline_api.db.base import Base

    return [(t, c.name, c.type.context) for t in Base.metadata.sorted_tables for c in t.columns
            if isinstance(c.type, crypto_types.EncryptedText)]


def rekey_field_key(settings: Settings, factory: sessionmaker, actor: Any = None,
                    progress: Callable[[int, int], None] | None = None) -> FieldRekeyResult:
    """``hotline keys rotate --field-key``: a new random field key; every value under the old one
    is re-encrypted in one transaction (values sealed under a call's content key are not: they
    never used it), and the database records the new key's check value in the same commit. Then
    ``field.key`` is switched; an interruption between the two is finished at the next start.

    Running processes hold the field key in memory and cannot follow a new one, so this refuses
    while `hotline serve` runs on this data dir (``core.runlock``)."""
    from hotline_api.core.runlock import service_running
    from hotline_api.db.session import write_session
    from hotline_api.services import audit
    from recordings.keys import FIELD_PREFIX, KEY_LEN

    if service_running(settings):
        raise StorageError("the service is running on this data dir (hotline serve): stop it first -- running "
                           "processes keep the field key in memory and cannot follow a new one")
    ctx = open_crypto(settings, factory, create=False)
    fk = field_key_file(settings)
    old, new_key = ctx.field, os.urandom(KEY_LEN)
    new = FieldCipher(new_key)
    fk.write_pending(ctx.master, new_key)
    cols = _field_columns()
    n = 0
    with write_session(factory) as s:
        s.execute(select(CryptoState).where(CryptoState.id == 1).with_for_update()).scalar()
        for i, (table, col, context) in enumerate(cols, 1):
            pk = list(table.primary_key.columns)[0]
            c = table.c[col]
            rows = s.execute(select(pk, cast(c, Text)).where(c.is_not(None))).all()
            for key, value in rows:
                if isinstance(value, str) and value.startswith(FIELD_PREFIX):
                    # plain SQL: the stored token as computed here (the column type would encrypt it again)
                    s.execute(text(f"UPDATE {table.name} SET {col} = :v WHERE {pk.name} = :k"),
                              {"v": new.encrypt(old.decrypt(value, context), context), "k": key})
                    n += 1
            if progress:
                progress(i, len(cols))
        state = s.get(CryptoState, 1)
        state.field_kcv = new.kcv
        audit.record(s, "keys.rotate_field", actor=actor, actor_name=None if actor else "system", object_type="key",
                     object_id=new.kcv, detail={"old_kcv": old.kcv, "new_kcv": new.kcv, "reencrypted": n})
        s.commit()
    fk.commit_pending()
    crypto_types.set_field_cipher(new)
    crypto_types.clear_cache()
    return FieldRekeyResult(old.kcv, new.kcv, n)


def secure_unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
