"""Live call events for the console (mounted under ``/api``):

* ``GET /api/live/events`` -- server-sent events. An operator receives the events of their own
  calls (ringing, answered, bridged, hangup, ...); supervisors and admins may add ``?all=1`` for
  every event (voicemail-started has no operator). The live transcript (``partial``,
  ``transcript``) is content: the operator reads it only while their call lasts, a supervisor only
  for the calls of their unit, an admin never (``services.live.tail``). Resume with ``Last-Event-ID`` or ``?after=ID``.
  Each message: ``id: <n>``, ``event: <type>``, ``data: {"id", "type", "call_id", "operator_id",
  "at", "data"}``. No event carries the caller's number. ``max_seconds`` ends the stream (tests,
  proxies); a comment line keeps idle connections alive every 15 s.
* ``GET /api/live/recent?after=ID`` -- the same events as a JSON list (polling clients).

Events are read from the ``call_events`` table, so the API process sees what every SIP worker
process published.
"""
from __future__ import annotations

import asyncio
import json
import time

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from hotline_api.api.deps import CurrentUser, SettingsDep
from hotline_api.db.session import session_factory
from hotline_api.services import live
from hotline_api.services import operators as ops

router = APIRouter(prefix="/live", tags=["live"])

POLL_S = 0.5
KEEPALIVE_S = 15.0


def _scope(session, user, all_: bool) -> tuple[str | None, bool]:
    if all_:
        if user.role not in ("supervisor", "admin"):
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="not found")
        return None, True
    op = ops.get_for_user(session, user.id)
    if op is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="not found")
    return op.id, False


MAX_ID = 2**62  # event ids are bounded well below the databases' 64-bit integers
EventId = Annotated[int, Query(ge=0, le=MAX_ID, description="return events with a greater id")]


def _last_event_id(header: str | None) -> int | None:
    """``Last-Event-ID`` as an id, or None when absent or not a plain ASCII number in range."""
    if header and header.isascii() and header.isdigit() and len(header) <= 19 and int(header) <= MAX_ID:
        return int(header)
    return None


@router.get("/recent")
def recent(settings: SettingsDep, user: CurrentUser, after: EventId = 0, all: bool = False,  # noqa: A002
           limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> dict:
    with session_factory(settings.db_url)() as s:
        op_id, every = _scope(s, user, all)
        evs = live.tail(s, after, op_id, limit, all_operators=every, user=user, settings=settings)
        return {"events": [live.event_json(e) for e in evs]}


@router.get("/events")
async def events(request: Request, settings: SettingsDep, user: CurrentUser, after: EventId | None = None,
                 all: bool = False,  # noqa: A002
                 max_seconds: Annotated[float, Query(ge=0, le=86400)] = 0.0) -> StreamingResponse:
    sessions = session_factory(settings.db_url)

    def scope():
        with sessions() as s:
            op_id, every = _scope(s, user, all)
            start = after
            if start is None:
                start = _last_event_id(request.headers.get("last-event-id"))
                if start is None:
                    start = live.last_id(s)
            return op_id, every, start

    op_id, every, start = await run_in_threadpool(scope)

    def fetch(last: int):
        with sessions() as s:
            return [live.event_json(e) for e in live.tail(s, last, op_id, 200, all_operators=every, user=user,
                                                         settings=settings)]

    async def stream():
        last = start
        began = time.monotonic()
        quiet = time.monotonic()
        yield "retry: 2000\n\n"
        while True:
            if await request.is_disconnected():
                return
            batch = await run_in_threadpool(fetch, last)
            for ev in batch:
                last = ev["id"]
                yield f"id: {ev['id']}\nevent: {ev['type']}\ndata: {json.dumps(ev, ensure_ascii=False)}\n\n"
                quiet = time.monotonic()
            if max_seconds and time.monotonic() - began >= max_seconds:
                return
            if time.monotonic() - quiet >= KEEPALIVE_S:
                yield ": keep-alive\n\n"
                quiet = time.monotonic()
            await asyncio.sleep(POLL_S)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
