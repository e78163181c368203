"""Transcript input: validation, normalisation to one compact string with an offset map, speaker
attribution, segmentation (jieba or the ASR's own word spaces) and homophone correction.

Coordinates: every extractor works on ``Doc.s`` (the transcript without spaces, homophones
corrected in place, same length) and reports spans in it; ``Doc.raw_span`` maps them back to
character offsets in ``Doc.raw``, the input text (for turns: the turn texts joined with ``\\n``).
"""
from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable

from hotline_api.drafting import lexicon

log = logging.getLogger(__name__)

# Inputs above this are refused (a one-hour call transcribes to roughly 15-20k characters).
MAX_INPUT_CHARS = 100_000
SPEAKERS = ("caller", "operator", "voicemail")
PUNCT = frozenset("，。、！？；：,.!?;:…—\"'“”‘’（）()《》【】[]\n·~～")
HAN_RE = re.compile(r"[\u4e00-\u9fff]")


class DraftInputError(ValueError):
    """The transcript cannot be drafted; the message says why (shown to the user)."""


# --------------------------------------------------------------------------- jieba
_jieba_lock = threading.Lock()
_jieba = None


def get_jieba():
    """jieba with the domain user dictionary (loaded once per process)."""
    global _jieba
    if _jieba is not None:
        return _jieba
    with _jieba_lock:
        if _jieba is None:
            import jieba

            jieba.setLogLevel(logging.WARNING)
            tk = jieba.Tokenizer()
            tk.initialize()
            for w in set(lexicon.TITLES) | set(lexicon.CORRECTION_VOCAB):
                tk.add_word(w, freq=2000)
            for w in lexicon.GENERIC_PLACE_WORDS:
                if len(w) > 1:
                    tk.add_word(w, freq=1000)
            _jieba = tk
    return _jieba


def word_freq(word: str) -> int:
    return get_jieba().FREQ.get(word, 0) or 0


_tags: dict[str, str] | None = None


def word_tag(word: str) -> str:
    """jieba's part-of-speech tag of a dictionary word of 2-3 characters ('' if unknown)."""
    global _tags
    if _tags is None:
        import jieba

        tags: dict[str, str] = {}
        with jieba.get_dict_file() as f:
            for line in f:
                parts = line.decode("utf-8").split()
                if len(parts) == 3 and 2 <= len(parts[0]) <= 3:
                    tags[parts[0]] = parts[2]
        _tags = tags
    return _tags.get(word, "")


# --------------------------------------------------------------------------- pinyin matching
@lru_cache(maxsize=8192)
def char_readings(ch: str) -> frozenset[str]:
    from pypinyin import Style, pinyin

    if not HAN_RE.match(ch):
        return frozenset()
    return frozenset(pinyin(ch, style=Style.NORMAL, heteronym=True)[0])


def primary_reading(ch: str) -> str:
    from pypinyin import Style, lazy_pinyin

    return lazy_pinyin(ch, style=Style.NORMAL)[0] if HAN_RE.match(ch) else ch


_primary = lru_cache(maxsize=8192)(primary_reading)


