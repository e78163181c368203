"""Exports: a supervisor requests with a reason, a second supervisor approves, the bundle carries
a manifest (requester, approver, times, sha256 of every file) and expires; every step audited."""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hotline_api.models.governance import ExportRequest
from hotline_api.services import audit, exports
from tests.hotline_api.api.conftest import CALLER, REPORTER

REASON = "纪律审查调取录音"


def _request(w, who="supA", ids=None, object_type="recording"):
    r = w.client.post("/api/exports", headers=w.h(who),
                      json={"object_type": object_type, "object_ids": ids or [w.rec], "reason": REASON})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _audit(w, action):
    with w.db() as s:
        return [e for e in audit.iter_entries(s) if e["action"] == action]


def _files(w):
    d = Path(w.settings.data_dir) / "exports"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_two_supervisor_rule_and_manifest(world):
    w = world
    eid = _request(w)
    assert w.client.get(f"/api/exports/{eid}", headers=w.h("supA")).json()["status"] == "pending"
    # the requester cannot approve, nor can a supervisor who cannot see the content
    r = w.client.post(f"/api/exports/{eid}/approve", headers=w.h("supA"))
    assert r.status_code == 400 and "另一名" in r.json()["detail"]
    assert w.client.post(f"/api/exports/{eid}/approve", headers=w.h("supB")).status_code == 404
    with w.db() as s:
        req = s.get(ExportRequest, eid)
        assert req.status == "pending" and req.approver_id is None and req.bundle_rel_path is None
    assert _files(w) == [] and _audit(w, "export.approve") == []
    # nothing to download before approval
    assert w.client.get(f"/api/exports/{eid}/download", headers=w.h("supA")).status_code == 409
    before = datetime.now(timezone.utc)
    r = w.client.post(f"/api/exports/{eid}/approve", headers=w.h("supA2"))
    assert r.status_code == 200 and r.json()["status"] == "approved" and r.json()["approver"] == "supA2"
    assert w.client.post(f"/api/exports/{eid}/approve", headers=w.h("supId")).status_code == 409  # once
    # stored encrypted at rest: no zip, no RIFF, on disk
    assert _files(w) == [f"{eid}.hle", f"{eid}.key"]
    raw = (Path(w.settings.data_dir) / "exports" / f"{eid}.hle").read_bytes()
    assert b"PK\x03\x04" not in raw and b"RIFF" not in raw and b"manifest" not in raw
    # only the requester downloads
    assert w.client.get(f"/api/exports/{eid}/download", headers=w.h("supA2")).status_code == 404
    r = w.client.get(f"/api/exports/{eid}/download", headers=w.h("supA"))
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    names = set(zf.namelist())
    assert names == {"manifest.json", f"recordings/{w.rec}.wav", f"recordings/{w.rec}.transcript.json",
                     f"recordings/{w.rec}.json"}
    manifest = json.loads(zf.read("manifest.json"))
    assert manifest["requester"]["username"] == "supA" and manifest["approver"]["username"] == "supA2"
    assert manifest["reason"] == REASON and manifest["export_id"] == eid
    approved = datetime.fromisoformat(manifest["approved_at"])
    assert before - timedelta(seconds=1) <= approved <= datetime.now(timezone.utc)
    assert datetime.fromisoformat(manifest["expires_at"]) - approved == timedelta(hours=72)
    assert {f["path"] for f in manifest["files"]} == names - {"manifest.json"}
    for f in manifest["files"]:
        data = zf.read(f["path"])
        assert hashlib.sha256(data).hexdigest() == f["sha256"] and len(data) == f["size"]
    assert zf.read(f"recordings/{w.rec}.wav") == w.wav  # the decrypted original
    with w.db() as s:
        assert s.get(ExportRequest, eid).manifest_sha256 == hashlib.sha256(zf.read("manifest.json")).hexdigest()
    # identity masked: the requester has no `identity`
    for name in names:
        text = zf.read(name).decode("utf-8", "replace")
        assert CALLER not in text and REPORTER not in text
    assert json.loads(zf.read(f"recordings/{w.rec}.json"))["call"]["caller"] == "138******18"
    assert "凌**" in json.loads(zf.read(f"recordings/{w.rec}.transcript.json"))["channels"][0]["text"]
    assert manifest["identity_included"] is False
    # audited
    req, app, dl = _audit(w, "export.request"), _audit(w, "export.approve"), _audit(w, "export.download")
    assert [e["actor_name"] for e in req] == ["supA"] and req[0]["reason"] == REASON
    assert [e["actor_name"] for e in app] == ["supA2"]
    assert app[0]["detail"]["manifest_sha256"] == hashlib.sha256(zf.read("manifest.json")).hexdigest()
    assert [e["actor_name"] for e in dl] == ["supA"]


