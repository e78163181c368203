"""Callback tasks: a caller who chose "call me back" in the queue (flow state ``callback``) gets one
task, due by the end of the next working day; attempts close it (reached -> done, the 3rd failed
one -> unreachable), each audited; the number is masked except through the audited reveal; only
operators (open tasks) and supervisors (their unit) see tasks, others get 404 from the API.

Calls are made through the agent's events (``CallStore.apply``), as the SIP agent reports them."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from hotline_api.models.callbacks import CallbackTask
from hotline_api.models.calls import Call
from hotline_api.models.governance import User
from hotline_api.services import access, audit, auth, callbacks, review
from hotline_api.services.call_store import CallStore
from telephony import events as ev

SH = ZoneInfo("Asia/Shanghai")
PW = "correct horse battery"
CALLER = "13912347788"  # invented
MASKED = "139******88"
CALLBACK_FLOW = ("notice", "route", "queue", "voicemail_offer", "callback")
VOICEMAIL_FLOW = ("notice", "route", "queue", "voicemail_offer", "vm_greeting", "vm_beep", "voicemail", "confirmation")
BRIDGED_FLOW = ("notice", "route", "queue", "connecting", "bridged", "operator_left")

# name, role, unit, permissions
USERS = [("op1", "operator", "A", ("identity",)), ("op2", "operator", "B", ()), ("mgrA", "recording_manager", "A", ()),
         ("mgrB", "recording_manager", "B", ()), ("supA", "supervisor", "A", ()), ("supB", "supervisor", "B", ()),
         ("supAll", "supervisor", None, ("identity",)), ("aud", "auditor", None, ()), ("adm", "admin", None, ())]


@pytest.fixture
def users(db, ctx):
    with db() as s:
        out = {n: auth.create_user(s, n, r, PW, unit=unit, permissions=perms)[0].id for n, r, unit, perms in USERS}
        s.commit()
    return out


def make_call(db, states, *, end: datetime | None, caller: str = CALLER, recording: bool = True,
              store: CallStore | None = None) -> tuple[str, str]:
    """A call through the agent's events: started, answered (recording row), the flow states, ended
    at ``end`` (None: still going), then its recording completed. Returns (call id, recording id)."""
    store = store or CallStore(db)
    call_id, rid = str(uuid.uuid4()), str(uuid.uuid4())
    start = (end or datetime.now(timezone.utc)) - timedelta(seconds=40)
    store.apply(ev.CallStarted(call_id, f"{call_id}@test", f"sip:{caller}@127.0.0.1", caller, "12388", "w0", start))
    if recording:
        store.apply(ev.CallAnswered(call_id, start, rid, f"/spool/{rid}.wav", 8000, 2))
    for i, state in enumerate(states):
        store.apply(ev.FlowChanged(call_id, state, start + timedelta(seconds=i + 1)))
    if end is not None:
        store.apply(ev.CallEnded(call_id, end, "ended", 200, "callback_requested", "hotline"))
        if recording:
            store.apply(ev.RecordingCompleted(rid, call_id, f"/spool/{rid}.wav", "complete", 39.0, 8000, 2, "0" * 64,
                                              1000, at=end))
    return call_id, (rid if recording else "")


def ensure(db, now, **kw) -> list[str]:
    with db() as s:
        made = [t.call_id for t in callbacks.ensure_tasks(s, now, **kw)]
        s.commit()
    return made


def task_for(db, call_id) -> CallbackTask | None:
    with db() as s:
        return s.execute(select(CallbackTask).where(CallbackTask.call_id == call_id)).scalar_one_or_none()


def user(s, uid) -> User:
    return s.get(User, uid)


# ------------------------------------------------------------------------------------ creation
def test_a_task_for_each_callback_call_once_and_only_for_them(db, ctx):
    now = datetime.now(timezone.utc)
    cb, _ = make_call(db, CALLBACK_FLOW, end=now - timedelta(minutes=5))
    vm, _ = make_call(db, VOICEMAIL_FLOW, end=now - timedelta(minutes=4))
    br, _ = make_call(db, BRIDGED_FLOW, end=now - timedelta(minutes=3))
    going, _ = make_call(db, CALLBACK_FLOW, end=None)  # confirmation still playing: not ended yet
    with db() as s:
        assert callbacks.requested_callback(s.get(Call, cb).flow_path)
    assert ensure(db, now) == [cb]
    assert ensure(db, now) == []  # idempotent
    assert callbacks.ensure_tasks_job(db) == 0
    for other in (vm, br, going):
        assert task_for(db, other) is None
    t = task_for(db, cb)
    assert (t.status, t.attempts, t.handled_by, t.last_attempt_at) == ("open", 0, None, None)
    # the call that was still going ends: the scheduler job makes its task
    CallStore(db).apply(ev.CallEnded(going, now, "ended", 200, "callback_requested", "hotline"))
    assert callbacks.ensure_tasks_job(db) == 1
    assert task_for(db, going) is not None
    with db() as s:
        created = [e for e in audit.iter_entries(s) if e["action"] == "callback.create"]
        assert sorted(e["detail"]["call_id"] for e in created) == sorted([cb, going])
        assert all(e["actor_name"] == "system" and CALLER not in str(e) for e in created)
        assert len(s.execute(select(CallbackTask)).scalars().all()) == 2
        assert audit.verify(s).ok


def test_a_state_name_containing_callback_is_not_a_request(db, ctx):
    now = datetime.now(timezone.utc)
    other, _ = make_call(db, ("notice", "route", "callback_later_menu"), end=now)
    assert ensure(db, now) == [] and task_for(db, other) is None


def test_due_by_the_end_of_the_next_working_day(db, ctx):
    cases = [
        (datetime(2026, 3, 4, 10, 0, tzinfo=SH), datetime(2026, 3, 6, 0, 0, tzinfo=SH)),  # Wed -> end of Thu
        (datetime(2026, 3, 6, 18, 0, tzinfo=SH), datetime(2026, 3, 10, 0, 0, tzinfo=SH)),  # Fri evening -> end of Mon
        (datetime(2026, 3, 7, 11, 0, tzinfo=SH), datetime(2026, 3, 10, 0, 0, tzinfo=SH)),  # Sat -> end of Mon
    ]
    for end, due in cases:
        cid, _ = make_call(db, CALLBACK_FLOW, end=end.astimezone(timezone.utc))
        assert ensure(db, end + timedelta(minutes=1), calendar=review.weekday_calendar) == [cid]
        assert task_for(db, cid).due_at == due, end


def test_due_follows_the_official_calendar_holidays_and_make_up_days(db, ctx):
    # the project's WorkCalendar (default): Oct 1-8 2025 holidays, Sun Sep 28 2025 a make-up workday
    cases = [
        (datetime(2025, 9, 30, 16, 0, tzinfo=SH), datetime(2025, 10, 10, 0, 0, tzinfo=SH)),  # -> end of Thu Oct 9
        (datetime(2025, 9, 27, 9, 0, tzinfo=SH), datetime(2025, 9, 29, 0, 0, tzinfo=SH)),  # Sat -> end of Sun 9/28
    ]
    for end, due in cases:
        cid, _ = make_call(db, CALLBACK_FLOW, end=end.astimezone(timezone.utc))
        assert ensure(db, end + timedelta(minutes=1)) == [cid]
        assert task_for(db, cid).due_at == due, end


# ------------------------------------------------------------------------------------ attempts
def _attempt(db, task_id, uid, outcome, note=None, viewer=None):
    with db() as s:
        u = user(s, uid)
        t = callbacks.visible_task(s, user(s, viewer or uid), task_id)
        t = callbacks.record_attempt(s, t, u, outcome, note)
        s.commit()
        return t.status, t.attempts


def test_attempts_reached_is_done_three_failed_is_unreachable(db, ctx, users):
    now = datetime.now(timezone.utc)
    a, _ = make_call(db, CALLBACK_FLOW, end=now - timedelta(minutes=9))
    b, _ = make_call(db, CALLBACK_FLOW, end=now - timedelta(minutes=8), caller="13700002222")
    w, _ = make_call(db, CALLBACK_FLOW, end=now - timedelta(minutes=7), caller="13700003333")
    ensure(db, now)
    ta, tb, tw = task_for(db, a).id, task_for(db, b).id, task_for(db, w).id
    assert _attempt(db, ta, users["op1"], "no_answer") == ("open", 1)
    assert _attempt(db, ta, users["op2"], "reached", "来电人已说明情况，转主管登记") == ("done", 2)
    assert _attempt(db, tb, users["op1"], "no_answer") == ("open", 1)
    assert _attempt(db, tb, users["op1"], "no_answer") == ("open", 2)
    assert _attempt(db, tb, users["supAll"], "no_answer") == ("unreachable", 3)
    assert _attempt(db, tw, users["op1"], "wrong_number") == ("unreachable", 1)  # never call a stranger twice
    with db() as s:
        t = s.get(CallbackTask, ta)
        assert (t.handled_by, t.last_outcome, t.outcome_note) == (users["op2"], "reached", "来电人已说明情况，转主管登记")
        assert t.last_attempt_at is not None
        # a closed task takes no more attempts; an unknown outcome is refused
        for tid in (ta, tb, tw):
            with pytest.raises(callbacks.CallbackError):
                callbacks.record_attempt(s, s.get(CallbackTask, tid), user(s, users["supAll"]), "reached")
        s.rollback()
        open_c, _ = make_call(db, CALLBACK_FLOW, end=now)
        ensure(db, now + timedelta(seconds=1))
        with pytest.raises(callbacks.CallbackError):
            callbacks.record_attempt(s, task_for(db, open_c), user(s, users["op1"]), "maybe")
        entries = [e for e in audit.iter_entries(s) if e["action"] == "callback.attempt"]
        assert [(e["actor_name"], e["detail"]["outcome"], e["detail"]["attempt"], e["detail"]["status"])
                for e in entries] == [("op1", "no_answer", 1, "open"), ("op2", "reached", 2, "done"),
                                      ("op1", "no_answer", 1, "open"), ("op1", "no_answer", 2, "open"),
                                      ("supAll", "no_answer", 3, "unreachable"), ("op1", "wrong_number", 1, "unreachable")]
        assert all(e["object_type"] == "callback_task" and CALLER not in str(e) and "主管登记" not in str(e)
                   for e in entries)
        assert audit.verify(s).ok


def test_a_stale_task_is_not_overwritten(db, ctx, users):
    now = datetime.now(timezone.utc)
    cid, _ = make_call(db, CALLBACK_FLOW, end=now)
    ensure(db, now)
    tid = task_for(db, cid).id
    with db() as s1, db() as s2:
        t2 = s2.get(CallbackTask, tid)  # read by one user (a page loaded, a request in flight) ...
        s2.commit()  # (its snapshot ends; the object keeps what it read)
        t1 = s1.get(CallbackTask, tid)  # ... while another records an attempt first
        callbacks.record_attempt(s1, t1, user(s1, users["op1"]), "no_answer")
        s1.commit()
        with pytest.raises(callbacks.TaskChanged):
            callbacks.record_attempt(s2, t2, user(s2, users["op2"]), "no_answer")
        s2.rollback()
    assert task_for(db, cid).attempts == 1


# ------------------------------------------------------------------------------------- masking
def test_number_masked_everywhere_and_revealed_only_audited(db, ctx, users, settings):
    now = datetime.now(timezone.utc)
    cid, _ = make_call(db, CALLBACK_FLOW, end=now)
    ensure(db, now)
    tid = task_for(db, cid).id
    _attempt(db, tid, users["op1"], "no_answer", f"拨打{CALLER}无人接听")
    with db() as s:
        for name in ("op1", "op2", "supAll"):
            (t, c), = callbacks.list_open(s, user(s, users[name]))
            v = callbacks.view(t, c)
            assert v.caller_masked == MASKED and CALLER not in repr(v)
            assert v.outcome_note.startswith("拨打139") and CALLER not in v.outcome_note
        raw = s.execute(text("SELECT outcome_note FROM callback_tasks")).scalar()
        assert CALLER not in raw and "无人接听" not in raw  # encrypted at rest
        before = len([e for e in audit.iter_entries(s) if e["action"] == "identity.view"])
        # without the identity permission: masked, nothing audited
        assert callbacks.reveal_number(s, user(s, users["op2"]), s.get(CallbackTask, tid)) == MASKED
        # with it: the number, audited as a view of the call's identity
        assert callbacks.reveal_number(s, user(s, users["op1"]), s.get(CallbackTask, tid), ip="127.0.0.1") == CALLER
        s.commit()
        views = [e for e in audit.iter_entries(s) if e["action"] == "identity.view"]
        assert len(views) == before + 1
        assert (views[-1]["actor_name"], views[-1]["object_type"], views[-1]["object_id"]) == ("op1", "call", cid)
        assert CALLER not in str(views[-1])


# -------------------------------------------------------------------------------------- access
def _assign(db, rid, call_id, mgr_id, at):
    with db() as s:
        review.set_roster(s, None, user(s, mgr_id))
        review.assign_at_completion(s, rid, call_id=call_id, kind="call", completed_at=at,
                                    calendar=review.weekday_calendar)
        s.commit()


def test_who_sees_which_tasks(db, ctx, users):
    now = datetime.now(timezone.utc)
    ca, ra = make_call(db, CALLBACK_FLOW, end=now - timedelta(minutes=3))
    cb, rb = make_call(db, CALLBACK_FLOW, end=now - timedelta(minutes=2), caller="13700002222")
    cn, _ = make_call(db, CALLBACK_FLOW, end=now - timedelta(minutes=1), caller="13600003333", recording=False)
    _assign(db, ra, ca, users["mgrA"], now)
    _assign(db, rb, cb, users["mgrB"], now)
    ensure(db, now)
    ta, tb, tn = (task_for(db, c).id for c in (ca, cb, cn))

    def sees(name):
        with db() as s:
            return {t.call_id for t, _ in callbacks.list_open(s, user(s, users[name]))}

    assert sees("op1") == sees("op2") == sees("supAll") == {ca, cb, cn}  # any operator may call back
    assert sees("supA") == {ca, cn} and sees("supB") == {cb, cn}  # unit; no recording: every supervisor
    for name in ("mgrA", "aud", "adm"):
        assert sees(name) == set()
    with db() as s:
        for name, tid in (("supA", tb), ("supB", ta), ("mgrA", ta), ("aud", ta), ("adm", tn)):
            with pytest.raises(access.NotVisible):
                callbacks.visible_task(s, user(s, users[name]), tid)
        for bad in ("../../etc/passwd", "x" * 300, str(uuid.uuid4())):
            with pytest.raises(access.NotVisible):
                callbacks.visible_task(s, user(s, users["supAll"]), bad)
    # a closed task leaves the operators' list; supervisors still find it under its status
    _attempt(db, ta, users["op2"], "reached")
    assert ca not in sees("op1")
    with db() as s:
        with pytest.raises(access.NotVisible):
            callbacks.visible_task(s, user(s, users["op1"]), ta)
        assert [t.id for t, _ in callbacks.list_tasks(s, user(s, users["supA"]), "done")] == [ta]
        assert callbacks.list_tasks(s, user(s, users["supB"]), "done") == []


def test_api_answers_404_to_roles_that_may_not_see(db, ctx, users, settings):
    from hotline_api.app import create_app

    now = datetime.now(timezone.utc)
    ca, ra = make_call(db, CALLBACK_FLOW, end=now)
    _assign(db, ra, ca, users["mgrA"], now)
    ensure(db, now)
    tid = task_for(db, ca).id
    with db() as s:
        tokens = {n: auth.issue_token(settings, user(s, uid)) for n, uid in users.items()}

    def h(name):
        return {"Authorization": f"Bearer {tokens[name]}"}

    with TestClient(create_app(settings), base_url="https://testserver") as c:
        for name in ("mgrA", "aud", "adm"):
            assert c.get("/api/callbacks", headers=h(name)).status_code == 404
            assert c.get(f"/api/callbacks/{tid}", headers=h(name)).status_code == 404
            assert c.post(f"/api/callbacks/{tid}/attempts", json={"outcome": "reached"}, headers=h(name)).status_code == 404
        assert c.get(f"/api/callbacks/{tid}", headers=h("supB")).status_code == 404  # other unit
        r = c.get("/api/callbacks", headers=h("op2"))
        assert r.status_code == 200 and [i["id"] for i in r.json()["items"]] == [tid]
        assert r.json()["items"][0]["caller"] == MASKED and CALLER not in r.text
        assert c.get(f"/api/callbacks/{tid}/caller", headers=h("op2")).status_code == 404  # no identity permission
        r = c.get(f"/api/callbacks/{tid}/caller", headers=h("op1"))
        assert r.status_code == 200 and r.json()["caller"] == CALLER
        assert c.post(f"/api/callbacks/{tid}/attempts", json={"outcome": "maybe"}, headers=h("op1")).status_code == 400
        r = c.post(f"/api/callbacks/{tid}/attempts", json={"outcome": "reached", "note": "已回电"}, headers=h("op1"))
        assert r.status_code == 200 and r.json()["status"] == "done" and r.json()["attempts"] == 1
        assert c.get(f"/api/callbacks/{tid}", headers=h("op1")).status_code == 404  # closed: off the operators' list
        assert c.get(f"/api/callbacks/{tid}", headers=h("supA")).json()["status"] == "done"
        assert c.post(f"/api/callbacks/{tid}/attempts", json={"outcome": "reached"}, headers=h("supA")).status_code == 409
        assert c.get("/api/callbacks?status=done", headers=h("supA")).json()["items"][0]["id"] == tid
