"""Unit scoping of the console: every role × every web page and form action, in one table.

The world: two units. Unit A has an operator (``opA``), a recording manager (``mgrA``) and a
supervisor (``supA``); unit B the same (``opB``, ``mgrB``, ``supB``); an auditor and an admin have
no unit. Unit A's objects: a recorded call of ``opA`` assigned to ``mgrA``, its urgent draft
(self-harm) registered as a case, the open urgent alert, an overdue-review alert of unit A and a
callback task. Unit B's: a call of ``opB`` assigned to ``mgrB`` from the same caller, whose draft
is linked to unit A's as a probable duplicate (``same_caller``).

For every row of ``TABLE`` (one or more per web route; ``test_every_web_route_is_in_the_table``
enumerates the routes from the app so that a new page cannot be forgotten) every role is asked:

* the status must be the expected one (404 for everything not permitted: no enumeration);
* zero cross-unit reads: no body answered to a unit-B user holds unit A's accused, place, amount,
  case number or ids, and no body answered to the auditor or the admin holds report content;
* zero cross-unit actions: a refused POST (and any POST by a unit-B user on a unit-A object)
  leaves the database rows it aims at unchanged.

The other tests check the rules themselves: the alert lists are the API's, the dashboard counts
are the unit's, organizing refuses a case of another unit (web, service and API), and duplicate
links never name another unit's draft or case.

All names, places and numbers here are invented."""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from hotline_api.models.callbacks import CallbackTask
from hotline_api.models.calls import Call
from hotline_api.models.cases import Case, Draft, DraftLink, UrgentAlert
from hotline_api.models.governance import DutyRoster, ReviewAlert, User
from hotline_api.services import access, auth, callbacks, cases, review
from hotline_api.web import queries
from tests.hotline_api.web import seed
from tests.hotline_api.web.conftest import fresh_data_dir

PW = seed.PW
CALLER = "13655501234"
ACCUSED = "欧阳建华"
PLACE = "枫林镇"
TEXT_A = (f"我要举报{PLACE}财政所所长{ACCUSED}，他挪用扶贫资金八十万元。他说明天就要把账本烧掉，我现在就想去跳楼。"
          f"我叫韩晓梅，电话{CALLER}。")
TEXT_A_PLAIN = f"我要举报{PLACE}财政所所长{ACCUSED}，他挪用扶贫资金八十万元。我叫韩晓梅，电话{CALLER}。"
TEXT_B = f"我要反映石桥乡农技站站长马德胜，他收了种子公司的回扣三万元。我叫韩晓梅，电话{CALLER}。"

# key -> (username, role, unit, permissions)
USERS = {
    "opA": ("rbac-opA", "operator", "A", ()),
    "mgrA": ("rbac-mgrA", "recording_manager", "A", ()),
    "supA": ("rbac-supA", "supervisor", "A", ("identity",)),
    "supB": ("rbac-supB", "supervisor", "B", ("identity",)),  # identity too: refused for the unit alone
    "aud": ("rbac-aud", "auditor", None, ()),
    "adm": ("rbac-adm", "admin", None, ()),
    "mgrB": ("rbac-mgrB", "recording_manager", "B", ()),
    "opB": ("rbac-opB", "operator", "B", ()),
    "sup0": ("rbac-sup0", "supervisor", None, ()),  # no unit: sees every unit (the API's rule); not in TABLE
}
ROLES = ("aud", "adm", "opB", "mgrB", "supB", "opA", "mgrA", "supA")  # refused and other-unit ones first
UNIT_B = ("opB", "mgrB", "supB")
NO_CONTENT = ("aud", "adm")


