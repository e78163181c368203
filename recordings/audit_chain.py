"""The audit log's hash chain (pure logic).

Each entry's hash is ``sha256(prev_hash || canonical_json(fields))`` where the fields include the
entry's sequence number and ``prev_hash``. Verifying walks the entries in sequence order and
names the first entry that breaks the chain:

* an edited entry: its stored hash no longer matches its content;
* a deleted entry: the next entry's sequence number jumps and its ``prev_hash`` does not match;
* reordered (swapped) entries: the first moved entry has the wrong sequence number or prev hash.
"""
from __future__ import annotations

import hashlib
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
class ChainProblem:
    seq: int | None  # sequence number of the first bad entry as stored
    position: int  # 1-based position in the walk
    reason: str

    def __str__(self) -> str:
        return f"audit entry #{self.seq} (position {self.position}): {self.reason}"


@dataclass(frozen=True)
class ChainResult:
    ok: bool
    count: int
    head_seq: int | None
    head_hash: str
    problem: ChainProblem | None = None


def verify_chain(entries: Iterable[Mapping[str, Any]]) -> ChainResult:
    """``entries``: mappings with the hashed fields plus ``hash``, in ascending ``seq`` order."""
    prev_hash, expected_seq, count, last_seq = GENESIS, 1, 0, None
    for position, e in enumerate(entries, start=1):
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
        prev_hash, expected_seq, last_seq = e["hash"], expected_seq + 1, seq
        count += 1
    return ChainResult(True, count, last_seq, prev_hash)
