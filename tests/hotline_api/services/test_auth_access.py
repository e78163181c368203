"""Least-privilege content access per role (the API turns False into 404)."""
from datetime import datetime, timedelta, timezone

from hotline_api.models.calls import Call
from hotline_api.services import auth, review, pipeline, storage
from hotline_api.db import crypto_types
from tests.hotline_api.services.govtest_util import make_call

PW = "correct horse battery"


def test_content_access_matrix(settings, db):
    ctx = storage.open_crypto(settings, db)
    t = datetime(2026, 3, 4, 2, 0, tzinfo=timezone.utc)
    with db() as s:
        u = {n: auth.create_user(s, n, r, PW, unit=unit)[0] for n, r, unit in (
            ("op1", "operator", "A"), ("op2", "operator", "A"), ("mgr1", "recording_manager", "A"),
            ("mgr2", "recording_manager", "B"), ("supA", "supervisor", "A"), ("supB", "supervisor", "B"),
            ("supAll", "supervisor", None), ("aud", "auditor", None), ("adm", "admin", None))}
        review.set_roster(s, None, u["mgr1"])
        s.commit()
        ev, _ = make_call(s, settings, at=t)
        s.get(Call, ev.call_uuid).operator_id = u["op1"].id
        s.commit()
    pipeline.on_recording_completed(db, ctx, ev)
    rid = ev.recording_id
    with db() as s:
        def ok(name, now=t + timedelta(hours=1)):
            return auth.content_access(s, s.get(type(u[name]), u[name].id), rid, now=now)
        assert ok("op1") and not ok("op2")  # another operator's call
        assert not ok("op1", now=t + timedelta(hours=25))  # window closed
        assert ok("mgr1") and not ok("mgr2")
        assert ok("supA") and not ok("supB") and ok("supAll")
        assert not ok("aud") and not ok("adm")  # auditors and admins never see content
        assert not auth.content_access(s, u["supAll"], "../etc/passwd")
    crypto_types.set_field_cipher(None)
