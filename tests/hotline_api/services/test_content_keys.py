"""Report content under per-call content keys (issue 11): what is derived from a call is sealed
under that call's key, a purge shreds it (rows deleted, key destroyed, left-over ciphertext
unreadable), the live transcript is shown only to those with content rights, and a key rotation
by another process is followed by the running ones."""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import select, text

from hotline_api.db import content_keys
from hotline_api.db.crypto_types import EncryptedText
from hotline_api.db.session import session_factory
from hotline_api.models.asr import Transcript
from hotline_api.models.calls import Call
from hotline_api.models.cases import Case, CaseEvent, Draft, DraftCorrection, DraftSubject
from hotline_api.models.operators import CallEvent
from hotline_api.services import auth, cases, live, retention, storage, transcription
from hotline_api.services import operators as ops
from recordings.keys import MasterKey, content_key_id
from recordings.retention import RecordingFacts, RetentionPolicy, decide
from tests.hotline_api.services.govtest_util import make_call

NAME = "秦望舒"  # a made-up reporter
ACCUSED = "鲁怀远"
WORDS = f"我叫{NAME}，举报县交通局局长{ACCUSED}收受贿赂五万元"


def _raw_db(settings) -> bytes:
    p = Path(settings.db_url.removeprefix("sqlite:///"))
    return b"".join(q.read_bytes() for q in (p, p.with_name(p.name + "-wal")) if q.exists())


def _stored_call(settings, db, ctx):
    with db() as s:
        done, _ = make_call(s, settings)
        storage.ingest_recording(s, ctx, done.recording_id, done.path)
        s.commit()
    return done


def _content(settings, db, ctx):
    """A stored call with a live transcript event, a transcript, a draft (subjects, a correction)."""
    done = _stored_call(settings, db, ctx)
    with db() as s:
        live.publish(s, done.call_uuid, "transcript", data={"text": WORDS, "start": 0, "end": 2, "speaker": "caller"})
        live.publish(s, done.call_uuid, "routed", data={"path": "queue"})
        transcription.store_transcript(s, done.recording_id, None,
                                       {"text": WORDS, "turns": [{"speaker": "caller", "text": WORDS}], "model": "t"})
        s.commit()
        d = cases.on_transcript_completed(s, done.recording_id, {"text": WORDS, "turns": [
            {"speaker": "caller", "text": WORDS}]}, settings=settings)
        s.commit()
        cases.correct_draft(s, d.id, "summary", f"{ACCUSED}受贿", "sup")
        s.commit()
        return done, d.id


def test_content_of_a_call_is_sealed_under_its_own_key_and_reads_back(settings, db, ctx):
    done, draft_id = _content(settings, db, ctx)
    raw = _raw_db(settings)
    for word in (NAME, ACCUSED):
        for enc in ("utf-8", "gbk", "utf-16-le"):
            assert word.encode(enc) not in raw, (word, enc)
    with db() as s:
        stored = s.execute(text("SELECT text, data FROM transcripts")).one()
        kid = content_key_id(stored[0])
        assert kid and content_key_id(stored[1]) == kid
        assert s.execute(text("SELECT call_id FROM content_keys WHERE id = :i"), {"i": kid}).scalar() == done.call_uuid
        for table, col in (("drafts", "fields_json"), ("drafts", "input_text"), ("draft_subjects", "name"),
                           ("draft_corrections", "new_json")):
            vals = [v for (v,) in s.execute(text(f"SELECT {col} FROM {table}"))]
            assert vals and all(content_key_id(v) == kid for v in vals), (table, col, vals)
        ev = s.execute(text("SELECT data FROM call_events WHERE type = 'transcript'")).scalar()
        assert content_key_id(ev) == kid
    other = _stored_call(settings, db, ctx)  # another call's content is under another key
    with db() as s:
        transcription.store_transcript(s, other.recording_id, None, {"text": "另一通电话"})
        s.commit()
        assert content_key_id(s.execute(text("SELECT text FROM transcripts WHERE recording_id = :r"),
                                        {"r": other.recording_id}).scalar()) not in (None, kid)
    content_keys.clear_cache()  # read back through the database, not the cache
    with db() as s:
        assert NAME in s.execute(select(Transcript.text)).scalars().first()
        assert ACCUSED in {sj.name for sj in s.execute(select(DraftSubject)).scalars()}
        assert json.loads(s.get(Draft, draft_id).fields_json)["summary"] == f"{ACCUSED}受贿"


