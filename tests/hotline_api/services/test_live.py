"""Live call events (CallStore -> call_events -> SSE), and the operators / schedule API."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import hotline_api.models.governance  # noqa: F401
import hotline_api.models.operators  # noqa: F401
from hotline_api.api.routes import auth as auth_routes
from hotline_api.api.routes import live as live_routes
from hotline_api.api.routes import operators as op_routes
from hotline_api.api.routes import schedule as schedule_routes
from hotline_api.models.calls import Call
from hotline_api.models.operators import CallEvent
from hotline_api.services import live
from hotline_api.services import operators as ops
from hotline_api.services.auth import create_user
from hotline_api.services.call_store import CallStore
from telephony import events as ev

PW = "correct-horse-battery"
NUMBER = "13912345678"


def now():
    return datetime.now(timezone.utc)


@pytest.fixture
def client(settings, db):
    app = FastAPI()
    for r in (auth_routes, live_routes, op_routes, schedule_routes):
        app.include_router(r.router, prefix="/api")
    with TestClient(app, base_url="https://testserver") as c:
        yield c


def token(client, user):
    r = client.post("/api/auth/token", data={"username": user, "password": PW})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def seed(db):
    with db() as s:
        a, _ = create_user(s, "alice", "operator", PW)
        b, _ = create_user(s, "bob", "operator", PW)
        create_user(s, "root", "admin", PW)
        create_user(s, "sup", "supervisor", PW)
        oa = ops.ensure_operator(s, a, contacts=[{"kind": "static", "uri": "sip:alice@127.0.0.1:5071"}])
        ob = ops.ensure_operator(s, b, contacts=[{"kind": "registered"}], sip_username="bob",
                                 sip_password="bob-secret-1")
        s.commit()
        return oa.id, ob.id


def feed(db, call_uuid, op_id):
    """The events an agent emits for a routed call, applied by the real CallStore."""
    store = CallStore(db)
    t = now()
    for e in [
        ev.CallStarted(call_uuid, "sipcid", f"sip:{NUMBER}@10.0.0.1", NUMBER, "12388", "w0", t),
        ev.CallAnswered(call_uuid, t, "rec-" + call_uuid[:8], "/tmp/x.wav", 16000, 2),
        ev.RoutingDecided(call_uuid, t, "queue", "open"),
        ev.OperatorRinging(call_uuid, op_id, t),
        ev.OperatorAnswered(call_uuid, op_id, t),
        ev.CallBridged(call_uuid, op_id, t, 3.2),
        ev.OperatorHangup(call_uuid, op_id, t, "operator", 42.0),
        ev.VoicemailStarted(call_uuid, t, 12.3, "menu"),
        ev.VoicemailEnded(call_uuid, t, 18.0, "silence"),
    ]:
        store.apply(e)


def test_call_store_turns_routing_events_into_live_events(db):
    oa, ob = seed(db)
    feed(db, "11111111-1111-1111-1111-111111111111", oa)
    with db() as s:
        evs = live.tail(s, 0, all_operators=True)
        assert [e.type for e in evs] == ["routed", "ringing", "answered", "bridged", "hangup", "voicemail_started",
                                         "voicemail_ended"]
        mine = live.tail(s, 0, oa)
        assert [e.type for e in mine] == ["ringing", "answered", "bridged", "hangup"]
        assert live.tail(s, 0, ob) == []
        # calls.operator_id holds the operator's user id: what the access rules compare with
        from hotline_api.models.operators import Operator

        assert s.get(Call, "11111111-1111-1111-1111-111111111111").operator_id == s.get(Operator, oa).user_id
        raw = " ".join(e.data_json for e in s.query(CallEvent).all())
        assert NUMBER not in raw
        e = live.publish(s, "c", "ringing", operator_id=oa, data={"caller_number": NUMBER, "x": 1})
        assert e.data == {"x": 1}
        with pytest.raises(ValueError):
            live.publish(s, "c", "nonsense")


def test_sse_stream_per_operator(client, db):
    oa, ob = seed(db)
    h = token(client, "alice")
    feed(db, "22222222-2222-2222-2222-222222222222", oa)
    with client.stream("GET", "/api/live/events?after=0&max_seconds=1", headers=h) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        body = "".join(r.iter_text())
    frames = [f for f in body.split("\n\n") if f.startswith("id:")]
    types = [f.split("\n")[1].split(": ", 1)[1] for f in frames]
    assert types == ["ringing", "answered", "bridged", "hangup"]
    data = json.loads(frames[0].split("\n")[2][len("data: "):])
    assert data["call_id"] == "22222222-2222-2222-2222-222222222222" and data["operator_id"] == oa
    assert NUMBER not in body
    # resume after the last one: nothing new
    last = frames[-1].split("\n")[0].split(": ")[1]
    with client.stream("GET", "/api/live/events?max_seconds=0.6", headers={**h, "Last-Event-ID": last}) as r:
        assert "id:" not in "".join(r.iter_text())
    # bob sees none of alice's; an operator may not ask for all; a supervisor may
    hb = token(client, "bob")
    assert client.get("/api/live/recent?after=0", headers=hb).json()["events"] == []
    assert client.get("/api/live/recent?all=1", headers=hb).status_code == 404
    hs = token(client, "sup")
    assert len(client.get("/api/live/recent?all=1", headers=hs).json()["events"]) == 7
    assert client.get("/api/live/recent", headers=hs).status_code == 404  # not an operator
    assert client.get("/api/live/events").status_code == 401


def test_operator_state_api_and_admin_profiles(client, db):
    oa, ob = seed(db)
    ha, hadm, hs = token(client, "alice"), token(client, "root"), token(client, "sup")
    assert client.get("/api/operators/me", headers=ha).json()["state"] == "offline"
    r = client.put("/api/operators/me/state", json={"state": "available"}, headers=ha)
    assert r.status_code == 200 and r.json()["state"] == "available"
    assert client.put("/api/operators/me/state", json={"state": "paused"}, headers=ha).status_code == 400
    r = client.put("/api/operators/me/state", json={"state": "paused", "reason": "会议"}, headers=ha)
    assert r.json()["state_reason"] == "会议"
    assert client.put("/api/operators/me/state", json={"state": "on_call"}, headers=ha).status_code == 400
    assert client.get("/api/operators/me", headers=hs).status_code == 404
    listing = client.get("/api/operators", headers=hs).json()["operators"]
    assert {o["username"]: o["state"] for o in listing} == {"alice": "paused", "bob": "offline"}
    bob = next(o for o in listing if o["username"] == "bob")
    assert bob["sip"] == {"username": "bob", "realm": "12388", "has_password": True}
    assert bob["dial_uris"] == ["sip:bob@127.0.0.1:5060"]
    assert "ha1" not in json.dumps(listing).lower() or "sip_ha1" not in json.dumps(listing)
    assert client.get("/api/operators", headers=ha).status_code == 404
    # admin creates a profile with SIP credentials for a new operator user
    with db() as s:
        u, _ = create_user(s, "carol", "operator", PW)
        s.commit()
        uid = u.id
    r = client.put(f"/api/operators/{uid}", headers=hadm,
                   json={"contacts": [{"kind": "registered"}, {"kind": "static", "uri": "sip:c@127.0.0.1:5090"}],
                         "sip_username": "carol", "sip_password": "carol-secret"})
    assert r.status_code == 200, r.text
    assert r.json()["dial_uris"] == ["sip:carol@127.0.0.1:5060", "sip:c@127.0.0.1:5090"]
    assert "carol-secret" not in r.text
    with db() as s:
        assert ops.get_for_user(s, uid).sip_ha1 == ops.digest_ha1("carol", "12388", "carol-secret")
    assert client.put(f"/api/operators/{uid}", headers=hadm,
                      json={"contacts": [{"kind": "static", "uri": "tel:123"}]}).status_code == 400
    assert client.put(f"/api/operators/{uid}", headers=hs, json={}).status_code == 404
    assert client.put(f"/api/operators/{uid}/state", headers=hs, json={"state": "offline"}).json()["state"] == "offline"


def test_schedule_api_override_and_2027_official_schedule(client, db):
    seed(db)
    hadm, hs = token(client, "root"), token(client, "sup")
    st = client.get("/api/schedule/status?at=2026-02-17T10:00:00%2B08:00", headers=hs).json()
    assert st["open"] is False and st["reason"] == "closed_holiday"
    st = client.get("/api/schedule/status?at=2026-02-14T10:00:00%2B08:00", headers=hs).json()
    assert st["open"] is True  # 调休 Saturday
    r = client.put("/api/schedule/overrides/2026-02-17", headers=hadm, json={"is_open": True, "start": "09:00",
                                                                            "end": "12:00", "note": "值班"})
    assert r.status_code == 200
    assert client.get("/api/schedule/status?at=2026-02-17T10:00:00%2B08:00", headers=hs).json()["open"] is True
    assert client.put("/api/schedule/overrides/2026-13-01", headers=hadm, json={"is_open": False}).status_code == 400
    assert client.put("/api/schedule/overrides/2026-02-18", headers=hs, json={"is_open": False}).status_code == 404
    st = client.get("/api/schedule/status?at=2027-02-08T10:00:00%2B08:00", headers=hs).json()
    assert st["open"] is True and st["provisional"] is True and any("2027" in w for w in st["warnings"])
    r = client.post("/api/schedule/holidays/2027", headers=hadm,
                    json={"holidays": ["2027-02-06", "2027-02-07", "2027-02-08", "2027-02-09"], "workdays": []})
    assert r.status_code == 200 and r.json()["status"] == "admin"
    st = client.get("/api/schedule/status?at=2027-02-08T10:00:00%2B08:00", headers=hs).json()
    assert st["open"] is False and st["provisional"] is False
    assert client.post("/api/schedule/holidays/2027", headers=hadm,
                       json={"holidays": ["2028-01-01"]}).status_code == 400
    r = client.put("/api/schedule/weekly", headers=hadm, json={"timezone": "Asia/Shanghai",
                                                               "weekly": {"0": [["09:00", "17:00"]]}})
    assert r.status_code == 200
    sched = client.get("/api/schedule", headers=hs).json()
    assert sched["weekly"] == {"0": [["09:00", "17:00"]]} and sched["timezone"] == "Asia/Shanghai"
    assert client.put("/api/schedule/weekly", headers=hadm, json={"weekly": {"0": [["17:00", "09:00"]]}}).status_code == 400
