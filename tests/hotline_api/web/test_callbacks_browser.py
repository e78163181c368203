"""待回拨 in a real browser (Debian chromium, the app served by uvicorn): an operator opens the
callback list, sees the caller masked, reveals the number (audited), records "no answer" (the task
stays, 1 attempt), then "reached" (the task leaves the open list). A screenshot goes to
test-output/screenshots/callbacks.png."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from hotline_api.models.callbacks import CallbackTask
from hotline_api.services import audit, auth, callbacks
from hotline_api.services.call_store import CallStore
from telephony import events as ev
from tests.hotline_api.web import seed
from tests.hotline_api.web.conftest import login, screenshot

pytestmark = [pytest.mark.browser]

CALLER = "13912345566"  # invented
MASKED = "139******66"
WAIT_MS = 60_000  # the machine is shared


@pytest.fixture(scope="module")
def callback_call(web_env):
    """An operator allowed to see identity, and a call whose caller chose the callback."""
    env = web_env
    with env.factory() as s:
        auth.create_user(s, "op_cb", "operator", seed.PW, permissions=("identity",), display_name="回拨接线员",
                         settings=env.settings)
        s.commit()
    store = CallStore(env.factory)
    call_id, rid = str(uuid.uuid4()), str(uuid.uuid4())
    at = datetime.now(timezone.utc) - timedelta(minutes=10)
    store.apply(ev.CallStarted(call_id, f"{call_id}@test", f"sip:{CALLER}@127.0.0.1", CALLER, "12388", "w0", at))
    store.apply(ev.CallAnswered(call_id, at, rid, f"/spool/{rid}.wav", 8000, 2))
    for i, state in enumerate(("notice", "route", "queue", "voicemail_offer", "callback")):
        store.apply(ev.FlowChanged(call_id, state, at + timedelta(seconds=5 * i)))
    store.apply(ev.CallEnded(call_id, at + timedelta(seconds=40), "ended", 200, "callback_requested", "hotline"))
    assert callbacks.ensure_tasks_job(env.factory, env.settings) == 1
    with env.factory() as s:
        return s.execute(select(CallbackTask).where(CallbackTask.call_id == call_id)).scalar_one().id


def test_operator_calls_back_from_the_list(server, callback_call, new_page):
    tid = callback_call
    page = new_page()
    login(page, "op_cb", seed.PW)
    nav = page.locator("nav[data-testid=menu] a", has_text="待回拨")
    if nav.count():  # the menu entry (hotline_api.web.core.MENUS) once the lead has added it
        nav.first.click()
    else:
        page.goto("/op/callbacks")
    page.wait_for_load_state("networkidle")
    assert page.url.endswith("/op/callbacks")
    assert page.locator("h1").inner_text() == "待回拨"
    row = page.locator(f"tr[data-task='{tid}']")
    assert row.locator("[data-testid=caller-masked]").inner_text() == MASKED
    assert CALLER not in page.content()
    assert row.locator("[data-testid=attempts]").inner_text() == "0 / 3"

    # reveal the number (htmx fragment), audited
    row.get_by_role("button", name="查看号码（将记入审计）").click()
    number = row.locator("[data-testid=caller-number]")
    number.wait_for(timeout=WAIT_MS)
    assert number.inner_text() == CALLER
    screenshot(page, "callbacks")

    # no answer: recorded, the task stays open
    row.get_by_label("回拨说明").fill("第一次拨打无人接听")
    row.get_by_role("button", name="无人接听").click()
    page.wait_for_load_state("networkidle")
    assert page.locator("[data-testid=callback-msg]").inner_text() == "已记录：无人接听。"
    row = page.locator(f"tr[data-task='{tid}']")
    assert row.locator("[data-testid=attempts]").inner_text() == "1 / 3"
    assert "无人接听" in row.inner_text() and "第一次拨打无人接听" in row.inner_text()
    assert CALLER not in page.content()  # masked again after the reload

    # reached: done, off the open list
    row.get_by_role("button", name="已接通").click()
    page.wait_for_load_state("networkidle")
    assert page.locator("[data-testid=callback-msg]").inner_text() == "已记录：回拨接通，任务完成。"
    assert page.locator(f"tr[data-task='{tid}']").count() == 0
    page.locator("[data-testid=callbacks-empty]").wait_for(timeout=WAIT_MS)

    with server.factory() as s:
        t = s.get(CallbackTask, tid)
        assert (t.status, t.attempts, t.last_outcome) == ("done", 2, "reached")
        entries = [e for e in audit.iter_entries(s) if e["actor_name"] == "op_cb"]
        assert [e["action"] for e in entries if e["action"] in ("identity.view", "callback.attempt")] == [
            "identity.view", "callback.attempt", "callback.attempt"]
        assert [e["detail"]["outcome"] for e in entries if e["action"] == "callback.attempt"] == ["no_answer", "reached"]
        assert all(CALLER not in str(e) for e in entries)


def test_other_roles_get_404_on_the_callback_pages(server, callback_call, new_page):
    page = new_page("recording_manager")
    for path in ("/op/callbacks", "/callbacks", f"/callbacks/{callback_call}/number"):
        resp = page.goto(path)
        assert resp.status == 404 and "页面不存在" in page.content(), path
    page = new_page("supervisor")  # unit-less supervisor: sees the task, under its status
    assert page.goto("/op/callbacks").status == 404
    with server.factory() as s:
        status = s.get(CallbackTask, callback_call).status  # open, or done after the test above
    assert page.goto(f"/callbacks?status={status}").status == 200
    assert page.locator(f"tr[data-task='{callback_call}']").count() == 1
    assert CALLER not in page.content()
