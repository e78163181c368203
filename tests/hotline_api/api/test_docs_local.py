"""``/api/docs`` works on a closed network: Swagger UI's script, style sheet and icon are served by
the app itself (``fastapi-offline``'s copy of the Swagger UI distribution), the page names no
outside host, and its Content-Security-Policy lets no foreign script run in the app's origin.

The browser test opens the page in Debian chromium with every request to another host refused,
and checks that Swagger UI renders the API's operations."""
from __future__ import annotations

import base64
import hashlib
import re
import threading
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hotline_api.api.main import DOCS_ASSETS_URL, DOCS_URL, create_api


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str]] = []  # (tag, url)
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href"):
            if a.get(key):
                self.refs.append((tag, a[key]))
        self._in_script = tag == "script" and not a.get("src")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.inline.append(data)


@pytest.fixture
def client(settings, db):
    with TestClient(create_api(settings)) as c:
        yield c


def _page(client) -> tuple[object, _Refs]:
    r = client.get(DOCS_URL)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    p = _Refs()
    p.feed(r.text)
    return r, p


def test_docs_page_names_no_outside_host(client):
    r, p = _page(client)
    assert not re.search(r"https?://", r.text, flags=re.I), re.findall(r"https?://[^\s\"'<>]*", r.text)
    assert "//" not in "".join(url for _, url in p.refs)  # no protocol-relative URL either
    urls = {url for _, url in p.refs}
    assert f"{DOCS_ASSETS_URL}/swagger-ui-bundle.js" in urls and f"{DOCS_ASSETS_URL}/swagger-ui.css" in urls
    assert "cdn.jsdelivr.net" not in r.text and "validator.swagger.io" not in r.text
    assert '"validatorUrl": null' in r.text  # the online validator badge is off


def test_docs_assets_answer_from_the_app(client):
    _, p = _page(client)
    seen = {}
    for tag, url in p.refs:
        a = client.get(url)
        assert a.status_code == 200, (tag, url, a.status_code)
        seen[url] = a
    js = seen[f"{DOCS_ASSETS_URL}/swagger-ui-bundle.js"]
    assert "javascript" in js.headers["content-type"] and "SwaggerUIBundle" in js.text and len(js.content) > 500_000
    css = seen[f"{DOCS_ASSETS_URL}/swagger-ui.css"]
    assert css.headers["content-type"].startswith("text/css") and ".swagger-ui" in css.text
    assert any(tag == "link" and url.endswith(".png") for tag, url in p.refs)
    # the page's schema URL answers too, and the assets mount serves files only
    m = re.search(r"url: '([^']+)'", _page(client)[0].text)
    assert m and client.get(m.group(1)).json()["openapi"].startswith("3.1")
    assert client.get(f"{DOCS_ASSETS_URL}/nope.js").status_code == 404


def test_docs_csp_admits_only_own_scripts(client):
    r, p = _page(client)
    csp = r.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";") if d.strip())
    assert "http" not in csp and "*" not in csp
    script_src = directives["script-src"].split()
    assert script_src[0] == "'self'" and "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src
    hashes = {f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in p.inline}
    assert p.inline and set(script_src[1:]) == hashes  # exactly the page's own start-up script
    assert directives["connect-src"] == "'self'" and directives["default-src"] == "'self'"


def test_docs_not_in_schema_and_fastapi_cdn_page_gone(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert DOCS_URL not in paths and not any(p.startswith(DOCS_ASSETS_URL) for p in paths)
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404


# ---------------------------------------------------------------------------------- browser
@pytest.mark.browser
def test_swagger_ui_renders_offline_in_chromium(settings, db):
    from tests.hotline_api.web.conftest import CHROMIUM, CHROMIUM_ARGS, free_port

    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium not installed (/usr/bin/chromium)")
    import uvicorn
    from playwright.sync_api import sync_playwright

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_api(settings), host="127.0.0.1", port=port, log_level="warning",
                                        lifespan="off"))
    th = threading.Thread(target=srv.run, name="docs-uvicorn", daemon=True)
    th.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline and th.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    outside, problems = [], []
    try:
        with sync_playwright() as pw:
            b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = b.new_page()

                def route(r):
                    if r.request.url.startswith(base + "/") or r.request.url.startswith("data:"):
                        r.continue_()
                    else:
                        outside.append(r.request.url)
                        r.abort()

                page.route("**/*", route)
                page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: problems.append(str(e)))
                page.goto(f"{base}{DOCS_URL}")
                page.wait_for_selector(".opblock", timeout=20_000)
                assert page.locator(".opblock").count() >= 50
                assert page.locator(".swagger-ui .info .title").inner_text().startswith("12388")
                assert "Unable to render" not in page.content()
            finally:
                b.close()
    finally:
        srv.should_exit = True
        th.join(timeout=10)
    assert outside == [], outside
    assert problems == [], problems
