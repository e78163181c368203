"""Login hardening over HTTP (issue 11, item 8): a throttled address gets 429 (API) or a Chinese
message (console) without any argon2 hash while the admin logs in from elsewhere; ``logout?all=1``
ends every console session and token; a password an admin sets must be changed by its owner."""
from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient

from hotline_api.cli import main
from hotline_api.models.governance import User
from hotline_api.services import auth
from tests.hotline_api.services.test_login_throttle import count_argon2

PW = "correct horse battery"
ATTACKER, ADMIN_DESK = ("198.51.100.7", 40000), ("203.0.113.5", 40001)


@pytest.fixture
def app(settings, db):
    from hotline_api.app import create_app

    with db() as s:
        for name, role in (("adm", "admin"), ("op1", "operator")):
            auth.create_user(s, name, role, PW)
        s.commit()
    return create_app(settings)


def _client(app, addr=ADMIN_DESK) -> TestClient:
    return TestClient(app, base_url="https://testserver", client=addr, follow_redirects=False)


def _bearer(c: TestClient, name: str, password: str = PW) -> dict:
    r = c.post("/api/auth/token", data={"username": name, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_throttled_address_gets_429_and_the_console_message_without_hashing(app, settings, monkeypatch):
    limit = auth.AuthConfig.from_settings(settings).ip_max_failures
    calls = count_argon2(monkeypatch, limit + 2)  # + the real admin's two logins below
    bad = _client(app, ATTACKER)
    codes = []
    for i in range(limit + 20):  # many names (no single name's lockout): the address throttle stops it
        name = "adm" if i % 10 == 0 else f"guess{i}"
        r = bad.post("/api/auth/token", data={"username": name, "password": f"wrong guess {i}"})
        codes.append(r.status_code)
    assert set(codes[:limit]) == {401} and set(codes[limit:]) == {429}, codes
    assert len(calls) == limit  # no hash once throttled
    assert r.json()["detail"] == auth.THROTTLED_MESSAGE and int(r.headers["retry-after"]) > 0
    r = bad.post("/api/auth/login", data={"username": "adm", "password": PW})
    assert r.status_code == 429
    page = bad.post("/login", data={"username": "adm", "password": PW})
    assert page.status_code == 429 and auth.THROTTLED_MESSAGE in page.text and "登录" in page.text
    assert len(calls) == limit
    good = _client(app, ADMIN_DESK)  # the real admin, from another address
    assert good.get("/api/auth/me", headers=_bearer(good, "adm")).json()["username"] == "adm"
    assert good.post("/login", data={"username": "adm", "password": PW}).status_code == 303
    assert len(calls) == limit + 2


def test_logout_all_ends_every_console_session_and_token(app):
    api = _client(app)
    r = api.post("/api/auth/login", data={"username": "op1", "password": PW})
    assert r.status_code == 200
    csrf = r.json()["csrf_token"]
    console = _client(app)
    assert console.post("/login", data={"username": "op1", "password": PW}).status_code == 303
    assert console.get("/api/auth/me").status_code == 200
    bearer = _bearer(_client(app), "op1")
    assert api.get("/api/auth/me", headers=bearer).status_code == 200
    other = _client(app)  # another user's session is not touched
    assert other.post("/login", data={"username": "adm", "password": PW}).status_code == 303
    assert api.post("/api/auth/logout?all=1", headers={"X-CSRF-Token": csrf}).status_code == 200
    assert console.get("/api/auth/me").status_code == 401  # the console session ended too
    assert console.get("/cases").status_code == 303  # back to the login page
    assert _client(app).get("/api/auth/me", headers=bearer).status_code == 401
    assert other.get("/api/auth/me").status_code == 200
    # the console's own "log out everywhere"
    c1, c2 = _client(app), _client(app)
    for c in (c1, c2):
        assert c.post("/login", data={"username": "op1", "password": PW}).status_code == 303
    assert c1.post("/logout?all=1", data={"csrf_token": c1.cookies.get("hotline_csrf")}).status_code == 303
    assert c2.get("/api/auth/me").status_code == 401


def test_passwords_set_by_an_admin_must_be_changed(app, settings, db, monkeypatch, capsys):
    c = _client(app)
    h = _bearer(c, "adm")
    r = c.post("/api/admin/users", headers=h, json={"username": "op9", "role": "operator", "password": "chosen by adm 1"})
    assert r.status_code == 201 and r.json()["must_change_password"] is True and "one_time_password" not in r.json()
    tok = c.post("/api/auth/token", data={"username": "op9", "password": "chosen by adm 1"}).json()
    assert tok["must_change_password"] is True
    assert c.get("/api/cases", headers={"Authorization": f"Bearer {tok['access_token']}"}).status_code == 403
    # an admin setting a chosen password on an existing user (API)
    with db() as s:
        op1 = s.query(User).filter_by(username="op1").one()
    r = c.post(f"/api/admin/users/{op1.id}/password", headers=h, json={"password": "another chosen 2"})
    assert r.status_code == 200 and "one_time_password" not in r.json() and r.json()["must_change_password"] is True
    tok = c.post("/api/auth/token", data={"username": "op1", "password": "another chosen 2"}).json()
    assert tok["must_change_password"] is True
    assert c.post(f"/api/admin/users/{op1.id}/password", headers=h, json={"password": "short"}).status_code == 400
    # the CLI: `hotline users reset-password NAME --password-stdin`
    monkeypatch.setattr("sys.stdin", io.StringIO("set at the console 3\n"))
    assert main(["users", "reset-password", "op9", "--password-stdin"]) == 0
    assert "set at the console 3" not in capsys.readouterr().out
    with db() as s:
        u = s.query(User).filter_by(username="op9").one()
        assert u.must_change_password and auth.verify_password(u.password_hash, "set at the console 3")
        # a service call by another user (an admin) marks it too, whatever the caller passes
        adm = s.query(User).filter_by(username="adm").one()
        u.must_change_password = False
        auth.set_password(s, u, "set by service 44", actor=adm, settings=settings)
        assert u.must_change_password
