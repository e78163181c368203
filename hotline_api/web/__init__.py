"""The web console: server-rendered Jinja2 pages with htmx, served by the API process itself.

Page routers live in ``hotline_api/web/pages_*.py``; ``hotline_api/api/routes/web_pages.py``
includes them at the root (``PREFIX = ""``). Assets (htmx, Chart.js, CSS, JS) are files under
``static/``, served by ``/static/...`` (no CDN: the deployment network is closed).
"""
