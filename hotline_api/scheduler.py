"""Scheduled jobs (APScheduler), run by `hotline serve --only scheduler`:

| job | when |
|---|---|
| review escalation: overdue listen/store/organize items → supervisor alerts | every 5 minutes |
| case deadline reminders: due in 3 working days, overdue | daily 08:30 / 08:35 (Asia/Shanghai) |
| retention purge (crypto-shredding) | daily 02:30 |
| audit chain verification (logged; failure is an error), then its head anchored outside the DB | daily 03:30 |
| audit chain head anchored once the entries since the last anchor verify (failure: an error, no anchor) | every 15 minutes |
| expired export bundles deleted | hourly |
| draft sweep: transcripts of the last day left without a draft (a worker died after the commit) | every 10 minutes |
| SQLite planner statistics (`ANALYZE` with an analysis limit) | daily 04:00 |
| callback tasks: ended calls whose caller asked for a callback (flow state `callback`) get one | every minute |
"""
from __future__ import annotations

import logging

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.orm import Session, sessionmaker

from hotline_api.core.config import Settings

log = logging.getLogger("hotline.scheduler")


def retention_job(factory: sessionmaker[Session], settings: Settings) -> None:
    from hotline_api.services import retention
    from hotline_api.services.case_links import case_archived, case_links

    report = retention.run_retention(factory, settings, case_links=case_links, case_archived=case_archived)
    log.info("retention: %d recording(s) purged", len(report.due))


def audit_verify_job(factory: sessionmaker[Session], settings: Settings) -> None:
    """The whole chain, every anchor, and every anchor the log records as written; then the head is
    anchored (and that recorded). A failure is an error in the log and nothing is anchored."""
    from hotline_api.services import audit

    anchors = audit.anchor_log(settings)
    with factory() as s:
        result = audit.verify(s, anchors)
    if result.ok:
        audit.anchor_head(factory, anchors, result)
        log.info("audit chain verified: %d entries, head #%s %s", result.count, result.head_seq, result.head_hash)
    else:
        log.error("AUDIT CHAIN BROKEN: %s", result.problem)


def audit_anchor_job(factory: sessionmaker[Session], settings: Settings) -> None:
    """Anchor the chain's head outside the database, after checking the entries written since the
    last anchor (each links and matches its hash; the last anchored entry is unchanged; the anchor
    file holds every anchor the log records). Cheap: the full walk is the daily verification's. A
    failure is reported as the daily verification reports one, and nothing is anchored."""
    from hotline_api.services import audit

    result = audit.anchor_and_record(factory, audit.anchor_log(settings))
    if not result.ok:
        log.error("AUDIT CHAIN BROKEN: %s (anchor job: nothing anchored)", result.problem)


def draft_sweep_job(factory: sessionmaker[Session], settings: Settings, min_age_s: float = 120.0,
                    window_h: float = 24.0) -> int:
    """Draft the transcripts that have none yet. The ASR worker drafts a transcript right after it
    commits it; a worker killed between the two leaves a transcript without a draft, which nobody would
    ever review. Transcripts younger than ``min_age_s`` are left to their worker; drafting is
    idempotent per recording. Returns the number of drafts created."""
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import select

    from hotline_api.models.asr import Transcript
    from hotline_api.models.cases import Draft
    from hotline_api.services import cases

    now = datetime.now(timezone.utc)
    with factory() as s:
        rows = s.execute(
            select(Transcript.recording_id)
            .where(Transcript.created_at <= now - timedelta(seconds=min_age_s),
                   Transcript.created_at >= now - timedelta(hours=window_h),
                   ~select(Draft.id).where(Draft.recording_id == Transcript.recording_id).exists())
        ).scalars().all()
    made = 0
    for rec_id in rows:
        try:
            with factory() as s:
                t = s.execute(select(Transcript).where(Transcript.recording_id == rec_id)).scalar_one()
                if cases.on_transcript_completed(s, rec_id, t.data, settings=settings) is not None:
                    made += 1
                s.commit()
        except Exception:  # one bad transcript must not stop the others
            log.exception("draft sweep: recording %s could not be drafted", rec_id)
    if made:
        log.warning("draft sweep: %d transcript(s) had no draft; drafted now", made)
    return made


def db_optimize_job(factory: sessionmaker[Session]) -> None:
    """Keep SQLite's planner statistics current (PostgreSQL's autovacuum does this by itself)."""
    with factory() as s:
        if s.get_bind().dialect.name == "sqlite":
            conn = s.connection()
            conn.exec_driver_sql("PRAGMA analysis_limit=2000")  # approximate: milliseconds, not a table scan
            conn.exec_driver_sql("ANALYZE")
            s.commit()


def build_scheduler(settings: Settings, factory: sessionmaker[Session]) -> BackgroundScheduler:
    from hotline_api.services import cases, review

    sched = BackgroundScheduler(timezone=settings.timezone)
    sched.add_job(review.escalation_job, "interval", minutes=5, args=[factory], id="review_escalation",
                  max_instances=1, coalesce=True)
    for i, (fn, cron) in enumerate(cases.reminder_jobs(factory, event_bus=cases.bus)):
        sched.add_job(fn, "cron", id=f"case_reminder_{i}", max_instances=1, coalesce=True, **cron)
    sched.add_job(retention_job, "cron", hour=2, minute=30, args=[factory, settings], id="retention",
                  max_instances=1, coalesce=True)
    sched.add_job(audit_verify_job, "cron", hour=3, minute=30, args=[factory, settings], id="audit_verify",
                  max_instances=1, coalesce=True)
    sched.add_job(audit_anchor_job, "interval", minutes=15, args=[factory, settings], id="audit_anchor",
                  max_instances=1, coalesce=True)
    from hotline_api.services import exports

    sched.add_job(exports.expire_exports, "interval", hours=1, args=[factory, settings], id="export_expiry",
                  max_instances=1, coalesce=True)
    sched.add_job(draft_sweep_job, "interval", minutes=10, args=[factory, settings], id="draft_sweep",
                  max_instances=1, coalesce=True)
    sched.add_job(db_optimize_job, "cron", hour=4, minute=0, args=[factory], id="db_optimize",
                  max_instances=1, coalesce=True)
    from hotline_api.services import callbacks

    sched.add_job(callbacks.ensure_tasks_job, "interval", minutes=1, args=[factory, settings], id="callback_tasks",
                  max_instances=1, coalesce=True)
    return sched
