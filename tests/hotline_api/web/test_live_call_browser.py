"""End to end in a real browser: an operator sees a live call appear on the console when a sipp call
is routed to them (issue 7, acceptance 1, last flow).

Real peers on 127.0.0.1, all on the same data dir / database:
* the app (API + console) served by uvicorn (``server`` fixture of this package's conftest);
* an agent worker with the DB routing (``python -m hotline_api.sip_routing``), its working-hours
  clock started on an ordinary Monday morning so the call takes the queue path;
* the operator's softphone: the pjsua2 helper of the queue tests, a static SIP contact of the
  seeded operator, which rings for a few seconds before it answers (the console shows "ringing"
  before "on call");
* a sipp caller streaming Mandarin speech from ../shared/audio/zh/8k (skipped when absent);
* Debian chromium logged in as that operator, following the live events (SSE) on the operator page.

The browser must show the call ringing, then on call with the call's id and the caller's number
masked (the number itself is never in the page, nor in the events), then ended after the caller
hangs up. A screenshot of the console on call goes to test-output/screenshots/operator_live_call.png.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
from sqlalchemy import select

import hotline_api.models.operators  # noqa: F401 - tables registered
from hotline_api.models.calls import Call
from hotline_api.models.operators import CallEvent
from hotline_api.services import operators as ops
from tests.hotline_api.web.conftest import REPO, screenshot
from tests.telephony.conftest import prompts_dir  # noqa: F401 - fixture used by quick_prompts
from tests.telephony.sipp_util import SIPP, free_port, run_sipp, sipp_errors, stop_process, wait_for
from tests.telephony.test_queue_util import (delayed_audio_scenario, operators, quick_prompts,  # noqa: F401
                                             speech, ulaw)

pytestmark = [pytest.mark.browser, pytest.mark.sip, pytest.mark.slow,
              pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) not installed")]

CALLER = "13912347788"  # the sipp caller's number in this test (invented)
MASKED = "139******88"
MONDAY_MORNING = "2026-03-09T10:00:00+08:00"  # an ordinary workday inside the default hours
RING_S = 5.0  # the softphone rings this long before it answers
WAIT_MS = 90_000  # browser-side waits: generous, the machine is shared

# Records every text/state the live panel shows (a MutationObserver, so short states are not missed).
WATCH_JS = """() => {
  const el = document.getElementById('live-state');
  window.__liveStates = [];
  const note = () => {
    const s = {text: el.textContent.trim(), state: el.getAttribute('data-state') || ''};
    const last = window.__liveStates[window.__liveStates.length - 1];
    if (!last || last.text !== s.text || last.state !== s.state) window.__liveStates.push(s);
  };
  new MutationObserver(note).observe(el, {childList: true, characterData: true, subtree: true, attributes: true});
  note();
  window.__toasts = [];
  const toast = document.getElementById('toast');
  if (toast) new MutationObserver(() => { const t = toast.textContent.trim(); if (t) window.__toasts.push(t); })
    .observe(toast, {childList: true, characterData: true, subtree: true});
}"""


@pytest.fixture
def routing_worker(server, quick_prompts, tmp_path):
    """``start()`` -> "127.0.0.1:port" of an agent worker with DB routing on the server's data dir."""
    procs: list[tuple[subprocess.Popen, object]] = []
    settings = server.settings

    def start() -> tuple[str, object]:
        port = free_port()
        conf = {"worker_id": "web0", "sip_host": "127.0.0.1", "sip_port": port,
                "spool_dir": str(settings.spool_dir / "web0"), "recordings_dir": str(settings.recordings_dir),
                "prompts_dir": str(quick_prompts), "ring_timeout_s": 30, "queue_max_wait_s": 120}
        cfg = tmp_path / "worker.json"
        cfg.write_text(json.dumps(conf), encoding="utf-8")
        log = tmp_path / "worker.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOTLINE_") or k == "HOTLINE_SHARED_DIR"}
        env.update(HOTLINE_DATA_DIR=str(settings.data_dir), PYTHONUNBUFFERED="1")
        out = open(log, "wb")
        p = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "hotline_api.sip_routing", "--config", str(cfg),
                              "--clock-start", MONDAY_MORNING], cwd=REPO, env=env, stdout=out,
                             stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        procs.append((p, log))

        def listening():
            if p.poll() is not None:
                raise AssertionError("worker exited early:\n" + log.read_text(errors="replace")[-3000:])
            return "listening on" in log.read_text(errors="replace")

        wait_for(listening, 60, what="worker to listen")
        return f"127.0.0.1:{port}", log

    try:
        yield start
    finally:
        for p, log in procs:
            _stop_worker(p, log)
            # shown by pytest when the test failed (the worker log has no caller numbers)
            keep = (" INFO ", "WARN", "ERROR", "Traceback", "Error", "Fatal", "Thread 0x", "File ", "====")
            lines = [ln for ln in log.read_text(errors="replace").splitlines() if any(k in ln for k in keep)]
            print(f"---- worker log {log} (tail) ----\n" + "\n".join(lines[-80:]))


def _stop_worker(p: subprocess.Popen, log) -> None:
    """SIGTERM; a worker that does not stop is diagnosed before it is killed: native stacks (gdb,
    when installed) and Python stacks (SIGABRT: faulthandler) go to its log."""
    if p.poll() is not None:
        return
    os.killpg(p.pid, signal.SIGTERM)
    try:
        p.wait(20)
        return
    except subprocess.TimeoutExpired:
        pass
    if shutil.which("gdb"):
        try:
            r = subprocess.run(["gdb", "-p", str(p.pid), "-batch", "-ex", "thread apply all bt"],
                               capture_output=True, text=True, timeout=90)
            with open(log, "a", encoding="utf-8") as f:
                f.write("\n==== worker did not stop: native stacks (gdb) ====\n" + r.stdout[-60000:])
        except (OSError, subprocess.TimeoutExpired):
            pass
    os.kill(p.pid, signal.SIGABRT)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        pass
    stop_process(p, signal.SIGKILL, timeout=5)


