"""The web console's pages, mounted at the root (``/``, ``/login``, ``/review/...``, ``/static/...``).
The pages themselves live in ``hotline_api/web/``."""
from hotline_api.web.routes import router

PREFIX = ""

__all__ = ["router", "PREFIX"]
