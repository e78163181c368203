"""Encrypted storage composed with the DB: ingest at completion, decrypting range reads, key
rotation (crash-safe), wrong master key refused with nothing touched, EncryptedText columns."""
from __future__ import annotations

import hashlib
import os
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from hotline_api.db import crypto_types
from hotline_api.models.calls import Recording
from hotline_api.models.governance import CryptoState, RecordingBlob
from hotline_api.services import audit, pipeline, storage
from recordings import crypto
from recordings.keys import MasterKey, encode_key
from recordings.ranges import RangeError, parse_range
from tests.hotline_api.services.govtest_util import files_snapshot, make_call
from sqlalchemy import Integer, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from hotline_api.db.crypto_types import EncryptedText


class _B(DeclarativeBase):
    pass


class T(_B):
    __tablename__ = "t"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phone: Mapped[str | None] = mapped_column(EncryptedText("t.phone"))


def _ingest(db, settings, ctx, **kw):
    with db() as s:
        ev, data = make_call(s, settings, **kw)
    res = pipeline.on_recording_completed(db, ctx, ev)
    return ev, data, res


def test_ingest_encrypts_removes_plain_file_and_reads_back(settings, db, ctx):
    ev, data, res = _ingest(db, settings, ctx, seconds=2.0)
    assert not os.path.exists(ev.path)  # the plain spool file is gone
    enc = ctx.store.path(ev.recording_id)
    raw = enc.read_bytes()
    assert b"RIFF" not in raw and b"WAVE" not in raw and data[1000:1032] not in raw
    assert ev.recording_id in str(enc) and "1381234" not in str(enc)
    assert (settings.keys_dir / "master.key").stat().st_mode & 0o777 == 0o600
    with db() as s:
        blob = s.get(RecordingBlob, ev.recording_id)
        rec = s.get(Recording, ev.recording_id)
        assert blob.sha256 == hashlib.sha256(data).hexdigest() == rec.sha256
        assert blob.data_offset == 44 and blob.data_size == len(data) - 44
        assert rec.path.endswith(".hle")
        with storage.open_reader(s, ctx, ev.recording_id) as r:
            assert r.read_all() == data
        assert "recording.store" in [e["action"] for e in audit.iter_entries(s)]
    # replaying the event is harmless
    assert pipeline.on_recording_completed(db, ctx, ev).created is False


_ingested: dict = {}


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(r=st.data())
def test_range_requests_equal_slices_of_the_full_decrypt(settings, db, ctx, r):
    # the fixtures run once for all examples: ingest one recording per data dir, then draw ranges
    if settings.data_dir not in _ingested:
        ev, data, _ = _ingest(db, settings, ctx, seconds=1.5)
        _ingested[settings.data_dir] = (ev.recording_id, data)
    rid, data = _ingested[settings.data_dir]
    size = len(data)
    kind = r.draw(st.sampled_from(["full", "open", "suffix"]))
    a = r.draw(st.integers(0, size - 1))
    header = {"full": f"bytes={a}-{r.draw(st.integers(a, size + 100))}", "open": f"bytes={a}-",
              "suffix": f"bytes=-{r.draw(st.integers(1, size + 100))}"}[kind]
    start, stop = parse_range(header, size)
    with db() as s:
        with storage.open_reader(s, ctx, rid) as rec:
            full = rec.read(0, rec.size)
        got = b"".join(storage.stream_range(storage.open_reader(s, ctx, rid), start, stop))
    assert full == data
    assert got == full[start:stop]


def test_stream_reports_what_was_actually_sent_and_checks_full_reads(settings, db, ctx):
    ev, data, _ = _ingest(db, settings, ctx, seconds=3.0)
    sent = []
    with db() as s:
        gen = storage.stream_range(storage.open_reader(s, ctx, ev.recording_id), 0, len(data),
                                   on_done=lambda a, b: sent.append((a, b)))
        next(gen)
        next(gen)  # the consumer asks for the 2nd piece: the 1st was delivered
        gen.close()  # client went away; the 2nd piece is not counted as delivered
        assert sent == [(0, 64 * 1024)]
        assert b"".join(storage.stream_range(storage.open_reader(s, ctx, ev.recording_id), 0, len(data),
                                             on_done=lambda a, b: sent.append((a, b)))) == data
        assert sent[-1] == (0, len(data))
        # a full read against a wrong recorded hash ends in IntegrityError
        blob = s.get(RecordingBlob, ev.recording_id)
        blob.sha256 = "0" * 64
        with pytest.raises(storage.IntegrityError):
            b"".join(storage.stream_range(storage.open_reader(s, ctx, ev.recording_id), 0, len(data)))
        with pytest.raises(storage.IntegrityError):
            storage.verify_integrity(s, ctx, ev.recording_id)


