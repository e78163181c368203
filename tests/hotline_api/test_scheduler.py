"""Scheduled jobs that close gaps: the draft sweep and the SQLite statistics job."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from hotline_api.models.asr import Transcript
from hotline_api.models.calls import Call, Recording
from hotline_api.models.cases import Draft
from hotline_api.scheduler import build_scheduler, db_optimize_job, draft_sweep_job

TEXT = "您好这里是纪委监委举报电话 我要反映镇里的一个站长 他收了别人两万块钱"


def _transcript(db, age: timedelta, text: str = TEXT) -> str:
    now = datetime.now(timezone.utc)
    with db() as s:
        call = Call(sip_call_id=f"{age}@t", dialled="12388", created_at=now - age)
        s.add(call)
        s.flush()
        rec = Recording(call_id=call.id, status="complete")
        s.add(rec)
        s.flush()
        data = {"text": text, "turns": [{"speaker": "caller", "start": 0.0, "end": 6.0, "text": text}]}
        s.add(Transcript(recording_id=rec.id, data=json.dumps(data, ensure_ascii=False), text=text,
                         created_at=now - age))
        s.commit()
        return rec.id


def _drafted(db) -> set[str]:
    with db() as s:
        return set(s.execute(select(Draft.recording_id)).scalars())


def test_transcripts_left_without_a_draft_are_drafted_once(db, settings):
    orphan = _transcript(db, timedelta(minutes=30))       # its worker died after the commit
    fresh = _transcript(db, timedelta(seconds=5))         # its worker is drafting it right now
    old = _transcript(db, timedelta(days=3))              # outside the sweep's window
    silent = _transcript(db, timedelta(minutes=30), "")   # nothing to draft
    assert draft_sweep_job(db, settings) == 1
    assert _drafted(db) == {orphan}
    assert draft_sweep_job(db, settings) == 0             # idempotent
    assert _drafted(db) == {orphan}
    assert draft_sweep_job(db, settings, min_age_s=0, window_h=24 * 7) == 2
    assert _drafted(db) == {orphan, fresh, old}
    assert silent not in _drafted(db)


def test_sqlite_statistics_job_and_the_schedule(db, settings):
    _transcript(db, timedelta(minutes=1))
    with db() as s:
        before = s.connection().exec_driver_sql(
            "SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'").scalar()
    db_optimize_job(db)
    with db() as s:
        stats = dict(s.connection().exec_driver_sql("SELECT tbl, count(*) FROM sqlite_stat1 GROUP BY tbl").all())
    assert before == 0 and stats.get("calls") and stats.get("transcripts")
    sched = build_scheduler(settings, db)
    ids = {j.id for j in sched.get_jobs()}
    assert {"draft_sweep", "db_optimize", "review_escalation", "retention", "audit_verify"} <= ids
