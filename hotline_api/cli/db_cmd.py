"""`hotline db upgrade`: apply alembic migrations to the configured database."""
from __future__ import annotations

from hotline_api.core.config import get_settings


def register(sub) -> None:
    p = sub.add_parser("db", help="database schema")
    s = p.add_subparsers(dest="db_command", metavar="SUBCOMMAND")
    s.required = True
    up = s.add_parser("upgrade", help="apply migrations up to the newest schema")
    up.set_defaults(func=_upgrade)


def _upgrade(args) -> int:
    from hotline_api.db import migrate  # alembic only for this command (every `hotline` process builds the parser)

    settings = get_settings()
    settings.ensure_dirs()
    migrate.upgrade(settings.db_url)
    from hotline_api.db.session import session_factory
    from hotline_api.services import content

    n = content.encrypt_plain_values(session_factory(settings.db_url))
    if n:
        print(f"encrypted {n} value(s) that an earlier version stored in clear")
    print("database schema is up to date")
    return 0