@dataclass
class World:
    settings: Any
    db: Any
    ctx: Any
    app: Any
    users: dict[str, str] = field(default_factory=dict)
    clients: dict[str, TestClient] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)

    def uid(self, key: str) -> str:
        return self.users[key]

    def login(self, key: str) -> TestClient:
        c = TestClient(self.app, base_url="https://testserver", follow_redirects=False)
        r = c.post("/login", data={"username": USERS[key][0], "password": PW})
        assert r.status_code == 303, r.text
        c.headers["X-CSRF-Token"] = c.cookies.get("hotline_csrf")
        return c

    def client(self, key: str) -> TestClient:
        if key not in self.clients:
            self.clients[key] = self.login(key)
        return self.clients[key]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def add_call(w: World, unit: str, *, flow_path: str | None = None) -> tuple[str, str]:
    """A recorded call of ``unit``: handled by its operator, assigned to its manager (on duty)."""
    with w.db() as s:
        review.set_roster(s, None, s.get(User, w.uid(f"mgr{unit}")))
        s.commit()
    call_id, rid = seed.add_recorded_call(w.db, w.settings, w.ctx, _now() - timedelta(minutes=10), seconds=2.0,
                                          caller=CALLER, operator_id=w.uid(f"op{unit}"))
    if flow_path:
        with w.db() as s:
            s.get(Call, call_id).flow_path = flow_path
            callbacks.ensure_tasks(s, settings=w.settings)
            s.commit()
    return call_id, rid


def add_unit_draft(w: World, unit: str, text: str, register: bool = False) -> dict[str, str]:
    call_id, rid = add_call(w, unit)
    did = seed.add_draft(w.db, w.settings, text, rid=rid, call_id=call_id, received_at=_now())
    out = {"call": call_id, "rec": rid, "draft": did}
    with w.db() as s:
        alert = s.execute(select(UrgentAlert).where(UrgentAlert.draft_id == did)).scalars().first()
        if alert is not None:
            out["alert"] = alert.id
    if register:
        c = cases.register_draft(w.db, did, USERS[f"sup{unit}"][0], settings=w.settings)
        out.update(case=c.id, number=c.number)
    return out


def add_review_alert(w: World, unit: str, rid: str) -> str:
    with w.db() as s:
        a = ReviewAlert(kind="review_overdue", recording_id=rid, manager_id=w.uid(f"mgr{unit}"), unit=unit,
                        message=f"录音审核逾期：负责人 录音管理员{unit}，未完成：收听", created_at=_now())
        s.add(a)
        s.commit()
        return a.id


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from hotline_api.app import create_app
    from hotline_api.core import config
    from hotline_api.db import crypto_types
    from hotline_api.db.session import dispose_all
    from hotline_api.services import operators as ops

    settings, db, ctx = fresh_data_dir(tmp_path_factory, "rbac-web")
    w = World(settings, db, ctx, create_app(settings))
    with db() as s:
        for key, (name, role, unit, perms) in USERS.items():
            u, _ = auth.create_user(s, name, role, PW, unit=unit, permissions=perms, display_name=f"{key}-用户",
                                    settings=settings)
            w.users[key] = u.id
        s.flush()
        for key in ("opA", "opB"):
            ops.set_state(s, ops.ensure_operator(s, s.get(User, w.uid(key))), "available")
        s.commit()
    # unit A: the urgent draft, registered as a case (its alert stays open), a review alert, a callback
    a = add_unit_draft(w, "A", TEXT_A, register=True)
    assert "alert" in a, "the unit-A draft must raise an urgent alert"
    cb_call, cb_rec = add_call(w, "A", flow_path="greeting>queue>callback")
    with w.db() as s:
        task = s.execute(select(CallbackTask).where(CallbackTask.call_id == cb_call)).scalar_one()
    w.ids.update(rec=a["rec"], call=a["call"], draft=a["draft"], alert=a["alert"], case=a["case"], number=a["number"],
                 ralert=add_review_alert(w, "A", a["rec"]), task=task.id, cb_call=cb_call, cb_rec=cb_rec)
    # unit B: same caller, later: linked to unit A's draft and case
    b = add_unit_draft(w, "B", TEXT_B, register=False)
    w.ids.update(brec=b["rec"], bcall=b["call"], bdraft=b["draft"], bralert=add_review_alert(w, "B", b["rec"]))
    with w.db() as s:
        review.set_roster(s, None, s.get(User, w.uid("mgrA")))
        s.commit()
    (settings.prompts_dir).mkdir(parents=True, exist_ok=True)
    seed.wav_file(settings.prompts_dir / "notice.wav", seconds=0.5)
    yield w
    crypto_types.set_field_cipher(None)
    config.set_settings(None)
    dispose_all()


