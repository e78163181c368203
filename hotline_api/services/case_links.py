"""Which case a recording belongs to, for retention: through the draft drafted from it, or the
case a recording manager linked it to when organizing it."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline_api.models.cases import Case, Draft
from hotline_api.models.governance import ReviewAssignment


def case_links(session: Session, recording_ids: list[str]) -> dict[str, str]:
    """recording id → case id (only recordings linked to a case)."""
    out: dict[str, str] = {}
    if not recording_ids:
        return out
    rows = session.execute(select(Draft.recording_id, Case.id).join(Case, Case.draft_id == Draft.id)
                           .where(Draft.recording_id.in_(recording_ids)))
    out.update({rid: cid for rid, cid in rows if rid})
    rows = session.execute(select(ReviewAssignment.recording_id, ReviewAssignment.case_id)
                           .where(ReviewAssignment.recording_id.in_(recording_ids), ReviewAssignment.case_id.is_not(None)))
    for rid, cid in rows:
        out.setdefault(rid, cid)
    return out


def case_archived(session: Session, case_ids: list[str]) -> dict[str, datetime | None]:
    """case id → archive time (None while the case is open)."""
    if not case_ids:
        return {}
    return dict(session.execute(select(Case.id, Case.archived_at).where(Case.id.in_(case_ids))).all())
