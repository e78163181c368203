"""Audit log: append-only, hash-chained; `hotline audit verify` names the first bad entry after an
edit, a deletion or a swap, and passes on the untouched chain."""
from __future__ import annotations

import sqlite3
import threading

import pytest

from hotline_api.cli import main
from hotline_api.models.governance import AuditEntry
from hotline_api.services import audit
import tests.hotline_api.services.govtest_util  # noqa: F401


def _fill(db, n=8):
    with db() as s:
        for i in range(n):
            audit.record(s, "recording.play", actor_name=f"user{i % 3}", object_type="recording", object_id=f"r{i}",
                         ip="127.0.0.1", reason="审核" if i % 2 else None, detail={"range": [i * 100, i * 100 + 99]})
        s.commit()


def _raw(settings):
    con = sqlite3.connect(settings.db_url.removeprefix("sqlite:///"))
    # an attacker with full DB access first removes the append-only triggers
    con.execute("DROP TRIGGER audit_entries_no_update")
    con.execute("DROP TRIGGER audit_entries_no_delete")
    return con


def _verify_cli(capsys):
    rc = main(["audit", "verify"])
    out = capsys.readouterr()
    return rc, out.out + out.err


def test_untouched_chain_passes_through_cli(settings, db, capsys):
    _fill(db)
    rc, out = _verify_cli(capsys)
    assert rc == 0 and "OK: 8 entries" in out


def test_append_only_in_orm_and_database(settings, db):
    _fill(db, 2)
    with db() as s:
        e = s.get(AuditEntry, 1)
        e.reason = "changed"
        with pytest.raises(RuntimeError, match="append-only"):
            s.flush()
        s.rollback()
    con = sqlite3.connect(settings.db_url.removeprefix("sqlite:///"))
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("UPDATE audit_entries SET reason='x' WHERE seq=1")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("DELETE FROM audit_entries WHERE seq=1")


def test_edited_entry_is_named(settings, db, capsys):
    _fill(db)
    con = _raw(settings)
    con.execute("UPDATE audit_entries SET detail='{\"range\":[0,99999]}' WHERE seq=5")
    con.commit()
    rc, out = _verify_cli(capsys)
    assert rc == 1 and "first bad entry: #5" in out and "edited" in out


def test_deleted_entry_is_named(settings, db, capsys):
    _fill(db)
    con = _raw(settings)
    con.execute("DELETE FROM audit_entries WHERE seq=4")
    con.commit()
    rc, out = _verify_cli(capsys)
    assert rc == 1 and "first bad entry: #5" in out and "deleted" in out


def test_swapped_entries_are_named(settings, db, capsys):
    _fill(db)
    con = _raw(settings)
    # swap the positions of entries 3 and 6 (exchange their sequence numbers)
    con.execute("UPDATE audit_entries SET seq=-1 WHERE seq=3")
    con.execute("UPDATE audit_entries SET seq=3 WHERE seq=6")
    con.execute("UPDATE audit_entries SET seq=6 WHERE seq=-1")
    con.commit()
    rc, out = _verify_cli(capsys)
    assert rc == 1 and "first bad entry: #3" in out


def test_swapped_contents_are_named(settings, db):
    _fill(db)
    con = _raw(settings)
    cols = "at, actor_name, object_id, detail, prev_hash, hash"
    a = con.execute(f"SELECT {cols} FROM audit_entries WHERE seq=2").fetchone()
    b = con.execute(f"SELECT {cols} FROM audit_entries WHERE seq=7").fetchone()
    sets = ", ".join(f"{c.strip()}=?" for c in cols.split(","))
    con.execute("UPDATE audit_entries SET prev_hash='tmp' WHERE seq=2")  # prev_hash is unique
    con.execute(f"UPDATE audit_entries SET {sets} WHERE seq=7", a)
    con.execute(f"UPDATE audit_entries SET {sets} WHERE seq=2", b)
    con.commit()
    with db() as s:
        r = audit.verify(s)
    assert not r.ok and r.problem.seq == 2


def test_concurrent_appends_keep_one_chain(settings, db):
    errors = []

    def worker(n):
        try:
            for i in range(15):
                audit.append(db, "recording.play", actor_name=f"t{n}", object_id=str(i), detail={"i": i})
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with db() as s:
        r = audit.verify(s)
        assert r.ok and r.count == 45


def test_search(settings, db):
    _fill(db)
    with db() as s:
        rows = audit.search(s, audit.AuditQuery(actor_name="user1"))
        assert [r["object_id"] for r in rows] == ["r7", "r4", "r1"]
        assert rows[0]["detail"] == {"range": [700, 799]}


# ------------------------------------------------------------------ anchors outside the database
def test_removed_tail_passes_the_chain_but_not_its_anchor(settings, db, capsys):
    _fill(db)
    rc, out = _verify_cli(capsys)  # verified: the head (#8) is anchored outside the database
    assert rc == 0 and "anchored in" in out
    assert audit.anchor_log(settings).last().seq == 8
    con = _raw(settings)
    con.execute("DELETE FROM audit_entries WHERE seq >= 6")  # the last three entries vanish
    con.commit()
    with db() as s:
        assert audit.verify(s).ok  # the chain alone cannot tell: #1..#5 is a valid chain
    rc, out = _verify_cli(capsys)
    assert rc == 1 and "entry #8" in out and "missing" in out and "#6..#8" in out


def test_rewritten_tail_differs_from_its_anchor(settings, db, capsys):
    _fill(db, 4)
    with db() as s:
        assert audit.anchor(s, audit.anchor_log(settings)).ok
    con = _raw(settings)
    con.execute("DELETE FROM audit_entries WHERE seq = 4")
    con.commit()
    _fill(db, 1)  # a new #4 chained to #3: a valid chain again, but not the anchored #4
    rc, out = _verify_cli(capsys)
    assert rc == 1 and "first bad entry: #4" in out and "rewritten" in out


def test_altered_anchor_file_is_reported_and_anchors_follow_the_head(settings, db, capsys):
    _fill(db, 3)
    log = audit.anchor_log(settings)
    with db() as s:
        assert audit.anchor(s, log).ok and audit.anchor(s, log).ok  # the same head: one line
    _fill(db, 2)
    with db() as s:
        assert audit.anchor(s, log).ok
    assert [(a.seq, a.line) for a in log.read()] == [(3, 1), (5, 2)]
    path = settings.audit_anchor_path
    lines = path.read_text().splitlines()
    seq, h, at, mac = lines[1].split()
    path.write_text(lines[0] + "\n" + " ".join(["4", h, at, mac]) + "\n")  # pretend the head was #4
    rc, out = _verify_cli(capsys)
    assert rc == 1 and "anchors.log:2" in out and "altered" in out
    with db() as s:
        assert not audit.anchor(s, log).ok  # nothing is anchored over an altered file
    assert len(path.read_text().splitlines()) == 2