def test_case_result_and_history_are_encrypted(settings, db, ctx):
    _, draft_id = _content(settings, db, ctx)
    c = cases.register_draft(db, draft_id, "sup", settings=settings)
    with db() as s:
        cases.start_handling(s, c.id, "自办", "第一纪检监察室", "sup", note=f"约谈{ACCUSED}")
        cases.close_case(s, c.id, "sup", result=f"{ACCUSED}已被立案审查")
    raw = _raw_db(settings)
    assert ACCUSED.encode() not in raw and "立案审查".encode() not in raw
    with db() as s:
        assert s.get(Case, c.id).result == f"{ACCUSED}已被立案审查"
        details = [e.detail for e in s.execute(select(CaseEvent)).scalars() if e.detail]
        assert any(ACCUSED in d for d in details)


def test_purge_shreds_transcript_live_text_draft_text_and_the_key(settings, db, ctx):
    done, draft_id = _content(settings, db, ctx)
    with db() as s:
        old_cipher = s.execute(text("SELECT text FROM transcripts")).scalar()
        kid = content_key_id(old_cipher)
        retention.set_policy(s, "other", 0)
        s.commit()
    report = retention.run_retention(db, settings, now=datetime.now(timezone.utc) + timedelta(days=1))
    assert report.purged == [done.recording_id]
    content_keys.clear_cache()
    with db() as s:
        assert transcription.load_transcript(s, done.recording_id) is None
        assert s.execute(select(Transcript)).first() is None
        assert [e.type for e in s.execute(select(CallEvent)).scalars()] == ["routed"]  # no words kept
        d = s.get(Draft, draft_id)
        assert json.loads(d.fields_json) == {"purged": True} and d.input_text is None
        assert d.category  # what the statistics count stays
        assert s.execute(select(DraftSubject)).first() is None and s.execute(select(DraftCorrection)).first() is None
        row = s.execute(text("SELECT wrapped_key, destroyed_at FROM content_keys WHERE id = :i"), {"i": kid}).one()
        assert row[0] is None and row[1] is not None
    # a copy of the ciphertext that survived somewhere no longer opens
    assert content_keys.resolve(kid) is None
    assert EncryptedText("transcripts.text").process_result_value(old_cipher, None) is None
    raw = _raw_db(settings)
    assert NAME.encode() not in raw


def test_retention_keeps_a_recording_linked_to_a_long_archived_case_the_full_period():
    now = datetime(2030, 1, 1, tzinfo=timezone.utc)
    f = RecordingFacts("r", "call", completed_at=now - timedelta(days=2), case_id="c",
                       case_archived_at=now - timedelta(days=10 * 365))
    d = decide(f, RetentionPolicy(), now)
    assert not d.purge and d.due_at == f.completed_at + timedelta(days=5 * 365)


def _user(s, name, role, unit=None):
    u, _ = auth.create_user(s, name, role, "Passw0rd!Passw0rd", unit=unit)
    s.flush()
    return u


def test_live_text_only_for_content_rights(settings, db, ctx):
    done = _stored_call(settings, db, ctx)
    with db() as s:
        admin = _user(s, "adm", "admin")
        sup_a, sup_b = _user(s, "supa", "supervisor", "A"), _user(s, "supb", "supervisor", "B")
        op_user = _user(s, "op1", "operator", "A")
        op = ops.ensure_operator(s, op_user)
        s.commit()
        call = s.get(Call, done.call_uuid)
        call.operator_id, call.ended_at = op_user.id, None
        opid = op.id
        live.publish(s, done.call_uuid, "bridged", operator_id=opid, data={"wait_s": 1})
        live.publish(s, done.call_uuid, "transcript", operator_id=opid, data={"text": WORDS})
        s.commit()

        def types(user, all_=True, op_id=None):
            return [e.type for e in live.tail(s, 0, op_id, 100, all_operators=all_, user=user, settings=settings)]

        assert types(admin) == ["bridged"]
        assert types(sup_b) == ["bridged"]
        assert types(sup_a) == ["bridged", "transcript"]
        assert types(op_user, False, opid) == ["bridged", "transcript"]  # while the call lasts
        assert types(None) == ["bridged"]
        call.ended_at = datetime.now(timezone.utc)
        s.commit()
        assert types(op_user, False, opid) == ["bridged"]  # the call ended: no more live text


