"""Governance commands: `hotline audit verify`, `hotline keys init|rotate|status`,
`hotline retention run [--dry-run]`, `hotline retention policy`, `hotline review escalate|report`."""
from __future__ import annotations

import json
import sys
from datetime import datetime, timezone

from hotline_api.cli import CliError
from hotline_api.core.config import get_settings


def register(sub) -> None:
    a = sub.add_parser("audit", help="audit log")
    sa = a.add_subparsers(dest="audit_command", metavar="SUBCOMMAND")
    sa.required = True
    v = sa.add_parser("verify", help="check the audit hash chain and its anchors (a deleted or truncated anchor "
                                     "file is tampering); exit 1 naming the first bad entry or the anchor problem")
    v.set_defaults(func=_audit_verify)

    k = sub.add_parser("keys", help="master key and encryption at rest")
    sk = k.add_subparsers(dest="keys_command", metavar="SUBCOMMAND")
    sk.required = True
    i = sk.add_parser("init", help="create the master key file (0600) and register it")
    i.set_defaults(func=_keys_init)
    r = sk.add_parser("rotate", help="re-wrap all data keys with a new master key (audio is not re-encrypted)")
    r.add_argument("--new-key-stdin", action="store_true",
                   help="read the new base64 master key from stdin (required when HOTLINE_MASTER_KEY is used)")
    r.add_argument("--field-key", action="store_true",
                   help="also replace the field key (identity, transcripts, case text) and re-encrypt every value "
                        "under it; refused while `hotline serve` runs on this data dir")
    r.set_defaults(func=_keys_rotate)
    st = sk.add_parser("status", help="check the master key against the database")
    st.set_defaults(func=_keys_status)

    ret = sub.add_parser("retention", help="retention policies and purge")
    sr = ret.add_subparsers(dest="retention_command", metavar="SUBCOMMAND")
    sr.required = True
    run = sr.add_parser("run", help="apply retention policies now")
    run.add_argument("--dry-run", action="store_true", help="list what would go, and why; change nothing")
    run.add_argument("--all", action="store_true", help="with --dry-run: also list what is kept")
    run.add_argument("--json", action="store_true")
    run.set_defaults(func=_retention_run)
    pol = sr.add_parser("policy", help="show or set retention periods")
    pol.add_argument("kind", nargs="?", help="no_content / voicemail_no_case / case_archived / other")
    pol.add_argument("days", nargs="?", help="days, or 'keep' to keep forever")
    pol.set_defaults(func=_retention_policy)

    rv = sub.add_parser("review", help="designated-staff review of recordings")
    srv = rv.add_subparsers(dest="review_command", metavar="SUBCOMMAND")
    srv.required = True
    esc = srv.add_parser("escalate", help="escalate overdue review items to supervisors now")
    esc.set_defaults(func=_review_escalate)
    rep = srv.add_parser("report", help="monthly compliance report per manager")
    rep.add_argument("month", help="YYYY-MM")
    rep.add_argument("--json", action="store_true")
    rep.set_defaults(func=_review_report)


def _factory():
    from hotline_api.db import migrate
    from hotline_api.db.session import session_factory

    settings = get_settings()
    settings.ensure_dirs()
    migrate.upgrade(settings.db_url)
    return settings, session_factory(settings.db_url)