def a_tokens(w: World) -> list[str]:
    """What a unit-B user must never read: unit A's accused, place, amount, case number, ids."""
    i = w.ids
    return [ACCUSED, PLACE, "80万", i["number"], i["draft"], i["case"], i["rec"], i["call"], i["alert"], i["ralert"]]


CONTENT_TOKENS = [ACCUSED, PLACE, "80万", "韩晓梅", CALLER, "马德胜", "石桥乡"]


# ------------------------------------------------------------------------------- row state
def _draft_state(w, ids, key="draft"):
    with w.db() as s:
        d = s.get(Draft, ids[key])
        return d.fields_json, d.status, d.updated_at, d.case_id


def _case_state(w, ids):
    with w.db() as s:
        c = s.get(Case, ids["case"])
        return c.status, c.handling_mode, c.handling_unit, c.closed_at, c.archived_at


def _urgent_state(w, ids):
    with w.db() as s:
        a = s.get(UrgentAlert, ids["alert"])
        return a.status, a.acknowledged_by, a.acknowledged_at, a.note


def _ralert_state(w, ids):
    with w.db() as s:
        a = s.get(ReviewAlert, ids["ralert"])
        return a.acknowledged_at, a.acknowledged_by


def _assignment_state(w, ids, key="rec"):
    with w.db() as s:
        a = review.get_assignment(s, ids[key])
        return a.stored_confirmed_at, a.organized_at, a.organized_kind, a.case_id, a.tags_json, a.no_content_reason


def _task_state(w, ids):
    with w.db() as s:
        t = s.get(CallbackTask, ids["task"])
        return t.status, t.attempts, t.last_outcome, t.handled_by


def _op_draft_state(w, ids):
    with w.db() as s:
        return [(d.id, d.fields_json) for d in s.execute(select(Draft).where(Draft.call_id == ids["call"])).scalars()]


def _roster_state(w, ids):
    with w.db() as s:
        return [(r.day, r.shift, r.manager_id) for r in s.execute(select(DutyRoster).order_by(DutyRoster.id)).scalars()]


# ---------------------------------------------------------------------------- row set-ups
def _fresh_draft(w):
    return add_unit_draft(w, "A", TEXT_A_PLAIN)


def _fresh_case(w):
    return add_unit_draft(w, "A", TEXT_A_PLAIN, register=True)


def _fresh_alert(w):
    return add_unit_draft(w, "A", TEXT_A)


def _fresh_ralert(w):
    return {"ralert": add_review_alert(w, "A", w.ids["rec"])}


def _fresh_rec(w):
    call_id, rid = add_call(w, "A")
    return {"rec": rid, "call": call_id}


def _fresh_task(w):
    call_id, rid = add_call(w, "A", flow_path="greeting>queue>callback")
    with w.db() as s:
        return {"task": s.execute(select(CallbackTask.id).where(CallbackTask.call_id == call_id)).scalar_one()}


def _throwaway_user(w):
    with w.db() as s:
        u, _ = auth.create_user(s, f"rbac-x-{uuid.uuid4().hex[:8]}", "operator", PW, settings=w.settings)
        s.commit()
        return {"user": u.id}


# ----------------------------------------------------------------------------------- table
def _s(**kw: int) -> dict[str, int]:
    """Expected statuses: 404 for every role not named."""
    return {r: kw.get(r, 404) for r in ROLES}


def _all(status: int) -> dict[str, int]:
    return {r: status for r in ROLES}


@dataclass
class Row:
    name: str
    method: str
    route: str  # the route's path as the app declares it
    url: str  # with {ids}
    expected: dict[str, int]
    data: dict | None = None
    setup: Callable[[World], dict] | None = None
    state: Callable[[World, dict], Any] | None = None
    writers: tuple[str, ...] = ()  # roles that may change ``state`` (every other one must not)
    fresh_session: bool = False


