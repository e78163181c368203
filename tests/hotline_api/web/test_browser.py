"""The console in a real browser (Debian chromium through playwright), against the real app served
by uvicorn: role menus, the recording manager's player with the transcript, the supervisor's draft
registration, the statistics dashboard, the printable report, screenshots and an accessibility
audit."""
from __future__ import annotations

import json
import re
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from hotline_api.models.cases import Case, Draft, DraftCorrection
from hotline_api.services import audit, review
from hotline_api.web.core import MENUS
from tests.hotline_api.web import seed
from tests.hotline_api.web.conftest import REPO, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MONTH = (2026, 3)


@pytest.fixture(scope="module")
def seeded(server):
    env = server
    now = datetime.now(timezone.utc)
    call_id, rid = seed.add_recorded_call(env.factory, env.settings, env.ctx, now - timedelta(minutes=20),
                                          operator_id=env.users["operator"].id)
    seed.add_transcript(env.factory, rid)
    draft_id = seed.add_draft(env.factory, env.settings, seed.TEXTS[0], rid=rid, call_id=call_id,
                              received_at=now - timedelta(minutes=19))
    urgent_id = seed.add_draft(env.factory, env.settings, seed.TEXTS[3], received_at=now - timedelta(minutes=5))
    # a second, older item in the manager's queue that is overdue
    seed.add_recorded_call(env.factory, env.settings, env.ctx, now - timedelta(days=6), seconds=6.0, seed=3)
    month = seed.seed_month(env.factory, env.settings, *MONTH)
    env.data.update(call_id=call_id, rid=rid, draft_id=draft_id, urgent_id=urgent_id, month=month)
    return env


# ------------------------------------------------------------------------------------ menus
@pytest.mark.parametrize("role", ["operator", "recording_manager", "supervisor", "auditor", "admin"])
def test_each_role_sees_only_its_menu(seeded, new_page, role):
    page = new_page(role)
    expected = [key for key, _, _ in MENUS[role]]
    items = page.locator("nav[data-testid=menu] a").evaluate_all("els => els.map(e => e.dataset.menu)")
    assert items == expected
    assert page.url.endswith(MENUS[role][0][2])
    # every page of the own menu opens; a page of another role answers 404 with no content
    for _, _, href in MENUS[role]:
        resp = page.goto(href)
        assert resp.status == 200, href
    other = {"operator": "/cases", "recording_manager": "/drafts", "supervisor": "/admin/users",
             "auditor": "/review", "admin": "/audit"}[role]
    resp = page.goto(other)
    assert resp.status == 404
    assert "页面不存在" in page.content()
    page.goto(MENUS[role][0][2])
    screenshot(page, f"home-{role}")


def test_login_page_and_generic_errors(seeded, new_page):
    page = new_page()
    page.goto("/review")
    assert "/login" in page.url
    screenshot(page, "login")
    for user in ("mgr1", "no-such-user"):
        page.get_by_label("用户名").fill(user)
        page.get_by_label("密码").fill("wrong-password-1")
        page.get_by_role("button", name="登录").click()
        assert page.locator("#login-error").inner_text() == "用户名或密码错误"