def _progress(done: int, total: int) -> None:
    print(f"\r{done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------- audit
def _audit_verify(args) -> int:
    from hotline_api.services import audit

    settings, factory = _factory()
    anchors = audit.anchor_log(settings)
    with factory() as s:
        result = audit.verify(s, anchors)
    if result.ok:
        print(f"audit chain OK: {result.count} entries, head #{result.head_seq} {result.head_hash}")
        if result.head_seq is not None:
            written = audit.anchor_head(factory, anchors, result)
            print(f"anchored in {anchors.path} (also keep the head above outside this machine)" if written else
                  f"head already anchored in {anchors.path}")
        else:
            print("no entries yet (nothing to anchor)")
        return 0
    p = result.problem
    print("审计日志校验失败（可能被篡改），未写入新的锚点 / audit log verification FAILED (possible tampering); "
          "nothing anchored", file=sys.stderr)
    if p.seq is not None:
        print(f"audit chain BROKEN at {p}", file=sys.stderr)
        print(f"first bad entry: #{p.seq}")
        print(f"{result.count} entries verified before it")
    else:
        print(f"audit anchors BROKEN: {p.reason}", file=sys.stderr)
        print(f"the chain itself links ({result.count} entries), but its anchors outside the database do not hold")
    return 1


# ---------------------------------------------------------------------------------------- keys
def _keys_init(args) -> int:
    from hotline_api.services import storage

    settings, factory = _factory()
    try:
        master, created = storage.init_keys(settings, factory)
    except storage.CryptoStartupError as e:
        raise CliError(str(e)) from None
    where = storage.key_provider(settings).describe()
    print(f"master key {'created' if created else 'present'}: {where} (key check value {master.kcv})")
    return 0


def _keys_status(args) -> int:
    from hotline_api.services import storage

    settings, factory = _factory()
    try:
        ctx = storage.open_crypto(settings, factory, create=False)
    except storage.CryptoStartupError as e:
        raise CliError(str(e), code=1) from None
    print(f"master key OK: {storage.key_provider(settings).describe()} (key check value {ctx.master.kcv})")
    return 0


def _keys_rotate(args) -> int:
    from hotline_api.services import storage
    from recordings.keys import BadMasterKey, MasterKey, decode_key

    settings, factory = _factory()
    if args.field_key:
        from hotline_api.core.runlock import service_running

        if settings.master_key:
            raise CliError("--field-key needs the master key file (HOTLINE_MASTER_KEY is set): nothing changed")
        if service_running(settings):
            raise CliError("the service is running on this data dir (hotline serve): stop it before --field-key "
                           "(running processes keep the field key in memory); nothing changed")
    new = None
    if args.new_key_stdin:
        try:
            new = MasterKey(decode_key(sys.stdin.readline(), "new master key"))
        except BadMasterKey as e:
            raise CliError(str(e)) from None
    elif settings.master_key:
        raise CliError("the master key comes from HOTLINE_MASTER_KEY: pass the new key with --new-key-stdin")
    try:
        res = storage.rotate_master_key(settings, factory, new, progress=_progress)
    except (storage.CryptoStartupError, storage.StorageError) as e:
        raise CliError(str(e)) from None
    print(f"rotated: {res.old_kcv} -> {res.new_kcv}; {res.rewrapped} data key(s) re-wrapped, audio untouched")
    if args.field_key:
        try:
            fr = storage.rekey_field_key(settings, factory, progress=_progress)
        except (storage.CryptoStartupError, storage.StorageError) as e:
            raise CliError(f"field key not replaced: {e}") from None
        print(f"field key replaced: {fr.old_kcv} -> {fr.new_kcv}; {fr.reencrypted} value(s) re-encrypted")
    if settings.master_key:
        print("now set HOTLINE_MASTER_KEY to the new key before the next start")
    return 0


# ----------------------------------------------------------------------------------- retention
def _retention_run(args) -> int:
    from hotline_api.services import retention

    settings, factory = _factory()
    report = retention.run_retention(factory, settings, dry_run=args.dry_run, progress=_progress)
    shown = report.decisions if (args.dry_run and args.all) else report.due
    if args.json:
        print(json.dumps({
            "dry_run": report.dry_run, "now": report.now.isoformat(),
            "items": [{"recording_id": d.recording_id, "purge": d.purge, "rule": d.rule, "reason": d.reason,
                       "due_at": d.due_at.isoformat() if d.due_at else None} for d in shown],
            "purged": report.purged, "skipped": [list(x) for x in report.skipped]}, ensure_ascii=False, indent=2))
        return 0
    verb = "would purge" if args.dry_run else "purge"
    for d in shown:
        print(f"{verb if d.purge else 'keep'}\t{d.recording_id}\t{d.rule}\t{d.reason}")
    if args.dry_run:
        print(f"{len(report.due)} of {len(report.decisions)} recording(s) would be purged (dry run: nothing changed)")
    else:
        for rid, why in report.skipped:
            print(f"skipped\t{rid}\t{why}")
        print(f"{len(report.purged)} recording(s) purged (data keys destroyed, files removed: {report.files_removed})")
    return 0


def _retention_policy(args) -> int:
    from hotline_api.services import retention

    _, factory = _factory()
    with factory() as s:
        if args.kind:
            if args.days is None:
                raise CliError("give DAYS (or 'keep')")
            days = None if args.days == "keep" else _int(args.days)
            try:
                retention.set_policy(s, args.kind, days)
            except retention.RetentionError as e:
                raise CliError(str(e)) from None
            s.commit()
        pol = retention.load_policy(s)
    for kind in ("no_content", "voicemail_no_case", "case_archived", "other"):
        d = getattr(pol, f"{kind}_days")
        print(f"{kind}\t{'keep' if d is None else f'{d} days'}")
    return 0


def _int(s: str) -> int:
    try:
        return int(s)
    except ValueError:
        raise CliError(f"not a number of days: {s!r}") from None


# -------------------------------------------------------------------------------------- review
def _review_escalate(args) -> int:
    from hotline_api.services import review

    _, factory = _factory()
    n = review.escalation_job(factory)
    print(f"{n} overdue item(s) escalated")
    return 0


def _review_report(args) -> int:
    from hotline_api.services import review

    settings, factory = _factory()
    try:
        year, month = (int(x) for x in args.month.split("-"))
        if not 1 <= month <= 12:
            raise ValueError
    except ValueError:
        raise CliError("month must be YYYY-MM") from None
    with factory() as s:
        rep = review.compliance_report(s, year, month, now=datetime.now(timezone.utc), tz=settings.timezone)
    if args.json:
        print(json.dumps(rep.as_dict(), ensure_ascii=False, indent=2))
        return 0
    print("manager\tassigned\ton_time\tlate\topen\toverdue_open")
    for r in rep.rows + [rep.total]:
        print(f"{r.manager or '(unassigned)'}\t{r.assigned}\t{r.done_on_time}\t{r.late}\t{r.open}\t{r.overdue_open}")
    return 0
