"""Retention: a property test over random recordings, holds, case links, policies and clocks on a
real database with real encrypted files. The purge never deletes held or open-case audio, always
deletes what is due, leaves a stub and an audit entry, and the data key is gone for good."""
from __future__ import annotations

import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from sqlalchemy import select

from hotline_api.cli import main
from hotline_api.core.config import Settings
from hotline_api.db import crypto_types, session as dbsession
from hotline_api.db.base import Base
from hotline_api.models.calls import Recording
from hotline_api.models.governance import PurgeStub, RecordingBlob
from hotline_api.services import audit, retention, review, storage
from tests.hotline_api.services.govtest_util import make_call

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)

rec_st = st.fixed_dictionaries({
    "kind": st.sampled_from(["call", "voicemail"]),
    "age": st.integers(0, 2500),
    "no_content": st.booleans(),
    "case": st.sampled_from([None, None, "case-A", "case-B"]),
    "hold": st.booleans(),
})
case_st = st.fixed_dictionaries({"archived_age": st.one_of(st.none(), st.integers(0, 2500)), "hold": st.booleans()})


def _expected(r, cases, policy_nc):
    if r["hold"] or (r["case"] and cases[r["case"]]["hold"]):
        return False
    completed = NOW - timedelta(days=r["age"])
    if r["case"]:
        arch = cases[r["case"]]["archived_age"]
        # counted from the later of the archiving and the recording (an old case's link keeps it the full period)
        return arch is not None and NOW >= max(NOW - timedelta(days=arch), completed) + timedelta(days=5 * 365)
    if r["no_content"]:
        return policy_nc is not None and NOW >= completed + timedelta(days=policy_nc)
    if r["kind"] == "voicemail":
        return NOW >= completed + timedelta(days=365)
    return False


def _fresh(tmp: Path):
    s = Settings.load(env={"HOTLINE_DATA_DIR": str(tmp / "var")})
    s.ensure_dirs()
    factory = dbsession.session_factory(s.db_url)
    Base.metadata.create_all(factory.kw["bind"])
    return s, factory


def _db_bytes(settings) -> bytes:
    p = Path(settings.db_url.removeprefix("sqlite:///"))
    return b"".join(q.read_bytes() for q in (p, p.with_name(p.name + "-wal")) if q.exists())


@hsettings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recs=st.lists(rec_st, min_size=1, max_size=5), cases=st.fixed_dictionaries({"case-A": case_st, "case-B": case_st}),
       policy_nc=st.one_of(st.none(), st.integers(0, 400)))
def test_purge_property(recs, cases, policy_nc):
    with tempfile.TemporaryDirectory() as d:
        settings, db = _fresh(Path(d))
        try:
            _run_property(settings, db, recs, cases, policy_nc)
        finally:
            crypto_types.set_field_cipher(None)
            eng = dbsession._engines.pop(settings.db_url, None)
            if eng is not None:
                eng.dispose()


def _run_property(settings, db, recs, cases, policy_nc):
    ctx = storage.open_crypto(settings, db)
    ids, plain, wrapped = [], {}, {}
    with db() as s:
        for i, r in enumerate(recs):
            at = NOW - timedelta(days=r["age"])
            ev, data = make_call(s, settings, at=at, kind=r["kind"], seconds=0.05, seed=i)
            storage.ingest_recording(s, ctx, ev.recording_id, ev.path)
            a = review.assign_at_completion(s, ev.recording_id, call_id=ev.call_uuid, kind=r["kind"], completed_at=at,
                                            calendar=review.weekday_calendar)
            if r["case"]:
                a.case_id, a.organized_kind = r["case"], "case"
            elif r["no_content"]:
                a.no_content_reason, a.organized_kind = "无内容", "no_content"
            if r["hold"]:
                retention.place_hold(s, "recording", ev.recording_id, "纪律审查需要")
            ids.append(ev.recording_id)
            plain[ev.recording_id] = data
            wrapped[ev.recording_id] = s.get(RecordingBlob, ev.recording_id).wrapped_key
        for cid, c in cases.items():
            if c["hold"]:
                retention.place_hold(s, "case", cid, "案件诉讼保全")
        retention.set_policy(s, "no_content", policy_nc)
        s.commit()
        audit_before = audit.verify(s).count

    before = _db_bytes(settings)
    assert all(w in before for w in wrapped.values())  # (so the check after the purge means something)
    archived = {cid: (NOW - timedelta(days=c["archived_age"])) if c["archived_age"] is not None else None
                for cid, c in cases.items()}
    dry = retention.run_retention(db, settings, now=NOW, dry_run=True, case_archived=lambda s, cids: archived)
    report = retention.run_retention(db, settings, now=NOW, case_archived=lambda s, cids: archived)
    assert {d.recording_id for d in dry.due} == set(report.purged)

    dbbytes = _db_bytes(settings)
    with db() as s:
        for rid, r in zip(ids, recs):
            expect = _expected(r, cases, policy_nc)
            blob = s.get(RecordingBlob, rid)
            if expect:
                assert rid in report.purged
                assert blob.wrapped_key is None and blob.destroyed_at is not None
                assert wrapped[rid] not in dbbytes  # the data key is gone from the database file and WAL
                assert not ctx.store.path(rid).exists()
                assert s.get(Recording, rid).status == "purged"
                stub = s.get(PurgeStub, rid)
                assert stub is not None and stub.reason and stub.sha256 == blob.sha256
                with pytest.raises(storage.RecordingPurged):
                    storage.open_reader(s, ctx, rid)
                assert any(e["action"] == "retention.purge" and e["object_id"] == rid for e in audit.iter_entries(s))
            else:
                assert rid not in report.purged
                with storage.open_reader(s, ctx, rid) as rd:
                    assert rd.read_all() == plain[rid]
        result = audit.verify(s)
        assert result.ok and result.count == audit_before + len(report.purged)


