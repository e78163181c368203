"""Anchors of the audit hash chain, kept outside the database.

The chain (``recordings.audit_chain``) shows any change to an entry and any entry removed from the
middle, but not the *last* entries removed: a shorter chain is still a valid chain. An anchor is
the chain's head (sequence number and hash) written, after a successful verification, to an
append-only file that is not in the database (ideally on another volume or a write-once store),
each line with an HMAC under a key the database does not hold. Verification then also requires
every anchored entry to be present with the anchored hash: removing the tail of the log, or
rewriting it from an anchored point, is detected.

Line format (text, one per anchor): ``<seq> <hash> <ISO time> <hmac hex>``.
"""
from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable


class AnchorError(Exception):
    """The anchor file is unreadable or was altered (names the file and line)."""


@dataclass(frozen=True)
class Anchor:
    seq: int
    hash: str
    at: str
    line: int = 0


def _mac(key: bytes, seq: int, hash_: str, at: str) -> str:
    return hmac.new(key, f"{seq} {hash_} {at}".encode("ascii"), hashlib.sha256).hexdigest()


class AnchorLog:
    def __init__(self, path: str | Path, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("anchor key too short")
        self.path = Path(path)
        self._key = key

    def append(self, seq: int, hash_: str, at: datetime | None = None) -> Anchor:
        """Add an anchor (an fsync'd append). The head is anchored again only when it moved."""
        last = self.last()
        if last is not None and last.seq == seq and last.hash == hash_:
            return last
        stamp = (at or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat(timespec="seconds")
        line = f"{int(seq)} {hash_} {stamp} {_mac(self._key, int(seq), hash_, stamp)}\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        return Anchor(int(seq), hash_, stamp, len(self.read()))

    def read(self) -> list[Anchor]:
        """Every anchor, oldest first. A line that does not parse or whose HMAC is wrong raises."""
        try:
            text = self.path.read_text(encoding="ascii")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as e:
            raise AnchorError(f"{self.path}: unreadable: {e}") from None
        out: list[Anchor] = []
        for n, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            parts = raw.split()
            if len(parts) != 4 or not parts[0].isdigit():
                raise AnchorError(f"{self.path}:{n}: not an anchor line")
            seq, hash_, at, mac = int(parts[0]), parts[1], parts[2], parts[3]
            if not hmac.compare_digest(mac, _mac(self._key, seq, hash_, at)):
                raise AnchorError(f"{self.path}:{n}: anchor altered (HMAC mismatch)")
            out.append(Anchor(seq, hash_, at, n))
        return out

    def last(self) -> Anchor | None:
        anchors = self.read()
        return anchors[-1] if anchors else None


def check_anchors(anchors: Iterable[Anchor], hash_at: Callable[[int], str | None], head_seq: int | None) -> str:
    """'' if every anchored entry is still in the log with its anchored hash, else what is wrong.
    ``hash_at(seq)`` is the hash of entry ``seq`` in the log (None: no such entry)."""
    for a in anchors:
        h = hash_at(a.seq)
        if h is None:
            end = f"the log ends at #{head_seq}" if head_seq else "the log is empty"
            return (f"entry #{a.seq}, anchored on {a.at}, is missing: {end}, so entries "
                    f"#{(head_seq or 0) + 1}..#{a.seq} at least were removed")
        if h != a.hash:
            return f"entry #{a.seq} differs from its anchor of {a.at}: the log was rewritten from there"
    return ""