def test_tampered_file_detected(settings, db, ctx):
    ev, data, _ = _ingest(db, settings, ctx, seconds=6.0)  # 2 chunks
    p = ctx.store.path(ev.recording_id)
    raw = bytearray(p.read_bytes())
    raw[len(raw) - 100] ^= 0xFF  # in the last chunk
    p.write_bytes(bytes(raw))
    with db() as s:
        with pytest.raises(crypto.TamperedError):
            storage.verify_integrity(s, ctx, ev.recording_id)
        with storage.open_reader(s, ctx, ev.recording_id) as r:
            assert r.read(0, 1000) == data[:1000]  # untouched chunks still play


@pytest.mark.parametrize("bad", ["../../etc/passwd", "..%2f..%2fkeys%2fmaster.key", "0" * 36, "", "a/b",
                                 "12345678-1234-1234-1234-1234567890ab/../x"])
def test_bad_ids_are_not_found(settings, db, ctx, bad):
    with db() as s:
        with pytest.raises(storage.RecordingNotFound):
            storage.open_reader(s, ctx, bad)


def test_range_errors():
    with pytest.raises(RangeError) as e:
        parse_range("bytes=99999-", 100)
    assert e.value.status == 416


def _all_readable(db, ctx, expected: dict[str, bytes]):
    with db() as s:
        for rid, data in expected.items():
            with storage.open_reader(s, ctx, rid) as r:
                assert r.read_all() == data


def test_rotation_rewraps_without_touching_audio_and_everything_still_plays(settings, db, ctx):
    recs = {}
    for i in range(3):
        ev, data, _ = _ingest(db, settings, ctx, seed=i)
        recs[ev.recording_id] = data
    enc_before = {rid: ctx.store.path(rid).read_bytes() for rid in recs}
    token = ctx.field.encrypt("凌小明", "drafts.reporter_name")
    old_key = (settings.keys_dir / "master.key").read_bytes()
    res = storage.rotate_master_key(settings, db)
    assert res.rewrapped == 3 and res.old_kcv != res.new_kcv
    assert (settings.keys_dir / "master.key").read_bytes() != old_key
    assert (settings.keys_dir / "master.key").stat().st_mode & 0o777 == 0o600
    assert not (settings.keys_dir / "master.key.new").exists()
    assert {rid: ctx.store.path(rid).read_bytes() for rid in recs} == enc_before  # audio not re-encrypted
    ctx2 = storage.open_crypto(settings, db)
    assert ctx2.master.kcv == res.new_kcv
    _all_readable(db, ctx2, recs)
    assert ctx2.field.decrypt(token, "drafts.reporter_name") == "凌小明"
    with db() as s:
        assert s.get(CryptoState, 1).master_kcv == res.new_kcv
        assert any(e["action"] == "keys.rotate" for e in audit.iter_entries(s))
        assert audit.verify(s).ok


def test_rotation_crash_before_commit_keeps_old_key(settings, db, ctx):
    ev, data, _ = _ingest(db, settings, ctx)
    storage.prepare_rotation(ctx)  # new key files written beside, then "crash"
    assert (settings.keys_dir / "master.key.new").exists()
    ctx2 = storage.open_crypto(settings, db)
    assert ctx2.master.kcv == ctx.master.kcv
    assert not (settings.keys_dir / "master.key.new").exists() and not (settings.keys_dir / "field.key.new").exists()
    _all_readable(db, ctx2, {ev.recording_id: data})


def test_rotation_crash_after_commit_completes_switch_at_start(settings, db, ctx):
    ev, data, _ = _ingest(db, settings, ctx)
    token = ctx.field.encrypt("13812340918", "calls.caller_number")
    new = storage.prepare_rotation(ctx)
    storage.commit_rotation_db(db, ctx, new)  # "crash" before the file switch
    ctx2 = storage.open_crypto(settings, db)
    assert ctx2.master.kcv == new.kcv
    _all_readable(db, ctx2, {ev.recording_id: data})
    assert ctx2.field.decrypt(token, "calls.caller_number") == "13812340918"


def _db_dump(url_path: str) -> dict:
    con = sqlite3.connect(url_path)
    try:
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
                for t in ("recording_blobs", "crypto_state", "audit_entries", "recordings", "review_assignments")}
    finally:
        con.close()


