"""Users and authentication: argon2 password hashes, login throttling and lockout, bearer tokens,
cookie sessions with CSRF tokens, the first admin's one-time password.

A login is refused, in this order and before any argon2 hash (64 MiB each):

* per address (``Throttled``): ``login_ip_max_failures`` failed attempts from the address within the
  failure window, whatever the user names (one query on ``login_attempts``; throttled attempts are
  not recorded, and audited once per address and window);
* per user name *and* address (``LockedOut``): the last ``login_max_failures`` attempts for the name
  from this address all failed within the window. Another address is not locked, so guessing at
  ``admin`` from one place does not lock the real admin out everywhere.

Settings read (``core.config.Settings``, with these defaults when absent):
``login_max_failures`` (5), ``login_failure_window_minutes`` (15), ``login_lockout_minutes`` (15),
``login_ip_max_failures`` (30), ``token_ttl_minutes`` (480), ``session_ttl_minutes`` (480),
``password_min_length`` (10).

A password chosen by someone else (an admin creating or resetting a user) must be changed by its
owner at the next login (``must_change_password``), as the generated one-time passwords are.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hotline_api.models.governance import PERMISSIONS, ROLES, AuditEntry, LoginAttempt, User, WebSession
from hotline_api.services import audit
from recordings.keys import write_secret_file

LOGIN_FAILED_MESSAGE = "用户名或密码错误"
LOCKED_MESSAGE = "登录失败次数过多，请稍后再试"
THROTTLED_MESSAGE = "该网络地址登录失败次数过多，请稍后再试"
_USERNAME = re.compile(r"^[A-Za-z0-9_.\-]{2,64}$")

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("not a real password: equalizes timing for unknown users")


class AuthError(Exception):
    """Login refused. The message never says whether the user exists."""


class LockedOut(AuthError):
    pass


class Throttled(AuthError):
    """Too many failed logins from this address (API: 429 with ``Retry-After``)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TokenInvalid(Exception):
    """Forged, malformed, expired or revoked token: 401."""


class UserError(ValueError):
    """Bad input for a user operation (clear message, nothing changed)."""


@dataclass(frozen=True)
class AuthConfig:
    max_failures: int = 5
    failure_window: timedelta = timedelta(minutes=15)
    lockout: timedelta = timedelta(minutes=15)
    token_ttl: timedelta = timedelta(minutes=480)
    session_ttl: timedelta = timedelta(minutes=480)
    password_min_length: int = 10
    ip_max_failures: int = 30  # failed attempts per address within failure_window

    @classmethod
    def from_settings(cls, settings: Any | None) -> "AuthConfig":
        g = (lambda n, d: getattr(settings, n, d)) if settings is not None else (lambda n, d: d)
        return cls(
            max_failures=int(g("login_max_failures", 5)),
            failure_window=timedelta(minutes=float(g("login_failure_window_minutes", 15))),
            lockout=timedelta(minutes=float(g("login_lockout_minutes", 15))),
            token_ttl=timedelta(minutes=float(g("token_ttl_minutes", 480))),
            session_ttl=timedelta(minutes=float(g("session_ttl_minutes", 480))),
            password_min_length=int(g("password_min_length", 10)),
            ip_max_failures=max(1, int(g("login_ip_max_failures", 30))),
        )


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(timezone.utc)).astimezone(timezone.utc)


# ----------------------------------------------------------------------------------- passwords
def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    return secrets.token_urlsafe(12)


def check_password_policy(password: str, cfg: AuthConfig) -> None:
    if len(password) < cfg.password_min_length:
        raise UserError(f"密码至少需要 {cfg.password_min_length} 个字符")
    if password.strip() != password or not password.strip():
        raise UserError("密码不能以空格开头或结尾")


# --------------------------------------------------------------------------------------- users
def create_user(session: Session, username: str, role: str, password: str | None = None, *, unit: str | None = None,
                permissions: Iterable[str] = (), display_name: str | None = None, must_change_password: bool = False,
                actor: Any = None, settings: Any = None, ip: str | None = None) -> tuple[User, str | None]:
    """Create a user. Without ``password`` a one-time password is generated and returned (and the
    user must change it at first login)."""
    cfg = AuthConfig.from_settings(settings)
    if not _USERNAME.match(username or ""):
        raise UserError("用户名只能包含字母、数字、下划线、点和连字符（2-64 个字符）")
    if role not in ROLES:
        raise UserError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
    perms = set(permissions)
    unknown = perms - set(PERMISSIONS)
    if unknown:
        raise UserError(f"unknown permission(s): {', '.join(sorted(unknown))} (known: {', '.join(PERMISSIONS)})")
    if session.execute(select(User.id).where(func.lower(User.username) == username.lower())).first():
        raise UserError(f"user {username!r} already exists")
    generated = None
    if password is None:
        password = generated = generate_password()
        must_change_password = True
    else:
        check_password_policy(password, cfg)
        if actor is not None:  # chosen by an admin, not by the user: changed at first login
            must_change_password = True
    user = User(username=username, role=role, unit=unit, display_name=display_name,
                password_hash=hash_password(password), must_change_password=must_change_password,
                password_changed_at=datetime.now(timezone.utc))
    user.permissions = perms
    session.add(user)
    session.flush()
    audit.record(session, "user.create", actor=actor, actor_name=None if actor else "system", object_type="user",
                 object_id=user.id, ip=ip, detail={"username": username, "role": role, "unit": unit,
                                                   "permissions": sorted(perms)})
    return user, generated


