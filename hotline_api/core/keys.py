"""Loading the master key and the field key from their providers (below the services: the
database column type ``EncryptedText`` loads the field key lazily from here, and
``hotline_api.services.storage`` builds its crypto context on top).

Nothing here touches the database: the check of the master key against the key check value stored
in the database is ``storage.open_crypto``'s."""
from __future__ import annotations

import logging

from hotline_api.core.config import Settings
from recordings.keys import (
    BadMasterKey,
    EnvKeyProvider,
    FieldCipher,
    FileKeyProvider,
    KeyProvider,
    MasterKey,
    MasterKeyMissing,
    WrappedKeyFile,
    WrongMasterKey,
    key_check_value,
)

log = logging.getLogger("hotline_api.services.storage")


class CryptoStartupError(Exception):
    """The master key cannot be used; nothing was read or changed."""


def key_provider(settings: Settings) -> KeyProvider:
    if settings.master_key:
        return EnvKeyProvider(settings.master_key)
    return FileKeyProvider(settings.keys_dir / "master.key")


def field_key_file(settings: Settings) -> WrappedKeyFile:
    return WrappedKeyFile(settings.keys_dir / "field.key")


def _load_master(settings: Settings, create: bool, db_kcv: str | None) -> MasterKey:
    provider = key_provider(settings)
    try:
        return provider.load()
    except MasterKeyMissing:
        if create and db_kcv is None and isinstance(provider, FileKeyProvider) and not field_key_file(settings).path.exists():
            settings.ensure_dirs()
            try:
                return provider.create()
            except FileExistsError:
                return provider.load()
        raise CryptoStartupError(f"master key not found: {provider.describe()} (run `hotline keys init`)") from None
    except BadMasterKey as e:
        raise CryptoStartupError(str(e)) from None


def _recover_field_key(settings: Settings, master: MasterKey, db_field_kcv: str | None = None) -> FieldCipher:
    """The field cipher, finishing an interrupted rotation. ``db_field_kcv`` (the key check value
    of the field key the database's columns are under) decides between ``field.key`` and
    ``field.key.new`` when both load: a ``--field-key`` rotation committed in the database keeps
    the new one, an uncommitted one the old."""
    fk = field_key_file(settings)
    if fk.pending_path.exists() and db_field_kcv:
        chosen = None
        for path in (fk.pending_path, fk.path):
            try:
                if path.exists() and key_check_value(fk.load(master, path)) == db_field_kcv:
                    chosen = path
                    break
            except (WrongMasterKey, BadMasterKey):
                continue
        if chosen == fk.pending_path:
            log.warning("completing an interrupted key rotation: switching to the new field key file")
            fk.commit_pending()
        elif chosen == fk.path:
            fk.pending_path.unlink(missing_ok=True)
    if fk.pending_path.exists():
        try:
            fk.load(master, fk.pending_path)
            pending_ok = True
        except (WrongMasterKey, BadMasterKey):
            pending_ok = False
        main_ok = False
        if fk.path.exists():
            try:
                fk.load(master)
                main_ok = True
            except (WrongMasterKey, BadMasterKey):
                main_ok = False
        if pending_ok and not main_ok:
            log.warning("completing an interrupted key rotation: switching to the new field key file")
            fk.commit_pending()
        else:
            fk.pending_path.unlink(missing_ok=True)
    try:
        return FieldCipher(fk.load_or_create(master))
    except WrongMasterKey as e:
        raise CryptoStartupError(f"field key: {e}") from None


def load_master_with_kcv(settings: Settings, kcv: str) -> MasterKey | None:
    """The master key whose check value is ``kcv`` from the provider: the current key, or the new
    one of a rotation in progress (``master.key.new``). None if neither matches. Running processes
    use it to pick up a rotated key: the database's key check value says which key now wraps."""
    provider = key_provider(settings)
    candidates = [provider.load]
    if isinstance(provider, FileKeyProvider):  # the current file again: the rename may fall between the two
        candidates += [provider.load_pending, provider.load]
    for load in candidates:
        try:
            key = load()
        except (MasterKeyMissing, BadMasterKey):
            continue
        if key is not None and key.kcv == kcv:
            return key
    return None


def load_field_cipher(settings: Settings) -> FieldCipher:
    """The field cipher without a database check (lazy use by ``EncryptedText``)."""
    master = _load_master(settings, create=True, db_kcv=None)
    return _recover_field_key(settings, master)
