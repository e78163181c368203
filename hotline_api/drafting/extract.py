"""Extractors for places, person names, the reporter and the reported subjects.

All positions are indices into ``Doc.s``. Rules are general: titles, unit/place suffixes,
surnames and cue words, never particular names.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from hotline_api.drafting import lexicon as L
from hotline_api.drafting import selfname
from hotline_api.drafting.text import PUNCT, Doc, word_freq, word_tag

HAN = re.compile(r"^[\u4e00-\u9fff]+$")
_TITLES_BY_LEN = sorted(L.TITLES, key=len, reverse=True)
_UNIT_SUFFIXES = sorted(L.UNIT_SUFFIXES, key=len, reverse=True)
_PLACE_SUFFIXES = sorted(L.PLACE_SUFFIXES, key=len, reverse=True)
_DE = frozenset({"的", "得", "地"})
# Title -> unit suffixes it belongs to (used when no unit is said next to the title).
TITLE_UNIT = [
    (("校长", "副校长", "老师", "班主任", "教师"), ("中学", "小学", "学校", "校", "幼儿园")),
    (("院长", "副院长", "医生", "护士长"), ("医院", "卫生院", "院")),
    (("局长", "副局长"), ("局",)), (("所长", "副所长"), ("所",)), (("站长", "副站长"), ("站",)),
    (("股长", "副股长"), ("股",)), (("科长", "副科长"), ("科",)), (("厂长", "副厂长"), ("厂",)),
    (("经理", "总经理", "副经理", "董事长"), ("公司", "集团")), (("行长", "副行长"), ("银行", "信用社")),
    (("队长", "大队长", "中队长", "副大队长", "副中队长", "副队长", "城管队员", "执法队员"), ("队",)),
    (("民警", "辅警", "协警", "警察", "教导员"), ("派出所", "公安局", "大队")),
    (("交警",), ("大队", "交警队")),
    (("镇长", "副镇长"), ("镇",)), (("乡长", "副乡长"), ("乡",)),
    (("人大主席", "人大副主席", "党委书记", "纪委书记"), ("乡", "镇")),
    (("县长", "副县长", "县委书记"), ("县",)),
    (("工作人员", "窗口工作人员", "主任", "副主任"), ("中心", "办", "站", "所", "局", "委", "院", "处", "科", "股")),
]
_TITLE_UNIT = {t: sfx for ts, sfx in TITLE_UNIT for t in ts}
# Organisation words without a name part: no unit on their own.
BARE_UNITS = frozenset({"学校", "公司", "单位", "中学", "小学", "医院", "政府", "派出所", "中心", "大队", "中队", "银行",
                        "工厂", "厂里", "局里", "所里", "站里", "院里", "部门", "机关", "乡政府", "镇政府", "县政府", "村委会"})
PERSON_NOUNS = frozenset({"孩子", "儿子", "女儿", "老公", "老婆", "家里", "我家", "他家", "人家", "自己", "别人", "大家",
                          "老人", "学生", "家长", "亲戚", "朋友", "今年", "去年", "现在", "以前", "那个", "这个"})
# Occupations that need a name to be a subject (plural/generic use otherwise).
NEEDS_NAME = frozenset({"交警", "民警", "辅警", "协警", "警察", "医生", "老师", "教师", "工作人员", "窗口工作人员",
                        "城管队员", "执法队员", "护士长", "干部", "主席", "会计", "出纳"})


@dataclass
class Span:
    text: str
    start: int
    end: int


@dataclass
class Subject:
    name: str = ""
    title: str = ""
    unit: str = ""
    spans: list[tuple[int, int]] = field(default_factory=list)
    confidence: float = 0.5

    def as_dict(self) -> dict:
        return {"name": self.name, "title": self.title, "unit": self.unit}


# --------------------------------------------------------------------------- helpers
def _is_han(s: str) -> bool:
    return bool(s) and bool(HAN.match(s))


def _spaced(doc: Doc) -> bool:
    return doc.mode == "text" and " " in doc.raw


def _token_starting(doc: Doc, i: int) -> tuple[int, int] | None:
    for a, e in doc.tokens:
        if a == i:
            return (a, e)
        if a > i:
            break
    return None


def _token_ending(doc: Doc, j: int) -> tuple[int, int] | None:
    for a, e in doc.tokens:
        if e == j:
            return (a, e)
    return None


def _tokens_before(doc: Doc, j: int) -> list[tuple[int, int]]:
    return [t for t in doc.tokens if t[1] <= j]


def title_at(s: str, i: int) -> str | None:
    for t in _TITLES_BY_LEN:
        if s.startswith(t, i):
            return t
    return None


def _looks_like_name(name: str, strong: bool) -> bool:
    if not (2 <= len(name) <= 4) or not _is_han(name):
        return False
    if name in L.TITLE_SET or name in L.GENERIC_OFFICIALS or name in L.GENERIC_PLACE_WORDS:
        return False
    if any(name.endswith(x) for x in L.PLACE_SUFFIXES) and len(name) >= 3 and name[-1] in "县镇乡村":
        return False
    if any(name.startswith(t) or name.endswith(t) for t in ("局长", "主任", "书记", "镇长", "乡长", "村长", "校长")):
        return False
    if any(c in "的了是在我你他她们这那个和跟吗呢吧啊呀嘛" for c in name):
        return False
    freq = word_freq(name)
    sur = name[0] in L.SURNAMES_1 or name[:2] in L.SURNAMES_2
    if sur and len(name) >= 3 and word_tag(name).startswith("nr"):
        return True  # a person name jieba knows (public figures share names with others)
    if len(name) == 2:
        # two-character names collide with ordinary words; require a surname and a rare word
        return sur and freq < 20
    if freq > 200:
        return False
    if freq > 3 and not sur:
        return False
    return sur or strong


def name_after(doc: Doc, i: int, strong: bool = False) -> Span | None:
    """A person name starting at i."""
    s = doc.s
    if i >= len(s):
        return None
    if _spaced(doc):
        tok = _token_starting(doc, i)
        if tok:
            w = s[tok[0]:tok[1]]
            if 2 <= len(w) <= 3 and _looks_like_name(w, strong):
                return Span(w, tok[0], tok[1])
            if len(w) >= 4 and title_at(w, 3) is None and title_at(w, 2) and _looks_like_name(w[:2], strong):
                return Span(w[:2], tok[0], tok[0] + 2)
            if len(w) <= 3:
                return None  # an ordinary word, not a name glued to something
    # character based (turns text, or ASR tokens that glue a name to the next word)
    if s[i] in PUNCT:
        return None
    sur_len = 2 if s[i:i + 2] in L.SURNAMES_2 else 1
    cands = []
    for ln in (3, 2) if sur_len == 1 else (4, 3):
        w = s[i:i + ln]
        if len(w) < ln or not _is_han(w):
            continue
        if any(c in L.NAME_STOP_CHARS - set("长主任书记员") for c in w[1:]):
            continue
        if title_at(s, i + ln - 1) and ln == 3:
            continue
        cands.append(w)
    strong = False  # character-based guesses need a surname
    for w in cands:
        # prefer the 3-character reading unless its last character starts a word
        if len(w) == 3 + sur_len - 1 and i + len(w) < len(s):
            rest2 = s[i + len(w) - 1:i + len(w) + 1]
            if word_freq(rest2) > 5000 and rest2 not in L.TITLE_SET:
                continue
        if _looks_like_name(w, strong):
            return Span(w, i, i + len(w))
    return None


def name_before(doc: Doc, j: int, strong: bool = True) -> Span | None:
    """A person name ending at j (e.g. NAME 局长)."""
    s = doc.s
    if _spaced(doc):
        tok = _token_ending(doc, j)
        if tok:
            w = s[tok[0]:tok[1]]
            if _looks_like_name(w, strong) and not _unit_like(w):
                return Span(w, tok[0], tok[1])
        return None
    for ln in (3, 2):
        a = j - ln
        if a < 0:
            continue
        w = s[a:j]
        if not _is_han(w) or w[0] not in L.SURNAMES_1:
            continue
        left = s[a - 1] if a > 0 else "，"
        if ln == 3 and not (left in PUNCT or left in L.LEFT_STOP_CHARS or left in "局委办所站院校村镇乡县股科队长"):
            continue
        if _looks_like_name(w, strong) and not _unit_like(w):
            return Span(w, a, j)
    return None


def _unit_like(w: str) -> bool:
    return any(w.endswith(x) for x in _UNIT_SUFFIXES) or any(w.endswith(x) for x in _PLACE_SUFFIXES)


# --------------------------------------------------------------------------- places
@dataclass
class Place:
    text: str
    start: int
    end: int
    level: int


def _place_of(w: str) -> tuple[str, int] | None:
    for sfx in _PLACE_SUFFIXES:
        if w.endswith(sfx) and len(w) - len(sfx) >= 2:
            prefix = w[: -len(sfx)]
            if w in L.GENERIC_PLACE_WORDS or not _is_han(w):
                return None
            if any(prefix.startswith(g) for g in ("我们", "你们", "他们", "这个", "那个", "哪个", "每个", "一个", "整个", "隔壁")):
                return None
            if any(c in "的了是在和跟把被给" for c in prefix):
                return None
            if sfx in ("市", "区", "社区", "街道") and word_freq(w) > 0:
                return None
            if word_freq(w) > 2000:
                return None
            return sfx, L.PLACE_LEVEL[sfx]
    return None


def _char_places(doc: Doc) -> list[Place]:
    """Places in unsegmented text: 2-3 characters before 县/镇/乡/村 with a clean left edge."""
    s = doc.s
    out: list[Place] = []
    last_end = -1
    for m in re.finditer("县|镇|乡|村", s):
        k = m.start()
        if title_at(s, k) or s[k - 1:k + 1] in L.GENERIC_PLACE_WORDS or s[k:k + 2] in L.GENERIC_PLACE_WORDS:
            continue
        for ln in (3, 2):
            a = k - ln
            if a < 0 or a < last_end:
                continue
            pre = s[a:k]
            if not _is_han(pre) or any(c in L.LEFT_STOP_CHARS or c in "县镇乡村市区省副正管" for c in pre):
                continue
            left = s[a - 1] if a > 0 else "，"
            if ln == 3 and not (a == last_end or left in PUNCT or left in L.LEFT_STOP_CHARS or left in "县镇乡村市区省"):
                continue
            if word_tag(pre)[:1] in ("v", "d", "p", "r", "m", "q", "u", "c", "a", "t") or pre in L.VERBISH:
                continue
            if word_tag(pre[-2:])[:1] in ("v", "d", "p", "r", "u", "c"):
                continue
            pl = _place_of(s[a:k + 1])
            if pl:
                out.append(Place(s[a:k + 1], a, k + 1, pl[1]))
                last_end = k + 1
                break
    return out


def _retokenize(doc: Doc, places: list[Place]) -> None:
    """Make every place one token (jieba splits unknown place names unpredictably)."""
    toks: list[tuple[int, int]] = []
    for a, e in doc.tokens:
        inside = [p for p in places if p.start < e and a < p.end]
        if not inside:
            toks.append((a, e))
            continue
        cur = a
        for p in sorted(inside, key=lambda p: p.start):
            if p.start > cur:
                toks.append((cur, p.start))
            toks.append((max(p.start, a), p.end) if p.start >= a else (p.start, p.end))
            cur = max(cur, p.end)
        if cur < e:
            toks.append((cur, e))
    seen = set()
    doc.tokens = sorted({t for t in toks if t[0] < t[1] and not (t in seen or seen.add(t))})
    # drop tokens covered by a longer one
    out: list[tuple[int, int]] = []
    for t in doc.tokens:
        if out and t[0] < out[-1][1]:
            if t[1] - t[0] > out[-1][1] - out[-1][0]:
                out[-1] = t
            continue
        out.append(t)
    doc.tokens = out


def find_places(doc: Doc) -> list[Place]:
    if not _spaced(doc):
        places = _char_places(doc)
        _retokenize(doc, places)
        seen: set[str] = set()
        return [p for p in places if not (p.text in seen or seen.add(p.text))]
    return _token_places(doc)


def _token_places(doc: Doc) -> list[Place]:
    """County / town / village names: a token ending in a place suffix, or a name token followed
    by a bare suffix token (某某 乡). A token holding two places (XX镇YY村) is split."""
    s = doc.s
    out: list[Place] = []
    toks = doc.tokens
    k = 0
    while k < len(toks):
        a, e = toks[k]
        w = s[a:e]
        # bare suffix token glued to the previous word
        if k + 1 < len(toks) and toks[k + 1][0] == e and s[toks[k + 1][0]:toks[k + 1][1]] in ("县", "镇", "乡", "村", "市", "区"):
            nxt = toks[k + 1]
            cand = s[a:nxt[1]]
            if 2 <= len(w) <= 4 and w not in L.VERBISH and word_freq(w) < 3000 and _place_of(cand) \
                    and word_tag(w)[:1] not in ("v", "d", "p", "r", "m", "q", "u", "c", "a"):
                sfx, lvl = _place_of(cand)
                out.append(Place(cand, a, nxt[1], lvl))
                k += 2
                continue
        # split compound tokens at inner place suffixes (XX镇YY村)
        start = a
        for m in re.finditer("县|镇|乡|村", w):
            sub = s[start:a + m.end()]
            if a + m.end() == e or (a + m.end() - start >= 3):
                pl = _place_of(sub)
                if pl:
                    out.append(Place(sub, start, a + m.end(), pl[1]))
                    start = a + m.end()
        k += 1
    # de-duplicate, keep first occurrence
    seen: set[str] = set()
    uniq: list[Place] = []
    for p in out:
        if p.text not in seen:
            seen.add(p.text)
            uniq.append(p)
    return uniq


# --------------------------------------------------------------------------- units
def unit_before(doc: Doc, j: int, limit: int = 14) -> Span | None:
    """The organisation said right before position j (skipping 的): contiguous unit/place tokens."""
    s = doc.s
    toks = [t for t in doc.tokens if t[1] <= j]
    k = len(toks) - 1
    # skip a 的 between unit and title
    while k >= 0 and s[toks[k][0]:toks[k][1]] in _DE and toks[k][1] >= j - 1:
        j = toks[k][0]
        k -= 1
    parts: list[tuple[int, int]] = []
    while k >= 0:
        a, e = toks[k]
        if e != j and not (parts and e == parts[-1][0]):
            if not parts and e != j:
                break
        w = s[a:e]
        if j - a > limit + 6:
            break
        if len(w) == 1 and w in "县镇乡村" and parts:
            parts.append((a, e))  # 县医院 / 乡政府: a level prefix ends the unit
            break
        if _unit_like(w) and w not in L.GENERIC_PLACE_WORDS and (len(w) > 1 or w not in "县镇乡村市区"):
            parts.append((a, e))
            j = a
            k -= 1
            continue
        # a name word followed by a bare suffix token (某某 派出所 / 某某 中队 / 某某 中心)
        if parts and s[parts[-1][0]:parts[-1][1]] in L.UNIT_SUFFIXES + L.PLACE_SUFFIXES + ("派出所", "中队", "大队", "中心", "中学", "小学"):
            if _is_han(w) and w not in L.VERBISH and w not in L.GENERIC_PLACE_WORDS and 2 <= len(w) <= 4 \
                    and not any(c in "的了是在我你他她们这那个" for c in w) \
                    and (w.startswith("第") or not any(c in "一二两三四五六七八九十百千万" for c in w)) \
                    and w not in PERSON_NOUNS and word_freq(w) < 20000 \
                    and word_tag(w)[:1] not in ("d", "p", "r", "m", "q", "u", "c", "t"):
                parts.append((a, e))
                j = a
                k -= 1
                continue
        break
    if not parts:
        return None
    a, e = parts[-1][0], parts[0][1]
    text = s[a:e]
    # a bare place suffix is no unit (我们 村 的 ...)
    if len(text) <= 1 or text in L.GENERIC_PLACE_WORDS or text in BARE_UNITS:
        return None
    return Span(text, a, e)


def _bare_unit_before(doc: Doc, j: int) -> Span | None:
    """Last resort: an unnamed organisation right before the title (镇上的派出所所长 -> 派出所)."""
    s = doc.s
    toks = [t for t in doc.tokens if t[1] <= j]
    while toks and s[toks[-1][0]:toks[-1][1]] in _DE:
        toks.pop()
    if toks:
        a, e = toks[-1]
        w = s[a:e]
        if w in BARE_UNITS and e >= j - 2:
            return Span(w, a, e)
    return None


def _nearest_unit(doc: Doc, title: str, pos: int, places: list[Place], ranges: list[tuple[int, int]]) -> Span | None:
    """A unit of the kind the title belongs to, said before (or else after) the title."""
    sfx = _TITLE_UNIT.get(title)
    if title in L.VILLAGE_TITLES or title in ("村书记", "村支书", "村主任"):
        sfx = ("村",)
    if not sfx:
        return None
    best: Span | None = None
    best_d = 10 ** 9
    for p in places:
        if p.text.endswith(sfx):
            d = pos - p.end if p.end <= pos else (p.start - pos) * 3 + 200
            if d < best_d:
                best, best_d = Span(p.text, p.start, p.end), d
    for a, e in doc.tokens:
        w = doc.s[a:e]
        if not any(x <= a < y for x, y in ranges):
            continue
        if _unit_like(w) and w.endswith(sfx) and w not in L.GENERIC_PLACE_WORDS and len(w) >= 2 \
                and w[0] not in "全本该各我这那每":
            u = unit_before(doc, e) or Span(w, a, e)
            if u.text in L.GENERIC_PLACE_WORDS or len(u.text) < 2 or u.text in L.UNIT_SUFFIXES or u.text in BARE_UNITS:
                continue
            d = pos - u.end if u.end <= pos else (u.start - pos) * 3 + 200
            if d < best_d:
                best, best_d = u, d
    return best


# --------------------------------------------------------------------------- reporter
_REPORTER_PATTERNS = [
    re.compile(r"我(的名字)?叫"),
    re.compile(r"我的?名字(是|叫)"),
    re.compile(r"我[是事][^，。！？]{0,16}?的[，,]?叫"),
    re.compile(r"(本人|我)姓名?[是叫]?"),
]


def find_reporter(doc: Doc, ranges: list[tuple[int, int]]) -> Span | None:
    s = doc.s
    for a, b in ranges:
        seg = s[a:b]
        for pat in _REPORTER_PATTERNS:
            for m in pat.finditer(seg):
                i = a + m.end()
                if pat.pattern.startswith("(本人|我)姓"):
                    # 我姓X，X某某 / 我姓X 叫X某某
                    if i < len(s) and s[i] in L.SURNAMES_1:
                        sur = s[i]
                        k = i + 1
                        while k < len(s) and (s[k] in PUNCT or s[k] in "叫是"):
                            k += 1
                        if k < len(s) and s[k] == sur:
                            sp = name_after(doc, k, strong=True)
                            if sp:
                                return sp
                    continue
                sp = name_after(doc, i, strong=True)
                if sp:
                    return sp
        # 我是<place/unit>的<name>
        for m in re.finditer(r"我[是事]", seg):
            k = a + m.end()
            stop = min(b, k + 20)
            j = s.find("的", k, stop)
            while j != -1:
                sp = name_after(doc, j + 1, strong=False)
                mid = s[k:j]
                if sp and (any(mid.endswith(x) for x in _UNIT_SUFFIXES + _PLACE_SUFFIXES)):
                    return sp
                j = s.find("的", j + 1, stop)
    # 我是王小明 / 本人王小明 / 自称王小明 / 我姓王，叫王小明: the rules identity masking uses
    # (drafting.selfname), with the name shape required whatever the cue
    for a, b in ranges:
        for sn in selfname.find_self_names(s, a, b):
            n = selfname.weak_name_len(s, sn.start)
            if sn.keep and n >= 2 and sn.start + n <= b:
                return Span(s[sn.start:sn.start + n], sn.start, sn.start + n)
    return None


# --------------------------------------------------------------------------- subjects
_OTHER_NAME_CUES = re.compile(r"(名叫|叫做|叫|写的是|姓名是|名字是)")


def find_subjects(doc: Doc, places: list[Place], reporter: Span | None,
                  ranges: list[tuple[int, int]]) -> list[Subject]:
    s = doc.s
    subs: list[Subject] = []
    i = 0
    rep = reporter.text if reporter else None
    while i < len(s):
        t = title_at(s, i)
        if not t:
            i += 1
            continue
        a, e = i, i + len(t)
        i = e
        if not any(x <= a < y for x, y in ranges):
            continue
        # title inside a longer word (书记员 handled by longest match; 主任 in 主任务 etc.)
        if t in ("主席", "书记", "主任") and a > 0 and s[a - 1] in "副":
            continue
        title = t
        # 我们村的书记 -> 村书记
        if t in L.LEVEL_PREFIXED:
            back = s[max(0, a - 3):a]
            for lvl, full in L.LEVEL_PREFIXED[t].items():
                if back.endswith(lvl) or back.endswith(lvl + "的") or back.endswith(lvl + "得"):
                    title = full
        if title in L.GENERIC_OFFICIALS and t != "工作人员":
            continue
        spans = [(a, e)]
        name = name_after(doc, e, strong=True)
        unit = None
        if name is None:
            nb = name_before(doc, a)
            if nb and not (rep and nb.text == rep):
                name = nb
                unit = unit_before(doc, nb.start)
        if name is not None and rep and name.text == rep:
            name = None
        if unit is None:
            unit = unit_before(doc, a)
        # relational: 叫NAME，是UNIT的TITLE
        if name is None:
            back = s[max(0, a - 24):a]
            m = None
            for m in re.finditer(r"(叫|是|老公|老婆|丈夫|妻子|爱人)", back):
                pass
            for mm in re.finditer(r"(叫|老公|老婆|丈夫|妻子|爱人)", back):
                cand = name_after(doc, max(0, a - 24) + mm.end(), strong=True)
                if cand and not (rep and cand.text == rep) and cand.end <= a:
                    between = s[cand.end:a]
                    if len(between) <= 16 and not title_at(between, 0):
                        name = cand
        # name said later: 牌子上写的是NAME / 那个人叫NAME
        if name is None:
            fwd = s[e:e + 60]
            for mm in _OTHER_NAME_CUES.finditer(fwd):
                if fwd[max(0, mm.start() - 1):mm.start()] in ("我",):
                    continue
                cand = name_after(doc, e + mm.end(), strong=True)
                if cand and not (rep and cand.text == rep) and not title_at(s, cand.end):
                    name = cand
                    break
        if unit is None or unit.text in L.GENERIC_PLACE_WORDS:
            unit = _nearest_unit(doc, title, a, places, ranges)
        if unit is None:
            unit = _bare_unit_before(doc, name.start if name and name.end <= a else a)
        if name is None and title in NEEDS_NAME:
            continue
        if name:
            spans.append((name.start, name.end))
        if unit:
            spans.append((unit.start, unit.end))
        subs.append(Subject(name=name.text if name else "", title=title, unit=unit.text if unit else "",
                            spans=spans, confidence=0.8 if name else 0.5))
    return _merge_subjects(subs)


def _merge_subjects(subs: list[Subject]) -> list[Subject]:
    from pypinyin import lazy_pinyin

    out: list[Subject] = []
    for sj in subs:
        same = None
        for o in out:
            if sj.name and o.name and lazy_pinyin(sj.name) == lazy_pinyin(o.name):
                same = o
                break
        if same is None and not sj.name:
            for o in out:
                if o.title == sj.title or (o.title.endswith(sj.title) or sj.title.endswith(o.title)):
                    same = o
                    break
        if same is None and sj.name:
            for o in out:
                if not o.name and (o.title == sj.title):
                    same = o
                    same.name = sj.name
                    break
        if same is None:
            out.append(sj)
            continue
        same.spans.extend(sj.spans)
        if not same.unit and sj.unit:
            same.unit = sj.unit
        elif sj.unit and len(sj.unit) > len(same.unit) and same.unit in sj.unit:
            same.unit = sj.unit
        if len(sj.title) > len(same.title) and same.title in sj.title:
            same.title = sj.title
        same.confidence = max(same.confidence, sj.confidence)
    return out
