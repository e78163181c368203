"""Audit chain anchors kept outside the database: append, HMAC, and the check against the log."""
from __future__ import annotations

import pytest

from recordings.audit_anchor import AnchorError, AnchorLog, check_anchors

KEY = b"k" * 32


def test_append_read_and_skip_an_unchanged_head(tmp_path):
    log = AnchorLog(tmp_path / "a" / "anchors.log", KEY)
    assert log.read() == [] and log.last() is None
    log.append(3, "h3")
    log.append(3, "h3")
    log.append(7, "h7")
    assert [(a.seq, a.hash, a.line) for a in log.read()] == [(3, "h3", 1), (7, "h7", 2)]
    assert oct(log.path.stat().st_mode & 0o777) == "0o600"


def test_another_key_or_an_edit_fails_naming_the_line(tmp_path):
    p = tmp_path / "anchors.log"
    AnchorLog(p, KEY).append(3, "h3")
    with pytest.raises(AnchorError, match="anchors.log:1: anchor altered"):
        AnchorLog(p, b"x" * 32).read()
    p.write_text(p.read_text() + "garbage\n")
    with pytest.raises(AnchorError, match="anchors.log:2: not an anchor line"):
        AnchorLog(p, KEY).read()
    with pytest.raises(ValueError):
        AnchorLog(p, b"short")


def test_check_against_the_log():
    log_hashes = {1: "h1", 2: "h2", 3: "h3"}
    from recordings.audit_anchor import Anchor

    assert check_anchors([Anchor(2, "h2", "t"), Anchor(3, "h3", "t")], log_hashes.get, 3) == ""
    missing = check_anchors([Anchor(5, "h5", "t")], log_hashes.get, 3)
    assert "entry #5" in missing and "#4..#5" in missing
    assert "rewritten" in check_anchors([Anchor(2, "other", "t")], log_hashes.get, 3)
    assert "the log is empty" in check_anchors([Anchor(1, "h1", "t")], {}.get, None)
