"""Log files of kamailio and the workers stay bounded: rotated at (re)start when large."""
from __future__ import annotations

from telephony.logfiles import rotate_if_large


def test_small_or_missing_file_is_left_alone(tmp_path):
    log = tmp_path / "worker.log"
    assert rotate_if_large(log, max_bytes=10) is False
    log.write_bytes(b"x" * 10)
    assert rotate_if_large(log, max_bytes=10) is False and log.read_bytes() == b"x" * 10


def test_large_file_shifts_generations_and_drops_the_oldest(tmp_path):
    log = tmp_path / "kamailio.log"
    for gen in range(5):  # five restarts, each after the log grew past the limit
        log.write_bytes(f"run {gen}\n".encode() * 4)
        assert rotate_if_large(log, max_bytes=16, keep=3) is True
        assert not log.exists()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["kamailio.log.1", "kamailio.log.2", "kamailio.log.3"]
    assert (tmp_path / "kamailio.log.1").read_text().startswith("run 4")
    assert (tmp_path / "kamailio.log.3").read_text().startswith("run 2")
