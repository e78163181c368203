"""Helpers shared by the content routes (no ``router`` here, so the app factory skips it):
the crypto context of the app, read-audit in its own short transaction, role gates, and the
translation of "not visible" into the one 404 answer, and the bounded input types every route
shares (``Offset``, ``Instant``, ``Month``): out-of-range input is answered 422 with a message,
never passed on to the database or to datetime arithmetic that overflows (issue 11)."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Annotated, Any, Iterator

from fastapi import Depends, HTTPException, Query, Request, status
from pydantic import AfterValidator
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


# ------------------------------------------------------------------------------ bounded input
OFFSET_MAX = 10_000_000
"""The largest ``offset`` of any listing (far below SQLite's 64-bit integers)."""

Offset = Annotated[int, Query(ge=0, le=OFFSET_MAX, description=f"rows to skip (0..{OFFSET_MAX})")]
"""The one ``offset`` query parameter of every paged listing: ``offset: Offset = 0``."""

MIN_YEAR, MAX_YEAR = 2000, 2100
"""Dates and instants the API accepts. An instant of these years can be moved to any time zone
(UTC offsets stay under a day) without leaving ``datetime``'s years 1..9999."""


def _instant_in_range(v: datetime | None) -> datetime | None:
    if v is not None and not MIN_YEAR <= v.year <= MAX_YEAR:
        raise ValueError(f"must be between the years {MIN_YEAR} and {MAX_YEAR}")
    return v


def _month_in_range(v: str) -> str:
    year, month = (int(x) for x in v.split("-"))
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise ValueError(f"month must be YYYY-MM with a year between {MIN_YEAR} and {MAX_YEAR}")
    if not 1 <= month <= 12:
        raise ValueError("month must be YYYY-MM with a month 01..12")
    return v


Instant = Annotated[datetime | None, Query(description=f"ISO 8601 time with its UTC offset, years {MIN_YEAR}..{MAX_YEAR}",
                                    examples=["2026-03-01T00:00:00+08:00"]),
                    AfterValidator(_instant_in_range)]
"""An optional date-time query parameter (``at: Instant = None``) of years MIN_YEAR..MAX_YEAR (as
written, before any conversion). Whether a zone is required stays with the route (``need_zone``)."""

Month = Annotated[str, Query(pattern=r"^\d{4}-\d{2}$", description=f"YYYY-MM, years {MIN_YEAR}..{MAX_YEAR}",
                             examples=["2026-03"]),
                  AfterValidator(_month_in_range)]
"""A ``YYYY-MM`` query parameter of years MIN_YEAR..MAX_YEAR, month 01..12."""


def month_parts(month: str) -> tuple[int, int]:
    y, m = (int(x) for x in month.split("-"))
    return y, m


def need_zone(name: str, v: datetime | None, example: str = "2026-03-01T00:00:00+08:00") -> None:
    """A naive instant is ambiguous: 400 with a message saying what to send."""
    if v is not None and (v.tzinfo is None or v.utcoffset() is None):
        raise bad_request(f"{name} needs a time zone (e.g. {example})")


def iso(dt: datetime | None) -> str | None:
    return dt.astimezone(timezone.utc).isoformat() if dt else None
