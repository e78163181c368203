"""Drafts and cases over the API: corrections kept, registration, the case list's filters, the
lifecycle with history and feedback, urgent alerts; refused input changes nothing."""
from __future__ import annotations

import json
from datetime import date, timedelta

from hotline_api.models.cases import Case, CaseDeadline, DraftCorrection
from hotline_api.services import audit, cases


def _actions(w, actor=None):
    with w.db() as s:
        return [e["action"] for e in audit.iter_entries(s) if actor is None or e["actor_name"] == actor]


def _register(w, draft_id=None):
    r = w.client.post(f"/api/drafts/{draft_id or w.draft}/register", headers=w.h("supA"))
    assert r.status_code == 201, r.text
    return r.json()


def _draft(w, text, **kw):
    with w.db() as s:
        return cases.create_draft(s, text=text, settings=w.settings, **kw).draft.id


def test_correct_then_register(world):
    w = world
    r = w.client.patch(f"/api/drafts/{w.draft}", headers=w.h("op1"),
                       json={"changes": {"subjects": [{"name": "王某", "title": "局长", "unit": "青山镇政府"}]},
                             "reason": "单位识别有误"})
    assert r.status_code == 200 and r.json()["subjects"][0]["unit"] == "青山镇政府"
    assert r.json()["corrections"][0]["reason"] == "单位识别有误"
    # bad corrections: 400 and nothing changes
    for body in ({"changes": {"category": "不存在"}}, {"changes": {"nope": 1}}, {"changes": {}}, {"x": 1},
                 {"changes": {"urgent": "yes"}}, {"changes": {"amount_yuan": -5}}):
        assert w.client.patch(f"/api/drafts/{w.draft}", headers=w.h("supA"), json=body).status_code == 400, body
    with w.db() as s:
        assert s.query(DraftCorrection).count() == 1
    case = _register(w)
    assert case["number"].startswith("12388-") and case["status"] == "registered"
    assert w.client.post(f"/api/drafts/{w.draft}/register", headers=w.h("supA")).status_code == 409
    assert w.client.patch(f"/api/drafts/{w.draft}", headers=w.h("op1"),
                          json={"field": "places", "value": []}).status_code == 400  # registered: no more edits
    acts = _actions(w)
    assert "draft.correct" in acts and "case.register" in acts


def test_case_lifecycle_history_and_feedback(world):
    w = world
    c = _register(w)
    url = f"/api/cases/{c['id']}/transitions"
    h = w.h("supA")
    assert w.client.post(url, headers=h, json={"action": "close", "result": "x"}).status_code == 409  # not handling
    assert w.client.post(url, headers=h, json={"action": "handling", "mode": "乱办", "unit": "x"}).status_code == 400
    assert w.client.post(url, headers=h, json={"action": "handling", "mode": "转办"}).status_code == 400
    assert w.client.post(url, headers=h, json={"action": "fly"}).status_code == 400
    with w.db() as s:
        assert s.get(Case, c["id"]).status == "registered"
    assert w.client.post(url, headers=h, json={"action": "feedback", "kind": "notice_sent"}).status_code == 200
    assert w.client.post(url, headers=h, json={"action": "handling", "mode": "转办", "unit": "区纪委监委"}).status_code == 200
    assert w.client.post(url, headers=h, json={"action": "close", "result": "已查实，给予党内警告"}).status_code == 200
    assert w.client.post(url, headers=h, json={"action": "archive"}).status_code == 409  # result not sent yet
    assert w.client.post(url, headers=h, json={"action": "feedback", "kind": "result_sent"}).status_code == 200
    r = w.client.post(url, headers=h, json={"action": "archive"})
    assert r.status_code == 200 and r.json()["status"] == "archived"
    d = w.client.get(f"/api/cases/{c['id']}", headers=h).json()
    assert [e["action"] for e in d["history"]] == ["draft_created", "registered", "feedback_notice_sent", "handling",
                                                   "closed", "feedback_result_sent", "archived"]
    assert [f["kind"] for f in d["feedback"]] == ["notice_sent", "result_sent"]
    assert d["handling_mode"] == "转办" and d["handling_unit"] == "区纪委监委"
    assert _actions(w, "supA").count("case.transition") == 5  # refused ones roll back: nothing changed