# --------------------------------------------------------------------------------- operator
def test_operator_sees_live_call_and_types_the_draft(seeded, new_page):
    """Live events as the SIP workers publish them (CallStore.apply of the agent's routing events)
    reach the operator's page over /api/live/events; the caller stays masked; notes autosave."""
    from hotline_api.models.operators import Operator
    from hotline_api.services.call_store import CallStore
    from telephony import events as ev

    env = seeded
    page = new_page("operator")
    page.wait_for_function("() => document.getElementById('live-state').dataset.state === 'waiting'", timeout=10000)
    assert page.locator("[data-testid=op-state] .live-state").get_attribute("data-state") == "available"
    with env.factory() as s:
        op_id = s.execute(select(Operator.id).where(Operator.user_id == env.users["operator"].id)).scalar_one()
    store = CallStore(env.factory)
    now = datetime.now(timezone.utc)
    cid = str(uuid.uuid4())
    store.apply(ev.CallStarted(cid, f"{cid}@live", "sip:13566667777@127.0.0.1", "13566667777", "12388", "w0", now))
    store.apply(ev.OperatorRinging(cid, op_id, now))
    page.wait_for_function("() => document.getElementById('live-state').dataset.state === 'ringing'", timeout=10000)
    store.apply(ev.OperatorAnswered(cid, op_id, now))
    store.apply(ev.CallBridged(cid, op_id, now, wait_s=3.0))
    page.wait_for_function("() => document.getElementById('live-state').dataset.state === 'on-call'", timeout=10000)
    page.wait_for_selector("[data-testid=caller-masked]")
    assert page.locator("[data-testid=caller-masked]").inner_text() == "135******77"
    assert "13566667777" not in page.content()
    page.get_by_label("来电内容记录").fill("反映河湾村主任刘海波侵占集体土地补偿款二十万元")
    page.wait_for_selector("[data-testid=saved]", timeout=10000)
    page.wait_for_function("() => document.getElementById('op-sname').value === '刘海波'", timeout=10000)
    screenshot(page, "operator-live")
    with env.factory() as s:
        d = s.execute(select(Draft).where(Draft.call_id == cid)).scalar_one()
        assert d.source == "operator" and json.loads(d.fields_json)["amount_yuan"] == 200000
    store.apply(ev.OperatorHangup(cid, op_id, now, by="caller", talk_s=60.0))
    page.wait_for_function("() => document.getElementById('live-state').textContent.includes('通话已结束')", timeout=10000)
    # state toggle: pause with a reason, then back to available
    page.get_by_label("暂停原因").select_option("培训")
    page.get_by_role("button", name="暂停接听").click()
    page.wait_for_function("() => document.querySelector('[data-testid=op-state] .live-state').dataset.state === 'paused'")
    assert "培训" in page.locator("[data-testid=op-state]").inner_text()
    page.get_by_role("button", name="置为空闲").click()
    page.wait_for_function("() => document.querySelector('[data-testid=op-state] .live-state').dataset.state === 'available'")


# ------------------------------------------------------------------------ recording manager
def test_manager_plays_recording_seeks_and_coverage_is_recorded(seeded, new_page):
    env = seeded
    rid = env.data["rid"]
    page = new_page("recording_manager")
    rows = page.locator("table[data-testid=queue] tbody tr")
    assert rows.count() == 2
    # the overdue item is red (class + computed colour)
    overdue = page.locator("tr.row-overdue .countdown.overdue")
    assert overdue.count() == 1 and "已逾期" in overdue.inner_text()
    color = overdue.evaluate("e => getComputedStyle(e).color")
    assert color == "rgb(180, 35, 24)"
    screenshot(page, "review-queue")

    page.locator(f"a[href='/review/{rid}']").click()
    page.wait_for_load_state("networkidle")
    audio = page.locator("audio#player")
    assert audio.get_attribute("src") == f"/api/recordings/{rid}/audio"
    segs = page.locator("button.seg")
    assert segs.count() == 6
    speakers = segs.evaluate_all("els => els.map(e => e.querySelector('.who').textContent)")
    assert speakers == ["来电人", "接线员", "来电人", "接线员", "来电人", "接线员"]
    # play: currentTime advances
    page.evaluate("() => document.getElementById('player').play()")
    page.wait_for_function("() => document.getElementById('player').currentTime > 0.6", timeout=15000)
    # click the third segment (caller, 8.2 s): playback seeks there and the segment is highlighted
    segs.nth(2).click()
    page.wait_for_function("() => { const a = document.getElementById('player'); return a.currentTime >= 8.2 && a.currentTime < 12; }",
                           timeout=10000)
    page.wait_for_function("() => document.querySelectorAll('.seg.current').length === 1 && "
                           "document.querySelector('.seg.current').dataset.start === '8.20'", timeout=10000)
    t0 = page.evaluate("() => document.getElementById('player').currentTime")
    page.wait_for_function(f"() => document.getElementById('player').currentTime > {t0} + 0.5", timeout=10000)
    screenshot(page, "review-player")
    page.evaluate("() => document.getElementById('player').pause()")

    # the server recorded what it served: coverage > 0 and audited playback with byte ranges
    deadline = time.monotonic() + 15
    while True:
        with env.factory() as s:
            a = review.get_assignment(s, rid)
            plays = [e for e in audit.iter_entries(s) if e["action"] == "recording.play" and e["object_id"] == rid]
        if a.coverage > 0 and plays:
            break
        assert time.monotonic() < deadline, "no listening coverage recorded"
        time.sleep(0.2)
    assert plays[0]["actor_name"] == "mgr1" and plays[0]["detail"]["bytes"] > 0
    # the page shows the server's figure (status panel refreshes after pause)
    page.locator("#status").evaluate("el => htmx.trigger(document.body, 'refresh-status')")
    page.wait_for_function(f"() => parseFloat(document.querySelector('[data-testid=coverage]').dataset.value) > 0",
                           timeout=10000)
    # stored and organized through the page
    page.get_by_role("button", name="确认已存储").click()
    page.wait_for_selector("span[data-testid=stored]")
    page.get_by_role("radio", name="无实质内容").check()
    page.get_by_label("无实质内容原因").fill("测试：误拨")
    page.get_by_role("button", name="保存整理结果").click()
    page.wait_for_selector("span[data-testid=organized]")
    with env.factory() as s:
        a = review.get_assignment(s, rid)
        assert a.stored_confirmed_at is not None and a.organized_kind == "no_content"


