"""Anchors of the audit hash chain, kept outside the database.

The chain (``recordings.audit_chain``) shows any change to an entry and any entry removed from the
middle, but not the *last* entries removed: a shorter chain is still a valid chain. An anchor is
the chain's head (sequence number and hash) written, after a successful verification, to an
append-only file that is not in the database (ideally on another volume or a write-once store),
each line with an HMAC under a key the database does not hold. Verification then also requires
every anchored entry to be present with the anchored hash: removing the tail of the log, or
rewriting it from an anchored point, is detected.

Once an anchor is written, the audit log itself records it (an ``audit.anchor`` entry naming how
many anchors the file then held, and the anchored entry and hash: ``RecordedAnchor``), so that a
deleted, emptied or truncated anchor file reads as tampering (``check_recorded``), not as "never
anchored". The file may hold more anchors than the log records (a crash between the file's append
and the entry's commit), never fewer.

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


@dataclass(frozen=True)
class RecordedAnchor:
    """What the audit log records of an anchor it was given: the file then held ``count`` anchors,
    the last of them being entry ``seq`` with ``hash``. ``entry_seq``: the recording entry."""

    count: int
    seq: int
    hash: str
    entry_seq: int | None = None


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


def check_recorded(anchors: list[Anchor], recorded: RecordedAnchor, path: str | Path) -> str:
    """'' if the anchor file (``anchors``, as read from ``path``) still holds the anchor the audit log
    records as written, else what is wrong, in Chinese and English."""
    held, k = len(anchors), recorded.count
    where = f"entry #{recorded.entry_seq} of the audit log" if recorded.entry_seq else "the audit log"
    if held == 0:
        exists = Path(path).exists()
        gone, gone_zh = ("is empty", "为空") if exists else ("does not exist", "不存在")
        return (f"锚点文件缺失：审计日志记录已写入 {k} 个锚点（最后一个锚定 #{recorded.seq}），"
                f"但锚点文件{gone_zh}，可能被删除或替换，请从备份恢复 / "
                f"anchor file missing: {path} {gone}, but {where} records "
                f"{k} anchor(s) written (the last of entry #{recorded.seq}): the file was deleted or replaced "
                f"(restore it from its backup)")
    if held < k:
        return (f"锚点文件被截断：审计日志记录已写入 {k} 个锚点，文件中只有 {held} 个 / anchor file truncated: "
                f"{path} holds {held} anchor(s), but {where} records {k} written (anchor {k}: entry "
                f"#{recorded.seq}): anchors were removed from the file")
    a = anchors[k - 1]
    if a.seq != recorded.seq or a.hash != recorded.hash:
        return (f"锚点文件被改写：第 {k} 个锚点与审计日志的记录不符 / anchor file rewritten: anchor {k} in "
                f"{path} (line {a.line}) is entry #{a.seq} {a.hash[:16]}..., but {where} records entry "
                f"#{recorded.seq} {recorded.hash[:16]}...")
    return ""