def test_running_process_follows_a_rotation_by_another(settings, db, ctx):
    """A pipeline process whose context predates a ``keys rotate`` stores its next recording with
    the new master key, and a content key it creates afterwards is wrapped by the new key."""
    stale = storage.open_crypto(settings, db)
    with db() as s:
        done, _ = make_call(s, settings)
    enc = storage.encrypt_into_store(stale, done.recording_id, done.path)  # wrapped with the old key
    res = storage.rotate_master_key(settings, session_factory(settings.db_url), MasterKey.generate())
    assert stale.master.kcv == res.old_kcv
    content_keys.set_master_key(MasterKey(stale.master.key))  # this process still holds the old key too
    with db() as s:
        storage.register_blob(s, stale, enc)
        transcription.store_transcript(s, done.recording_id, None, {"text": WORDS})
        s.commit()
        blob_kcv = s.execute(text("SELECT master_kcv FROM recording_blobs")).scalar()
        ck_kcv = s.execute(text("SELECT master_kcv FROM content_keys")).scalar()
    assert blob_kcv == res.new_kcv and ck_kcv == res.new_kcv and stale.master.kcv == res.new_kcv
    fresh = storage.open_crypto(settings, db)  # a process started after: the new key only
    content_keys.clear_cache()
    with db() as s:
        with storage.open_reader(s, fresh, done.recording_id) as r:
            assert r.read_all()[:4] == b"RIFF"
        assert NAME in transcription.load_transcript(s, done.recording_id)["text"]


def test_values_an_earlier_version_stored_in_clear_are_encrypted_by_db_upgrade(settings, db, ctx, capsys):
    from hotline_api.cli import main

    _, draft_id = _content(settings, db, ctx)
    c = cases.register_draft(db, draft_id, "sup", settings=settings)
    with db() as s:  # as release 0010 wrote them: in clear
        s.execute(text("UPDATE cases SET result = :r WHERE id = :i"), {"r": f"{ACCUSED}已处分", "i": c.id})
        s.execute(text("UPDATE draft_subjects SET name = :n"), {"n": ACCUSED})
        s.execute(text("UPDATE case_events SET detail = :d"), {"d": json.dumps({"note": ACCUSED}, ensure_ascii=False)})
        s.execute(text("INSERT INTO call_events (call_id, type, at, data) VALUES ('c', 'transcript', :t, :d)"),
                  {"t": datetime.now(timezone.utc).replace(tzinfo=None), "d": json.dumps({"text": ACCUSED},
                                                                                         ensure_ascii=False)})
        s.commit()
    assert main(["db", "upgrade"]) == 0
    assert "encrypted" in capsys.readouterr().out
    with db() as s:
        for table, col in (("cases", "result"), ("draft_subjects", "name"), ("case_events", "detail"),
                           ("call_events", "data")):
            assert not any(v and ACCUSED in v for (v,) in s.execute(text(f"SELECT {col} FROM {table}"))), table
        assert s.get(Case, c.id).result == f"{ACCUSED}已处分"


