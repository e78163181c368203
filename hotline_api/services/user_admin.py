"""Admin changes to users (role, unit, permissions, active, password reset or set), each audited with
the old and new values. Creation is ``services.auth.create_user``. A password an admin gives a user
(generated or chosen) must be changed by the user at the next login."""
from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hotline_api.models.governance import PERMISSIONS, ROLES, User
from hotline_api.services import audit, auth

EDITABLE = ("role", "unit", "permissions", "active", "display_name")


def update_user(session: Session, actor: User, user: User, changes: dict[str, Any], *, ip: str | None = None) -> User:
    unknown = set(changes) - set(EDITABLE)
    if unknown:
        raise auth.UserError(f"unknown field(s): {', '.join(sorted(unknown))} (editable: {', '.join(EDITABLE)})")
    old: dict[str, Any] = {}
    new: dict[str, Any] = {}
    if "role" in changes:
        if changes["role"] not in ROLES:
            raise auth.UserError(f"unknown role {changes['role']!r} (roles: {', '.join(ROLES)})")
        old["role"], new["role"] = user.role, changes["role"]
    if "permissions" in changes:
        perms = changes["permissions"]
        if not isinstance(perms, list) or not all(isinstance(p, str) for p in perms):
            raise auth.UserError("permissions must be a list")
        bad = set(perms) - set(PERMISSIONS)
        if bad:
            raise auth.UserError(f"unknown permission(s): {', '.join(sorted(bad))} (known: {', '.join(PERMISSIONS)})")
        old["permissions"], new["permissions"] = sorted(user.permissions), sorted(set(perms))
    for key in ("unit", "display_name"):
        if key in changes:
            v = changes[key]
            if v is not None and (not isinstance(v, str) or len(v) > 128):
                raise auth.UserError(f"{key} must be text (128 characters at most)")
            old[key], new[key] = getattr(user, key), (v.strip() or None) if isinstance(v, str) else None
    if "active" in changes:
        if not isinstance(changes["active"], bool):
            raise auth.UserError("active must be true or false")
        if not changes["active"] and user.id == actor.id:
            raise auth.UserError("an admin cannot deactivate themselves")
        old["active"], new["active"] = bool(user.active), changes["active"]
    if new.get("role") not in (None, "admin") or new.get("active") is False:
        if user.role == "admin" and _other_active_admins(session, user) == 0:
            raise auth.UserError("the last active admin cannot lose the admin role or be deactivated")
    for k, v in new.items():
        if k == "permissions":
            user.permissions = v
        else:
            setattr(user, k, v)
    if any(k in new for k in ("role", "permissions", "active", "unit")):
        # privileges changed: existing tokens and sessions end
        auth.end_all_sessions(session, user)
    audit.record(session, "user.update", actor=actor, object_type="user", object_id=user.id, ip=ip,
                 detail={"username": user.username, "old": old, "new": new})
    return user


def _other_active_admins(session: Session, user: User) -> int:
    return session.execute(select(func.count()).select_from(User).where(
        User.role == "admin", User.active.is_(True), User.id != user.id)).scalar() or 0


def reset_password(session: Session, actor: User, user: User, *, ip: str | None = None, settings: Any = None) -> str:
    """A new one-time password (shown once to the admin); the user must change it at next login."""
    pw = auth.generate_password()
    auth.set_password(session, user, pw, actor=actor, settings=settings, ip=ip, one_time=True)
    return pw


def set_password(session: Session, actor: User, user: User, password: str, *, ip: str | None = None,
                 settings: Any = None) -> None:
    """A password chosen by the admin (password policy applies); the user must change it at next
    login. Raises ``auth.UserError`` for a password the policy refuses."""
    if not isinstance(password, str):
        raise auth.UserError("password must be text")
    auth.set_password(session, user, password, actor=actor, settings=settings, ip=ip, must_change=True)


def user_json(user: User) -> dict[str, Any]:
    return {"id": user.id, "username": user.username, "display_name": user.display_name, "role": user.role,
            "unit": user.unit, "permissions": sorted(user.permissions), "active": bool(user.active),
            "must_change_password": bool(user.must_change_password),
            "created_at": user.created_at.isoformat() if user.created_at else None,
            "last_login_at": user.last_login_at.isoformat() if user.last_login_at else None}