SUP = _s(supA=200, supB=200)
TABLE = [
    # session pages: every logged-in role alike
    Row("root", "GET", "/", "/", _all(303)),
    Row("login.page", "GET", "/login", "/login", _all(200)),
    Row("login.submit", "POST", "/login", "/login", _all(401), data={"username": "rbac-nobody", "password": "x"}),
    Row("logout", "POST", "/logout", "/logout", _all(303), fresh_session=True),
    Row("password.page", "GET", "/password", "/password", _all(200)),
    Row("password.submit", "POST", "/password", "/password", _all(400),
        data={"old_password": "x", "new_password": "a-new-pass-1", "new_password2": "another-pass-2"}),
    Row("static", "GET", "/static/{path:path}", "/static/vendor/htmx-2.0.11.min.js", _all(200)),
    # recording manager
    Row("review.queue", "GET", "/review", "/review", _s(mgrA=200, mgrB=200)),
    Row("review.detail", "GET", "/review/{rid}", "/review/{rec}", _s(mgrA=200)),
    Row("review.status", "GET", "/review/{rid}/status", "/review/{rec}/status", _s(mgrA=200)),
    Row("review.stored", "POST", "/review/{rid}/stored", "/review/{rec}/stored", _s(mgrA=200), setup=_fresh_rec,
        state=_assignment_state, writers=("mgrA",)),
    Row("review.organize", "POST", "/review/{rid}/organize", "/review/{rec}/organize", _s(mgrA=200),
        data={"mode": "tags", "tags": "需回访"}, setup=_fresh_rec, state=_assignment_state, writers=("mgrA",)),
    Row("review.organize.other-unit-case", "POST", "/review/{rid}/organize", "/review/{brec}/organize", _s(mgrB=400),
        data={"mode": "case", "case_number": "{number}"},
        state=lambda w, ids: _assignment_state(w, ids, "brec")),
    # supervisor: drafts, cases, alerts, roster, statistics
    Row("drafts.list", "GET", "/drafts", "/drafts", SUP),
    Row("drafts.list.urgent", "GET", "/drafts", "/drafts?urgent=1", SUP),
    Row("draft.page", "GET", "/drafts/{draft_id}", "/drafts/{draft}", _s(supA=200)),
    Row("draft.page.unit-b", "GET", "/drafts/{draft_id}", "/drafts/{bdraft}", _s(supB=200)),
    Row("draft.save", "POST", "/drafts/{draft_id}", "/drafts/{draft}", _s(supA=303),
        data={"action": "save", "category": "申诉"}, setup=_fresh_draft, state=_draft_state, writers=("supA",)),
    Row("draft.identity", "GET", "/drafts/{draft_id}/identity", "/drafts/{draft}/identity", _s(supA=200)),
    Row("cases.list", "GET", "/cases", "/cases", SUP),
    Row("case.page", "GET", "/cases/{case_id}", "/cases/{case}", _s(supA=200)),
    Row("case.action", "POST", "/cases/{case_id}/action", "/cases/{case}/action", _s(supA=303),
        data={"action": "handling", "mode": "自办", "unit": "第一纪检监察室"}, setup=_fresh_case, state=_case_state,
        writers=("supA",)),
    Row("alerts", "GET", "/alerts", "/alerts", SUP),
    Row("alert.urgent.ack", "POST", "/alerts/urgent/{alert_id}/ack", "/alerts/urgent/{alert}/ack", _s(supA=303),
        data={"note": "已电话联系"}, setup=_fresh_alert, state=_urgent_state, writers=("supA",)),
    Row("alert.review.ack", "POST", "/alerts/review/{alert_id}/ack", "/alerts/review/{ralert}/ack", _s(supA=303),
        setup=_fresh_ralert, state=_ralert_state, writers=("supA",)),
    Row("roster", "GET", "/roster", "/roster", SUP),
    # the duty roster is one for all units (DutyRoster has no unit): both supervisors may set it
    Row("roster.set", "POST", "/roster", "/roster", _s(supA=303, supB=303),
        data={"manager_id": "{mgrA}", "day": "2099-01-04", "shift": "rbac", "start": "08:00", "end": "18:00"},
        state=_roster_state, writers=("supA", "supB")),
    Row("stats", "GET", "/stats", "/stats", SUP),
    Row("stats.range", "GET", "/stats", "/stats?start={today}&end={today}&gran=day", SUP),
    Row("report", "GET", "/report", "/report", SUP),
    Row("report.month", "GET", "/report", "/report?period={month}", SUP),
    # auditor
    Row("audit", "GET", "/audit", "/audit", _s(aud=200)),
    Row("audit.verify", "GET", "/audit/verify", "/audit/verify", _s(aud=200)),
    # admin
    Row("admin.users", "GET", "/admin/users", "/admin/users", _s(adm=200)),
    Row("admin.user.create", "POST", "/admin/users", "/admin/users", _s(adm=200),
        data={"username": "rbac-created", "role": "operator"}),
    Row("admin.user.update", "POST", "/admin/users/{user_id}", "/admin/users/{user}", _s(adm=303),
        data={"role": "operator", "active": "1"}, setup=_throwaway_user),
    Row("admin.calendar", "GET", "/admin/calendar", "/admin/calendar", _s(adm=200)),
    Row("admin.calendar.set", "POST", "/admin/calendar", "/admin/calendar", _s(adm=303), data={"action": "none"}),
    Row("admin.retention", "GET", "/admin/retention", "/admin/retention", _s(adm=200)),
    Row("admin.retention.set", "POST", "/admin/retention", "/admin/retention", _s(adm=303),
        data={"days_no_content": "not-a-number"}),
    Row("admin.prompts", "GET", "/admin/prompts", "/admin/prompts", _s(adm=200)),
    Row("admin.prompt.audio", "GET", "/admin/prompts/{name}.wav", "/admin/prompts/notice.wav", _s(adm=200)),
    Row("admin.prompt.upload", "POST", "/admin/prompts/{name}", "/admin/prompts/notice", _s(adm=303), data={"x": "1"}),
    Row("admin.asr", "GET", "/admin/asr", "/admin/asr", _s(adm=200)),
    Row("admin.pipeline", "GET", "/admin/pipeline", "/admin/pipeline", _s(adm=200)),
    # operator
    Row("op.home", "GET", "/op", "/op", _s(opA=200, opB=200)),
    Row("op.state", "GET", "/op/state", "/op/state", _s(opA=200, opB=200)),
    Row("op.state.set", "POST", "/op/state", "/op/state", _s(opA=200, opB=200), data={"state": "available"}),
    Row("op.calls", "GET", "/op/calls", "/op/calls", _s(opA=200, opB=200)),
    Row("op.call", "GET", "/op/calls/{call_id}", "/op/calls/{call}", _s(opA=200)),
    Row("op.live", "GET", "/op/live/{call_id}", "/op/live/{call}", _s(opA=200)),
    Row("op.draft", "POST", "/op/calls/{call_id}/draft", "/op/calls/{call}/draft", _s(opA=200),
        data={"summary": "接线员补充：来电人称已向镇里反映过两次。", "shown_summary": ""}, setup=_fresh_draft,
        state=_op_draft_state, writers=("opA",)),
    # callbacks: every operator may call any caller back (services/callbacks.py); supervisors: their unit's
    Row("callbacks.op", "GET", "/op/callbacks", "/op/callbacks", _s(opA=200, opB=200)),
    Row("callbacks.sup", "GET", "/callbacks", "/callbacks", SUP),
    Row("callback.number", "GET", "/callbacks/{task_id}/number", "/callbacks/{task}/number", _s(supA=200)),
    Row("callback.attempt", "POST", "/callbacks/{task_id}/attempt", "/callbacks/{task}/attempt",
        _s(opA=303, opB=303, supA=303), data={"outcome": "no_answer"}, setup=_fresh_task, state=_task_state,
        writers=("opB", "opA", "supA")),
]


