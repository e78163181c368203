"""The operator's console shows the caller's live transcript (real chromium, the real app under
uvicorn): LiveTranscript events applied by the real CallStore reach the page over
/api/live/events; a partial line is replaced by the next one and by the final; numbers stay masked."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from tests.hotline_api.web.conftest import browser, new_page, server, web_env  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LINES = "() => Array.from(document.querySelectorAll('#live-transcript > div')).map(e => [e.className, e.textContent])"


def test_operator_sees_the_callers_words_while_the_call_runs(server, new_page):  # noqa: F811
    from hotline_api.models.operators import Operator
    from hotline_api.services.call_store import CallStore
    from telephony import events as ev

    env = server
    page = new_page("operator")
    page.wait_for_function("() => document.getElementById('live-state').dataset.state === 'waiting'", timeout=10000)
    with env.factory() as s:
        op_id = s.execute(select(Operator.id).where(Operator.user_id == env.users["operator"].id)).scalar_one()
    store = CallStore(env.factory)
    now = datetime.now(timezone.utc)
    cid = str(uuid.uuid4())
    store.apply(ev.CallStarted(cid, f"{cid}@live", "sip:13566667777@127.0.0.1", "13566667777", "12388", "w0", now))
    store.apply(ev.CallAnswered(cid, now, "rec-" + cid[:8], "/tmp/x.wav", 16000, 2))
    store.apply(ev.OperatorAnswered(cid, op_id, now))
    store.apply(ev.CallBridged(cid, op_id, now, wait_s=1.0))
    page.wait_for_function("() => document.getElementById('live-state').dataset.state === 'on-call'", timeout=10000)
    page.wait_for_selector("[data-testid=caller-masked]")

    t = now + timedelta(seconds=1)
    store.apply(ev.LiveTranscript(cid, t, False, "我要反映", 0.0, 1.2))
    page.wait_for_function(LINES + ".some(([c, t]) => c.includes('partial') && t === '来电人：我要反映')", timeout=10000)
    store.apply(ev.LiveTranscript(cid, t + timedelta(seconds=1), False, "我要反映村里的", 0.0, 2.0))
    page.wait_for_function(LINES + ".some(([c, t]) => t === '来电人：我要反映村里的')", timeout=10000)
    assert [x for x in page.evaluate(LINES) if "partial" in x[0]] == [["partial muted", "来电人：我要反映村里的"]]
    store.apply(ev.LiveTranscript(cid, t + timedelta(seconds=2), True, "我要反映村里的问题 我的电话是13566667777",
                                  0.3, 3.1))
    page.wait_for_function(LINES + ".some(([c, t]) => !c.includes('partial') && t.includes('我要反映村里的问题'))",
                           timeout=10000)
    lines = page.evaluate(LINES)
    assert [c for c, _ in lines if "partial" in c] == []  # the final replaced the hypothesis
    assert lines[-1][1] == "来电人：我要反映村里的问题 我的电话是135******77"
    assert "13566667777" not in page.content()
