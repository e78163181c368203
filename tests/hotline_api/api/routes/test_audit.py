"""The auditor's view: the trail shows playback byte ranges, transcript/draft views, identity
views, exports and changes; the chain status; nobody else reads it."""
from __future__ import annotations

from hotline_api.models.governance import AuditEntry


def test_audit_trail_shows_what_happened(world):
    w = world
    w.client.get(f"/api/recordings/{w.rec}/audio", headers={**w.h("mgr1"), "Range": "bytes=1000-1999"})
    w.client.get(f"/api/recordings/{w.rec}/transcript", headers=w.h("mgr1"))
    w.client.get(f"/api/drafts/{w.draft}", headers=w.h("supId"))
    w.client.patch(f"/api/drafts/{w.draft}", headers=w.h("supA"), json={"changes": {"places": ["青山镇"]}, "reason": "补充"})
    eid = w.client.post("/api/exports", headers=w.h("supA"),
                        json={"object_type": "recording", "object_ids": [w.rec], "reason": "审查"}).json()["id"]
    w.client.post(f"/api/exports/{eid}/approve", headers=w.h("supA2"))
    h = w.h("aud")

    def q(params):
        r = w.client.get("/api/audit", headers=h, params=params)
        assert r.status_code == 200, r.text
        return r.json()["items"]

    play = q({"action": "recording.play"})
    assert len(play) == 1 and play[0]["detail"]["range"] == [1000, 1999] and play[0]["actor_name"] == "mgr1"
    assert play[0]["ip"] and play[0]["object_id"] == w.rec and play[0]["at"]
    assert [e["actor_name"] for e in q({"action": "transcript.view"})] == ["mgr1"]
    assert [e["actor_name"] for e in q({"action": "draft.view"})] == ["supId"]
    assert [e["actor_name"] for e in q({"action": "identity.view"})] == ["supId"]
    change = q({"action": "draft.correct"})
    assert change[0]["reason"] == "补充" and change[0]["detail"]["fields"] == ["places"]
    assert {e["action"] for e in q({"action": "export.*"})} == {"export.request", "export.approve"}
    assert {e["object_id"] for e in q({"object_id": w.rec})} >= {w.rec}
    mine = q({"actor": "mgr1"})
    assert {e["action"] for e in mine} >= {"recording.play", "transcript.view"}
    seqs = [e["seq"] for e in q({})]
    assert seqs == sorted(seqs, reverse=True)  # newest first
    v = w.client.get("/api/audit/verify", headers=h).json()
    assert v["ok"] is True and v["count"] == len(q({"limit": 1000})) and v["problem"] is None
    for who in ("supA", "adm", "mgr1", "op1"):
        assert w.client.get("/api/audit", headers=w.h(who)).status_code == 404
        assert w.client.get("/api/audit/verify", headers=w.h(who)).status_code == 404
    assert w.client.get("/api/audit?since=2026-01-01T00:00:00", headers=h).status_code == 400  # no zone
    assert w.client.get("/api/audit?action=x%27%3B--", headers=h).status_code == 422


def test_verify_reports_a_tampered_entry(world):
    w = world
    w.client.get(f"/api/recordings/{w.rec}/transcript", headers=w.h("mgr1"))
    with w.db() as s:
        seq = s.query(AuditEntry.seq).filter(AuditEntry.action == "transcript.view").scalar()
        s.connection().exec_driver_sql("DROP TRIGGER IF EXISTS audit_entries_no_update")
        for (name,) in s.connection().exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type='trigger' AND tbl_name='audit_entries'").fetchall():
            s.connection().exec_driver_sql(f"DROP TRIGGER {name}")
        s.connection().exec_driver_sql("UPDATE audit_entries SET actor_name='someone' WHERE seq=?", (seq,))
        s.commit()
    v = w.client.get("/api/audit/verify", headers=w.h("aud")).json()
    assert v["ok"] is False and v["problem"]["seq"] == seq
