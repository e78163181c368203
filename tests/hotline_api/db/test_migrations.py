"""Schema changes go through alembic: the migrated schema equals the models, with one head."""
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import hotline_api.models  # noqa: F401 - every table
from hotline_api.db import migrate
from hotline_api.db.base import Base
from hotline_api.db.session import make_engine


def test_migrations_produce_the_models_schema(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrate.upgrade(url)
    with make_engine(url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], diff


def test_upgrade_is_idempotent_and_single_head(tmp_path):
    from alembic.script import ScriptDirectory

    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrate.upgrade(url)
    migrate.upgrade(url)  # nothing to do, no error
    heads = ScriptDirectory.from_config(migrate.alembic_config(url)).get_heads()
    assert len(heads) == 1, f"several migration heads, add a merge revision: {heads}"