def _web_routes() -> set[tuple[str, str]]:
    """(method, path) of every route of the console router, however deeply its routers are included."""
    from hotline_api.web.routes import router

    def walk(rt):
        for r in rt.routes:
            inner = getattr(r, "original_router", None)
            if inner is not None:  # FastAPI's included router
                yield from walk(inner)
            else:
                yield r

    out = set()
    for r in walk(router):
        for m in getattr(r, "methods", None) or ():
            if m != "HEAD":
                out.add((m, r.path))
    return out


def test_every_web_route_is_in_the_table():
    routes = _web_routes()
    assert len(routes) > 40, "the console routes were not found"
    covered = {(row.method, row.route) for row in TABLE}
    assert routes - covered == set(), "web routes missing from the RBAC table"
    assert covered - routes == set(), "rows for routes that do not exist"
    assert len({row.name for row in TABLE}) == len(TABLE)


def _fill(value, ids):
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


@pytest.mark.parametrize("row", TABLE, ids=[r.name for r in TABLE])
def test_rbac_matrix(world, row: Row):
    w = world
    today = datetime.now(queries.tz_of(w.settings)).date()
    ids = {**w.ids, "mgrA": w.uid("mgrA"), "today": today.isoformat(), "month": today.strftime("%Y-%m")}
    if row.setup is not None:
        ids.update(row.setup(w))
    tokens = a_tokens(w) + [v for k, v in ids.items() if k in ("draft", "case", "rec", "call", "alert", "ralert")
                            and v not in w.ids.values()]
    wrong, leaks, changed = [], [], []
    for role in ROLES:
        before = row.state(w, ids) if row.state else None
        c = w.login(role) if row.fresh_session else w.client(role)
        data = _fill(row.data, ids) if row.data is not None else None
        r = c.request(row.method, _fill(row.url, ids), data=data)
        if r.status_code != row.expected[role]:
            wrong.append(f"{role}: {r.status_code} (expected {row.expected[role]})")
        body = r.text
        if role in UNIT_B:
            leaks += [f"{role} read {t!r}" for t in tokens if t in body]
        if role in NO_CONTENT:
            leaks += [f"{role} read content {t!r}" for t in CONTENT_TOKENS if t in body]
        if row.state and role not in row.writers and row.state(w, ids) != before:
            changed.append(f"{role} changed it ({r.status_code})")
        if r.status_code == 404:
            assert "页面不存在" in body or not body.strip(), (role, body[:200])
    assert not wrong, f"{row.name}: " + "; ".join(wrong)
    assert not leaks, f"{row.name}: cross-unit read: " + "; ".join(leaks)
    assert not changed, f"{row.name}: refused or cross-unit action changed the database: " + "; ".join(changed)


