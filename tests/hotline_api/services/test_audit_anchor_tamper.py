"""Audit anchors against an attacker with write access to the database (issue 11, item 7).

* The 15-minute anchor job verifies the chain from the last anchor before it anchors a new head: a
  forged chain is reported (an error, as the daily verification reports one) and never anchored.
* Once anchoring has happened the audit log itself records it (``audit.anchor`` entries), so a
  deleted or truncated anchor file is tampering, not "no anchors yet".
"""
from __future__ import annotations

import logging

import pytest

from hotline_api import scheduler
from hotline_api.cli import main
from hotline_api.services import audit
from recordings.audit_chain import entry_hash
import tests.hotline_api.services.govtest_util  # noqa: F401
from tests.hotline_api.services.test_audit import _raw  # an attacker's raw connection, triggers dropped


def _fill(db, n, start=0):
    with db() as s:
        for i in range(start, start + n):
            audit.record(s, "recording.play", actor_name=f"user{i % 3}", object_type="recording", object_id=f"r{i}",
                         ip="127.0.0.1", detail={"range": [i * 100, i * 100 + 99]})
        s.commit()


def _fields(db):
    with db() as s:
        return {e["seq"]: e for e in audit.iter_entries(s)}


def _rewrite(con, old: dict, **changes) -> dict:
    """Store ``old`` with ``changes``; the hash is recomputed unless ``hash`` is given."""
    new = {**old, **changes}
    if "hash" not in changes:
        new["hash"] = entry_hash(new)
    detail = new["detail"] if isinstance(new["detail"], str) else audit.canonical_json(new["detail"]).decode()
    con.execute("UPDATE audit_entries SET detail=?, prev_hash=?, hash=? WHERE seq=?",
                (detail, new["prev_hash"], new["hash"], old["seq"]))
    return new


def _verify_cli(capsys):
    rc = main(["audit", "verify"])
    out = capsys.readouterr()
    return rc, out.out + out.err


def _errors(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name == "hotline.scheduler"]


@pytest.mark.parametrize("where", ["before_the_anchor", "after_the_anchor", "after_the_anchor_all_recomputed"])
def test_forged_chain_is_caught_by_the_next_anchor_job_and_not_anchored(settings, db, caplog, where):
    _fill(db, 8)
    scheduler.audit_anchor_job(db, settings)
    log = audit.anchor_log(settings)
    anchored = log.last()
    assert anchored is not None and anchored.seq == 8
    _fill(db, 3, start=8)  # entries written since the anchor, not anchored yet
    entries = _fields(db)
    head = max(entries)
    con = _raw(settings)
    if where == "before_the_anchor":
        # rewrite #5 and recompute every later hash up to the anchored #8, whose stored hash is left at
        # its anchored value (the anchor file still "matches"); what follows #8 chains on unchanged
        prev = _rewrite(con, entries[5], detail={"range": [0, 99999]})
        for seq in (6, 7):
            prev = _rewrite(con, entries[seq], prev_hash=prev["hash"])
        _rewrite(con, entries[8], prev_hash=prev["hash"], hash=anchored.hash)
        bad_seq = 8
    elif where == "after_the_anchor":
        # rewrite an entry written since the anchor, with its own hash recomputed
        _rewrite(con, entries[head - 1], detail={"range": [0, 99999]})
        bad_seq = head - 1  # its seal no longer fits (before the broken link to it shows at the next one)
    else:
        # rewrite an entry written since the anchor and recompute every later hash: the chain links
        # up again, only the seal (HMAC under the key file the attacker does not have) shows it
        prev = _rewrite(con, entries[head - 1], detail={"range": [0, 99999]})
        _rewrite(con, entries[head], prev_hash=prev["hash"])
        bad_seq = head - 1
    con.commit()
    con.close()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hotline.scheduler"):
        scheduler.audit_anchor_job(db, settings)
    assert log.last() == anchored and len(log.read()) == 1  # nothing anchored over the forgery
    errors = _errors(caplog)
    assert errors and "AUDIT CHAIN BROKEN" in errors[0] and f"#{bad_seq}" in errors[0], errors
    if where == "after_the_anchor_all_recomputed":
        assert "seal" in errors[0]


def test_deleted_anchor_file_is_tampering_not_no_anchors(settings, db, capsys, caplog):
    _fill(db, 5)
    rc, out = _verify_cli(capsys)  # a fresh install, never anchored: passes (and anchors the head)
    assert rc == 0 and "OK" in out
    _fill(db, 2, start=5)
    scheduler.audit_anchor_job(db, settings)
    path = settings.audit_anchor_path
    assert len(audit.anchor_log(settings).read()) == 2
    path.unlink()
    rc, out = _verify_cli(capsys)
    assert rc == 1
    assert str(path) in out and "missing" in out and "锚点文件" in out, out
    with db() as s:  # the API/console view says the same
        r = audit.verify(s, audit.anchor_log(settings))
    assert not r.ok and "missing" in r.problem.reason
    _fill(db, 1, start=7)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hotline.scheduler"):
        scheduler.audit_anchor_job(db, settings)
    assert not path.exists()  # no new anchor file started over the deleted one
    assert any("AUDIT CHAIN BROKEN" in m and "missing" in m for m in _errors(caplog))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hotline.scheduler"):
        scheduler.audit_verify_job(db, settings)
    assert not path.exists() and any("AUDIT CHAIN BROKEN" in m for m in _errors(caplog))


def test_truncated_anchor_file_is_tampering(settings, db, capsys):
    _fill(db, 4)
    scheduler.audit_anchor_job(db, settings)
    _fill(db, 2, start=4)
    scheduler.audit_anchor_job(db, settings)
    log = audit.anchor_log(settings)
    path = settings.audit_anchor_path
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    # a line written whose record in the database did not commit (a crash in between) is no tampering
    _fill(db, 1, start=6)
    with db() as s:
        head = audit.verify(s)
    log.append(head.head_seq, head.head_hash)
    rc, out = _verify_cli(capsys)
    assert rc == 0, out
    path.write_text(lines[0] + "\n")  # the last anchors removed from the file
    rc, out = _verify_cli(capsys)
    assert rc == 1 and "truncated" in out and "截断" in out, out
    assert len(path.read_text().splitlines()) == 1  # nothing anchored over it


def test_deleted_chain_key_is_tampering(settings, db, capsys):
    _fill(db, 3)
    key_file = settings.keys_dir / audit.CHAIN_KEY_FILE
    assert key_file.is_file() and oct(key_file.stat().st_mode & 0o777) == "0o600"
    key_file.unlink()
    audit.clear_key_cache()
    rc, out = _verify_cli(capsys)
    assert rc == 1 and "audit chain key" in out and "missing" in out, out