def test_field_key_rotation_reencrypts_everything_and_refuses_beside_the_service(settings, db, ctx, capsys):
    import subprocess
    import sys

    from hotline_api.cli import main
    from hotline_api.core.runlock import service_running
    from hotline_api.services.storage import StorageError, rekey_field_key

    done, draft_id = _content(settings, db, ctx)
    with db() as s:
        number_before = s.execute(text("SELECT caller_number FROM calls")).scalar()
    old_file = (settings.keys_dir / "field.key").read_bytes()
    # a serve process holding the lock: refused, nothing changed
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from hotline_api.core.runlock import hold_service_lock\n"
        "from hotline_api.core.config import Settings\n"
        f"hold_service_lock(Settings.load(env={{'HOTLINE_DATA_DIR': {str(settings.data_dir)!r}}})); "
        "print('held', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert service_running(settings)
        assert main(["keys", "rotate", "--field-key"]) != 0
        assert "stop it" in capsys.readouterr().err
        try:
            rekey_field_key(settings, db)
            raise AssertionError("re-keyed beside a running service")
        except StorageError:
            pass
        assert (settings.keys_dir / "field.key").read_bytes() == old_file
    finally:
        holder.kill()
        holder.wait()
    assert not service_running(settings)
    assert main(["keys", "rotate", "--field-key"]) == 0
    assert "field key replaced" in capsys.readouterr().out
    assert (settings.keys_dir / "field.key").read_bytes() != old_file
    from hotline_api.db import crypto_types

    crypto_types.set_field_cipher(None)
    crypto_types.clear_cache()
    content_keys.clear_cache()
    fresh = storage.open_crypto(settings, db)  # a new process: only the new files
    with db() as s:
        assert s.execute(text("SELECT caller_number FROM calls")).scalar() != number_before
        assert s.get(Call, done.call_uuid).caller_number == "13812340918"
        assert NAME in transcription.load_transcript(s, done.recording_id)["text"]
        assert json.loads(s.get(Draft, draft_id).fields_json)["summary"] == f"{ACCUSED}受贿"
        kcv = s.execute(text("SELECT field_kcv FROM crypto_state")).scalar()
    assert kcv == fresh.field.kcv


def test_interrupted_field_key_rotation_is_finished_with_the_key_the_database_names(settings, db, ctx):
    """The database committed the re-encryption but field.key was not switched yet (a crash): the
    next start takes field.key.new, because crypto_state.field_kcv names it."""
    import os as _os

    from hotline_api.core.keys import field_key_file

    with db() as s:
        done, _ = make_call(s, settings)
    fk = field_key_file(settings)
    new_key = _os.urandom(32)
    from recordings.keys import FieldCipher

    new = FieldCipher(new_key)
    fk.write_pending(ctx.master, new_key)
    with db() as s:
        s.execute(text("UPDATE calls SET caller_number = :v, caller_uri = :u"),
                  {"v": new.encrypt("13812340918", "calls.caller_number"),
                   "u": new.encrypt("sip:13812340918@127.0.0.1", "calls.caller_uri")})
        s.execute(text("UPDATE crypto_state SET field_kcv = :k"), {"k": new.kcv})
        s.commit()
    from hotline_api.db import crypto_types

    crypto_types.set_field_cipher(None)
    crypto_types.clear_cache()
    again = storage.open_crypto(settings, db)
    assert again.field.kcv == new.kcv and not fk.pending_path.exists()
    with db() as s:
        assert s.get(Call, done.call_uuid).caller_number == "13812340918"


def test_after_a_purge_the_api_answers_404_or_purged_for_all_of_it(settings, db, ctx):
    from fastapi.testclient import TestClient

    from hotline_api.app import create_app

    done, draft_id = _content(settings, db, ctx)
    with db() as s:
        sup = _user(s, "sup", "supervisor")
        s.commit()
        token = auth.issue_token(settings, sup)
    app = create_app(settings)
    app.state.crypto = ctx
    h = {"Authorization": f"Bearer {token}"}
    with TestClient(app) as c:
        rid = done.recording_id
        assert c.get(f"/api/recordings/{rid}/transcript", headers=h).status_code == 200  # before: all there
        assert c.get(f"/api/recordings/{rid}/audio", headers=h).status_code == 200
        with db() as s:
            retention.set_policy(s, "other", 0)
            s.commit()
        assert retention.run_retention(db, settings, now=datetime.now(timezone.utc) + timedelta(days=1)).purged == [rid]
        content_keys.clear_cache()
        assert c.get(f"/api/recordings/{rid}/transcript", headers=h).status_code == 404
        assert c.get(f"/api/recordings/{rid}/audio", headers=h).status_code in (404, 410)
        d = c.get(f"/api/drafts/{draft_id}", headers=h)
        body = d.text
        assert NAME not in body and ACCUSED not in body
        assert d.status_code == 404 or d.json().get("input_text") in (None, "")
        evs = c.get("/api/live/recent?all=1", headers=h).json()["events"]
        assert [e["type"] for e in evs] == ["routed"]
