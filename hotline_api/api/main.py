"""FastAPI application factory of the JSON API. Route modules live in hotline_api/api/routes/; each
defines ``router`` (an APIRouter) and is included under /api unless it sets ``PREFIX``. Resources
stay thin: a permission check plus one service call (wazo-calld style). The service's whole app
(API + web console) is ``hotline_api.app.create_app``."""
from __future__ import annotations

import importlib
import pkgutil

from fastapi import FastAPI

from hotline_api import __version__
from hotline_api.api import routes
from hotline_api.core.config import Settings, get_settings, set_settings


def create_api(settings: Settings | None = None) -> FastAPI:
    if settings is not None:
        set_settings(settings)
    settings = get_settings()
    app = FastAPI(title="12388 举报电话服务 API", version=__version__, openapi_url="/openapi.json",
                  docs_url="/api/docs", redoc_url=None)
    app.state.settings = settings
    for mod in sorted(pkgutil.iter_modules(routes.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{routes.__name__}.{mod.name}")
        router = getattr(module, "router", None)
        if router is not None:
            app.include_router(router, prefix=getattr(module, "PREFIX", "/api"))
    return app
