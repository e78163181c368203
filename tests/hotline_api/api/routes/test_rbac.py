"""Least privilege over every endpoint that touches content: one table, role -> expected status.

Roles in the table: ``op1`` handled the call, ``op2`` is another operator (same unit), ``mgr1`` is
the manager it is assigned to, ``mgr2`` another manager (unit B), ``supA`` a supervisor of the
call's unit, ``supB`` one of another unit, ``aud`` an auditor, ``adm`` an admin. Everything not
permitted answers 404 (no enumeration), and a refused request reads nothing: no playback, view or
change is recorded in the audit log for it.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from hotline_api.models.calls import Call, Recording
from hotline_api.models.governance import User
from hotline_api.services import access, audit, auth, cases
from tests.hotline_api.services.govtest_util import wav_bytes

ROLES = ("aud", "adm", "op2", "mgr2", "supB", "op1", "mgr1", "supA")  # refused ones first


def _s(**kw):
    """Expected statuses: 404 for every role not named."""
    return {r: kw.get(r, 404) for r in ROLES}


VIEW = _s(op1=200, mgr1=200, supA=200)


def _case(w):
    with w.db() as s:
        c = cases.register_draft(s.get_bind(), w.draft, "setup")
    return {"case": c.id}


def _export(w):
    r = w.client.post("/api/exports", headers=w.h("supA"),
                      json={"object_type": "recording", "object_ids": [w.rec], "reason": "纪律审查需要"})
    assert r.status_code == 201, r.text
    return {"export": r.json()["id"]}


def _approved_export(w):
    ids = _export(w)
    r = w.client.post(f"/api/exports/{ids['export']}/approve", headers=w.h("supA2"))
    assert r.status_code == 200, r.text
    return ids


def _alert(w):
    with w.db() as s:
        res = cases.create_draft(s, text="我要举报村支书贪污扶贫款，他说明天就要把账本烧掉，我现在就想去跳楼",
                                 recording_id=w.rec, call_id=w.call, settings=w.settings)
        assert res.alert is not None
        return {"alert": res.alert.id}


# name, method, path, json body, setup, expected
TABLE = [
    ("calls.list", "GET", "/api/calls", None, None, _s(op1=200, op2=200, mgr1=200, mgr2=200, supA=200, supB=200)),
    ("calls.get", "GET", "/api/calls/{call}", None, None, VIEW),
    ("recording.meta", "GET", "/api/recordings/{rec}", None, None, VIEW),
    ("recording.audio", "GET", "/api/recordings/{rec}/audio", None, None, VIEW),
    ("recording.transcript", "GET", "/api/recordings/{rec}/transcript", None, None, VIEW),
    ("recording.stored", "POST", "/api/recordings/{rec}/stored", None, None, _s(mgr1=200, supA=200)),
    ("recording.organize", "POST", "/api/recordings/{rec}/organize", {"tags": ["待核实"]}, None, _s(mgr1=200, supA=200)),
    ("recording.hold", "POST", "/api/recordings/{rec}/hold", {"reason": "涉案证据"}, None, _s(supA=201)),
    ("recording.import", "POST", "/api/recordings/import?filename=a.wav", "WAV", None,
     _s(mgr1=201, mgr2=201, supA=201, supB=201)),
    ("review.queue", "GET", "/api/review/queue", None, None, _s(mgr1=200, mgr2=200, supA=200, supB=200)),
    ("review.report", "GET", "/api/review/report?month=2026-03", None, None, _s(supA=200, supB=200)),
    ("drafts.list", "GET", "/api/drafts", None, None, _s(op1=200, op2=200, mgr1=200, mgr2=200, supA=200, supB=200)),
    ("draft.get", "GET", "/api/drafts/{draft}", None, None, VIEW),
    ("draft.patch", "PATCH", "/api/drafts/{draft}", {"changes": {"places": ["青山镇"]}}, None, _s(op1=200, supA=200)),
    ("draft.register", "POST", "/api/drafts/{draft}/register", None, None, _s(supA=201)),
    ("cases.list", "GET", "/api/cases", None, None, _s(supA=200, supB=200)),
    ("case.get", "GET", "/api/cases/{case}", None, _case, _s(supA=200)),
    ("case.transition", "POST", "/api/cases/{case}/transitions", {"action": "handling", "mode": "自办", "unit": "第一纪检监察室"},
     _case, _s(supA=200)),
    ("alerts.list", "GET", "/api/alerts", None, None, _s(supA=200, supB=200)),
    ("alert.ack", "POST", "/api/alerts/{alert}/ack", None, _alert, _s(supA=200)),
    ("export.request", "POST", "/api/exports", {"object_type": "recording", "object_ids": ["{rec}"], "reason": "审查"},
     None, _s(supA=201)),
    ("export.approve", "POST", "/api/exports/{export}/approve", None, _export, _s(supA=400)),  # own: 400
    ("export.get", "GET", "/api/exports/{export}", None, _export, _s(supA=200)),
    ("export.download", "GET", "/api/exports/{export}/download", None, _approved_export, _s(supA=200)),
    ("audit.search", "GET", "/api/audit", None, None, _s(aud=200)),
    ("audit.verify", "GET", "/api/audit/verify", None, None, _s(aud=200)),
    ("admin.users", "GET", "/api/admin/users", None, None, _s(adm=200)),
    ("admin.holds", "GET", "/api/admin/holds", None, None, _s(adm=200)),
]


def _fill(value, ids):
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


def _entries_by(w, actor: str, since_seq: int) -> list[dict]:
    with w.db() as s:
        return [e for e in audit.iter_entries(s) if e["seq"] > since_seq and e["actor_name"] == actor]


def _head(w) -> int:
    with w.db() as s:
        return max((e["seq"] for e in audit.iter_entries(s)), default=0)


@pytest.mark.parametrize("name,method,path,body,setup,expected", TABLE, ids=[t[0] for t in TABLE])
def test_rbac_matrix(world, name, method, path, body, setup, expected):
    w = world
    ids = {"rec": w.rec, "call": w.call, "draft": w.draft}
    if setup is not None:
        ids.update(setup(w))
    wrong = []
    for role in ROLES:
        head = _head(w)
        kw = {}
        if body == "WAV":
            kw["content"] = wav_bytes(0.5)
            kw["headers"] = {**w.h(role), "Content-Type": "audio/wav"}
        else:
            kw["headers"] = w.h(role)
            if body is not None:
                kw["json"] = _fill(body, ids)
        r = w.client.request(method, _fill(path, ids), **kw)
        if r.status_code != expected[role]:
            wrong.append(f"{role}: {r.status_code} (expected {expected[role]}) {r.text[:120]}")
        if r.status_code == 404:
            assert r.json() == {"detail": "not found"}, (role, r.text)  # the same answer as for a missing id
            assert _entries_by(w, role, head) == [], f"{role} was refused but something was recorded"
    assert not wrong, f"{name}: " + "; ".join(wrong)


def test_operator_cannot_read_another_operators_call(world):
    w = world
    for path in ("/api/recordings/{r}", "/api/recordings/{r}/audio", "/api/recordings/{r}/transcript"):
        assert w.client.get(path.format(r=w.other_rec), headers=w.h("op1")).json() == {"detail": "not found"}
    assert w.client.get(f"/api/recordings/{w.other_rec}/audio", headers=w.h("op2")).status_code == 200
    # no transcript yet for that call: its own operator is told so; op1 only ever gets "not found"
    assert w.client.get(f"/api/recordings/{w.other_rec}/transcript", headers=w.h("op2")).json() == {
        "detail": "transcript not available (yet)"}
    listed = {c["recording_id"] for c in w.client.get("/api/calls", headers=w.h("op1")).json()["items"]}
    assert w.rec in listed and w.other_rec not in listed


def test_operator_window_closes(world):
    """op1 handled old_rec 30 h ago (window 24 h): gone from the list and 404 everywhere."""
    w = world
    listed = {c["recording_id"] for c in w.client.get("/api/calls", headers=w.h("op1")).json()["items"]}
    assert w.rec in listed and w.old_rec not in listed
    for path in ("/api/recordings/{r}", "/api/recordings/{r}/audio"):
        assert w.client.get(path.format(r=w.old_rec), headers=w.h("op1")).status_code == 404
        assert w.client.get(path.format(r=w.old_rec), headers=w.h("mgr1")).status_code == 200  # still assigned
    # the window is a setting: widen it and the old call is visible again
    w.settings.operator_view_hours = 48
    assert w.client.get(f"/api/recordings/{w.old_rec}", headers=w.h("op1")).status_code == 200
    # and the clock: the current call's window closes 24 h after it ended
    w.settings.operator_view_hours = 24
    with w.db() as s:
        s.get(Call, w.call).ended_at = datetime.now(timezone.utc) - timedelta(hours=24, seconds=5)
        s.commit()
    assert w.client.get(f"/api/recordings/{w.rec}/audio", headers=w.h("op1")).status_code == 404


def test_admin_and_auditor_never_see_content(world):
    w = world
    for who in ("adm", "aud"):
        for path in (f"/api/recordings/{w.rec}", f"/api/recordings/{w.rec}/audio", f"/api/recordings/{w.rec}/transcript",
                     f"/api/drafts/{w.draft}", "/api/calls", f"/api/calls/{w.call}"):
            assert w.client.get(path, headers=w.h(who)).status_code == 404, (who, path)
    # admin's own views carry no content: the user list has no caller numbers or transcripts
    text = w.client.get("/api/admin/users", headers=w.h("adm")).text
    assert "1381234" not in text and "凌" not in text


def test_sql_lists_agree_with_content_access(world):
    """The calls list (SQL) and the per-recording rule (content_access) are the same policy."""
    w = world
    with w.db() as s:
        recs = s.query(Recording).all()
        for name, uid in w.users.items():
            user = s.get(User, uid)
            sql_recs = set(s.execute(access.visible_recording_ids(user, settings=w.settings)).scalars())
            listed_calls = {c.id for c in access.list_calls(s, user, limit=500, settings=w.settings)}
            for rec in recs:
                per_object = auth.content_access(s, user, rec.id, settings=w.settings)
                assert (rec.id in sql_recs) == per_object, (name, rec.id)
                if rec.call_id:
                    assert (rec.call_id in listed_calls) == per_object, (name, rec.id)


def test_unit_supervisor_lists_only_their_unit(world):
    w = world
    a = {c["recording_id"] for c in w.client.get("/api/calls", headers=w.h("supA")).json()["items"]}
    b = {c["recording_id"] for c in w.client.get("/api/calls", headers=w.h("supB")).json()["items"]}
    assert a == {w.rec, w.old_rec, w.other_rec} and b == {w.b_rec}
    assert w.client.get(f"/api/recordings/{w.b_rec}", headers=w.h("supA")).status_code == 404
    assert w.client.get(f"/api/recordings/{w.b_rec}", headers=w.h("supB")).status_code == 200


def test_calls_list_is_newest_first_and_paginated(world):
    w = world
    items = w.client.get("/api/calls", headers=w.h("supA")).json()["items"]
    started = [c["started_at"] for c in items]
    assert started == sorted(started, reverse=True) and len(items) == 3
    for c in items:
        assert set(c) >= {"id", "started_at", "ended_at", "channel", "status", "recording_id"}
        assert c["channel"] == "call" and c["status"] == "ended"
    page = w.client.get("/api/calls?limit=1&offset=1", headers=w.h("supA")).json()["items"]
    assert [p["id"] for p in page] == [items[1]["id"]]
    assert w.client.get("/api/calls?limit=0", headers=w.h("supA")).status_code == 422
    assert w.client.get("/api/calls?limit=100000", headers=w.h("supA")).status_code == 422