# ------------------------------------------------------------------------------- supervisor
def test_supervisor_corrects_unit_registers_and_sees_case_number(seeded, new_page):
    env = seeded
    did = env.data["draft_id"]
    page = new_page("supervisor")
    assert page.url.endswith("/drafts")
    page.locator(f"a[href='/drafts/{did}']").click()
    page.wait_for_load_state("networkidle")
    html = page.content()
    # reporter identity masked in the whole page (no identity reveal clicked)
    assert "陈立华" not in html and "13912345678" not in html
    assert "陈**" in html
    marks = page.locator("mark.ev")
    assert marks.count() >= 3
    unit = page.get_by_label("被反映人1 单位")
    assert unit.input_value() == "青石镇水利站"
    unit.focus()
    assert page.locator("mark.ev.focus").count() >= 1  # its evidence is highlighted
    screenshot(page, "draft-review")
    unit.fill("青石镇水利管理站")
    page.get_by_role("button", name="保存并受理登记").click()
    page.wait_for_load_state("networkidle")
    number = page.locator("[data-testid=case-number]").inner_text()
    assert re.fullmatch(r"12388-\d{4}-\d{6}", number)
    screenshot(page, "draft-registered")
    with env.factory() as s:
        c = s.execute(select(Case).where(Case.number == number)).scalar_one()
        assert json.loads(c.fields_json)["subjects"][0]["unit"] == "青石镇水利管理站"
        corr = s.execute(select(DraftCorrection).where(DraftCorrection.draft_id == did)).scalars().all()
        assert [x.field for x in corr] == ["subjects"] and "青石镇水利站" in corr[0].old_json
        assert s.get(Draft, did).status == "registered"
    # the case page shows the history; identity stays masked
    page.get_by_role("link", name="查看案件").click()
    page.wait_for_load_state("networkidle")
    assert "受理登记" in page.locator("[data-testid=history]").inner_text()
    assert "陈立华" not in page.content()
    screenshot(page, "case")
    page.goto(f"/cases?number={number}")
    assert page.locator("table[data-testid=cases] tbody tr").count() == 1
    page.goto("/cases")
    screenshot(page, "cases")


def test_supervisor_acknowledges_urgent_alert(seeded, new_page):
    page = new_page("supervisor")
    page.goto("/alerts")
    rows = page.locator("table[data-testid=urgent-alerts] tbody tr")
    assert rows.count() == 1 and "暴力威胁" in rows.first.inner_text()
    screenshot(page, "alerts")
    rows.first.get_by_label("处理说明").fill("已联系属地")
    rows.first.get_by_role("button", name="确认").click()
    page.wait_for_load_state("networkidle")
    assert page.locator("table[data-testid=urgent-alerts]").count() == 0
    assert "已联系属地" in page.content()
    page.goto("/roster")
    screenshot(page, "roster")


def _local_month(iso: str) -> tuple[int, int]:
    d = datetime.fromisoformat(iso).astimezone(ZoneInfo("Asia/Shanghai"))
    return d.year, d.month


