"""Shared fixtures. Tests mirror the source tree: tests/telephony, tests/asr, tests/recordings,
tests/hotline_api."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("HOTLINE_SHARED_DIR", REPO.parent / "shared"))


def shared_path(*parts: str) -> Path:
    """A path under ../shared; the test is skipped with a clear reason when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared test data not found: {p} (clone with ../shared beside the repo)")
    return p


@pytest.fixture
def settings(tmp_path, monkeypatch):
    """Settings pointing at a fresh data dir, installed as the process-wide settings."""
    from hotline_api.core import config
    from hotline_api.db import crypto_types

    crypto_types.set_field_cipher(None)  # a cipher installed by an earlier test's data dir must not leak
    crypto_types.clear_cache()
    for k in list(os.environ):
        if k.startswith("HOTLINE_") and k != "HOTLINE_SHARED_DIR":
            monkeypatch.delenv(k, raising=False)
    s = config.Settings.load(env={"HOTLINE_DATA_DIR": str(tmp_path / "var")})
    s.ensure_dirs()
    config.set_settings(s)
    yield s
    config.set_settings(None)
    crypto_types.set_field_cipher(None)
    crypto_types.clear_cache()


@pytest.fixture
def db(settings):
    """A migrated database (alembic upgrade heads) and a session factory for it."""
    from hotline_api.db import migrate
    from hotline_api.db.session import dispose_all, session_factory

    migrate.upgrade(settings.db_url)
    yield session_factory(settings.db_url)
    dispose_all()
