"""`hotline` console script.

Each module in this package that defines ``register(subparsers)`` adds its commands; modules are
discovered, so a new command group is a new file here. A command handler takes the parsed args and
returns an exit code. Errors meant for the user are raised as ``CliError`` and printed without a
traceback.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys

from hotline_api.core.config import ConfigError


class CliError(Exception):
    """A user-facing error: printed as `hotline: <message>`, exit code `code`."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hotline", description="12388 举报电话服务 / 12388 hotline service")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (default from settings)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if mod.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{mod.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def private_umask() -> None:
    """Files and folders of the service are its own: data files 0600, folders 0700 (the database,
    keys, the call spool, incoming WAVs, logs). Set at every process entry; children inherit it.
    A stricter umask already in place is kept."""
    os.umask(os.umask(0o077) | 0o077)


def main(argv: list[str] | None = None) -> int:
    private_umask()
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sip-worker"]:  # a pool worker: small and fast, no other command's imports
        from hotline_api.cli.serve_cmd import sip_worker_main

        try:
            return sip_worker_main(argv[1:])
        except ConfigError as e:
            print(f"hotline: configuration error: {e}", file=sys.stderr)
            return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, (args.log_level or "INFO").upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        rc = args.func(args)
    except CliError as e:
        print(f"hotline: {e}", file=sys.stderr)
        return e.code
    except ConfigError as e:
        print(f"hotline: configuration error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
