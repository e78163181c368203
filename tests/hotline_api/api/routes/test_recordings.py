"""Recordings over the API: metadata, decrypted audio with Range, listening coverage, the
designated-staff actions, import into the transcription queue, and bad input (each answered
400/404/413/416 with nothing read and nothing changed)."""
from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hotline_api.models.asr import TranscriptionJob
from hotline_api.models.calls import Recording
from hotline_api.models.governance import ReviewAssignment, User
from hotline_api.services import audit, auth, review
from tests.hotline_api.services.govtest_util import files_snapshot, wav_bytes

TRAVERSAL = ["..%2F..%2Fkeys%2Fmaster.key", "%2E%2E%2F%2E%2E%2Fhotline.db", "..", "x" * 300,
             "00000000-0000-0000-0000-000000000000", "00000000000000000000000000000000",
             "{00000000-0000-4000-8000-000000000000}"]


def _entries(w, action=None):
    with w.db() as s:
        return [e for e in audit.iter_entries(s) if action is None or e["action"] == action]


def _state(w):
    """Everything an attack could change: files of the data dir and the tables' contents."""
    with w.db() as s:
        rows = (s.query(Recording).count(), s.query(TranscriptionJob).count(),
                [(a.coverage, a.listened_at, a.stored_confirmed_at, a.organized_at)
                 for a in s.query(ReviewAssignment).order_by(ReviewAssignment.id)])
    return files_snapshot(Path(w.settings.data_dir) / "recordings", Path(w.settings.data_dir) / "keys"), rows


def test_metadata(world):
    w = world
    r = w.client.get(f"/api/recordings/{w.rec}", headers=w.h("mgr1")).json()
    assert r["duration"] == 2.0 and r["sample_rate"] == 8000 and r["channels"] == 2 and r["status"] == "complete"
    assert len(r["sha256"]) == 64 and r["transcription_status"] == "none"
    assert r["review"]["listened"] is False and r["legal_hold"] is False


def test_audio_full_and_ranges_equal_the_original(world):
    w = world
    r = w.client.get(f"/api/recordings/{w.rec}/audio", headers=w.h("supA"))
    assert r.status_code == 200 and r.content == w.wav and r.headers["content-type"] == "audio/wav"
    n = len(w.wav)
    for rng, (a, b) in (("bytes=0-0", (0, 1)), ("bytes=100-", (100, n)), ("bytes=-7", (n - 7, n)),
                        ("bytes=44-30000", (44, 30001)), (f"bytes=0-{n * 2}", (0, n))):
        r = w.client.get(f"/api/recordings/{w.rec}/audio", headers={**w.h("supA"), "Range": rng})
        assert r.status_code == 206 and r.content == w.wav[a:b], rng
        assert r.headers["content-range"] == f"bytes {a}-{b - 1}/{n}"
    plays = _entries(w, "recording.play")
    assert [p["detail"]["range"] for p in plays] == [[0, n - 1], [0, 0], [100, n - 1], [n - 7, n - 1], [44, 30000], [0, n - 1]]
    assert all(p["actor_name"] == "supA" and p["object_id"] == w.rec for p in plays)


def test_listening_coverage_for_the_assigned_manager(world):
    w = world
    n = len(w.wav)
    w.client.get(f"/api/recordings/{w.rec}/audio", headers={**w.h("mgr1"), "Range": f"bytes=0-{n // 2}"})
    with w.db() as s:
        a = review.get_assignment(s, w.rec)
        assert a.listened_at is None and 0.45 < a.coverage < 0.55
    w.client.get(f"/api/recordings/{w.rec}/audio", headers={**w.h("supA"), "Range": f"bytes={n // 2}-"})
    with w.db() as s:
        assert review.get_assignment(s, w.rec).listened_at is None  # the supervisor's playback does not count
    w.client.get(f"/api/recordings/{w.rec}/audio", headers={**w.h("mgr1"), "Range": f"bytes={n // 2}-{int(n * 0.96)}"})
    r = w.client.get(f"/api/recordings/{w.rec}", headers=w.h("mgr1")).json()
    assert r["review"]["listened"] is True and r["review"]["coverage"] >= 0.9


