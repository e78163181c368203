"""Display-text post-processing for Chinese: join CJK words, apply an admin replacement list.

Vosk writes Chinese as space-separated words ("我 要 举报 一下"). For display, spaces between two
Han characters (or CJK punctuation) are removed; spaces next to Latin letters or digits are kept.
Word timings are never touched: only ``text`` fields change.

The replacement list is a UTF-8 text file, one pair a line::

    # comment
    举 办 => 举报
    纪委书 记 -> 纪委书记
    wrong → right

Separators: ``→``, ``=>``, ``->`` or a tab. Pairs are applied to the joined display text,
longest "wrong" first. The file is re-read when its modification time changes, so admins can edit it
without a restart.
"""
from __future__ import annotations

import os
import re
import threading
from pathlib import Path

# Han ideographs (incl. extension A and compatibility), CJK symbols/punctuation, full-width forms.
_CJK = r"\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_SPACE_BETWEEN_CJK = re.compile(rf"(?<=[{_CJK}])\s+(?=[{_CJK}])")
_SEPARATORS = ("→", "=>", "->", "\t")


def join_cjk(text: str) -> str:
    """Remove whitespace between two CJK characters; collapse other runs of whitespace."""
    text = re.sub(r"\s+", " ", text).strip()
    return _SPACE_BETWEEN_CJK.sub("", text)


def join_words(words: list[str]) -> str:
    return join_cjk(" ".join(w for w in words if w))


def is_cjk_char(ch: str) -> bool:
    return bool(re.match(rf"[{_CJK}]", ch))


def join_texts(a: str, b: str) -> str:
    """Concatenate two display texts: no space between CJK ends, one space otherwise."""
    if not a:
        return b
    if not b:
        return a
    if is_cjk_char(a[-1]) and is_cjk_char(b[0]):
        return a + b
    return a + " " + b


class ParseError(ValueError):
    pass


def parse_replacements(text: str, source: str = "replacements") -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        for sep in _SEPARATORS:
            if sep in line:
                wrong, right = line.split(sep, 1)
                break
        else:
            raise ParseError(f"{source}:{lineno}: expected 'wrong → right', got {raw!r}")
        wrong, right = join_cjk(wrong), join_cjk(right)
        if not wrong:
            raise ParseError(f"{source}:{lineno}: empty left side")
        pairs.append((wrong, right))
    pairs.sort(key=lambda p: len(p[0]), reverse=True)
    return pairs


#: the admin-editable replacements file, relative to the service's data dir
REPLACEMENTS_FILE = "asr/replacements.txt"


class Replacements:
    """An ordered replacement list; optionally backed by a file that is reloaded when it changes."""

    def __init__(self, pairs: list[tuple[str, str]] | None = None, path: str | os.PathLike | None = None):
        self._pairs = list(pairs or [])
        self._path = Path(path) if path else None
        self._mtime: float | None = None
        self._lock = threading.Lock()
        if self._path is not None:
            self._reload()

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Replacements":
        return cls(path=path)

    def _reload(self) -> None:
        assert self._path is not None
        try:
            st = self._path.stat()
        except FileNotFoundError:
            self._pairs, self._mtime = [], None
            return
        if self._mtime == st.st_mtime_ns:
            return
        self._pairs = parse_replacements(self._path.read_text(encoding="utf-8"), str(self._path))
        self._mtime = st.st_mtime_ns

    @property
    def pairs(self) -> list[tuple[str, str]]:
        if self._path is not None:
            with self._lock:
                self._reload()
        return list(self._pairs)

    def apply(self, text: str) -> str:
        for wrong, right in self.pairs:
            text = text.replace(wrong, right)
        return text


def display_text(words: list[str], replacements: Replacements | None = None) -> str:
    text = join_words(words)
    return replacements.apply(text) if replacements else text
