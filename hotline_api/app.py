"""The service's web application: the JSON API (``hotline_api.api``, under ``/api``) and the Chinese
web console (``hotline_api.web``, at ``/``) in one FastAPI app. Assembled here, above both, so the
API package never imports the console (the console uses the API's dependencies, ``api/deps.py``)."""
from __future__ import annotations

from fastapi import FastAPI

from hotline_api.api.main import create_api
from hotline_api.core.config import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    from hotline_api.web.routes import router as console

    app = create_api(settings)
    app.include_router(console)  # /, /login, /review/..., /static/...
    return app