def bootstrap_admin(session: Session, username: str = "admin", settings: Any = None) -> tuple[User, str]:
    """The first admin, with a printed one-time password that must be changed at first login."""
    if session.execute(select(User.id).where(User.role == "admin")).first():
        raise UserError("an admin already exists; use `hotline users add` (or reset a password as admin)")
    user, pw = create_user(session, username, "admin", None, settings=settings)
    return user, pw  # type: ignore[return-value]


def set_password(session: Session, user: User, new_password: str, *, actor: Any = None, settings: Any = None,
                 ip: str | None = None, one_time: bool = False, must_change: bool | None = None,
                 actor_name: str | None = None) -> None:
    """Set ``user``'s password; every earlier token and session of the user ends. ``actor``: who
    sets it (None: the user); ``actor_name`` without ``actor``: a non-user setter such as the CLI.
    The user must change it at next login when it is a one-time password or was set by someone else
    (``must_change`` overrides only upwards: a password set by another is always marked)."""
    cfg = AuthConfig.from_settings(settings)
    if not one_time:
        check_password_policy(new_password, cfg)
    by_self = actor_name is None and (actor is None or getattr(actor, "id", None) == user.id)
    user.password_hash = hash_password(new_password)
    user.must_change_password = bool(one_time or must_change or not by_self)
    user.password_changed_at = datetime.now(timezone.utc)
    end_all_sessions(session, user)
    audit.record(session, "user.password", actor=actor if actor is not None else (None if actor_name else user),
                 actor_name=actor_name, object_type="user", object_id=user.id, ip=ip,
                 detail={"by_self": by_self, "one_time": one_time, "must_change": bool(user.must_change_password)})


def end_all_sessions(session: Session, user: User, now: datetime | None = None) -> int:
    """End every bearer token (``token_version`` bumped: tokens are signed, not stored) and every
    cookie session (``web_sessions``) of ``user``. Returns the number of sessions ended."""
    now = _now(now)
    user.token_version = (user.token_version or 0) + 1
    n = 0
    for ws in session.execute(select(WebSession).where(WebSession.user_id == user.id,
                                                       WebSession.revoked_at.is_(None))).scalars():
        ws.revoked_at = now
        n += 1
    return n


def change_password(session: Session, user: User, old_password: str, new_password: str, *, settings: Any = None,
                    ip: str | None = None) -> None:
    if not verify_password(user.password_hash, old_password):
        raise UserError("原密码不正确")
    if old_password == new_password:
        raise UserError("新密码不能与原密码相同")
    set_password(session, user, new_password, settings=settings, ip=ip)


# -------------------------------------------------------------------------------------- login
_ANY_ADDRESS: Any = object()


def is_locked_out(session: Session, username: str, now: datetime | None = None, settings: Any = None,
                  ip: Any = _ANY_ADDRESS) -> bool:
    """Locked when the last ``max_failures`` attempts for this name (existing or not) from address
    ``ip`` all failed, within the failure window, and the last of them is less than ``lockout`` ago.
    ``ip`` None is the attempts without an address (not from the network); omitted: any address."""
    cfg = AuthConfig.from_settings(settings)
    now = _now(now)
    stmt = (select(LoginAttempt.success, LoginAttempt.at)
            .where(LoginAttempt.username == username.lower(), LoginAttempt.at >= now - cfg.failure_window - cfg.lockout))
    if ip is not _ANY_ADDRESS:
        stmt = stmt.where(LoginAttempt.ip.is_(None) if ip is None else LoginAttempt.ip == ip)
    rows = session.execute(stmt.order_by(LoginAttempt.at.desc(), LoginAttempt.id.desc()).limit(cfg.max_failures)).all()
    if len(rows) < cfg.max_failures or any(ok for ok, _ in rows):
        return False
    newest, oldest = rows[0][1], rows[-1][1]
    return newest - oldest <= cfg.failure_window and now - newest < cfg.lockout