# ------------------------------------------------------------------------------- alerts
def _page_ids(html: str, kind: str) -> set[str]:
    return set(re.findall(rf'/alerts/{kind}/([0-9a-f-]{{36}})/ack', html))


def test_alert_lists_are_the_apis(world):
    """The console's open alerts are exactly what ``/api/alerts`` and ``/api/review/alerts`` show
    each supervisor (unit A, unit B, and one without a unit, who sees every unit's)."""
    w = world
    for key in ("supA", "supB", "sup0"):
        c = w.client(key)
        html = c.get("/alerts").text
        api_urgent = {a["id"] for a in c.get("/api/alerts").json()["items"]}
        api_review = {a["id"] for a in c.get("/api/review/alerts").json()["items"]}
        assert _page_ids(html, "urgent") == api_urgent, key
        assert _page_ids(html, "review") == api_review, key
        acked_page = set(re.findall(r'data-acked="([0-9a-f-]{36})"', html))
        api_acked = {a["id"] for a in c.get("/api/alerts?all=1").json()["items"] if a["status"] != "open"}
        assert acked_page <= api_acked, key
    a_html = w.client("supA").get("/alerts").text
    assert w.ids["alert"] in a_html and ACCUSED in a_html and w.ids["ralert"] in a_html
    assert w.ids["bralert"] not in a_html
    b_html = w.client("supB").get("/alerts").text
    assert w.ids["alert"] not in b_html and ACCUSED not in b_html and w.ids["ralert"] not in b_html
    assert w.ids["bralert"] in b_html
    all_html = w.client("sup0").get("/alerts").text
    assert w.ids["alert"] in all_html and w.ids["ralert"] in all_html and w.ids["bralert"] in all_html