def test_dashboard_charts_and_totals_match_api(seeded, new_page):
    month = seeded.data["month"]
    page = new_page("supervisor")
    page.goto(f"/stats?period={MONTH[0]}-{MONTH[1]:02d}")
    page.wait_for_function("() => document.querySelectorAll('canvas[data-rendered]').length >= 8", timeout=15000)
    # the charts are Chart.js instances with the numbers of the tables
    n_charts = page.evaluate("() => Object.keys(Chart.instances).length")
    assert n_charts >= 8
    calls_chart_total = page.evaluate(
        "() => Chart.getChart('chart-calls').data.datasets.reduce((s, d) => s + d.data.reduce((a, b) => a + b, 0), 0)")
    total = int(page.locator("[data-testid=calls-total]").inner_text())
    assert total == month.calls + month.voicemails == calls_chart_total
    assert int(page.locator("[data-testid=cases-total]").inner_text()) == month.cases
    # the same totals through the JSON API (paginated), with the session of the browser
    api_calls, offset = 0, 0
    while True:
        r = page.request.get(f"/api/calls?limit=500&offset={offset}")
        assert r.ok
        items = r.json()["items"]
        api_calls += sum(1 for c in items if _local_month(c["started_at"]) == MONTH)
        if len(items) < 500:
            break
        offset += 500
    assert api_calls == total
    r = page.request.get("/api/cases?limit=500")
    api_cases = [c for c in r.json()["items"] if str(c.get("received_on", ""))[:7] == f"{MONTH[0]}-{MONTH[1]:02d}"]
    assert len(api_cases) == month.cases
    cat_rows = page.locator("table[data-testid=category-table] tbody tr").evaluate_all(
        "rows => rows.map(r => [r.cells[0].textContent, parseInt(r.cells[1].textContent)])")
    assert dict(cat_rows) == month.by_category
    ratio = page.locator("[data-testid=real-name-ratio]").inner_text()
    assert ratio == f"{month.real_name / month.cases * 100:.1f}%"
    screenshot(page, "stats")


def test_period_report_prints_to_pdf(seeded, new_page):
    page = new_page("supervisor")
    page.goto("/report?period=2026-Q1")
    page.wait_for_function("() => document.querySelectorAll('canvas[data-rendered]').length >= 4", timeout=15000)
    text = page.locator("[data-testid=report]").inner_text()
    assert "2026年第一季度" in text and "一、总体情况" in text
    screenshot(page, "report")
    page.emulate_media(media="print")
    assert page.locator("nav.sidebar").is_hidden() and page.locator("header.topbar").is_hidden()
    page.set_viewport_size({"width": 794, "height": 1123})  # A4 at 96 dpi
    page.screenshot(path=str(REPO / "test-output" / "screenshots" / "report-print.png"), full_page=True)
    out = REPO / "test-output" / "report-2026-Q1.pdf"
    out.parent.mkdir(parents=True, exist_ok=True)
    pdf = page.pdf(path=str(out), format="A4", print_background=True)
    assert pdf[:5] == b"%PDF-" and len(pdf) > 20000


# --------------------------------------------------------------------------- auditor, admin
def test_auditor_sees_log_and_chain_status(seeded, new_page):
    page = new_page("auditor")
    page.wait_for_selector("[data-testid=chain-status]")
    assert page.locator("[data-testid=chain-status]").get_attribute("data-ok") == "1"
    assert page.locator("table[data-testid=audit-log] tbody tr").count() > 5
    page.get_by_label("操作（可用 * 通配）").fill("recording.*")
    page.get_by_role("button", name="搜索").click()
    page.wait_for_load_state("networkidle")
    actions = page.locator("table[data-testid=audit-log] tbody tr td:nth-child(4) span").evaluate_all(
        "els => els.map(e => e.title)")
    assert actions and all(a.startswith("recording.") for a in actions)
    screenshot(page, "audit")


def test_admin_pages(seeded, new_page):
    page = new_page("admin")
    screenshot(page, "admin-users")
    page.get_by_label("用户名", exact=True).fill("newop")
    page.get_by_label("角色", exact=True).select_option("operator")
    page.get_by_role("button", name="创建并生成一次性密码").click()
    page.wait_for_load_state("networkidle")
    otp_text = page.locator("[data-testid=otp]").inner_text()
    assert "newop" in otp_text
    for href, name in (("/admin/calendar", "admin-calendar"), ("/admin/retention", "admin-retention"),
                       ("/admin/prompts", "admin-prompts"), ("/admin/asr", "admin-asr")):
        page.goto(href)
        screenshot(page, name)
    # admins never see content
    resp = page.goto(f"/review/{seeded.data['rid']}")
    assert resp.status == 404