def address_throttle(session: Session, ip: str | None, now: datetime | None = None, settings: Any = None) -> int:
    """Seconds until address ``ip`` may try again (0: not throttled): throttled while it has
    ``ip_max_failures`` failed attempts within the failure window. One query, no hash.
    (An index on ``login_attempts (ip, at)`` keeps it cheap on a large table.)"""
    if not ip:
        return 0
    cfg = AuthConfig.from_settings(settings)
    now = _now(now)
    times = session.execute(select(LoginAttempt.at)
                            .where(LoginAttempt.ip == ip, LoginAttempt.success.is_(False),
                                   LoginAttempt.at >= now - cfg.failure_window)
                            .order_by(LoginAttempt.at.desc()).limit(cfg.ip_max_failures)).scalars().all()
    if len(times) < cfg.ip_max_failures:
        return 0
    oldest = _now(times[-1])  # the count falls below the limit when this one leaves the window
    return max(1, math.ceil((oldest + cfg.failure_window - now).total_seconds()))


def _audit_throttled(session: Session, name: str, ip: str, now: datetime, settings: Any) -> None:
    """Audit the throttle once per address and window (not every refused attempt of a flood)."""
    cfg = AuthConfig.from_settings(settings)
    seen = session.execute(select(AuditEntry.seq).where(AuditEntry.action == "auth.login_throttled",
                                                        AuditEntry.ip == ip,
                                                        AuditEntry.at >= now - cfg.failure_window).limit(1)).first()
    if seen is None:
        audit.record(session, "auth.login_throttled", actor_name=name or None, object_type="address", ip=ip, at=now,
                     detail={"failures": cfg.ip_max_failures, "window_minutes": cfg.failure_window.total_seconds() / 60})
        session.commit()
    else:
        session.rollback()  # end the read transaction


def authenticate(session: Session, username: str, password: str, *, ip: str | None = None,
                 now: datetime | None = None, settings: Any = None) -> User:
    """Check a login, record the attempt, audit it, and COMMIT (so failures count even though the
    caller then answers with an error). Raises ``AuthError``/``LockedOut``/``Throttled`` with
    generic messages. Throttled and locked-out attempts are refused before any password hash."""
    now = _now(now)
    name = (username or "").strip()[:64]
    key = name.lower()
    wait = address_throttle(session, ip, now, settings)
    if wait:
        _audit_throttled(session, name, ip, now, settings)  # type: ignore[arg-type]
        raise Throttled(THROTTLED_MESSAGE, wait)
    user = session.execute(select(User).where(func.lower(User.username) == key)).scalar_one_or_none() if name else None
    if is_locked_out(session, key, now, settings, ip=ip):
        # the same answer for existing and unknown names, so no hash is needed to hide which it is
        session.add(LoginAttempt(username=key, user_id=user.id if user else None, ip=ip, success=False, at=now))
        audit.record(session, "auth.login_locked", actor_name=name or None, object_type="user",
                     object_id=user.id if user else None, ip=ip, at=now)
        session.commit()
        raise LockedOut(LOCKED_MESSAGE)
    ok = False
    if user is not None and user.active:
        ok = verify_password(user.password_hash, password or "")
    else:
        verify_password(_DUMMY_HASH, password or "")
    session.add(LoginAttempt(username=key, user_id=user.id if user else None, ip=ip, success=ok, at=now))
    if not ok:
        audit.record(session, "auth.login_failed", actor_name=name or None, object_type="user",
                     object_id=user.id if user else None, ip=ip, at=now,
                     detail={"known_user": user is not None})
        session.commit()
        raise AuthError(LOGIN_FAILED_MESSAGE)
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = now
    audit.record(session, "auth.login", actor=user, object_type="user", object_id=user.id, ip=ip, at=now,
                 detail={"must_change_password": bool(user.must_change_password)})
    session.commit()
    return user


# ------------------------------------------------------------------------------------- tokens
def signing_key(settings: Any) -> bytes:
    """``settings.secret_key``, or a random key generated once into ``data_dir/keys/secret.key``."""
    if getattr(settings, "secret_key", ""):
        return hashlib.sha256(b"hotline token key|" + settings.secret_key.encode("utf-8")).digest()
    path = settings.keys_dir / "secret.key"
    if not path.exists():
        try:
            write_secret_file(path, base64.b64encode(secrets.token_bytes(32)).decode("ascii") + "\n", exclusive=True)
        except FileExistsError:
            pass
    return base64.b64decode(path.read_text(encoding="ascii").strip())


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).decode("ascii").rstrip("=")


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def issue_token(settings: Any, user: User, now: datetime | None = None, ttl: timedelta | None = None) -> str:
    now = _now(now)
    ttl = ttl or AuthConfig.from_settings(settings).token_ttl
    payload = {"sub": user.id, "ver": user.token_version or 0, "iat": int(now.timestamp()),
               "exp": int((now + ttl).timestamp()), "typ": "access"}
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8"))
    sig = _b64(hmac.new(signing_key(settings), body.encode("ascii"), hashlib.sha256).digest())
    return f"{body}.{sig}"


