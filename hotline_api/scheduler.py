"""Scheduled jobs (APScheduler), run by `hotline serve --only scheduler`:

| job | when |
|---|---|
| review escalation: overdue listen/store/organize items → supervisor alerts | every 5 minutes |
| case deadline reminders: due in 3 working days, overdue | daily 08:30 / 08:35 (Asia/Shanghai) |
| retention purge (crypto-shredding) | daily 02:30 |
| audit chain verification (logged; failure is an error) | daily 03:30 |
| expired export bundles deleted | hourly |
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


def audit_verify_job(factory: sessionmaker[Session]) -> None:
    from hotline_api.services import audit

    with factory() as s:
        result = audit.verify(s)
    if result.ok:
        log.info("audit chain verified: %d entries", result.count)
    else:
        log.error("AUDIT CHAIN BROKEN: %s", result.problem)


def build_scheduler(settings: Settings, factory: sessionmaker[Session]) -> BackgroundScheduler:
    from hotline_api.services import cases, review

    sched = BackgroundScheduler(timezone=settings.timezone)
    sched.add_job(review.escalation_job, "interval", minutes=5, args=[factory], id="review_escalation",
                  max_instances=1, coalesce=True)
    for i, (fn, cron) in enumerate(cases.reminder_jobs(factory, event_bus=cases.bus)):
        sched.add_job(fn, "cron", id=f"case_reminder_{i}", max_instances=1, coalesce=True, **cron)
    sched.add_job(retention_job, "cron", hour=2, minute=30, args=[factory, settings], id="retention",
                  max_instances=1, coalesce=True)
    sched.add_job(audit_verify_job, "cron", hour=3, minute=30, args=[factory], id="audit_verify",
                  max_instances=1, coalesce=True)
    from hotline_api.services import exports

    sched.add_job(exports.expire_exports, "interval", hours=1, args=[factory, settings], id="export_expiry",
                  max_instances=1, coalesce=True)
    return sched