def test_case_list_filters(world):
    w = world
    c1 = _register(w)
    d2 = _draft(w, "我要反映李家村村支书赵某挪用低保资金三万多元，他还在村里赌博")
    with w.db() as s:  # a place the staff added (the filter reads the corrected document)
        cases.correct_draft(s, d2, "places", ["李家村"], actor="supA")
    c2 = _register(w, d2)
    d3 = _draft(w, "我想咨询一下举报需要什么材料")
    c3 = _register(w, d3)

    def ids(q):
        r = w.client.get(f"/api/cases{q}", headers=w.h("supA"))
        assert r.status_code == 200, r.text
        return {c["id"] for c in r.json()["items"]}

    assert ids("") == {c1["id"], c2["id"], c3["id"]}
    assert ids("?category=咨询") == {c3["id"]}
    doc2 = json.loads(w.client.get(f"/api/cases/{c2['id']}", headers=w.h("supA")).text)
    assert "贪污挪用" in doc2["issue_types"]
    assert c2["id"] in ids("?issue_type=贪污挪用") and c3["id"] not in ids("?issue_type=贪污挪用")
    assert ids("?issue_type=贪污") == set()  # exact list membership, not a substring
    assert ids("?issue_type=不存在的类型") == set()
    assert ids("?place=李家村") == {c2["id"]} and ids("?place=李家") == set()
    w.client.post(f"/api/cases/{c1['id']}/transitions", headers=w.h("supA"),
                  json={"action": "handling", "mode": "自办", "unit": "第一室"})
    assert ids("?status=handling") == {c1["id"]}
    # deadlines: c1 is real-name (acceptance notice due); make it overdue
    with w.db() as s:
        dl = s.query(CaseDeadline).filter_by(case_id=c1["id"]).one()
        dl.due_on = date.today() - timedelta(days=3)
        s.commit()
    assert ids("?deadline_state=overdue") == {c1["id"]}
    assert c1["id"] not in ids("?deadline_state=none")
    assert ids("?deadline_state=none") | ids("?deadline_state=open") == {c1["id"], c2["id"], c3["id"]}
    page = w.client.get("/api/cases?limit=2&offset=0", headers=w.h("supA")).json()["items"]
    page2 = w.client.get("/api/cases?limit=2&offset=2", headers=w.h("supA")).json()["items"]
    assert len(page) == 2 and len(page2) == 1 and {p["id"] for p in page + page2} == ids("")
    assert w.client.get("/api/cases?deadline_state=soonish", headers=w.h("supA")).status_code == 422
    # a unit-B supervisor sees the typed-in drafts' cases, not unit A's recording
    assert c1["id"] not in {c["id"] for c in w.client.get("/api/cases", headers=w.h("supB")).json()["items"]}


def test_urgent_alert_ack(world):
    w = world
    with w.db() as s:
        res = cases.create_draft(s, text="我举报村主任，我现在就在楼顶，不解决我就跳下去", recording_id=w.rec,
                                 call_id=w.call, settings=w.settings)
        alert_id = res.alert.id
    items = w.client.get("/api/alerts", headers=w.h("supA")).json()["items"]
    assert [a["id"] for a in items] == [alert_id]
    assert w.client.get("/api/alerts", headers=w.h("supB")).json()["items"] == []
    assert w.client.post(f"/api/alerts/{alert_id}/ack", headers=w.h("supB")).status_code == 404
    r = w.client.post(f"/api/alerts/{alert_id}/ack", headers=w.h("supA"), json={"note": "已联系属地"})
    assert r.status_code == 200 and r.json()["acknowledged_by"] == "supA"
    assert w.client.post(f"/api/alerts/{alert_id}/ack", headers=w.h("supA")).status_code == 409
    assert w.client.get("/api/alerts", headers=w.h("supA")).json()["items"] == []
    assert "alert.ack" in _actions(w, "supA")


def test_drafts_list_visibility(world):
    w = world
    typed = _draft(w, "我要反映某局长收受红包")
    ids = lambda who: {d["id"] for d in w.client.get("/api/drafts", headers=w.h(who)).json()["items"]}  # noqa: E731
    assert ids("supA") == {w.draft, typed}
    assert ids("op1") == {w.draft} and ids("mgr1") == {w.draft}
    assert ids("op2") == set() and ids("mgr2") == set() and ids("supB") == {typed}
