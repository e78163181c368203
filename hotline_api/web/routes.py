"""All console page routers combined (included by ``hotline_api/api/routes/web_pages.py``)."""
from __future__ import annotations

from fastapi import APIRouter

from hotline_api.web import (
    pages_admin,
    pages_audit,
    pages_auth,
    pages_callbacks,
    pages_operator,
    pages_review,
    pages_stats,
    pages_supervisor,
)

router = APIRouter(include_in_schema=False)
for _mod in (pages_auth, pages_review, pages_supervisor, pages_stats, pages_audit, pages_admin, pages_operator,
             pages_callbacks):
    router.include_router(_mod.router)