def test_identity_requester_gets_real_values(world):
    w = world
    eid = _request(w, who="supId")
    assert w.client.post(f"/api/exports/{eid}/approve", headers=w.h("supA")).status_code == 200
    r = w.client.get(f"/api/exports/{eid}/download", headers=w.h("supId"))
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    assert json.loads(zf.read("manifest.json"))["identity_included"] is True
    assert json.loads(zf.read(f"recordings/{w.rec}.json"))["call"]["caller"] == CALLER
    assert REPORTER in zf.read(f"recordings/{w.rec}.transcript.json").decode()
    ids = [e for e in _audit(w, "identity.view") if e["object_type"] == "export"]
    assert [e["actor_name"] for e in ids] == ["supId"]


def test_expiry_destroys_the_bundle(world):
    w = world
    eid = _request(w)
    assert w.client.post(f"/api/exports/{eid}/approve", headers=w.h("supA2")).status_code == 200
    with w.db() as s:
        s.get(ExportRequest, eid).expires_at = datetime.now(timezone.utc) - timedelta(seconds=1)
        s.commit()
    assert w.client.get(f"/api/exports/{eid}/download", headers=w.h("supA")).status_code == 410
    assert _files(w) == []
    with w.db() as s:
        assert s.get(ExportRequest, eid).status == "expired"
    assert [e["object_id"] for e in _audit(w, "export.expire")] == [eid]
    assert w.client.get(f"/api/exports/{eid}/download", headers=w.h("supA")).status_code == 410
    assert _audit(w, "export.download") == []


def test_expiry_job_with_injected_clock(world):
    w = world
    eid = _request(w)
    w.client.post(f"/api/exports/{eid}/approve", headers=w.h("supA2"))
    assert exports.expire_exports(w.db, w.settings, now=datetime.now(timezone.utc) + timedelta(hours=71)) == 0
    assert len(_files(w)) == 2
    assert exports.expire_exports(w.db, w.settings, now=datetime.now(timezone.utc) + timedelta(hours=73)) == 1
    assert _files(w) == []


def test_ttl_is_configurable(world):
    w = world
    w.settings.export_ttl_hours = 2
    eid = _request(w)
    r = w.client.post(f"/api/exports/{eid}/approve", headers=w.h("supA2")).json()
    delta = datetime.fromisoformat(r["expires_at"]) - datetime.fromisoformat(r["decided_at"])
    assert delta == timedelta(hours=2)


def test_case_export_includes_case_and_its_recording(world):
    w = world
    from hotline_api.services import cases

    with w.db() as s:
        c = cases.register_draft(s.get_bind(), w.draft, "supA")
    eid = _request(w, ids=[c.id], object_type="case")
    assert w.client.post(f"/api/exports/{eid}/approve", headers=w.h("supA2")).status_code == 200
    zf = zipfile.ZipFile(io.BytesIO(w.client.get(f"/api/exports/{eid}/download", headers=w.h("supA")).content))
    assert f"cases/{c.id}.json" in zf.namelist() and f"recordings/{w.rec}.wav" in zf.namelist()
    case_doc = json.loads(zf.read(f"cases/{c.id}.json"))
    assert case_doc["number"] == c.number and case_doc["fields"]["reporter_phone"] == "138******18"


def test_bad_export_requests_change_nothing(world):
    w = world
    bad = [
        ({"object_type": "recording", "object_ids": [w.rec]}, 400),  # no reason
        ({"object_type": "recording", "object_ids": [w.rec], "reason": "  "}, 400),
        ({"object_type": "recording", "object_ids": [], "reason": "x"}, 400),
        ({"object_type": "file", "object_ids": [w.rec], "reason": "x"}, 400),
        ({"object_type": "recording", "object_ids": ["../../keys/master.key"], "reason": "x"}, 404),
        ({"object_type": "recording", "object_ids": [w.b_rec], "reason": "x"}, 404),  # not in the unit
        ({"object_type": "recording", "object_ids": ["00000000-0000-4000-8000-000000000000"], "reason": "x"}, 404),
    ]
    for body, code in bad:
        assert w.client.post("/api/exports", headers=w.h("supA"), json=body).status_code == code, body
    with w.db() as s:
        assert s.query(ExportRequest).count() == 0
    assert _audit(w, "export.request") == []
    for eid in ("..%2F..%2Fkeys", "00000000-0000-4000-8000-000000000000"):
        assert w.client.post(f"/api/exports/{eid}/approve", headers=w.h("supA2")).status_code == 404
        assert w.client.get(f"/api/exports/{eid}/download", headers=w.h("supA")).status_code == 404


def test_reject(world):
    w = world
    eid = _request(w)
    r = w.client.post(f"/api/exports/{eid}/reject", headers=w.h("supA2"), json={"reason": "理由不充分"})
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    assert w.client.post(f"/api/exports/{eid}/approve", headers=w.h("supId")).status_code == 409
    assert w.client.get(f"/api/exports/{eid}/download", headers=w.h("supA")).status_code == 409
    assert _files(w) == []