# ---------------------------------------------------------------------------- accessibility
A11Y_JS = r"""
() => {
  const problems = [];
  const visible = el => { const r = el.getBoundingClientRect(); const cs = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && cs.visibility !== 'hidden' && cs.display !== 'none'; };
  const name = el => (el.getAttribute('aria-label') || (el.labels && [...el.labels].map(l => l.textContent).join(' ')) ||
                      el.getAttribute('title') || el.textContent || el.value || '').trim();
  for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
    const labelled = (el.labels && el.labels.length) || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby');
    if (!labelled) problems.push('no label: ' + el.outerHTML.slice(0, 100));
  }
  for (const el of document.querySelectorAll('button, a[href], [role=button]')) {
    if (visible(el) && !name(el)) problems.push('no accessible name: ' + el.outerHTML.slice(0, 100));
  }
  const rgb = s => { const m = s.match(/rgba?\(([^)]+)\)/); if (!m) return null; const p = m[1].split(',').map(Number);
    return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1}; };
  const lum = c => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); };
  const bgOf = el => { for (let e = el; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0.5) return c; } return {r: 255, g: 255, b: 255, a: 1}; };
  let checked = 0;
  const sel = 'h1, h2, p, label, td, th, a, button, .badge, .kpi .label, .kpi .value, .muted, dd, dt, li, span.who, span.t, .notice';
  for (const el of document.querySelectorAll(sel)) {
    if (!visible(el)) continue;
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own) continue;
    const cs = getComputedStyle(el);
    if (parseFloat(cs.opacity) < 1 || el.closest('[disabled]')) continue;
    const fg = rgb(cs.color), bg = bgOf(el);
    const l1 = lum(fg), l2 = lum(bg);
    const ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    const size = parseFloat(cs.fontSize), bold = parseInt(cs.fontWeight) >= 700;
    const need = (size >= 24 || (size >= 18.66 && bold)) ? 3 : 4.5;
    checked++;
    if (ratio < need) problems.push(`contrast ${ratio.toFixed(2)} < ${need}: ${el.tagName}.${el.className} "${el.textContent.trim().slice(0, 20)}"`);
  }
  return {problems, checked};
}
"""

TAB_JS = r"""
() => {
  // a radio group is one tab stop (arrow keys move inside it): count its checked (or first) radio only
  const seen = new Set();
  return [...document.querySelectorAll('main a[href], main button, main input:not([type=hidden]), main select, main textarea')]
    .filter(e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0 && !e.disabled && e.tabIndex >= 0; })
    .filter(e => { if (e.type !== 'radio') return true;
      const group = [...document.querySelectorAll(`input[type=radio][name="${e.name}"]`)];
      const stop = group.find(x => x.checked) || group[0];
      if (e !== stop || seen.has(e.name)) return false; seen.add(e.name); return true; })
    .map(e => e.dataset.a11yId = 'c' + Math.random().toString(36).slice(2)).length;
}
"""


@pytest.mark.parametrize("role,paths", [
    ("recording_manager", ["/review", "/review/{rid}"]),
    ("supervisor", ["/drafts", "/cases", "/alerts", "/roster", "/callbacks", "/stats", "/report?period=2026-Q1"]),
    ("auditor", ["/audit"]),
    ("admin", ["/admin/users", "/admin/calendar", "/admin/retention", "/admin/prompts", "/admin/asr"]),
    ("operator", ["/op", "/op/calls", "/op/callbacks"]),
])
def test_accessibility_audit(seeded, new_page, role, paths):
    page = new_page(role)
    for raw in paths:
        path = raw.format(rid=seeded.data["rid"])
        resp = page.goto(path)
        if resp.status == 404 and role == "operator":
            pytest.skip("operator pages need the operators module (not mounted yet)")
        page.wait_for_load_state("networkidle")
        res = page.evaluate(A11Y_JS)
        assert res["checked"] > 5, path
        assert res["problems"] == [], f"{path}: {res['problems'][:8]}"
        # keyboard: Tab from the top reaches every visible control of the main area, in order
        n = page.evaluate(TAB_JS)
        page.evaluate("() => document.activeElement && document.activeElement.blur()")
        page.locator("body").focus()
        reached = set()
        for _ in range(n + 40):
            page.keyboard.press("Tab")
            aid = page.evaluate("() => document.activeElement && document.activeElement.dataset.a11yId || null")
            if aid:
                reached.add(aid)
            if len(reached) >= n:
                break
        assert len(reached) == n, f"{path}: only {len(reached)} of {n} controls reachable with Tab"
