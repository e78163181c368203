"""`hotline prompts build [--force]` and `hotline prompts list`: the voice prompt set.

Default Mandarin prompts are generated with espeak-ng (see telephony.prompts); a prompt an admin
replaced is kept unless --force is given.
"""
from __future__ import annotations

import sys

from hotline_api.cli import CliError
from hotline_api.core.config import get_settings


def register(sub) -> None:
    p = sub.add_parser("prompts", help="voice prompts (generate defaults, list)")
    s = p.add_subparsers(dest="prompts_command", metavar="SUBCOMMAND")
    s.required = True
    b = s.add_parser("build", help="generate the missing default prompts into the prompts directory")
    b.add_argument("--force", action="store_true", help="overwrite existing prompts (also admin-replaced ones)")
    b.add_argument("names", nargs="*", help="only these prompts (default: all)")
    b.set_defaults(func=_build)
    ls = s.add_parser("list", help="list the prompts with their text and state")
    ls.set_defaults(func=_list)


def _build(args) -> int:
    from telephony.prompts import PromptError, build_prompts

    settings = get_settings()
    target = settings.prompts_dir
    print(f"prompts: {target}", file=sys.stderr)

    def progress(name: str, status: str) -> None:
        print(f"  {name}: {status}", file=sys.stderr)

    from telephony.routing import EXTRA_PROMPTS, build_extra_prompts

    wanted = set(args.names or [])
    base = [n for n in wanted if n not in EXTRA_PROMPTS]
    try:
        result = {}
        if not wanted or base:
            result.update(build_prompts(target, force=args.force, names=base or None, progress=progress))
        if not wanted or wanted & set(EXTRA_PROMPTS):  # queue/attendant prompts
            for name, status in build_extra_prompts(target, force=args.force).items():
                if not wanted or name in wanted:
                    progress(name, status)
                    result[name] = status
    except PromptError as e:
        raise CliError(str(e)) from e
    written = sum(1 for v in result.values() if v == "written")
    print(f"{written} written, {len(result) - written} kept", file=sys.stderr)
    return 0


def _list(args) -> int:
    from telephony.prompts import PROMPTS, PromptError, load_prompt

    d = get_settings().prompts_dir
    for name, text in PROMPTS.items():
        path = d / f"{name}.wav"
        try:
            p = load_prompt(path)
            state = f"{p.duration:.2f}s {p.sample_rate}Hz {p.channels}ch"
        except PromptError as e:
            state = f"ERROR: {e}" if path.exists() else "missing"
        print(f"{name}\t{state}\t{text}")
    return 0
