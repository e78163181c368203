"""Users and authentication: argon2, lockout (time-based, same for unknown names), bearer tokens
(forged/expired -> 401), cookie sessions with CSRF, every login audited, one-time admin password."""
from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from hotline_api.api.deps import CurrentUser, require_permission, require_role
from hotline_api.api.routes import auth as auth_routes
from hotline_api.cli import main
from hotline_api.models.governance import LoginAttempt, User
from hotline_api.services import audit, auth
import tests.hotline_api.services.govtest_util  # noqa: F401

PW = "correct horse battery"


def _user(db, name="mgr1", role="recording_manager", **kw):
    with db() as s:
        u, _ = auth.create_user(s, name, role, PW, **kw)
        s.commit()
        return u


def _actions(db):
    with db() as s:
        return [(e["action"], e["actor_name"], e["ip"]) for e in audit.iter_entries(s)]


def test_password_hashing():
    h = auth.hash_password(PW)
    assert h.startswith("$argon2id$") and PW not in h
    assert auth.verify_password(h, PW) and not auth.verify_password(h, PW + "x")
    assert not auth.verify_password("garbage", PW)
    assert auth.hash_password(PW) != h  # salted


def test_create_user_validates(settings, db):
    with db() as s:
        for args in [("../x", "operator"), ("ok_name", "root"), ("a", "operator")]:
            with pytest.raises(auth.UserError):
                auth.create_user(s, args[0], args[1], PW)
        with pytest.raises(auth.UserError, match="至少"):
            auth.create_user(s, "shorty", "operator", "short")
        with pytest.raises(auth.UserError, match="permission"):
            auth.create_user(s, "p1", "operator", PW, permissions=["everything"])
        u, gen = auth.create_user(s, "op1", "operator", None)
        assert gen and u.must_change_password and auth.verify_password(u.password_hash, gen)
        s.commit()
        with pytest.raises(auth.UserError, match="exists"):
            auth.create_user(s, "OP1", "operator", PW)


def test_login_success_and_failures_audited_without_revealing_existence(settings, db):
    _user(db)
    with db() as s:
        u = auth.authenticate(s, "mgr1", PW, ip="10.1.2.3")
        assert u.username == "mgr1" and u.last_login_at is not None
    messages = []
    for name, pw in (("mgr1", "wrong password!"), ("nobody", "wrong password!")):
        with db() as s:
            with pytest.raises(auth.AuthError) as e:
                auth.authenticate(s, name, pw, ip="10.1.2.3")
            messages.append(str(e.value))
    assert messages[0] == messages[1] == auth.LOGIN_FAILED_MESSAGE
    acts = _actions(db)
    assert ("auth.login", "mgr1", "10.1.2.3") in acts
    assert ("auth.login_failed", "mgr1", "10.1.2.3") in acts
    assert ("auth.login_failed", "nobody", "10.1.2.3") in acts


def test_lockout_after_repeated_failures_is_time_based(settings, db):
    _user(db)
    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
    for name in ("mgr1", "ghost"):
        for i in range(5):
            with db() as s:
                with pytest.raises(auth.AuthError) as e:
                    auth.authenticate(s, name, "bad password", now=t0 + timedelta(seconds=i))
                assert not isinstance(e.value, auth.LockedOut)
        with db() as s:  # the right password is refused while locked; unknown names lock the same way
            with pytest.raises(auth.LockedOut) as e:
                auth.authenticate(s, name, PW, now=t0 + timedelta(minutes=5))
            assert str(e.value) == auth.LOCKED_MESSAGE
    with db() as s:
        assert auth.authenticate(s, "mgr1", PW, now=t0 + timedelta(minutes=21)).username == "mgr1"
        assert s.execute(select(LoginAttempt).where(LoginAttempt.username == "mgr1")).scalars().all()[-1].success
    assert ("auth.login_locked", "mgr1", None) in _actions(db)


def test_tokens_forged_expired_revoked(settings, db):
    u = _user(db)
    now = datetime.now(timezone.utc)
    tok = auth.issue_token(settings, u, now=now)
    with db() as s:
        assert auth.user_from_token(s, settings, tok).id == u.id
        body, sig = tok.split(".")
        forged_body = auth._b64(auth._unb64(body).replace(u.id.encode(), b"0" * 36))
        for bad in (f"{forged_body}.{sig}", f"{body}.{sig[:-2]}AA", "x", "", "a.b.c", tok + "x"):
            with pytest.raises(auth.TokenInvalid):
                auth.user_from_token(s, settings, bad)
        with pytest.raises(auth.TokenInvalid, match="expired"):
            auth.user_from_token(s, settings, auth.issue_token(settings, u, now=now - timedelta(days=1)))
        other = settings.replace(secret_key="another secret")
        with pytest.raises(auth.TokenInvalid):
            auth.user_from_token(s, other, tok)
        s.get(User, u.id).token_version += 1
        with pytest.raises(auth.TokenInvalid, match="revoked"):
            auth.user_from_token(s, settings, tok)
    assert (settings.keys_dir / "secret.key").stat().st_mode & 0o777 == 0o600


