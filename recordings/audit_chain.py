"""The audit log's hash chain (pure logic).

Each entry's hash is ``sha256(prev_hash || canonical_json(fields))`` where the fields include the
entry's sequence number and ``prev_hash``. Verifying walks the entries in sequence order and
names the first entry that breaks the chain:

* an edited entry: its stored hash no longer matches its content;
* a deleted entry: the next entry's sequence number jumps and its ``prev_hash`` does not match;
* reordered (swapped) entries: the first moved entry has the wrong sequence number or prev hash.

The walk can also start after an entry already known good (``after_seq``/``after_hash``: the last
anchored entry), so that only the entries written since are read.

A chain anyone can recompute proves nothing against someone who can write the database: they
rewrite an entry and every later hash. So each entry is also **sealed**: ``mac`` = HMAC-SHA256 of
its hash under the chain key (a file outside the database, ``ChainKey``). From the key's
``since_seq`` on, every entry must carry a valid seal; a rewrite by someone without the key file
breaks it at the first entry touched.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

GENESIS = "0" * 64
HASHED_FIELDS = ("seq", "at", "actor_id", "actor_name", "action", "object_type", "object_id", "ip", "reason", "detail", "prev_hash")


def canonical_json(fields: Mapping[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")


def entry_hash(fields: Mapping[str, Any]) -> str:
    body = {k: fields.get(k) for k in HASHED_FIELDS}
    return hashlib.sha256(str(body["prev_hash"]).encode("ascii") + canonical_json(body)).hexdigest()


@dataclass(frozen=True)
class ChainKey:
    """The chain's sealing key and the first entry sealed with it (entries before it predate the
    seal and are checked by their hashes and the anchors only)."""

    key: bytes
    since_seq: int

    def seal(self, entry_hash_hex: str) -> str:
        return hmac.new(self.key, entry_hash_hex.encode("ascii"), hashlib.sha256).hexdigest()

    def sealed_ok(self, e: Mapping[str, Any]) -> bool:
        mac = e.get("mac")
        return isinstance(mac, str) and hmac.compare_digest(mac, self.seal(str(e.get("hash"))))

    def __repr__(self) -> str:  # never print key material
        return f"ChainKey(since_seq={self.since_seq})"


@dataclass(frozen=True)
class ChainProblem:
    seq: int | None  # sequence number of the first bad entry as stored
    position: int  # 1-based position in the walk
    reason: str

    def __str__(self) -> str:
        if self.seq is None:  # not one entry: the anchors outside the database
            return f"audit anchors (after {self.position} entries): {self.reason}"
        return f"audit entry #{self.seq} (position {self.position}): {self.reason}"


@dataclass(frozen=True)
class ChainResult:
    ok: bool
    count: int
    head_seq: int | None
    head_hash: str
    problem: ChainProblem | None = None


def verify_chain(entries: Iterable[Mapping[str, Any]], *, after_seq: int = 0, after_hash: str = GENESIS,
                 key: ChainKey | None = None) -> ChainResult:
    """``entries``: mappings with the hashed fields plus ``hash``, in ascending ``seq`` order.

    With ``after_seq``/``after_hash`` the entries are those after entry ``after_seq``, whose hash
    (checked by the caller) is ``after_hash``: the first must link to it. Counts and positions then
    include the ``after_seq`` entries before (as a walk from the start would give them)."""
    prev_hash, expected_seq, count = after_hash, after_seq + 1, after_seq
    last_seq: int | None = after_seq or None
    for position, e in enumerate(entries, start=after_seq + 1):
        seq = e.get("seq")
        if seq != expected_seq:
            what = "missing entries before it (deleted?)" if isinstance(seq, int) and seq > expected_seq else "out of order"
            return ChainResult(False, count, last_seq, prev_hash,
                               ChainProblem(seq, position, f"sequence number {seq}, expected {expected_seq}: {what}"))
        if e.get("prev_hash") != prev_hash:
            return ChainResult(False, count, last_seq, prev_hash,
                               ChainProblem(seq, position, "previous-hash link broken (an earlier entry was deleted, replaced or reordered)"))
        if entry_hash(e) != e.get("hash"):
            return ChainResult(False, count, last_seq, prev_hash,
                               ChainProblem(seq, position, "content does not match its hash (entry edited)"))
        if key is not None and seq >= key.since_seq and not key.sealed_ok(e):
            return ChainResult(False, count, last_seq, prev_hash, ChainProblem(
                seq, position, "seal (HMAC under the audit chain key) missing or wrong: the entry was written or "
                               "rewritten, and the hashes recomputed, by someone without the key"))
        prev_hash, expected_seq, last_seq = e["hash"], expected_seq + 1, seq
        count += 1
    return ChainResult(True, count, last_seq, prev_hash)
