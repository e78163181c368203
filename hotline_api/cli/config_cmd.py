"""`hotline config show`: the effective configuration, secrets masked."""
from __future__ import annotations

import json

from hotline_api.core.config import get_settings


def register(sub) -> None:
    p = sub.add_parser("config", help="show the effective configuration")
    s = p.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    s.required = True
    show = s.add_parser("show", help="print the effective configuration (secrets masked)")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=_show)


def _show(args) -> int:
    data = get_settings().public_dict()
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        for k, v in data.items():
            print(f"{k} = {v}")
    return 0
