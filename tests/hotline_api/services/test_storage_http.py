"""The audio endpoint composition the API uses (plan_audio + stream_range + playback_recorder), over
real HTTP semantics (TestClient): Range answers 206 with the same bytes as the plain file, bad ranges
400/416 with nothing read or recorded, playback audited with byte ranges, coverage counted."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient

from hotline_api.api.deps import CurrentUser, SessionDep, client_ip, not_found
from hotline_api.api.routes import auth as auth_routes
from hotline_api.db import crypto_types
from hotline_api.services import audit, auth, review, pipeline, storage
from recordings.ranges import RangeError
from tests.hotline_api.services.govtest_util import make_call

PW = "correct horse battery"


@pytest.fixture
def env(settings, db):
    ctx = storage.open_crypto(settings, db)
    app = FastAPI()
    app.include_router(auth_routes.router, prefix="/api")

    @app.get("/api/recordings/{rid}/audio")
    def audio(rid: str, request: Request, session: SessionDep, user: CurrentUser):
        if not auth.content_access(session, user, rid):
            raise not_found()
        try:
            plan = storage.plan_audio(session, ctx, rid, request.headers.get("range"))
        except storage.RecordingNotFound:
            raise not_found() from None
        except RangeError as e:
            raise HTTPException(e.status, detail=str(e)) from None
        done = review.playback_recorder(db, rid, user, ip=client_ip(request))
        return StreamingResponse(storage.stream_range(plan.reader, plan.start, plan.stop, on_done=done),
                                 status_code=plan.status, headers=plan.headers, media_type="audio/wav")

    with db() as s:
        mgr, _ = auth.create_user(s, "mgr1", "recording_manager", PW)
        auth.create_user(s, "adm", "admin", PW)
        review.set_roster(s, None, mgr)
        s.commit()
        ev, data = make_call(s, settings, at=datetime(2026, 3, 4, 2, 0, tzinfo=timezone.utc), seconds=5.0)
    pipeline.on_recording_completed(db, ctx, ev)
    with TestClient(app, base_url="https://testserver") as c:
        tok = c.post("/api/auth/token", data={"username": "mgr1", "password": PW}).json()["access_token"]
        adm = c.post("/api/auth/token", data={"username": "adm", "password": PW}).json()["access_token"]
        yield c, {"Authorization": f"Bearer {tok}"}, {"Authorization": f"Bearer {adm}"}, ev.recording_id, data
    crypto_types.set_field_cipher(None)


def _plays(db):
    with db() as s:
        return [e for e in audit.iter_entries(s) if e["action"] == "recording.play"]


def test_range_and_full_reads_over_http(env, db):
    c, h, _, rid, data = env
    r = c.get(f"/api/recordings/{rid}/audio", headers=h)
    assert r.status_code == 200 and r.content == data and r.headers["accept-ranges"] == "bytes"
    for rng, (a, b) in (("bytes=0-99", (0, 100)), ("bytes=70000-", (70000, len(data))), ("bytes=-1000", (len(data) - 1000, len(data))),
                        ("bytes=65530-65545", (65530, 65546))):
        r = c.get(f"/api/recordings/{rid}/audio", headers={**h, "Range": rng})
        assert r.status_code == 206 and r.content == data[a:b]
        assert r.headers["content-range"] == f"bytes {a}-{b - 1}/{len(data)}"
    plays = _plays(db)
    assert len(plays) == 5 and plays[1]["detail"]["range"] == [0, 99] and plays[0]["actor_name"] == "mgr1"
    assert plays[0]["ip"] == "testclient"
    with db() as s:
        a = review.get_assignment(s, rid)
        assert a.listened_at is not None and a.coverage == 1.0


def test_half_then_rest_counts_as_listened(env, db):
    c, h, _, rid, data = env
    half = len(data) // 2
    c.get(f"/api/recordings/{rid}/audio", headers={**h, "Range": f"bytes=0-{half}"})
    with db() as s:
        a = review.get_assignment(s, rid)
        assert a.listened_at is None and 0.45 < a.coverage < 0.55
    c.get(f"/api/recordings/{rid}/audio", headers={**h, "Range": f"bytes={half}-{int(len(data) * 0.96)}"})
    with db() as s:
        assert review.get_assignment(s, rid).listened_at is not None


@pytest.mark.parametrize("rng,status", [("bytes=abc", 400), ("bytes=5-1", 400), ("bytes=0-1,5-6", 400),
                                        ("bytes=99999999-", 416), ("bytes=-0", 416)])
def test_bad_ranges_answer_without_reading_or_recording(env, db, rng, status):
    c, h, _, rid, _ = env
    r = c.get(f"/api/recordings/{rid}/audio", headers={**h, "Range": rng})
    assert r.status_code == status
    assert _plays(db) == []


@pytest.mark.parametrize("rid", ["..%2F..%2Fkeys%2Fmaster.key", "00000000-0000-0000-0000-000000000000", "x" * 300])
def test_unknown_or_malicious_ids_404(env, rid):
    c, h, _, _, _ = env
    assert c.get(f"/api/recordings/{rid}/audio", headers=h).status_code == 404


def test_admin_gets_404_for_content(env, db):
    c, _, adm, rid, _ = env
    assert c.get(f"/api/recordings/{rid}/audio", headers=adm).status_code == 404
    assert _plays(db) == []