@pytest.fixture
def client(settings, db):
    app = FastAPI()
    app.include_router(auth_routes.router, prefix="/api")

    @app.get("/api/_probe")
    def probe(user: CurrentUser):
        return {"user": user.username}

    @app.post("/api/_probe")
    def probe_post(user: CurrentUser):
        return {"user": user.username}

    @app.get("/api/_sup")
    def sup(user: Annotated[User, Depends(require_role("supervisor"))]):
        return {"ok": True}

    @app.get("/api/_identity")
    def ident(user: Annotated[User, Depends(require_permission("identity"))]):
        return {"ok": True}

    with TestClient(app, base_url="https://testserver") as c:
        yield c


def test_api_token_and_bearer(client, settings, db):
    _user(db)
    r = client.post("/api/auth/token", data={"username": "mgr1", "password": PW})
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "bearer" and body["access_token"]
    h = {"Authorization": f"Bearer {body['access_token']}"}
    assert client.get("/api/_probe", headers=h).json() == {"user": "mgr1"}
    assert client.post("/api/_probe", headers=h).status_code == 200  # bearer: no CSRF needed
    for bad in ("Bearer abc.def", "Bearer " + body["access_token"][:-3] + "xyz", "Basic Zm9vOmJhcg==", "Bearer"):
        assert client.get("/api/_probe", headers={"Authorization": bad}).status_code == 401
    with db() as s:
        u = s.execute(select(User)).scalar_one()
        expired = auth.issue_token(settings, u, now=datetime.now(timezone.utc) - timedelta(hours=9))
    assert client.get("/api/_probe", headers={"Authorization": f"Bearer {expired}"}).status_code == 401
    assert client.get("/api/_probe").status_code == 401
    assert client.get("/api/_sup", headers=h).status_code == 404  # wrong role: 404, no enumeration
    assert client.get("/api/_identity", headers=h).status_code == 404
    r1 = client.post("/api/auth/token", data={"username": "mgr1", "password": "nope nope nope"})
    r2 = client.post("/api/auth/token", data={"username": "nobody", "password": "nope nope nope"})
    assert r1.status_code == r2.status_code == 401 and r1.json() == r2.json()


def test_cookie_session_with_csrf(client, db):
    _user(db, "sup1", "supervisor", permissions=["identity"])
    r = client.post("/api/auth/login", data={"username": "sup1", "password": PW})
    assert r.status_code == 200
    csrf = r.json()["csrf_token"]
    set_cookie = r.headers.get_list("set-cookie")
    sess = [c for c in set_cookie if c.startswith("hotline_session=")][0].lower()
    assert "httponly" in sess and "secure" in sess and "samesite=strict" in sess
    assert client.get("/api/_probe").json() == {"user": "sup1"}
    assert client.get("/api/_sup").status_code == 200 and client.get("/api/_identity").status_code == 200
    assert client.post("/api/_probe").status_code == 403  # no CSRF header
    assert client.post("/api/_probe", headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert client.post("/api/_probe", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert client.post("/api/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
    client.cookies.clear()
    assert client.get("/api/_probe").status_code == 401


def test_bootstrap_admin_one_time_password_must_be_changed(client, settings, db, capsys):
    assert main(["users", "bootstrap-admin"]) == 0
    out = capsys.readouterr().out
    otp = [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("one-time password")][0]
    assert main(["users", "bootstrap-admin"]) == 2  # only once
    tok = client.post("/api/auth/token", data={"username": "admin", "password": otp}).json()
    assert tok["must_change_password"] is True
    h = {"Authorization": f"Bearer {tok['access_token']}"}
    r = client.get("/api/_probe", headers=h)
    assert r.status_code == 403 and r.json()["detail"] == "password_change_required"
    assert client.get("/api/auth/me", headers=h).json()["must_change_password"] is True
    bad = client.post("/api/auth/password", headers=h, data={"old_password": otp, "new_password": "short"})
    assert bad.status_code == 400
    ok = client.post("/api/auth/password", headers=h, data={"old_password": otp, "new_password": "a much longer secret"})
    assert ok.status_code == 200
    assert client.get("/api/_probe", headers=h).status_code == 401  # old token revoked
    tok2 = client.post("/api/auth/token", data={"username": "admin", "password": "a much longer secret"}).json()
    assert client.get("/api/_probe", headers={"Authorization": f"Bearer {tok2['access_token']}"}).status_code == 200


def test_cli_users_add(settings, db, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO(PW + "\n"))
    assert main(["users", "add", "op7", "--role", "operator", "--password-stdin", "--unit", "某某区纪委"]) == 0
    assert main(["users", "add", "op8", "--role", "operator"]) == 0
    out = capsys.readouterr().out
    assert "one-time password" in out
    assert main(["users", "add", "op7", "--role", "operator"]) == 2
    with db() as s:
        u = s.execute(select(User).where(User.username == "op7")).scalar_one()
        assert auth.verify_password(u.password_hash, PW) and not u.must_change_password and u.unit == "某某区纪委"
        assert s.execute(select(User).where(User.username == "op8")).scalar_one().must_change_password
    assert PW not in out
