"""Fixtures shared by the service tests."""
from __future__ import annotations

import pytest

from hotline_api.db import crypto_types
from hotline_api.services import storage


@pytest.fixture
def ctx(settings, db):
    """The recording store's crypto context, opened (and unset again) for one test."""
    c = storage.open_crypto(settings, db)
    yield c
    crypto_types.set_field_cipher(None)
    crypto_types.clear_cache()