def test_wrong_master_key_refused_at_start_with_nothing_touched(settings, db, ctx):
    ev, data, _ = _ingest(db, settings, ctx)
    dbfile = settings.db_url.removeprefix("sqlite:///")
    before_files = files_snapshot(settings.recordings_dir, settings.keys_dir)
    before_db = _db_dump(dbfile)
    wrong = settings.replace(master_key=encode_key(MasterKey.generate().key))
    with pytest.raises(storage.CryptoStartupError, match="wrong master key"):
        storage.open_crypto(wrong, db)
    # a replaced key file is refused too
    other = MasterKey.generate()
    (settings.keys_dir / "master.key").write_text(encode_key(other.key) + "\n")
    with pytest.raises(storage.CryptoStartupError, match="wrong master key.*nothing was read or changed"):
        storage.open_crypto(settings, db)
    with pytest.raises(storage.CryptoStartupError):
        storage.rotate_master_key(settings, db)
    (settings.keys_dir / "master.key").write_text(encode_key(ctx.master.key) + "\n")
    assert files_snapshot(settings.recordings_dir, settings.keys_dir) == before_files
    assert _db_dump(dbfile) == before_db
    _all_readable(db, storage.open_crypto(settings, db), {ev.recording_id: data})


def test_missing_key_file_with_existing_data_is_refused(settings, db, ctx):
    _ingest(db, settings, ctx)
    (settings.keys_dir / "master.key").unlink()
    with pytest.raises(storage.CryptoStartupError, match="not found"):
        storage.open_crypto(settings, db)
    with pytest.raises(storage.CryptoStartupError, match="restore"):
        storage.init_keys(settings, db)


def test_encrypted_text_column(settings, db, ctx, tmp_path):
    eng = create_engine(f"sqlite:///{tmp_path / 't.db'}")
    _B.metadata.create_all(eng)
    with Session(eng) as s:
        s.add_all([T(id=1, phone="13812340918"), T(id=2, phone=None)])
        s.commit()
    raw = sqlite3.connect(tmp_path / "t.db").execute("SELECT phone FROM t WHERE id=1").fetchone()[0]
    assert raw.startswith("enc1:") and "1381234" not in raw
    with Session(eng) as s:
        assert s.get(T, 1).phone == "13812340918" and s.get(T, 2).phone is None
        s.execute(T.__table__.insert().values(id=3, phone=None))
    # legacy plain rows are readable and can be converted
    con = sqlite3.connect(tmp_path / "t.db")
    con.execute("INSERT INTO t VALUES (4, '13900001111')")
    con.commit()
    with Session(eng) as s:
        assert s.get(T, 4).phone == "13900001111"
        assert crypto_types.reencrypt_plain_values(s, T, "phone") == 1
        s.commit()
    assert con.execute("SELECT phone FROM t WHERE id=4").fetchone()[0].startswith("enc1:")
    # lazily loaded cipher (no explicit install) reads the same values
    crypto_types.set_field_cipher(None)
    crypto_types.clear_cache()
    with Session(eng) as s:
        assert s.get(T, 1).phone == "13812340918"


def test_keys_cli_init_status_rotate(settings, db, capsys):
    from hotline_api.cli import main
    from hotline_api.core import config

    assert main(["keys", "init"]) == 0
    assert "created" in capsys.readouterr().out
    assert (settings.keys_dir / "master.key").stat().st_mode & 0o777 == 0o600
    assert main(["keys", "init"]) == 0 and "present" in capsys.readouterr().out
    ctx = storage.open_crypto(settings, db)
    ev, data, _ = _ingest(db, settings, ctx)
    assert main(["keys", "rotate"]) == 0
    assert "1 data key(s) re-wrapped" in capsys.readouterr().out
    assert main(["keys", "status"]) == 0
    # a wrong key in the environment: clear refusal, exit 1
    config.set_settings(settings.replace(master_key=encode_key(MasterKey.generate().key)))
    assert main(["keys", "status"]) == 1
    assert "wrong master key" in capsys.readouterr().err
    assert main(["keys", "rotate"]) == 2  # env key: needs --new-key-stdin
    config.set_settings(settings)
    _all_readable(db, storage.open_crypto(settings, db), {ev.recording_id: data})
    crypto_types.set_field_cipher(None)


def test_env_master_key_rotation(settings, db, monkeypatch, capsys):
    import io

    from hotline_api.cli import main
    from hotline_api.core import config

    k1, k2 = MasterKey.generate(), MasterKey.generate()
    s1 = settings.replace(master_key=encode_key(k1.key))
    config.set_settings(s1)
    ctx = storage.open_crypto(s1, db)
    ev, data, _ = _ingest(db, s1, ctx)
    assert not (settings.keys_dir / "master.key").exists()  # the env provider writes no key file
    monkeypatch.setattr("sys.stdin", io.StringIO(encode_key(k2.key) + "\n"))
    assert main(["keys", "rotate", "--new-key-stdin"]) == 0
    assert "HOTLINE_MASTER_KEY" in capsys.readouterr().out
    with pytest.raises(storage.CryptoStartupError):
        storage.open_crypto(s1, db)  # the old key is no longer accepted
    s2 = settings.replace(master_key=encode_key(k2.key))
    _all_readable(db, storage.open_crypto(s2, db), {ev.recording_id: data})
    config.set_settings(settings)
    crypto_types.set_field_cipher(None)