def test_cross_unit_acks_answer_404_and_change_nothing(world):
    w = world
    fresh = add_unit_draft(w, "A", TEXT_A)
    ralert = add_review_alert(w, "A", w.ids["rec"])
    sup_b = w.client("supB")
    for url in (f"/alerts/urgent/{fresh['alert']}/ack", f"/alerts/review/{ralert}/ack",
                "/alerts/urgent/../../etc/passwd/ack", f"/alerts/urgent/{'0' * 8}-0000-0000-0000-{'0' * 12}/ack",
                "/alerts/review/not-an-id/ack"):
        r = sup_b.post(url, data={"note": "x"})
        assert r.status_code == 404, (url, r.status_code)
    with w.db() as s:
        a = s.get(UrgentAlert, fresh["alert"])
        assert (a.status, a.acknowledged_by, a.acknowledged_at, a.note) == ("open", None, None, None)
        assert s.get(ReviewAlert, ralert).acknowledged_at is None
    # the unit's own supervisor can, and the one without a unit too (the API's rule)
    assert w.client("supA").post(f"/alerts/urgent/{fresh['alert']}/ack", data={"note": "已处置"}).status_code == 303
    assert w.client("sup0").post(f"/alerts/review/{ralert}/ack").status_code == 303
    with w.db() as s:
        assert s.get(UrgentAlert, fresh["alert"]).status != "open"
        assert s.get(ReviewAlert, ralert).acknowledged_at is not None


# ------------------------------------------------------------------------------- statistics
def _kpi(html: str, testid: str) -> str:
    m = re.search(rf'data-testid="{testid}">([^<]*)<', html)
    assert m, testid
    return m.group(1).strip()


def _expected_counts(w, key: str, start: date, end: date) -> dict[str, int]:
    """Calls, cases and review assignments of the period that ``key`` may see, counted row by row
    with the access rules (``services.access``)."""
    from hotline_api.models.governance import ReviewAssignment

    tz = queries.tz_of(w.settings)
    a_utc, b_utc = queries.local_range_utc(start, end, tz)
    with w.db() as s:
        user = s.get(User, w.uid(key))
        calls = sum(1 for c in s.execute(select(Call)).scalars()
                    if a_utc <= c.created_at < b_utc and access.can_see_call_row(s, user, c, settings=w.settings))
        n_cases = sum(1 for c in s.execute(select(Case)).scalars()
                      if start <= c.received_on < end and access.can_see_draft(s, user, s.get(Draft, c.draft_id)))
        assigned = sum(1 for a in s.execute(select(ReviewAssignment)).scalars()
                       if a_utc <= a.assigned_at < b_utc and access.can_see_recording(s, user, a.recording_id))
    return {"calls": calls, "cases": n_cases, "assigned": assigned}


def test_dashboard_counts_only_the_units_own(world):
    w = world
    today = datetime.now(queries.tz_of(w.settings)).date()
    start, end = today - timedelta(days=1), today + timedelta(days=1)
    url = f"/stats?start={start.isoformat()}&end={today.isoformat()}"
    seen = {}
    for key in ("supA", "supB", "sup0"):
        exp = _expected_counts(w, key, start, end)
        html = w.client(key).get(url).text
        got = {"calls": int(_kpi(html, "calls-total")), "cases": int(_kpi(html, "cases-total"))}
        assert got == {"calls": exp["calls"], "cases": exp["cases"]}, key
        with w.db() as s:
            user = s.get(User, w.uid(key))
            d = queries.dashboard(s, start, end, w.settings, user=user)
        assert (d.calls_total, d.cases_total, d.compliance_total.assigned if d.compliance_total else 0) == (
            exp["calls"], exp["cases"], exp["assigned"]), key
        seen[key] = exp
    # the units differ and together make the whole
    assert seen["supA"]["cases"] >= 1 and seen["supB"]["calls"] >= 1
    assert seen["sup0"]["calls"] == seen["supA"]["calls"] + seen["supB"]["calls"]
    b = w.client("supB").get(url).text
    assert PLACE not in b and "石桥乡" not in b  # B's own draft is not a case
    rep = w.client("supB").get("/report").text
    assert PLACE not in rep and "mgrA-用户" not in rep
    assert PLACE in w.client("supA").get("/report").text
    assert PLACE in w.client("sup0").get(url).text


