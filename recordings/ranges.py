"""Byte ranges: HTTP Range parsing and the union of served ranges (listening coverage)."""
from __future__ import annotations

import re

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
MAX_DIGITS = 19


class RangeError(ValueError):
    """A Range header that cannot be served. ``status``: 400 malformed, 416 not satisfiable."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Parse a single-range ``Range`` header into ``[start, stop)``; ``None`` = whole file."""
    if header is None or header == "":
        return None
    if len(header) > 100:
        raise RangeError("Range header too long", 400)
    if "," in header:
        raise RangeError("multiple ranges are not supported", 400)
    m = _RANGE.match(header)
    if not m:
        raise RangeError("malformed Range header", 400)
    a, b = m.group(1), m.group(2)
    if (a == "" and b == "") or len(a) > MAX_DIGITS or len(b) > MAX_DIGITS:
        raise RangeError("malformed Range header", 400)
    if a == "":  # suffix: last b bytes
        n = int(b)
        if n == 0:
            raise RangeError("empty suffix range", 416)
        return (max(0, size - n), size) if size else _unsat(size)
    start = int(a)
    if start >= size:
        _unsat(size)
    stop = size if b == "" else int(b) + 1
    if b != "" and int(b) < start:
        raise RangeError("range end before start", 400)
    return start, min(stop, size)


def _unsat(size: int):
    raise RangeError(f"range not satisfiable (size {size})", 416)


def merge(ranges: list[tuple[int, int]] | list[list[int]]) -> list[list[int]]:
    """Union of half-open ranges, sorted and coalesced."""
    out: list[list[int]] = []
    for s, e in sorted((int(s), int(e)) for s, e in ranges if e > s):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return out


def covered(ranges: list[list[int]], lo: int, hi: int) -> int:
    """Bytes of [lo, hi) covered by the (merged) ranges."""
    total = 0
    for s, e in ranges:
        s, e = max(s, lo), min(e, hi)
        if e > s:
            total += e - s
    return total


def coverage(ranges: list[list[int]], lo: int, hi: int) -> float:
    if hi <= lo:
        return 1.0 if ranges else 0.0
    return covered(merge(ranges), lo, hi) / (hi - lo)
