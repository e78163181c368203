"""Links between recordings, drafts and cases.

* For retention: which case a recording belongs to, through the draft drafted from it, or the
  case a recording manager linked it to when organizing it (``case_links``, ``case_archived``).
* Who may link a recording to which case (``linkable_case``: only a case the user may see).
* Probable duplicates as a user may see them (``duplicate_links``): an earlier draft of another
  unit is never named (no draft id, case id or case number), only that a related record exists.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline_api.models.cases import Case, Draft, DraftLink
from hotline_api.models.governance import ReviewAssignment, User
from hotline_api.services import access


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


# ------------------------------------------------------------------------- who may link what
def linkable_case(session: Session, user: User, case_id: str, settings: Any = None) -> Case:
    """The case ``user`` may link a recording to, or ``access.NotVisible`` (missing and not
    permitted alike). The rule is the visibility of ``services.access``: a supervisor links the
    cases they may see (``access.visible_case``: their unit's; without a unit, every unit's); a
    recording manager the cases whose draft they may see (a case inherits the visibility of its
    recording: one assigned to them); nobody else."""
    c = session.get(Case, access.check_id(case_id))
    if c is None or user is None or not user.active:
        raise access.NotVisible("not found")
    if user.role == "supervisor":
        return access.visible_case(session, user, c.id, settings=settings)
    if user.role == "recording_manager" and access.can_see_draft(session, user, session.get(Draft, c.draft_id),
                                                                  settings=settings):
        return c
    raise access.NotVisible("not found")


# ---------------------------------------------------------------------- duplicate links shown
OTHER_UNIT_TEXT = "其他单位有相关记录"


@dataclass(frozen=True)
class DuplicateLink:
    """A probable duplicate as ``user`` may see it: the earlier draft (and its case) named only
    when that draft is visible to them; otherwise just that a related record exists elsewhere."""

    reason: str  # same_subject / same_caller
    visible: bool
    draft_id: str | None = None
    case_id: str | None = None
    case_number: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "draft_id": self.draft_id, "case_id": self.case_id,
                "case_number": self.case_number, "other_unit": not self.visible}


def duplicate_links(session: Session, user: User, draft: Draft, settings: Any = None) -> list[DuplicateLink]:
    """The draft's duplicate links (``draft_links``) for ``user``: ids and case numbers of earlier
    drafts ``user`` may not see (``access.can_see_draft``, e.g. another unit's) are left out."""
    out: list[DuplicateLink] = []
    rows = session.execute(select(DraftLink).where(DraftLink.draft_id == draft.id).order_by(DraftLink.id)).scalars()
    for link in rows:
        earlier = session.get(Draft, link.earlier_draft_id)
        if not access.can_see_draft(session, user, earlier, settings=settings):
            out.append(DuplicateLink(link.reason, False))
            continue
        case = session.get(Case, link.earlier_case_id) if link.earlier_case_id else None
        out.append(DuplicateLink(link.reason, True, earlier.id, case.id if case else None,
                                 case.number if case else None))
    return out


def duplicates_json(session: Session, user: User, draft: Draft, settings: Any = None) -> list[dict[str, Any]]:
    """``duplicate_links`` as JSON (for the draft's ``links`` / ``duplicates`` in the API)."""
    return [link.as_dict() for link in duplicate_links(session, user, draft, settings=settings)]