def _make(db, settings, ctx, age_days, kind="call", no_content=False, case=None):
    at = datetime.now(timezone.utc) - timedelta(days=age_days)
    with db() as s:
        ev, data = make_call(s, settings, at=at, kind=kind, seconds=0.05)
        storage.ingest_recording(s, ctx, ev.recording_id, ev.path)
        a = review.assign_at_completion(s, ev.recording_id, call_id=ev.call_uuid, kind=kind, completed_at=at)
        if no_content:
            a.no_content_reason = "无内容"
        if case:
            a.case_id = case
        s.commit()
    return ev.recording_id


def test_cli_dry_run_lists_what_would_go_and_why_and_changes_nothing(settings, db, ctx, capsys):
    old_nc = _make(db, settings, ctx, 200, no_content=True)
    young_nc = _make(db, settings, ctx, 10, no_content=True)
    old_vm = _make(db, settings, ctx, 400, kind="voicemail")
    open_case = _make(db, settings, ctx, 3000, case="case-X")
    with db() as s:
        retention.place_hold(s, "recording", old_vm, "调查需要")
        s.commit()
        n_audit = audit.verify(s).count
    assert main(["retention", "run", "--dry-run", "--all"]) == 0
    out = capsys.readouterr().out
    line = [x for x in out.splitlines() if old_nc in x][0]
    assert line.startswith("would purge") and "no_content" in line and "180 days" in line
    assert [x for x in out.splitlines() if young_nc in x][0].startswith("keep")
    assert "legal_hold" in [x for x in out.splitlines() if old_vm in x][0]
    assert "case_open" in [x for x in out.splitlines() if open_case in x][0]
    assert "1 of 4 recording(s) would be purged" in out
    with db() as s:
        assert s.get(RecordingBlob, old_nc).wrapped_key is not None and audit.verify(s).count == n_audit
    assert ctx.store.path(old_nc).exists()
    assert main(["retention", "run"]) == 0
    assert "1 recording(s) purged" in capsys.readouterr().out
    with db() as s:
        assert s.get(RecordingBlob, old_nc).wrapped_key is None
        # releasing the hold makes the old voicemail due at the next run
        hold = s.execute(select(retention.LegalHold)).scalar_one()
        retention.release_hold(s, hold.id, reason="调查结束")
        s.commit()
    assert main(["retention", "run"]) == 0
    with db() as s:
        assert s.get(RecordingBlob, old_vm).wrapped_key is None
        assert s.get(RecordingBlob, open_case).wrapped_key is not None
        assert audit.verify(s).ok


def test_policy_cli_and_validation(settings, db, capsys):
    assert main(["retention", "policy", "no_content", "90"]) == 0
    assert "no_content\t90 days" in capsys.readouterr().out
    assert main(["retention", "policy", "other", "keep"]) == 0
    assert main(["retention", "policy", "bogus", "3"]) == 2
    assert main(["retention", "policy", "no_content", "-3"]) == 2
