"""Live transcript of the caller (LiveTranscript events) -> CallStore -> ``partial`` / ``transcript``
live events for the operator's console: operator keying, coalescing of partials, masking."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

import hotline_api.models.governance  # noqa: F401
import hotline_api.models.operators  # noqa: F401
from hotline_api.api.routes import auth as auth_routes
from hotline_api.api.routes import live as live_routes
from hotline_api.models.operators import CallEvent
from hotline_api.services import live
from hotline_api.services import operators as ops
from hotline_api.services.auth import create_user
from hotline_api.services.call_store import CallStore, QueuedSink
from telephony import events as ev

PW = "correct-horse-battery"
NUMBER = "13912345678"
T0 = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def seed_operator(db, name="alice") -> tuple[str, str]:
    with db() as s:
        u, _ = create_user(s, name, "operator", PW)
        op = ops.ensure_operator(s, u, contacts=[{"kind": "static", "uri": f"sip:{name}@127.0.0.1:5071"}])
        s.commit()
        return op.id, u.id


def start_call(store: CallStore, call: str) -> None:
    store.apply(ev.CallStarted(call, "cid-" + call, f"sip:{NUMBER}@10.0.0.1", NUMBER, "12388", "w0", T0))
    store.apply(ev.CallAnswered(call, T0, "rec-" + call, "/tmp/x.wav", 16000, 2))


def texts(db, call: str) -> list[tuple[str, str | None, dict]]:
    with db() as s:
        rows = s.execute(select(CallEvent).where(CallEvent.call_id == call,
                                                 CallEvent.type.in_(("partial", "transcript")))
                         .order_by(CallEvent.id)).scalars()
        return [(e.type, e.operator_id, e.data) for e in rows]


def lt(call, t, final, text, start=0.0, end=0.0):
    return ev.LiveTranscript(call, at(t), final, text, start, end)


def test_partials_are_coalesced_finals_always_kept(db):
    store = CallStore(db)
    start_call(store, "c1")
    start_call(store, "c2")
    for e in [
        lt("c1", 1.0, False, "안녕"),
        lt("c1", 1.2, False, "안녕하세"),      # within 0.5 s of the stored one: dropped
        lt("c2", 1.3, False, "오늘"),          # another call has its own pace
        lt("c1", 1.4, False, "안녕하세요"),    # still within 0.5 s: dropped
        lt("c1", 1.6, False, "안녕하세요 저"),  # 0.6 s after: stored
        lt("c1", 1.7, True, "안녕하세요 저는", 0.4, 1.5),  # a final is always stored
        lt("c1", 1.8, False, "오늘"),          # the first partial after a final goes through
        lt("c1", 1.9, False, "오늘 날"),       # dropped
    ]:
        store.apply(e)
    got = texts(db, "c1")
    assert [(t, d["text"]) for t, _, d in got] == [
        ("partial", "안녕"), ("partial", "안녕하세요 저"), ("transcript", "안녕하세요 저는"), ("partial", "오늘")]
    final = got[2][2]
    assert (final["start"], final["end"], final["speaker"]) == (0.4, 1.5, "caller")
    assert [d["text"] for _, _, d in texts(db, "c2")] == ["오늘"]
    # nothing was committed for the dropped ones
    with db() as s:
        assert s.query(CallEvent).filter(CallEvent.type == "partial").count() == 4


def test_events_reach_the_bridged_operator_by_profile_id(db, settings):
    op_id, user_id = seed_operator(db)
    store = CallStore(db)
    start_call(store, "c3")
    store.apply(lt("c3", 1.0, True, "before the bridge", 0.1, 0.9))
    store.apply(ev.CallBridged("c3", op_id, at(2.0), 1.5))
    store.apply(lt("c3", 3.0, False, "after"))
    store.apply(lt("c3", 4.0, True, "after the bridge", 2.5, 3.9))
    got = texts(db, "c3")
    assert [(t, o) for t, o, _ in got] == [("transcript", None), ("partial", op_id), ("transcript", op_id)]
    assert op_id != user_id  # live events use operators.id; calls.operator_id holds users.id
    with db() as s:
        from hotline_api.models.governance import User

        me = s.get(User, user_id)
        assert [e.type for e in live.tail(s, 0, op_id)] == ["bridged"]  # no user: never the caller's words
        mine = [e.type for e in live.tail(s, 0, op_id, user=me)]  # the operator on the call, while it lasts
        assert mine[-2:] == ["partial", "transcript"] and "bridged" in mine
        assert live.tail(s, 0, "someone-else") == []

    # the console's JSON feed of the operator carries the text where console.js reads it
    app = FastAPI()
    for r in (auth_routes, live_routes):
        app.include_router(r.router, prefix="/api")
    with TestClient(app, base_url="https://testserver") as c:
        tok = c.post("/api/auth/token", data={"username": "alice", "password": PW}).json()["access_token"]
        evs = c.get("/api/live/recent", headers={"Authorization": f"Bearer {tok}"}).json()["events"]
    tr = [e for e in evs if e["type"] == "transcript"]
    assert [e["data"]["text"] for e in tr] == ["after the bridge"]
    assert tr[0]["call_id"] == "c3" and tr[0]["data"]["end"] == 3.9


def test_text_is_masked_and_never_logged(db, caplog):
    caplog.set_level(logging.DEBUG)
    store = CallStore(db)
    sink = QueuedSink(store)
    sink.publish(ev.CallStarted("c4", "cid", f"sip:{NUMBER}@10.0.0.1", NUMBER, "12388", "w0", T0))
    sink.publish(ev.CallAnswered("c4", T0, "rec-c4", "/tmp/x.wav", 16000, 2))
    spoken = f"我叫王小明 我的电话是 {NUMBER} 他收了三十万元"
    sink.publish(lt("c4", 1.0, True, spoken, 0.5, 6.0))
    sink.publish(lt("c4", 2.0, True, "我的号码是一三九一二三四五六七八", 6.5, 9.0))
    sink.close()
    (t1, _, d1), (t2, _, d2) = texts(db, "c4")
    assert t1 == t2 == "transcript"
    assert NUMBER not in d1["text"] and "王小明" not in d1["text"]
    assert "139******78" in d1["text"] and "王**" in d1["text"]
    assert "三十万元" in d1["text"]  # the report's content stays readable
    assert "一三九一二三四五六七八" not in d2["text"]
    for secret in (NUMBER, "王小明", "三十万", "一三九一二三四五六七八"):
        assert secret not in caplog.text


def test_unknown_call_still_gives_an_event_without_operator(db):
    store = CallStore(db)
    store.apply(lt("nocall", 1.0, True, "orphan", 0.0, 0.8))  # its CallStarted row failed: keep the text
    assert [(t, o, d["text"]) for t, o, d in texts(db, "nocall")] == [("transcript", None, "orphan")]


def test_live_types_are_allowed():
    assert {"partial", "transcript"} <= set(live.TYPES)