def test_stored_and_organized(world):
    w = world
    r = w.client.post(f"/api/recordings/{w.rec}/stored", headers=w.h("mgr1"))
    assert r.status_code == 200 and r.json()["stored"] is True
    from hotline_api.services import cases

    with w.db() as s:
        c = cases.register_draft(s.get_bind(), w.draft, "supA")
    assert w.client.post(f"/api/recordings/{w.rec}/organize", headers=w.h("mgr1"),
                         json={"case": "12388-1999-000001"}).status_code == 404  # as another unit's case
    r = w.client.post(f"/api/recordings/{w.rec}/organize", headers=w.h("mgr1"), json={"case": c.number, "tags": ["实名"]})
    assert r.status_code == 200 and r.json()["case_id"] == c.id and r.json()["organized_kind"] == "case"
    assert w.client.post(f"/api/recordings/{w.other_rec}/organize", headers=w.h("mgr1"), json={}).status_code == 400
    assert w.client.post(f"/api/recordings/{w.other_rec}/organize", headers=w.h("mgr1"),
                         json={"no_content_reason": ""}).status_code == 400
    q = w.client.get("/api/review/queue?include_done=true", headers=w.h("mgr1")).json()["items"]
    assert {i["recording_id"] for i in q} == {w.rec, w.old_rec, w.other_rec}
    acts = [e["action"] for e in _entries(w) if e["actor_name"] == "mgr1"]
    assert "review.stored" in acts and "review.organize" in acts


def test_stored_detects_a_tampered_file(world):
    w = world
    path = next((Path(w.settings.data_dir) / "recordings").rglob(f"{w.rec}.hle"))
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF
    path.write_bytes(bytes(raw))
    r = w.client.post(f"/api/recordings/{w.rec}/stored", headers=w.h("mgr1"))
    assert r.status_code == 409
    with w.db() as s:
        assert review.get_assignment(s, w.rec).stored_confirmed_at is None
    assert [e["action"] for e in _entries(w, "review.stored_failed")] == ["review.stored_failed"]


# ------------------------------------------------------------------------------------ bad input
BAD_RANGES = [("bytes=abc", 400), ("bytes=10-5", 400), ("bytes=0-1,4-5", 400), ("items=0-5", 400), ("bytes=", 400),
              ("bytes=" + "9" * 30 + "-", 400), ("bytes=99999999-", 416), ("bytes=-0", 416)]


def test_bad_ranges_read_nothing(world):
    """Malformed -> 400; out of bounds -> 416 with ``Content-Range: bytes */SIZE`` (RFC 7233)."""
    w = world
    before = _state(w)
    for rng, code in BAD_RANGES:
        r = w.client.get(f"/api/recordings/{w.rec}/audio", headers={**w.h("mgr1"), "Range": rng})
        assert r.status_code == code, rng
        if code == 416:
            assert r.headers["content-range"] == f"bytes */{len(w.wav)}"
    assert _entries(w, "recording.play") == [] and _state(w) == before


def test_malformed_or_traversal_ids_404(world):
    w = world
    before = _state(w)
    head = len(_entries(w))
    for rid in TRAVERSAL:
        for suffix in ("", "/audio", "/transcript"):
            r = w.client.get(f"/api/recordings/{rid}{suffix}", headers=w.h("supA"))
            assert r.status_code == 404, (rid, suffix)
    assert len(_entries(w)) == head and _state(w) == before


@pytest.mark.parametrize("path", ["/api/drafts/{x}", "/api/cases/{x}", "/api/calls/{x}", "/api/exports/{x}"])
def test_traversal_in_other_ids_404(world, path):
    w = world
    for rid in TRAVERSAL[:4]:
        assert w.client.get(path.format(x=rid), headers=w.h("supA")).status_code == 404
    for rid in TRAVERSAL[:2]:
        assert w.client.post(f"/api/recordings/{rid}/stored", headers=w.h("mgr1")).status_code == 404
        assert w.client.patch(f"/api/drafts/{rid}", headers=w.h("supA"), json={"field": "places", "value": []}).status_code == 404


def test_forged_and_expired_tokens_401(world):
    w = world
    good = w.tokens["supA"]
    body, sig = good.split(".")
    forged_sig = body + "." + ("A" if sig[0] != "A" else "B") + sig[1:]
    import base64
    import json

    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["sub"] = w.uid("supId")  # claims to be another user, old signature
    forged_body = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=") + "." + sig
    with w.db() as s:
        user = s.get(User, w.uid("supA"))
        expired = auth.issue_token(w.settings, user, now=datetime.now(timezone.utc) - timedelta(days=2))
    for hdr in (f"Bearer {forged_sig}", f"Bearer {forged_body}", f"Bearer {expired}", "Bearer", "Basic abc",
                "Bearer " + "x" * 5000, f"Bearer {good}x"):
        r = w.client.get(f"/api/recordings/{w.rec}/audio", headers={"Authorization": hdr})
        assert r.status_code == 401, hdr
    assert w.client.get(f"/api/recordings/{w.rec}/audio").status_code == 401
    assert _entries(w, "recording.play") == []


# --------------------------------------------------------------------------------------- import
def _flac_bytes(seconds=0.5, rate=16000):
    buf = io.BytesIO()
    t = np.arange(int(seconds * rate)) / rate
    sf.write(buf, 0.3 * np.sin(2 * np.pi * 440 * t), rate, format="FLAC")
    return buf.getvalue()


