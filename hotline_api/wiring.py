"""Composition root: the only place that wires telephony/, asr/ and recordings/ together with the
database, the API and the scheduler."""
from __future__ import annotations

import logging
import threading

from hotline_api.core.config import Settings
from hotline_api.db import migrate

log = logging.getLogger("hotline.wiring")


def prepare(settings: Settings) -> None:
    """Everything that must hold before any part starts: folders, schema, keys, prompts."""
    settings.ensure_dirs()
    migrate.upgrade(settings.db_url)


def run_part(part: str, settings: Settings, stop: threading.Event) -> None:
    runner = {"api": run_api}.get(part)
    if runner is None:
        raise RuntimeError(f"part {part!r} is not wired yet")
    runner(settings, stop)


def run_api(settings: Settings, stop: threading.Event) -> None:
    import uvicorn

    from hotline_api.api.main import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(settings), host=settings.http_host, port=settings.http_port,
                                           log_level=settings.log_level.lower(), proxy_headers=False))
    server.run()
