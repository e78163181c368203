"""Admin: users and roles, retention policies, legal holds; all audited; admins only."""
from __future__ import annotations

from hotline_api.models.governance import LegalHold
from hotline_api.services import audit


def _actions(w):
    with w.db() as s:
        return [(e["action"], e["actor_name"]) for e in audit.iter_entries(s)]


def test_users_crud_and_privilege_change_revokes_tokens(world):
    w = world
    h = w.h("adm")
    r = w.client.post("/api/admin/users", headers=h, json={"username": "sup9", "role": "supervisor", "unit": "A"})
    assert r.status_code == 201 and len(r.json()["one_time_password"]) >= 10 and r.json()["must_change_password"]
    uid = r.json()["id"]
    for bad in ({"username": "../x", "role": "supervisor"}, {"username": "sup9", "role": "supervisor"},
                {"username": "zz", "role": "god"}, {"username": "zz", "role": "operator", "permissions": ["all"]},
                {"role": "operator"}):
        assert w.client.post("/api/admin/users", headers=h, json=bad).status_code == 400, bad
    # grant identity to supA: audited with old and new, and supA's old token stops working
    r = w.client.patch(f"/api/admin/users/{w.uid('supA')}", headers=h, json={"permissions": ["identity"]})
    assert r.status_code == 200 and r.json()["permissions"] == ["identity"]
    assert w.client.get("/api/calls", headers=w.h("supA")).status_code == 401
    with w.db() as s:
        e = [x for x in audit.iter_entries(s) if x["action"] == "user.update"][-1]
        assert e["detail"]["old"] == {"permissions": []} and e["detail"]["new"] == {"permissions": ["identity"]}
    assert w.client.patch(f"/api/admin/users/{uid}", headers=h, json={"role": "king"}).status_code == 400
    assert w.client.patch(f"/api/admin/users/{uid}", headers=h, json={"password_hash": "x"}).status_code == 400
    assert w.client.patch(f"/api/admin/users/{w.uid('adm')}", headers=h, json={"active": False}).status_code == 400
    r = w.client.delete(f"/api/admin/users/{uid}", headers=h)
    assert r.status_code == 200 and r.json()["active"] is False
    r = w.client.post(f"/api/admin/users/{w.uid('op2')}/password", headers=h)
    assert r.status_code == 200 and r.json()["one_time_password"]
    assert w.client.get("/api/calls", headers=w.h("op2")).status_code == 401
    assert w.client.get("/api/admin/users/..%2F..", headers=h).status_code == 404
    names = {u["username"] for u in w.client.get("/api/admin/users", headers=h).json()["items"]}
    assert {"sup9", "adm", "op1"} <= names
    acts = _actions(w)
    assert ("user.create", "adm") in acts and ("user.update", "adm") in acts and ("user.password", "adm") in acts
    for who in ("supId", "aud", "mgr1"):
        assert w.client.get("/api/admin/users", headers=w.h(who)).status_code == 404


def test_retention_policies(world):
    w = world
    h = w.h("adm")
    assert w.client.get("/api/admin/retention", headers=h).json()["policies"]["no_content"] == 180
    r = w.client.put("/api/admin/retention/no_content", headers=h, json={"days": 90})
    assert r.status_code == 200 and r.json()["policies"]["no_content"] == 90
    assert w.client.put("/api/admin/retention/other", headers=h, json={"days": None}).json()["policies"]["other"] is None
    for body in ({"days": -1}, {"days": "90"}, {"days": 1.5}, {"days": True}):
        assert w.client.put("/api/admin/retention/no_content", headers=h, json=body).status_code == 400, body
    assert w.client.put("/api/admin/retention/..%2Fx", headers=h, json={"days": 1}).status_code == 404
    assert w.client.get("/api/admin/retention", headers=h).json()["policies"]["no_content"] == 90
    assert ("retention.policy", "adm") in _actions(w)


def test_legal_holds(world):
    w = world
    h = w.h("adm")
    for body in ({"target_type": "recording", "target_id": w.rec},  # no reason
                 {"target_type": "file", "target_id": w.rec, "reason": "x"},
                 {"target_type": "recording", "target_id": "../../x", "reason": "x"}):
        assert w.client.post("/api/admin/holds", headers=h, json=body).status_code in (400, 404), body
    with w.db() as s:
        assert s.query(LegalHold).count() == 0
    r = w.client.post("/api/admin/holds", headers=h, json={"target_type": "recording", "target_id": w.rec, "reason": "诉讼保全"})
    assert r.status_code == 201
    hid = r.json()["id"]
    assert w.client.get(f"/api/recordings/{w.rec}", headers=w.h("mgr1")).json()["legal_hold"] is True
    assert [x["id"] for x in w.client.get("/api/admin/holds", headers=h).json()["items"]] == [hid]
    assert w.client.post(f"/api/admin/holds/{hid}/release", headers=h, json={}).status_code == 400
    assert w.client.post(f"/api/admin/holds/{hid}/release", headers=h, json={"reason": "结案"}).status_code == 200
    assert w.client.post(f"/api/admin/holds/{hid}/release", headers=h, json={"reason": "again"}).status_code == 404
    assert w.client.get("/api/admin/holds", headers=h).json()["items"] == []
    # a supervisor of the unit may also hold what they can see
    r = w.client.post(f"/api/recordings/{w.rec}/hold", headers=w.h("supA"), json={"reason": "证据保全"})
    assert r.status_code == 201
    assert ("retention.hold", "adm") in _actions(w) and ("retention.release", "adm") in _actions(w)