def test_import_wav_is_encrypted_assigned_and_queued(world):
    w = world
    data = wav_bytes(1.0, seed=7)
    r = w.client.post("/api/recordings/import?filename=report.wav", headers={**w.h("supA"), "Content-Type": "audio/wav"},
                      content=data)
    assert r.status_code == 201, r.text
    rid = r.json()["recording_id"]
    assert r.json()["job_status"] in ("queued", "waiting_for_model")
    with w.db() as s:
        job = s.query(TranscriptionJob).filter_by(recording_id=rid).one()
        assert job.status in ("queued", "waiting_for_model")
        assert s.get(Recording, rid).kind == "import"
        assert review.get_assignment(s, rid).manager_id == w.uid("mgr1")  # the manager on duty
    # encrypted at rest, plays back identical, nothing left in the spool
    files = list((Path(w.settings.data_dir) / "recordings").rglob(f"{rid}*"))
    assert [f.suffix for f in files] == [".hle"] and b"RIFF" not in files[0].read_bytes()
    assert list((Path(w.settings.spool_dir) / "imports").iterdir()) == []
    assert w.client.get(f"/api/recordings/{rid}/audio", headers=w.h("mgr1")).content == data
    assert w.client.get(f"/api/recordings/{rid}/audio", headers=w.h("supB")).status_code == 404
    assert [e["actor_name"] for e in _entries(w, "recording.import")] == ["supA"]


def test_import_multipart_and_flac(world):
    w = world
    r = w.client.post("/api/recordings/import", headers=w.h("mgr1"),
                      files={"file": ("voicemail.flac", _flac_bytes(), "audio/flac")})
    assert r.status_code == 201, r.text
    audio = w.client.get(f"/api/recordings/{r.json()['recording_id']}/audio", headers=w.h("mgr1")).content
    info = sf.info(io.BytesIO(audio))
    assert info.format == "WAV" and info.samplerate == 16000 and abs(info.duration - 0.5) < 0.01


def test_import_bad_file_names_400(world):
    """The client's file name is never used for a path; a name that tries is refused anyway."""
    w = world
    before = _state(w)
    for name in ("../../etc/passwd.wav", "..\\..\\x.wav", "a/b.wav", "x.wav\x00.sh", "..", "x.w/av"):
        r = w.client.post("/api/recordings/import", headers={**w.h("supA"), "Content-Type": "audio/wav"},
                          params={"filename": name}, content=wav_bytes(0.2))
        assert r.status_code == 400, name
    for name in ("../../etc/passwd.wav", "..\\..\\x.wav", "..", "x.w/av"):  # survive multipart encoding
        r = w.client.post("/api/recordings/import", headers=w.h("supA"), files={"file": (name, wav_bytes(0.2), "audio/wav")})
        assert r.status_code == 400, name
    assert _state(w) == before and _entries(w, "recording.import") == []


def test_import_oversized_413_nothing_stored(world):
    w = world
    w.settings.import_max_mb = 0.01  # ~10 KB
    before = _state(w)
    big = wav_bytes(2.0)  # 64 KB
    r = w.client.post("/api/recordings/import", headers={**w.h("supA"), "Content-Type": "audio/wav"}, content=big)
    assert r.status_code == 413 and "MB" in r.json()["detail"]

    def chunks():  # no Content-Length: the limit holds while streaming
        for i in range(0, len(big), 4096):
            yield big[i:i + 4096]

    r = w.client.post("/api/recordings/import", headers={**w.h("supA"), "Content-Type": "audio/wav"}, content=chunks())
    assert r.status_code == 413
    r = w.client.post("/api/recordings/import", headers=w.h("supA"), files={"file": ("a.wav", big, "audio/wav")})
    assert r.status_code == 413
    assert _state(w) == before and _entries(w, "recording.import") == []
    assert list((Path(w.settings.spool_dir) / "imports").iterdir()) == []


def test_import_non_audio_400_nothing_stored(world):
    w = world
    before = _state(w)
    for data in (b"", b"not audio at all" * 100, wav_bytes(1.0)[:30]):
        r = w.client.post("/api/recordings/import", headers={**w.h("supA"), "Content-Type": "audio/wav"}, content=data)
        assert r.status_code == 400 and r.json()["detail"]
        assert ".part" not in r.json()["detail"]  # the temp file's name is not leaked
    assert _state(w) == before


def test_wrong_ids_404(world):
    w = world
    import uuid

    rid = str(uuid.uuid4())
    for path in ("/api/recordings/{r}", "/api/recordings/{r}/audio", "/api/recordings/{r}/transcript",
                 "/api/drafts/{r}", "/api/cases/{r}", "/api/calls/{r}"):
        assert w.client.get(path.format(r=rid), headers=w.h("supA")).json() == {"detail": "not found"}
