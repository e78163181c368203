"""`hotline draft FILE [--json]`, `hotline draft FILE.jsonl --field asr_text|turns --json` and
`hotline eval-drafts FILE.jsonl [--field asr_text|turns]` (metrics as defined in CONTRACT.md).
All offline: no database needed."""
from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

from hotline_api.cli import CliError

FIELDS = ("asr_text", "turns")


def register(sub) -> None:
    p = sub.add_parser("draft", help="draft a case from a transcript (.txt, .json turns, .jsonl batch, - for stdin)")
    p.add_argument("file", help=".txt (plain or ASR text), .json ({\"turns\": [...]}), .jsonl (labeled records) or -")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--field", choices=FIELDS, default=None, help="for .jsonl: which transcript form to draft from")
    p.add_argument("--received", default=None, help="date received (YYYY-MM-DD): adds deadlines")
    p.set_defaults(func=_draft)
    e = sub.add_parser("eval-drafts", help="score drafting against labeled records (CONTRACT metrics)")
    e.add_argument("file", help="labeled .jsonl (format of cases_dev.jsonl)")
    e.add_argument("--field", choices=FIELDS, default="asr_text")
    e.set_defaults(func=_eval)


def _draft_record(rec: dict, field: str, lineno: int):
    from hotline_api.drafting import DraftInputError, make_draft

    if field not in rec:
        raise CliError(f"line {lineno}: record has no {field!r}")
    try:
        if field == "turns":
            return make_draft(turns=rec["turns"])
        return make_draft(text=rec["asr_text"])
    except DraftInputError as e:
        raise CliError(f"line {lineno} (id {rec.get('id')}): {e}") from e


def _read_jsonl(path: str) -> list[tuple[int, dict]]:
    from hotline_api.drafting.inputs import MAX_INPUT_BYTES

    p = Path(path)
    if not p.is_file():
        raise CliError(f"{p}: no such file")
    out = []
    with p.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            if len(raw) > MAX_INPUT_BYTES:
                raise CliError(f"{p}:{lineno}: record too large")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise CliError(f"{p}:{lineno}: not UTF-8 text") from e
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise CliError(f"{p}:{lineno}: invalid JSON: {e.msg}") from e
            if not isinstance(rec, dict):
                raise CliError(f"{p}:{lineno}: expected a JSON object")
            out.append((lineno, rec))
    if not out:
        raise CliError(f"{p}: no records")
    return out


def _public(d: dict) -> dict:
    d = dict(d)
    d.pop("input", None)
    return d


def _draft(args) -> int:
    from hotline_api.drafting import DraftInputError, load_transcript_file, make_draft
    from hotline_api.services.calendar import compute_deadlines

    if args.file.endswith(".jsonl"):
        field = args.field or "asr_text"
        recs = _read_jsonl(args.file)
        for k, (lineno, rec) in enumerate(recs, 1):
            d = _draft_record(rec, field, lineno)
            print(json.dumps({"id": rec.get("id"), **_public(d)}, ensure_ascii=False), flush=True)
            print(f"\rdrafted {k}/{len(recs)}", end="", file=sys.stderr)
        print(file=sys.stderr)
        return 0
    received = None
    if args.received:
        try:
            received = date.fromisoformat(args.received)
        except ValueError as e:
            raise CliError(f"--received: not a date: {args.received}") from e
    try:
        text, turns = load_transcript_file(args.file)
        d = make_draft(text=text, turns=turns, received=received, deadlines=compute_deadlines)
    except DraftInputError as e:
        raise CliError(str(e)) from e
    if args.json:
        print(json.dumps(_public(d), ensure_ascii=False, indent=2))
        return 0
    labels = {"category": "类别", "issue_types": "问题类型", "subjects": "被反映人", "places": "地点", "real_name": "实名",
              "reporter_name": "反映人", "reporter_phone": "联系电话", "urgent": "紧急", "duplicate_hint": "疑似重复",
              "amount_yuan": "金额（元）", "summary": "摘要"}
    for k, lab in labels.items():
        v = d[k]
        if k == "subjects":
            v = "；".join(f"{s['unit']}{s['title']}{s['name'] or '（未说姓名）'}" for s in v) or "-"
        elif isinstance(v, list):
            v = "、".join(v) or "-"
        elif isinstance(v, bool):
            v = "是" if v else "否"
        elif v in (None, ""):
            v = "-"
        print(f"{lab}: {v}")
    if d.get("routing"):
        print(f"建议转交: {d['routing']['suggestion']}")
    for name, dl in (d.get("deadlines") or {}).items():
        print(f"期限 {name}: {dl['due']}{'（暂定）' if dl['provisional'] else ''}")
    return 0


def _eval(args) -> int:
    from hotline_api.drafting.evaluate import METRICS, score

    recs = _read_jsonl(args.file)
    pairs = []
    for k, (lineno, rec) in enumerate(recs, 1):
        if "labels" not in rec:
            raise CliError(f"line {lineno}: record has no labels")
        pairs.append((rec["labels"], _draft_record(rec, args.field, lineno)))
        print(f"\rdrafted {k}/{len(recs)}", end="", file=sys.stderr)
    print(file=sys.stderr)
    res = score(pairs)
    for m in METRICS:
        print(f"{m}: {res[m]:.3f}")
    return 0
