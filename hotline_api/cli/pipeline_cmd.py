"""`hotline pipeline status [--json]` and `hotline pipeline run`: the recording chain (stored →
assigned → queued for transcription, see ``hotline_api.services.pipeline``)."""
from __future__ import annotations

import json
import sys

from hotline_api.cli import CliError
from hotline_api.core.config import get_settings


def register(sub) -> None:
    p = sub.add_parser("pipeline", help="the recording chain: stored, assigned for review, queued for transcription")
    sp = p.add_subparsers(dest="pipeline_command", metavar="SUBCOMMAND")
    sp.required = True
    st = sp.add_parser("status", help="recordings in each stage, the oldest, and those stuck or quarantined; "
                                      "exit 1 when any is stuck or quarantined")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=_status)
    run = sp.add_parser("run", help="search recordings/incoming and take every due recording through the "
                                    "chain now, in this process (the service's pipeline part does this by itself)")
    run.set_defaults(func=_run)


def _age(seconds) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _status(args) -> int:
    from hotline_api.db import migrate
    from hotline_api.db.session import session_factory
    from hotline_api.services import pipeline

    settings = get_settings()
    try:
        migrate.upgrade(settings.db_url)
        st = pipeline.status(session_factory(settings.db_url), settings)
    except Exception as e:  # noqa: BLE001 - e.g. the database unreachable
        raise CliError(f"cannot read the pipeline state: {e}") from None
    if args.json:
        print(json.dumps(st, ensure_ascii=False, indent=2))
        return 0 if st["healthy"] else 1
    print(f"{'stage':<12} {'count':>7}  oldest")
    for k in pipeline.STAGES:
        d = st["stages"][k]
        print(f"{k:<12} {d['count']:>7}  {_age(d['oldest_age_s'])}")
    print(f"retrying: {st['retrying']}")
    for title, rows in (("stuck", st["stuck"]), ("quarantined", st["quarantined"])):
        if rows:
            print(f"\n{title} ({len(rows)}):")
            for r in rows:
                print(f"  {r['recording_id']}  {r['stage']:<11} {_age(r['age_s']):>8}  tries {r['attempts']}  "
                      f"{r['error'] or ''}")
    if not st["healthy"]:
        print(f"\n{len(st['stuck'])} stuck (> {st['stuck_after_minutes']:.0f} min), {len(st['quarantined'])} quarantined",
              file=sys.stderr)
    return 0 if st["healthy"] else 1


def _run(args) -> int:
    from hotline_api import wiring
    from hotline_api.services.pipeline import Pipeline

    settings = get_settings()
    wiring.prepare(settings)
    factory, ctx = wiring.open_runtime(settings)
    p = Pipeline(settings, factory, ctx)
    p.release_dead_claims()
    found = p.scan()
    print(f"incoming: {found['found']} file(s), {found['adopted']} completed from their files, "
          f"{found['removed_plain_copy']} plain copies of stored recordings removed", flush=True)
    total = len(p.due(limit=10 ** 9))

    def progress(n: int) -> None:
        if n % 10 == 0 or n == total:
            print(f"\r{min(n, total)}/{total} recordings", end="", file=sys.stderr, flush=True)

    res = p.run_once(progress=progress)
    if total:
        print(file=sys.stderr)
    print(f"{res.steps} step(s) done, {res.failures} failure(s) left for a retry, {res.quarantined} quarantined")
    return 0 if not res.failures else 1