class _Corrector:
    """Same-length homophone replacement against the correction vocabulary.

    Works on whole words (the ASR's own words, or jieba's): a word that is not itself a known
    word (rare in jieba's dictionary) and whose characters' usual readings are readings of a
    vocabulary term's characters (toneless) is replaced by that term. Titles are replaced only
    where a title makes sense (next to a name, or after a unit and 的), so 市场 never becomes 市长
    but 的 主人 张三 becomes 的 主任 张三.
    """

    RARE = 5

    def __init__(self, vocab: Iterable[str]):
        self.vocab = frozenset(vocab)
        self.by_key: dict[tuple[int, str], list[str]] = {}
        for w in sorted(self.vocab, key=len, reverse=True):
            if len(w) < 2:
                continue
            for r in char_readings(w[0]):
                self.by_key.setdefault((len(w), r), []).append(w)

    def match(self, w: str) -> str | None:
        best, best_exact = None, -1
        for cand in self.by_key.get((len(w), _primary(w[0])), ()):
            exact = 0
            for a, b in zip(w, cand):
                pa = _primary(a)
                if pa not in char_readings(b):
                    break
                exact += pa == _primary(b)
            else:
                if exact > best_exact:
                    best, best_exact = cand, exact
        return best

    @staticmethod
    def _namey(w: str) -> bool:
        return 2 <= len(w) <= 4 and bool(re.fullmatch(r"[\u4e00-\u9fff]+", w)) and word_freq(w) < 5 and (
            w[0] in lexicon.SURNAMES_1 or w[:2] in lexicon.SURNAMES_2)

    def _title_context(self, s: str, toks: list[tuple[int, int]], k: int) -> bool:
        nxt = s[toks[k + 1][0]:toks[k + 1][1]] if k + 1 < len(toks) else ""
        prv = s[toks[k - 1][0]:toks[k - 1][1]] if k > 0 else ""
        if self._namey(nxt) or self._namey(prv):
            return True
        if prv in ("的", "得", "地") or any(prv.endswith(x) for x in lexicon.UNIT_SUFFIXES) and len(prv) >= 2:
            return bool(nxt)
        return False

    def correct(self, s: str, toks: list[tuple[int, int]]) -> tuple[str, list[tuple[int, int, str, str]]]:
        chars = list(s)
        fixes: list[tuple[int, int, str, str]] = []
        for k, (a, e) in enumerate(toks):
            w = s[a:e]
            if len(w) < 2 or len(w) > 6 or w in self.vocab or not HAN_RE.match(w[0]):
                continue
            rare = word_freq(w) < self.RARE
            cand = self.match(w)
            sub_a = a
            if cand is None and len(w) >= 3 and rare:
                # the word's tail may be the garbled term (a word glued to it by the recogniser)
                for ln in range(len(w) - 1, 1, -1):
                    c2 = self.match(w[-ln:])
                    if c2 and c2 not in lexicon.TITLE_SET and len(c2) >= 3:
                        cand, sub_a = c2, e - ln
                        break
            if cand is None or cand == s[sub_a:e]:
                continue
            if cand in lexicon.TITLE_SET:
                if not self._title_context(s, toks, k) and not (rare and len(cand) >= 3):
                    continue
            elif not rare:
                continue
            old = s[sub_a:e]
            chars[sub_a:e] = list(cand)
            fixes.append((sub_a, e, old, cand))
        out = "".join(chars)
        for bad, good in lexicon.NEAR_FIXES.items():
            out = out.replace(bad, good)
        return out, fixes


_corrector: _Corrector | None = None


def corrector() -> _Corrector:
    global _corrector
    if _corrector is None:
        _corrector = _Corrector(lexicon.CORRECTION_VOCAB)
    return _corrector


# --------------------------------------------------------------------------- document
@dataclass
class Doc:
    raw: str
    s: str
    pos: list[int]
    tokens: list[tuple[int, int]]
    speaker: list[str]  # per character of s
    mode: str  # "turns" / "text"
    greeting: tuple[int, int] | None = None
    fixes: list[tuple[int, int, str, str]] = field(default_factory=list)

    def raw_span(self, a: int, b: int) -> list[int]:
        if a >= b:
            return [self.pos[a] if a < len(self.pos) else len(self.raw)] * 2
        return [self.pos[a], self.pos[b - 1] + 1]

    def is_operator(self, i: int) -> bool:
        if self.greeting and self.greeting[0] <= i < self.greeting[1]:
            return True
        return 0 <= i < len(self.speaker) and self.speaker[i] == "operator"

    def caller_ranges(self) -> list[tuple[int, int]]:
        """Ranges of s spoken by the reporter (everything that is not operator/greeting)."""
        out: list[tuple[int, int]] = []
        start = None
        for i in range(len(self.s) + 1):
            ok = i < len(self.s) and not self.is_operator(i)
            if ok and start is None:
                start = i
            elif not ok and start is not None:
                out.append((start, i))
                start = None
        return out

    def caller_text(self) -> str:
        return "".join(self.s[a:b] if b - a else "" for a, b in self.caller_ranges())

    @property
    def bounds(self) -> set[int]:
        b: set[int] = set()
        for a, e in self.tokens:
            b.add(a)
            b.add(e)
        return b

    def token_at(self, i: int) -> tuple[int, int] | None:
        for a, e in self.tokens:
            if a <= i < e:
                return (a, e)
        return None


_GREETING_CUES = ("纪委", "监委", "举报电话", "12388", "一二三八八")
_GREETING_END = re.compile(r"(请问您?(要|有)?(反映|反应)?什么(问题|事情|事)|录音|请讲|请问)")


def _detect_greeting(s: str) -> tuple[int, int] | None:
    head = s[:80]
    if not any(c in head for c in _GREETING_CUES):
        return None
    if not re.match(r"^(您好|你好|喂)?(这里是)?", s):
        return None
    if not (head.startswith("您好") or head.startswith("这里是") or "这里是" in head[:10]):
        return None
    end = None
    for m in _GREETING_END.finditer(s[:90]):
        end = m.end()
        if m.group(0).startswith("请问") and "什么" in m.group(0):
            break
    if end is None:
        m = re.search("|".join(_GREETING_CUES), head)
        end = m.end() if m else 0
    return (0, end)


