"""`hotline users add NAME --role ROLE [--password-stdin]`, `hotline users bootstrap-admin`,
`hotline users list`, `hotline users reset-password NAME [--password-stdin]` (either way the user
must change the password at next login)."""
from __future__ import annotations

import sys

from sqlalchemy import select

from hotline_api.cli import CliError
from hotline_api.core.config import get_settings
from hotline_api.models.governance import PERMISSIONS, ROLES, User


def register(sub) -> None:
    p = sub.add_parser("users", help="users and roles")
    s = p.add_subparsers(dest="users_command", metavar="SUBCOMMAND")
    s.required = True

    add = s.add_parser("add", help="create a user")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--unit", default=None, help="unit (supervisors see their unit)")
    add.add_argument("--display-name", default=None)
    add.add_argument("--permission", action="append", default=[], choices=PERMISSIONS,
                     help="extra permission (repeatable), e.g. identity")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from stdin; otherwise a one-time password is printed")
    add.set_defaults(func=_add)

    boot = s.add_parser("bootstrap-admin", help="create the first admin and print a one-time password")
    boot.add_argument("--name", default="admin")
    boot.add_argument("--if-missing", action="store_true", help="do nothing (exit 0) when an admin already exists")
    boot.set_defaults(func=_bootstrap)

    ls = s.add_parser("list", help="list users")
    ls.set_defaults(func=_list)

    reset = s.add_parser("reset-password", help="give a user a new one-time password (or set one from stdin); "
                                                "the user must change it at next login")
    reset.add_argument("name")
    reset.add_argument("--password-stdin", action="store_true",
                       help="read the new password from stdin; otherwise a one-time password is printed")
    reset.set_defaults(func=_reset)


def _factory():
    from hotline_api.db import migrate
    from hotline_api.db.session import session_factory

    settings = get_settings()
    settings.ensure_dirs()
    migrate.upgrade(settings.db_url)
    return settings, session_factory(settings.db_url)


def _add(args) -> int:
    from hotline_api.services import auth

    password = None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise CliError("no password on stdin")
    settings, factory = _factory()
    with factory() as s:
        try:
            user, generated = auth.create_user(s, args.name, args.role, password, unit=args.unit,
                                               permissions=args.permission, display_name=args.display_name,
                                               settings=settings, actor=None)
        except auth.UserError as e:
            raise CliError(str(e)) from None
        s.commit()
    print(f"user {user.username} created (role {user.role})")
    if generated:
        print(f"one-time password: {generated}")
        print("(must be changed at first login)")
    return 0


def _bootstrap(args) -> int:
    from hotline_api.services import auth

    settings, factory = _factory()
    with factory() as s:
        if args.if_missing and s.scalar(select(User).where(User.role == "admin").limit(1)) is not None:
            print("an admin user exists already")
            return 0
        try:
            user, pw = auth.bootstrap_admin(s, args.name, settings=settings)
        except auth.UserError as e:
            raise CliError(str(e)) from None
        s.commit()
    print(f"admin user: {user.username}")
    print(f"one-time password: {pw}")
    print("(shown once; must be changed at first login)")
    return 0


def _list(args) -> int:
    _, factory = _factory()
    with factory() as s:
        for u in s.execute(select(User).order_by(User.username)).scalars():
            flags = [f for f, on in (("inactive", not u.active), ("must-change-password", u.must_change_password)) if on]
            perms = ",".join(sorted(u.permissions)) or "-"
            print(f"{u.username}\t{u.role}\t{u.unit or '-'}\t{perms}\t{' '.join(flags)}")
    return 0


def _reset(args) -> int:
    from hotline_api.services import auth

    chosen = None
    if args.password_stdin:
        chosen = sys.stdin.readline().rstrip("\r\n")
        if not chosen:
            raise CliError("no password on stdin")
    settings, factory = _factory()
    with factory() as s:
        user = s.execute(select(User).where(User.username == args.name)).scalar_one_or_none()
        if user is None:
            raise CliError(f"no user {args.name!r}")
        pw = chosen or auth.generate_password()
        try:
            auth.set_password(s, user, pw, settings=settings, one_time=chosen is None, must_change=True,
                              actor_name="cli")
        except auth.UserError as e:
            raise CliError(str(e)) from None
        s.commit()
    if chosen is None:
        print(f"one-time password for {args.name}: {pw}")
    else:
        print(f"password set for {args.name}")
    print("(must be changed at next login; every session of the user ended)")
    return 0
