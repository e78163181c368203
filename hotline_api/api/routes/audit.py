"""The audit trail, for auditors only (everyone else: 404).

* ``GET /api/audit?action=&actor=&object_id=&since=&until=&limit=&offset=``  newest first
  (``action`` accepts ``*`` wildcards, e.g. ``recording.*``)
* ``GET /api/audit/verify``  the hash chain's status: ``{"ok", "count", "head_seq", "head_hash", "problem"}``
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from hotline_api.api.deps import SessionDep, SettingsDep
from hotline_api.api.routes._common import AuditorUser, Instant, Offset, need_zone
from hotline_api.services import audit

router = APIRouter(tags=["audit"])


@router.get("/audit")
def search(session: SessionDep, user: AuditorUser,
           action: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z_.*]+$")] = None,
           actor: Annotated[str | None, Query(max_length=64)] = None,
           object_id: Annotated[str | None, Query(max_length=64)] = None,
           since: Instant = None, until: Instant = None,
           limit: Annotated[int, Query(ge=1, le=1000)] = 100, offset: Offset = 0) -> dict:
    need_zone("since", since)
    need_zone("until", until)
    q = audit.AuditQuery(action=action, actor_name=actor, object_id=object_id, since=since, until=until,
                         limit=limit, offset=offset)
    return {"items": audit.search(session, q), "limit": limit, "offset": offset}


@router.get("/audit/verify")
def verify(session: SessionDep, settings: SettingsDep, user: AuditorUser) -> dict:
    r = audit.verify(session, audit.anchor_log(settings))
    return {"ok": r.ok, "count": r.count, "head_seq": r.head_seq, "head_hash": r.head_hash,
            "problem": None if r.problem is None else {"seq": r.problem.seq, "position": r.problem.position,
                                                       "reason": r.problem.reason, "message": str(r.problem)}}
