"""Recording storage, encryption at rest, audit hash chain and retention policy (pure logic).

This package never imports ``hotline_api``: it works on paths, bytes and plain data classes. The
composition with the database lives in ``hotline_api/services/storage.py``, ``audit.py`` and
``retention.py``.
"""