# ------------------------------------------------------------------------------- organize
def test_organize_refuses_a_case_of_another_unit(world):
    """A recording of unit B cannot be linked to unit A's case: the console says so in Chinese
    (without telling whether the case exists), the service raises ``review.NotPermitted`` and the
    API answers 404; nothing changes. The own unit's case is linked."""
    w = world
    number, case_id = w.ids["number"], w.ids["case"]
    call_b, rec_b = add_call(w, "B")
    before = _assignment_state(w, {"rec": rec_b})
    mgr_b = w.client("mgrB")
    for ref in (number, "12388-1999-000001"):
        r = mgr_b.post(f"/review/{rec_b}/organize", data={"mode": "case", "case_number": ref})
        assert r.status_code == 400 and "未找到该案件" in r.text, r.text
        assert number not in r.text and case_id not in r.text
    assert _assignment_state(w, {"rec": rec_b}) == before
    with w.db() as s:
        with pytest.raises(review.NotPermitted):
            review.organize(s, rec_b, s.get(User, w.uid("mgrB")), case_id=case_id)
        with pytest.raises(review.NotPermitted):
            review.organize(s, rec_b, s.get(User, w.uid("supB")), case_id=case_id)
        s.rollback()
    for key, body in (("mgrB", {"case": number}), ("mgrB", {"case_id": case_id}), ("supB", {"case": number})):
        r = w.client(key).post(f"/api/recordings/{rec_b}/organize", json=body)
        assert r.status_code == 404, (key, r.text)
    assert _assignment_state(w, {"rec": rec_b}) == before
    # unit A's manager links a recording of unit A to unit A's case (web and API)
    _, rec_a = add_call(w, "A")
    r = w.client("mgrA").post(f"/review/{rec_a}/organize", data={"mode": "case", "case_number": number})
    assert r.status_code == 200 and f"已关联 {number}" in r.text, r.text
    _, rec_a2 = add_call(w, "A")
    r = w.client("mgrA").post(f"/api/recordings/{rec_a2}/organize", json={"case": number})
    assert r.status_code == 200 and r.json()["case_id"] == case_id
    with w.db() as s:
        assert review.get_assignment(s, rec_a).case_id == case_id


# -------------------------------------------------------------------------- duplicate links
def test_duplicate_links_never_name_another_units_draft_or_case(world):
    w = world
    with w.db() as s:
        links = s.execute(select(DraftLink).where(DraftLink.draft_id == w.ids["bdraft"])).scalars().all()
    assert any(l.reason == "same_caller" and l.earlier_draft_id == w.ids["draft"] and l.earlier_case_id == w.ids["case"]
               for l in links), "the unit-B draft must be linked to unit A's (same caller)"
    b = w.client("supB").get(f"/drafts/{w.ids['bdraft']}").text
    assert "其他单位有相关记录" in b
    for t in (w.ids["draft"], w.ids["case"], w.ids["number"]):
        assert t not in b
    # a supervisor who may see both sees the link to the case
    allsee = w.client("sup0").get(f"/drafts/{w.ids['bdraft']}").text
    assert f'/cases/{w.ids["case"]}' in allsee and w.ids["number"] in allsee and "其他单位有相关记录" not in allsee


def test_duplicate_links_service(world):
    from hotline_api.services import case_links

    w = world
    with w.db() as s:
        d = s.get(Draft, w.ids["bdraft"])
        hidden = case_links.duplicate_links(s, s.get(User, w.uid("supB")), d, settings=w.settings)
        shown = case_links.duplicate_links(s, s.get(User, w.uid("sup0")), d, settings=w.settings)
    assert hidden and all(not l.visible and l.draft_id is None and l.case_id is None and l.case_number is None
                          for l in hidden if l.reason == "same_caller")
    assert any(l.visible and l.case_id == w.ids["case"] and l.case_number == w.ids["number"] for l in shown)
    assert json.dumps([l.as_dict() for l in hidden]).count(w.ids["draft"]) == 0


def test_api_draft_json_does_not_name_another_units_draft(world):
    w = world
    r = w.client("supB").get(f"/api/drafts/{w.ids['bdraft']}")
    assert r.status_code == 200
    assert w.ids["draft"] not in r.text and w.ids["case"] not in r.text
