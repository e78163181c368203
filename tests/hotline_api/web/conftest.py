"""Fixtures for the console tests: a migrated data dir with seeded users, the real app served by
uvicorn on a free 127.0.0.1 port (thread), and Debian chromium driven by playwright.

The browser runs headless with the flags of the project's notes; ``playwright install`` is never
used (the system chromium at /usr/bin/chromium)."""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from tests.hotline_api.web import seed

REPO = Path(__file__).resolve().parents[3]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                 "--autoplay-policy=no-user-gesture-required"]
SCREENSHOTS = REPO / "test-output" / "screenshots"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebEnv:
    def __init__(self, settings, factory, users, ctx):
        self.settings = settings
        self.factory = factory
        self.users = users
        self.ctx = ctx
        self.base_url = ""
        self.data: dict = {}


def fresh_data_dir(tmp_path_factory, name: str):
    """(settings, session factory, crypto context) of a new migrated data dir, installed as the
    process-wide settings (module-scoped worlds of the web tests)."""
    from hotline_api.core import config
    from hotline_api.db import migrate
    from hotline_api.db.session import session_factory
    from hotline_api.services import storage

    d = tmp_path_factory.mktemp(name)
    settings = config.Settings.load(env={"HOTLINE_DATA_DIR": str(d / "var"), "HOTLINE_COOKIE_SECURE": "false"})
    settings.ensure_dirs()
    config.set_settings(settings)
    migrate.upgrade(settings.db_url)
    factory = session_factory(settings.db_url)
    return settings, factory, storage.open_crypto(settings, factory)


def _make_env(tmp_path_factory, name: str) -> WebEnv:
    settings, factory, ctx = fresh_data_dir(tmp_path_factory, name)
    users = seed.create_users(factory, settings)
    return WebEnv(settings, factory, users, ctx)


@pytest.fixture(scope="module")
def web_env(tmp_path_factory):
    from hotline_api.core import config
    from hotline_api.db import crypto_types
    from hotline_api.db.session import dispose_all

    env = _make_env(tmp_path_factory, "web")
    yield env
    crypto_types.set_field_cipher(None)
    config.set_settings(None)
    dispose_all()


@pytest.fixture(scope="module")
def server(web_env):
    """The whole app (API + console) served by uvicorn in a thread."""
    import uvicorn

    from hotline_api.app import create_app

    app = create_app(web_env.settings)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    th = threading.Thread(target=srv.run, name="console-uvicorn", daemon=True)
    th.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline or not th.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    web_env.base_url = f"http://127.0.0.1:{port}"
    try:
        yield web_env
    finally:
        srv.should_exit = True
        th.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium not installed (/usr/bin/chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def new_page(browser, server):
    """``new_page(role)`` -> a page logged in as that role's seeded user (1366x768)."""
    contexts = []

    def _open(role: str | None = None):
        ctx = browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN",
                                  timezone_id="Asia/Shanghai", base_url=server.base_url)
        contexts.append(ctx)
        page = ctx.new_page()
        if role is not None:
            login(page, seed.USERS[role][0], seed.PW)
        return page

    yield _open
    for c in contexts:
        c.close()


def login(page, username: str, password: str) -> None:
    page.goto("/login")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(password)
    page.get_by_role("button", name="登录").click()
    page.wait_for_load_state("networkidle")


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


__all__ = ["free_port", "login", "screenshot"]
