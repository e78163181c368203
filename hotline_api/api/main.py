"""FastAPI application factory of the JSON API. Route modules live in hotline_api/api/routes/; each
defines ``router`` (an APIRouter) and is included under /api unless it sets ``PREFIX``. Resources
stay thin: a permission check plus one service call (wazo-calld style). The service's whole app
(API + web console) is ``hotline_api.app.create_app``.

``/api/docs`` is Swagger UI served from this app alone: its script, style sheet and icon come from
the ``fastapi-offline`` package's copy of the Swagger UI distribution (MIT; Swagger UI 5, which
renders the OpenAPI 3.1 schema FastAPI writes), mounted at ``/api/docs/assets``, never from a CDN
(a closed network still gets the page; no foreign script runs in the app's origin). The page's
Content-Security-Policy admits only this origin's scripts and the page's own inline start-up
script (by its hash), and Swagger UI's online validator badge is off. ReDoc stays disabled."""
from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.util
import pkgutil
import re
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from hotline_api import __version__
from hotline_api.api import routes
from hotline_api.core.config import Settings, get_settings, set_settings


DOCS_URL = "/api/docs"
DOCS_ASSETS_URL = "/api/docs/assets"
DOCS_FILES = {"js": "swagger-ui-bundle.js", "css": "swagger-ui.css", "favicon": "favicon.png"}


def docs_assets_dir() -> Path:
    """The directory of the Swagger UI files (``fastapi_offline/static``), found without importing
    the package."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("fastapi-offline is not installed: it ships the Swagger UI files of /api/docs")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def _csp(html: str) -> str:
    inline = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    sources = ["'self'"] + [f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
                            for s in inline]
    return (f"default-src 'self'; script-src {' '.join(sources)}; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; font-src 'self'; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


def _mount_docs(app: FastAPI) -> None:
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=docs_assets_dir()), name="docs-assets")

    @app.get(DOCS_URL, include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        page = get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{DOCS_ASSETS_URL}/{DOCS_FILES['js']}",
            swagger_css_url=f"{root}{DOCS_ASSETS_URL}/{DOCS_FILES['css']}",
            swagger_favicon_url=f"{root}{DOCS_ASSETS_URL}/{DOCS_FILES['favicon']}",
            oauth2_redirect_url=None,
            swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from validator.swagger.io
        )
        html = page.body.decode("utf-8")
        return HTMLResponse(html, headers={"Content-Security-Policy": _csp(html), "X-Content-Type-Options": "nosniff",
                                           "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"})


def create_api(settings: Settings | None = None) -> FastAPI:
    if settings is not None:
        set_settings(settings)
    settings = get_settings()
    # docs_url=None: FastAPI's own page loads Swagger UI from a CDN; ours serves local files
    app = FastAPI(title="12388 举报电话服务 API", version=__version__, openapi_url="/openapi.json",
                  docs_url=None, redoc_url=None)
    app.state.settings = settings
    _mount_docs(app)
    for mod in sorted(pkgutil.iter_modules(routes.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{routes.__name__}.{mod.name}")
        router = getattr(module, "router", None)
        if router is not None:
            app.include_router(router, prefix=getattr(module, "PREFIX", "/api"))
    return app
