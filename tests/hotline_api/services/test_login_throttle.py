"""Login throttling (issue 11, item 8): a per-address throttle checked before any argon2 hash, and
a per-user-name lockout that only holds for the addresses that failed (an attacker cannot lock the
real admin out from everywhere)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from hotline_api.models.governance import AuditEntry
from hotline_api.services import auth
import tests.hotline_api.services.govtest_util  # noqa: F401

PW = "correct horse battery"
ATTACKER, ADMIN_DESK = "198.51.100.7", "203.0.113.5"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def _admin(db):
    with db() as s:
        auth.create_user(s, "admin", "admin", PW)
        s.commit()


def count_argon2(monkeypatch, at_most: int) -> list:
    """Counts the real login path's password hashes; fails as soon as there are more than ``at_most``."""
    calls: list = []
    real = auth.verify_password

    def counting(password_hash, password):
        calls.append(1)
        if len(calls) > at_most:
            raise AssertionError(f"argon2 verify called {len(calls)} times (at most {at_most} expected)")
        return real(password_hash, password)

    monkeypatch.setattr(auth, "verify_password", counting)
    return calls


def test_one_address_is_throttled_before_argon2_and_the_admin_logs_in_elsewhere(settings, db, monkeypatch):
    _admin(db)
    limit = auth.AuthConfig.from_settings(settings).ip_max_failures
    calls = count_argon2(monkeypatch, limit)
    throttled = 0
    for i in range(1000):
        with db() as s:
            with pytest.raises(auth.AuthError) as e:
                auth.authenticate(s, "admin", f"guess {i:04d} wrong", ip=ATTACKER, now=T0 + timedelta(milliseconds=i))
            if isinstance(e.value, auth.Throttled):
                throttled += 1
                assert str(e.value) == auth.THROTTLED_MESSAGE and e.value.retry_after > 0
    assert len(calls) <= limit and throttled >= 1000 - limit
    with db() as s:  # even the right password is not hashed from the throttled address
        with pytest.raises(auth.Throttled):
            auth.authenticate(s, "admin", PW, ip=ATTACKER, now=T0 + timedelta(minutes=1))
    n = len(calls)
    with db() as s:  # the real admin, from another address, right away
        assert auth.authenticate(s, "admin", PW, ip=ADMIN_DESK, now=T0 + timedelta(minutes=1)).username == "admin"
    assert len(calls) == n + 1
    with db() as s:  # the flood did not flood the audit log: one throttle entry for the address
        acts = dict(s.execute(select(AuditEntry.action, func.count()).group_by(AuditEntry.action)).all())
    assert acts.get("auth.login_throttled") == 1 and sum(acts.values()) < 2 * limit
    monkeypatch.undo()
    with db() as s:  # the throttle and the lockout are time-based
        later = T0 + timedelta(minutes=31)
        assert auth.authenticate(s, "admin", PW, ip=ATTACKER, now=later).username == "admin"


def test_user_name_lockout_holds_only_for_the_addresses_that_failed(settings, db):
    _admin(db)
    for name in ("admin", "ghost"):  # unknown names lock the same way
        for i in range(5):
            with db() as s:
                with pytest.raises(auth.AuthError) as e:
                    auth.authenticate(s, name, "bad password", ip=ATTACKER, now=T0 + timedelta(seconds=i))
                assert not isinstance(e.value, (auth.LockedOut, auth.Throttled))
        with db() as s:
            with pytest.raises(auth.LockedOut):
                auth.authenticate(s, name, PW, ip=ATTACKER, now=T0 + timedelta(minutes=1))
    with db() as s:
        assert auth.authenticate(s, "admin", PW, ip=ADMIN_DESK, now=T0 + timedelta(minutes=1)).username == "admin"
    with db() as s:  # still locked for the attacker's address
        with pytest.raises(auth.LockedOut):
            auth.authenticate(s, "admin", PW, ip=ATTACKER, now=T0 + timedelta(minutes=2))
