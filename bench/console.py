"""Console benchmark: server time to first render of the main pages with 100k calls and 20k cases.

Generates a database in a temp dir with bulk inserts (100k calls with recordings and review
assignments over 12 months, 20k drafts and registered cases with deadlines), then renders each page
in-process (the real app through Starlette's TestClient, so the time is the server's: routing,
queries, templates) and prints the median and max over several requests. Goal: < 300 ms.

    .venv/bin/python bench/console.py [--calls 100000] [--cases 20000] [--repeat 7] [--no-analyze]

``--no-analyze`` skips the ANALYZE after the bulk load, i.e. SQLite plans without statistics, as on
a deployed database where nothing runs ANALYZE.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CATS = ["检举控告"] * 7 + ["申诉", "批评建议", "业务范围外", "咨询", "无实质内容"]
PLACES = [f"{a}{b}" for a in ("青石", "东岭", "南坪", "河湾", "杨树", "北川", "西山", "柳塘") for b in ("镇", "乡", "村")]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def generate(settings, n_calls: int, n_cases: int, seed: int = 1, analyze: bool = True) -> dict:
    from sqlalchemy import insert

    from hotline_api.db.session import session_factory
    from hotline_api.drafting.lexicon import ISSUE_RULES
    from hotline_api.models.calls import Call, Recording
    from hotline_api.models.cases import Case, CaseDeadline, CaseFacet, Draft, facets_of
    from hotline_api.models.governance import ReviewAssignment
    from hotline_api.services import auth, review

    rng = random.Random(seed)
    issue_types = list(ISSUE_RULES)
    factory = session_factory(settings.db_url)
    with factory() as s:
        mgrs = [auth.create_user(s, f"mgr{i}", "recording_manager", "bench-password-1")[0] for i in range(3)]
        auth.create_user(s, "sup", "supervisor", "bench-password-1", permissions=["identity"])
        review.set_roster(s, None, mgrs[0])
        s.commit()
        mgr_ids = [m.id for m in mgrs]
    end = datetime.now(timezone.utc)
    start = end - timedelta(days=365)
    span = (end - start).total_seconds()
    t0 = time.monotonic()
    batch = 5000
    rec_ids: list[str] = []
    engine = factory.kw["bind"]
    for off in range(0, n_calls, batch):
        calls, recs, asg = [], [], []
        for _ in range(min(batch, n_calls - off)):
            at = start + timedelta(seconds=rng.random() * span)
            cid, rid = str(uuid.uuid4()), str(uuid.uuid4())
            kind = "voicemail" if rng.random() < 0.25 else "call"
            calls.append({"id": cid, "sip_call_id": f"{cid}@bench", "dialled": "12388", "channel": kind,
                          "status": "ended", "created_at": at, "answered_at": at, "ended_at": at + timedelta(minutes=4)})
            recs.append({"id": rid, "call_id": cid, "kind": kind, "status": "complete", "duration": 240.0,
                         "sample_rate": 8000, "channels": 2, "created_at": at, "completed_at": at + timedelta(minutes=4)})
            due = at + timedelta(days=2)
            done = at + timedelta(hours=rng.randrange(1, 60)) if (end - at).days > 3 or rng.random() < 0.3 else None
            asg.append({"id": str(uuid.uuid4()), "recording_id": rid, "call_id": cid, "kind": kind,
                        "manager_id": rng.choice(mgr_ids), "assigned_at": at, "due_at": due, "due_provisional": False,
                        "served_ranges": "[]", "coverage": 1.0 if done else 0.0, "listened_at": done,
                        "stored_confirmed_at": done, "organized_at": done, "organized_kind": "tags" if done else None,
                        "tags": "[]", "completed_at": done})
            rec_ids.append(rid)
        with engine.begin() as conn:
            conn.execute(insert(Call.__table__), calls)
            conn.execute(insert(Recording.__table__), recs)
            conn.execute(insert(ReviewAssignment.__table__), asg)
        log(f"  calls {off + len(calls)}/{n_calls}")
    year_seq: dict[int, int] = {}
    for off in range(0, n_cases, batch):
        drafts, cases, dls, facets = [], [], [], []
        for _ in range(min(batch, n_cases - off)):
            at = start + timedelta(seconds=rng.random() * span)
            did, kid = str(uuid.uuid4()), str(uuid.uuid4())
            real = rng.random() < 0.3
            doc = {"category": rng.choice(CATS), "issue_types": rng.sample(issue_types, rng.choice((1, 1, 2))),
                   "subjects": [{"name": "某某", "title": "所长", "unit": rng.choice(PLACES) + "财政所"}],
                   "places": rng.sample(PLACES, rng.choice((1, 2))), "real_name": real, "reporter_name": "",
                   "reporter_phone": "", "urgent": rng.random() < 0.02, "duplicate_hint": rng.random() < 0.1,
                   "amount_yuan": rng.choice((None, 50000, 300000)), "summary": "来电人反映有关问题。", "evidence": {}}
            fj = json.dumps(doc, ensure_ascii=False)
            received = at.date()
            seq = year_seq.get(received.year, 0) + 1
            year_seq[received.year] = seq
            st = rng.choice(("registered", "handling", "closed", "archived"))
            pending = rng.random() < 0.05
            drafts.append({"id": did, "status": "draft" if pending else "registered", "source": "transcript",
                           "recording_id": rng.choice(rec_ids), "received_at": at, "created_at": at, "updated_at": at,
                           "category": doc["category"], "urgent": doc["urgent"], "real_name": real,
                           "duplicate_hint": doc["duplicate_hint"], "fields_json": fj, "original_json": fj,
                           "input_mode": "text", "input_text": "来电人反映有关问题。" * 20, "case_id": None if pending else kid})
            if pending:
                continue
            cases.append({"id": kid, "number": f"12388-{received.year}-{seq:06d}", "year": received.year, "seq": seq,
                          "draft_id": did, "status": st, "category": doc["category"], "urgent": doc["urgent"],
                          "real_name": real, "fields_json": fj, "received_on": received, "registered_at": at,
                          "registered_by": "sup"})
            facets.extend({"case_id": kid, "facet": k, "value": v} for k, v in facets_of(fj))
            if real:
                dls.append({"case_id": kid, "kind": "acceptance_notice", "start_on": received,
                            "due_on": received + timedelta(days=21), "working_days": 15, "provisional": False,
                            "done_at": None if st == "registered" else at + timedelta(days=5)})
        with engine.begin() as conn:
            conn.execute(insert(Draft.__table__), drafts)
            if cases:
                conn.execute(insert(Case.__table__), cases)
            if dls:
                conn.execute(insert(CaseDeadline.__table__), dls)
            if facets:
                conn.execute(insert(CaseFacet.__table__), facets)
        log(f"  drafts/cases {off + len(drafts)}/{n_cases}")
    if analyze:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    log(f"generated in {time.monotonic() - t0:.1f} s")
    with factory() as s:
        pending = s.query(Draft).filter(Draft.status == "draft").order_by(Draft.received_at.desc()).first()
        a_case = s.query(Case).order_by(Case.registered_at.desc()).first()
    return {"draft_id": pending.id, "case_id": a_case.id, "mgr": "mgr0"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--cases", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--no-analyze", action="store_true", help="no ANALYZE after the load (no planner statistics)")
    args = ap.parse_args()

    from fastapi.testclient import TestClient

    from hotline_api.app import create_app
    from hotline_api.core import config
    from hotline_api.db import migrate

    with tempfile.TemporaryDirectory(prefix="console-bench-") as tmp:
        settings = config.Settings.load(env={"HOTLINE_DATA_DIR": str(Path(tmp) / "var")})
        settings.ensure_dirs()
        config.set_settings(settings)
        migrate.upgrade(settings.db_url)
        log(f"generating {args.calls} calls and {args.cases} cases ...")
        ids = generate(settings, args.calls, args.cases, analyze=not args.no_analyze)
        app = create_app(settings)
        month = datetime.now(timezone.utc).strftime("%Y-%m")
        q = (datetime.now(timezone.utc).month - 1) // 3 + 1
        year = datetime.now(timezone.utc).year
        pages = [
            ("mgr0", "/review", "recording manager queue"),
            ("sup", "/drafts", "draft list"),
            ("sup", f"/drafts/{ids['draft_id']}", "draft review page"),
            ("sup", "/cases", "case list"),
            ("sup", "/cases?issue_type=受贿行贿&deadline=overdue", "case list, filtered"),
            ("sup", f"/cases/{ids['case_id']}", "case page"),
            ("sup", f"/stats?period={month}", "dashboard (month)"),
            ("sup", f"/stats?period={year}-Q{q}", "dashboard (quarter)"),
            ("sup", f"/stats?start={year - 1}-{datetime.now().month:02d}-01&end={date.today().isoformat()}", "dashboard (12 months)"),
            ("sup", f"/report?period={year}-Q{q}", "period report (quarter)"),
        ]
        clients = {}
        for user in ("mgr0", "sup"):
            c = TestClient(app, base_url="https://testserver")
            r = c.post("/login", data={"username": user, "password": "bench-password-1"}, follow_redirects=False)
            assert r.status_code == 303, r.text
            clients[user] = c
        print(f"console render times, server side (median / max of {args.repeat}), "
              f"{args.calls} calls, {args.cases} cases{'' if not args.no_analyze else ', no ANALYZE'}; goal < 300 ms")
        worst = 0.0
        for user, path, label in pages:
            c = clients[user]
            r = c.get(path)
            assert r.status_code == 200, (path, r.status_code)
            times = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                r = c.get(path)
                times.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200
            med = statistics.median(times)
            worst = max(worst, med)
            print(f"{label:28s} {med:7.1f} ms / {max(times):7.1f} ms   {len(r.content) / 1024:6.1f} KiB  {path.split('?')[0]}")
        print(f"worst median: {worst:.1f} ms ({'OK' if worst < 300 else 'OVER'} the 300 ms goal)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