def _live_events(factory, call_id: str) -> list[tuple[str, str | None, dict]]:
    with factory() as s:
        rows = s.execute(select(CallEvent).where(CallEvent.call_id == call_id).order_by(CallEvent.id)).scalars()
        return [(e.type, e.operator_id, e.data) for e in rows]


def test_operator_sees_a_routed_sipp_call_live(server, new_page, operators, routing_worker, tmp_path):  # noqa: F811
    if not shutil.which("sox"):
        pytest.skip("sox is needed to prepare the caller's audio")
    stream = ulaw(speech("BAC009S0724W0121.wav", "8k"), tmp_path / "caller.ul")
    env = server
    factory = env.factory
    user = env.users["operator"]

    # the operator's softphone, a static contact of the seeded operator (paused until they click)
    phone = operators(mode="answer", answer_after=RING_S)
    with factory() as s:
        op = ops.ensure_operator(s, user, contacts=[{"kind": "static", "uri": phone.uri}])
        ops.set_state(s, op, "paused", "会议")
        other = ops.get_for_user(s, env.users["operator2"].id)
        if other is not None:  # nobody else takes the call
            ops.set_state(s, other, "offline")
        s.commit()
        op_id = op.id
    target, worker_log = routing_worker()

    # the operator logs in, opens the console and makes themselves available
    page = new_page("operator")
    page.goto("/op")
    page.wait_for_selector("#live-state[data-state=waiting]", timeout=WAIT_MS)  # the event stream is open
    page.evaluate(WATCH_JS)
    failed: list[tuple[int, str]] = []  # the console's own requests answered with an error
    page.on("response", lambda r: failed.append((r.status, r.url)) if r.status >= 400 else None)
    page.get_by_role("button", name="置为空闲").click()
    page.wait_for_selector("#op-state [data-state=available]", timeout=WAIT_MS)
    with factory() as s:
        assert ops.get_for_user(s, user.id).state == "available"

    # the call: Mandarin speech (looped) until the caller hangs up 30 s after being answered by the agent
    xml = delayed_audio_scenario(stream, 0, 30_000, loop=True).replace("13800000000", CALLER)
    sipp = run_sipp(xml, target, tmp_path, "live", timeout=120, background=True)
    try:
        # ringing: the softphone rings, the console says so
        page.wait_for_function("() => (window.__liveStates || []).some(s => s.state === 'ringing')",
                               timeout=WAIT_MS)
        # on call: the call part of the panel is loaded, with the call's id and the masked caller
        page.wait_for_selector("#live-state[data-state=on-call]", timeout=WAIT_MS)
        page.wait_for_selector("#live-call [data-call-id] [data-testid=caller-masked]", timeout=WAIT_MS)
        shown_id = page.locator("#live-call [data-call-id]").get_attribute("data-call-id")
        assert page.locator("#live-state").inner_text().strip() == "通话中"
        assert page.get_by_test_id("caller-masked").inner_text().strip() == MASKED
        assert CALLER not in page.content()
        assert phone.events("answered"), phone.lines
        # the state card follows the routing by itself (no reload, no click): on call
        page.wait_for_selector("#op-state [data-state=on_call]", timeout=WAIT_MS)
        screenshot(page, "operator_live_call")

        # the caller hangs up: the panel says the call ended, the call stays on the page for the form
        page.wait_for_function(
            "() => document.getElementById('live-state').textContent.indexOf('通话已结束') >= 0",
            timeout=WAIT_MS)
        r_code = sipp.wait(timeout=120)
        # ... then wrap-up, with the moment it ends (when the card reloads itself as available)
        page.wait_for_selector("#op-state [data-state=wrap_up]", timeout=WAIT_MS)
        assert page.locator("#op-state").get_attribute("data-refresh-at")
    finally:
        stop_process(sipp, timeout=10)
    assert r_code == 0, sipp_errors(tmp_path, "live")

    states = [s["state"] for s in page.evaluate("window.__liveStates")]
    assert "ringing" in states and "on-call" in states, states
    assert states.index("ringing") < states.index("on-call"), states
    assert page.locator("#live-call [data-call-id]").get_attribute("data-call-id") == shown_id
    assert not failed and not page.evaluate("window.__toasts"), (failed, page.evaluate("window.__toasts"))
    html = page.content()
    assert CALLER not in html and MASKED in html

    # the browser showed the very call the agent routed to this operator
    def stored():
        with factory() as s:
            c = s.get(Call, shown_id)
            return c if c is not None and c.ended_at is not None else None

    call = wait_for(stored, 60, what="the call row to end")
    assert call.operator_id == user.id and call.caller_number == CALLER
    assert call.flow_path.startswith("notice>route>queue>connecting>bridged"), call.flow_path
    types = [(t, o) for t, o, _ in _live_events(factory, shown_id)]
    assert [t for t, o in types if o == op_id][:4] == ["ringing", "answered", "bridged", "hangup"], types
    # what the browser received: the operator's events, none carrying the caller's number
    recent = page.request.get("/api/live/recent")
    assert recent.ok
    evs = recent.json()["events"]
    assert {e["call_id"] for e in evs} == {shown_id}
    assert CALLER not in recent.text() and CALLER not in worker_log.read_text(errors="replace")
