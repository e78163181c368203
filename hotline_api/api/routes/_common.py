"""Helpers shared by the content routes (no ``router`` here, so the app factory skips it):
the crypto context of the app, read-audit in its own short transaction, role gates, and the
translation of "not visible" into the one 404 answer."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Annotated, Any, Iterator

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.orm import sessionmaker

from hotline_api.api.deps import CurrentUser, SettingsDep, client_ip, not_found
from hotline_api.db.session import session_factory
from hotline_api.models.governance import User
from hotline_api.services import access, audit, storage

_crypto_lock = threading.Lock()


def get_crypto(request: Request, settings: SettingsDep) -> storage.CryptoContext:
    """The app's crypto context, opened once (the master key is checked against the database;
    a wrong key is refused with a clear error and nothing is read)."""
    ctx = getattr(request.app.state, "crypto", None)
    if ctx is None:
        with _crypto_lock:
            ctx = getattr(request.app.state, "crypto", None)
            if ctx is None:
                ctx = storage.open_crypto(settings, session_factory(settings.db_url))
                request.app.state.crypto = ctx
    return ctx


CryptoDep = Annotated[storage.CryptoContext, Depends(get_crypto)]


def factory(settings) -> sessionmaker:
    return session_factory(settings.db_url)


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def audit_read(settings, request: Request, user: User, action: str, object_type: str | None,
               object_id: str | None, detail: dict[str, Any] | None = None, reason: str | None = None) -> None:
    """Audit a read (view, playback, download) in a transaction of its own (``audit.append``)."""
    audit.append(factory(settings), action, actor=user, object_type=object_type, object_id=object_id,
                 ip=client_ip(request), reason=reason, detail=detail or {})


@contextmanager
def visible() -> Iterator[None]:
    """``access.NotVisible`` (missing, malformed id, or not permitted) -> 404."""
    try:
        yield
    except access.NotVisible:
        raise not_found() from None


def bad_request(message: str) -> HTTPException:
    return HTTPException(status.HTTP_400_BAD_REQUEST, detail=message)


def roles(*allowed: str):
    """A dependency admitting only ``allowed`` roles; everyone else gets 404 (no enumeration)."""
    allowed_set = frozenset(allowed)

    def _dep(user: CurrentUser) -> User:
        if user.role not in allowed_set:
            raise not_found()
        return user

    _dep.__name__ = "roles_" + "_".join(sorted(allowed_set))
    return _dep


ContentUser = Annotated[User, Depends(roles(*access.CONTENT_ROLES))]
SupervisorUser = Annotated[User, Depends(roles("supervisor"))]
ManagerOrSupervisor = Annotated[User, Depends(roles("recording_manager", "supervisor"))]
AuditorUser = Annotated[User, Depends(roles("auditor"))]
AdminUser = Annotated[User, Depends(roles("admin"))]


def iso(dt: datetime | None) -> str | None:
    return dt.astimezone(timezone.utc).isoformat() if dt else None