def decode_token(settings: Any, token: str, now: datetime | None = None) -> dict[str, Any]:
    if not token or len(token) > 2048 or token.count(".") != 1:
        raise TokenInvalid("malformed token")
    body, sig = token.split(".")
    expected = _b64(hmac.new(signing_key(settings), body.encode("ascii", "replace"), hashlib.sha256).digest())
    if not hmac.compare_digest(expected, sig):
        raise TokenInvalid("bad token signature")
    try:
        payload = json.loads(_unb64(body))
    except ValueError:
        raise TokenInvalid("malformed token") from None
    if not isinstance(payload, dict) or payload.get("typ") != "access":
        raise TokenInvalid("not an access token")
    if not isinstance(payload.get("exp"), int) or _now(now).timestamp() >= payload["exp"]:
        raise TokenInvalid("token expired")
    return payload


def user_from_token(session: Session, settings: Any, token: str, now: datetime | None = None) -> User:
    payload = decode_token(settings, token, now)
    user = session.get(User, str(payload.get("sub")))
    if user is None or not user.active or payload.get("ver") != (user.token_version or 0):
        raise TokenInvalid("token revoked")
    return user


# ----------------------------------------------------------------------------- cookie sessions
def _session_id(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_web_session(session: Session, settings: Any, user: User, ip: str | None = None,
                       now: datetime | None = None) -> tuple[str, str]:
    """Returns (session token for the HttpOnly cookie, CSRF token for the double-submit cookie)."""
    now = _now(now)
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    session.add(WebSession(id=_session_id(token), user_id=user.id, csrf_token=csrf, ip=ip, created_at=now,
                           expires_at=now + AuthConfig.from_settings(settings).session_ttl))
    session.flush()
    return token, csrf


def web_session(session: Session, token: str, now: datetime | None = None) -> tuple[User, WebSession]:
    if not token or len(token) > 256:
        raise TokenInvalid("no session")
    ws = session.get(WebSession, _session_id(token))
    if ws is None or ws.revoked_at is not None or _now(now) >= ws.expires_at:
        raise TokenInvalid("session expired")
    user = session.get(User, ws.user_id)
    if user is None or not user.active:
        raise TokenInvalid("session expired")
    return user, ws


def end_web_session(session: Session, token: str, now: datetime | None = None) -> None:
    ws = session.get(WebSession, _session_id(token)) if token else None
    if ws is not None and ws.revoked_at is None:
        ws.revoked_at = _now(now)


def check_csrf(ws: WebSession, header_value: str | None, cookie_value: str | None) -> bool:
    if not header_value or not cookie_value:
        return False
    return hmac.compare_digest(header_value, cookie_value) and hmac.compare_digest(header_value, ws.csrf_token)


# ------------------------------------------------------------------------------ content access
def content_access(session: Session, user: User, recording_id: str, now: datetime | None = None,
                   settings: Any = None) -> bool:
    """May ``user`` see this recording's content (audio, transcript, draft)? Least privilege:

    * operator: the calls they handled, for ``operator_view_hours`` (default 24) after the call ended;
    * recording_manager: what is assigned to them;
    * supervisor: everything in their unit (the unit of the assigned manager or of the operator;
      a supervisor without a unit sees everything);
    * auditor, admin: never content.

    The API answers 404 when this is False (no enumeration)."""
    from hotline_api.models.calls import Call, Recording
    from hotline_api.models.governance import ReviewAssignment

    if user is None or not user.active or user.role in ("auditor", "admin"):
        return False
    rec = session.get(Recording, recording_id) if isinstance(recording_id, str) and len(recording_id) <= 64 else None
    if rec is None:
        return False
    call = session.get(Call, rec.call_id) if rec.call_id else None
    assignment = session.execute(select(ReviewAssignment).where(ReviewAssignment.recording_id == rec.id)).scalar_one_or_none()
    if user.role == "operator":
        if call is None or call.operator_id != user.id:
            return False
        hours = float(getattr(settings, "operator_view_hours", 24)) if settings is not None else 24.0
        ended = call.ended_at or call.answered_at or call.created_at
        return ended is not None and _now(now) <= ended + timedelta(hours=hours)
    if user.role == "recording_manager":
        return assignment is not None and assignment.manager_id == user.id
    if user.role == "supervisor":
        if not user.unit:
            return True
        units = set()
        for uid in (assignment.manager_id if assignment else None, call.operator_id if call else None):
            if uid:
                other = session.get(User, uid)
                if other is not None and other.unit:
                    units.add(other.unit)
        return user.unit in units
    return False