def _compact(text: str, keep_space_bounds: bool) -> tuple[str, list[int], list[tuple[int, int]]]:
    out: list[str] = []
    pos: list[int] = []
    tokens: list[tuple[int, int]] = []
    start = None
    for i, ch in enumerate(text):
        if ch.isspace() and ch != "\n":
            if start is not None:
                tokens.append((start, len(out)))
                start = None
            continue
        if ch in PUNCT:
            if start is not None:
                tokens.append((start, len(out)))
                start = None
            out.append(ch)
            pos.append(i)
            continue
        if start is None:
            start = len(out)
        out.append(ch)
        pos.append(i)
    if start is not None:
        tokens.append((start, len(out)))
    return "".join(out), pos, tokens


def _jieba_tokens(s: str) -> list[tuple[int, int]]:
    tk = get_jieba()
    toks: list[tuple[int, int]] = []
    for w, a, e in tk.tokenize(s, HMM=True):
        if s[a:e].strip() and not all(c in PUNCT for c in s[a:e]):
            toks.append((a, e))
    return toks


def _is_asr_spaced(text: str) -> bool:
    """Vosk output: Chinese words separated by spaces, no punctuation."""
    return bool(re.search(r"[\u4e00-\u9fff] +[\u4e00-\u9fff]", text))


def _check_text(text: Any, what: str) -> str:
    if not isinstance(text, str):
        raise DraftInputError(f"{what}: expected text, got {type(text).__name__}")
    if len(text) > MAX_INPUT_CHARS:
        raise DraftInputError(f"{what}: too long ({len(text)} characters; the limit is {MAX_INPUT_CHARS})")
    return text


def build_doc(text: str | None = None, turns: list[dict] | None = None) -> Doc:
    if turns is not None:
        return _doc_from_turns(turns)
    text = _check_text(text, "text")
    if "\x00" in text:
        raise DraftInputError("text contains NUL characters (binary data?)")
    if not HAN_RE.search(text) and not re.search(r"\w", text):
        raise DraftInputError("text is empty")
    if not text.strip():
        raise DraftInputError("text is empty")
    spaced = _is_asr_spaced(text)
    s, pos, tokens = _compact(text, keep_space_bounds=spaced)
    if not spaced:
        tokens = _jieba_tokens(s)
    fixed, fixes = corrector().correct(s, tokens)
    if not spaced and fixes:
        tokens = _jieba_tokens(fixed)
    doc = Doc(raw=text, s=fixed, pos=pos, tokens=tokens, speaker=["unknown"] * len(fixed), mode="text", fixes=fixes)
    doc.greeting = _detect_greeting(fixed)
    return doc


def _doc_from_turns(turns: Any) -> Doc:
    if not isinstance(turns, list):
        raise DraftInputError("turns: expected a list of {speaker, text} objects")
    if not turns:
        raise DraftInputError("turns: empty")
    parts: list[str] = []
    speakers: list[str] = []
    total = 0
    for k, t in enumerate(turns):
        if not isinstance(t, dict):
            raise DraftInputError(f"turns[{k}]: expected an object with speaker and text")
        sp = t.get("speaker")
        if sp not in SPEAKERS:
            raise DraftInputError(f"turns[{k}]: unknown speaker {sp!r} (expected one of: {', '.join(SPEAKERS)})")
        tx = _check_text(t.get("text", ""), f"turns[{k}].text")
        total += len(tx) + 1
        if total > MAX_INPUT_CHARS:
            raise DraftInputError(f"turns: too long (over {MAX_INPUT_CHARS} characters in all)")
        parts.append(tx.replace("\n", " "))
        speakers.append("caller" if sp == "voicemail" else sp)
    raw = "\n".join(parts)
    if not raw.strip():
        raise DraftInputError("turns: all texts are empty")
    s_parts: list[str] = []
    pos: list[int] = []
    spk: list[str] = []
    tokens: list[tuple[int, int]] = []
    fixes: list[tuple[int, int, str, str]] = []
    off_raw = 0
    for k, (tx, sp) in enumerate(zip(parts, speakers)):
        spaced = _is_asr_spaced(tx)
        s, p, toks = _compact(tx, keep_space_bounds=spaced)
        base = sum(len(x) for x in s_parts)
        if not spaced:
            toks = _jieba_tokens(s)
        fixed, fx = corrector().correct(s, toks)
        if not spaced and fx:
            toks = _jieba_tokens(fixed)
        s_parts.append(fixed)
        pos.extend(off_raw + q for q in p)
        spk.extend([sp] * len(fixed))
        tokens.extend((a + base, e + base) for a, e in toks)
        fixes.extend((a + base, e + base, x, y) for a, e, x, y in fx)
        off_raw += len(tx)
        if k < len(parts) - 1:
            s_parts.append("\n")
            pos.append(off_raw)
            spk.append(sp)
            off_raw += 1
    return Doc(raw=raw, s="".join(s_parts), pos=pos, tokens=tokens, speaker=spk, mode="turns", fixes=fixes)
