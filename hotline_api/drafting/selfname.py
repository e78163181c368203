"""Names a speaker gives for themselves: 我叫…, 我的名字是…, 我姓王，叫王…, 我是…, 本人…, 自称….

Shared by drafting (the reporter's name) and identity masking (``services.masking``), so what the
draft records as the reporter is what the masking hides. Works on text without whitespace (callers
strip it and map positions back).

Two kinds of cue:

* strong (我叫, 我的名字是/叫, 姓名是, 名字叫, 本人叫, 我姓X叫…): whatever 2-3 Chinese characters follow
  (4 with a compound surname) are a name;
* weak (我是, 本人, 自称, 举报人是): the words after them are usually not a name (我是群众, 我是一名教师,
  我是县林业局的干部), so a name must look like one: a surname from the lexicon and one or two
  given-name characters, no title right after the surname (王局长), no place or unit suffix after
  it (王庄镇, 李庄村), and not an ordinary word of jieba's dictionary (党员, 高中生, 安全员, 今年).
  ``我是<unit/place>的<name>`` is a weak cue for the name after 的.

Rules are general (cue words, surnames, suffixes, dictionary frequencies), never particular names.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from hotline_api.drafting import lexicon as L

_CJK = re.compile(r"[\u4e00-\u9fff]")
# Characters that end a name right after a strong cue (particles, pronouns, verbs of the sentence).
_STRONG_STOP = frozenset("的地得了着过是在和跟与就都也还又很不没有要想会能你我他她它们这那个吗呢吧啊呀嘛哦嗯喂说")
# ... and after a weak cue: the drafting lexicon's stop characters (units, places, particles) except the
# title characters that are also common in given names (长, 主, 任, 书, 记, 员).
_WEAK_STOP = L.NAME_STOP_CHARS - set("长主任书记员一")
# A name is not followed by a place or unit suffix (王庄镇, 李庄村, 卫健委): the word is a place/unit.
_PLACE_AFTER = frozenset("村镇乡县市区省州庄屯寨营湾族籍人")
_PLACE_LAST = frozenset("庄村屯寨营湾铺堡族")
# Single-character unit suffixes that also start ordinary verbs after a name (办理, 处理, 部分, 场合).
_UNIT_AFTER = tuple(sorted((u for u in L.UNIT_SUFFIXES + L.PLACE_SUFFIXES if u not in ("办", "处", "部", "场")),
                           key=len, reverse=True))
# Last characters of words for kinds of people (高中生, 明白人, 管理员, 万元户, 江西人).
_ROLE_LAST = frozenset("生员人户工匠师头民者士手官家")
# Parts of speech a given name never is (time words, adverbs, prepositions, pronouns, numerals ...).
_NOT_GIVEN_TAGS = ("t", "d", "p", "c", "r", "m", "u", "q", "f")
_TITLES_BY_LEN = sorted(L.TITLES + ("老师", "师傅", "同志", "先生", "女士", "小姐", "大哥", "大姐", "师父", "总"),
                        key=len, reverse=True)
_PUNCT = frozenset("，。、！？；：,.!?;:…—\"'“”‘’（）()《》【】[]\n·~～*")

_STRONG = re.compile(
    r"我的?名字(?:叫做|叫|是)|我名叫|我叫做|我叫|本人(?:的?姓名|名字)(?:是|叫|[:：])?|本人叫|"
    r"姓名(?:是|叫|[:：])|名字叫"
)
_SURNAME_CUE = re.compile(r"(?:我|本人)姓(?!名)")
_AFTER_SURNAME = re.compile(r"[，,、]?(?:名字叫|名字是|名叫|叫做|叫|名)")
_WEAK = re.compile(r"(?:我就是|我是|我事|本人是|本人|自称是|自称叫|自称|(?:举报人|来电人|反映人)(?:是|叫))")


@dataclass(frozen=True)
class SelfName:
    start: int
    end: int
    #: characters kept visible when masked: the surname (1 or 2), or 0 when only a given name was said
    keep: int
    strong: bool


def _is_han(c: str) -> bool:
    return bool(c) and bool(_CJK.match(c))


def _surname_len(s: str, i: int) -> int:
    if s[i:i + 2] in L.SURNAMES_2:
        return 2
    return 1 if s[i:i + 1] in L.SURNAMES_1 else 0


def _title_at(s: str, i: int) -> bool:
    return any(s.startswith(t, i) for t in _TITLES_BY_LEN)


def _ordinary(tag: str) -> bool:
    """A part of speech of ordinary words (nouns, verbs, adjectives ...), not of names or places."""
    return bool(tag) and tag[:1] in ("n", "a", "v", "d", "t", "b", "l", "i") and not tag.startswith(("nr", "ns"))


def _cut_at(s: str, i: int, n: int) -> bool:
    """Does jieba (with HMM) cut ``s`` from i after exactly n characters?"""
    from hotline_api.drafting.text import get_jieba

    pos = i
    for w in get_jieba().cut(s[i:i + n + 4], HMM=True):
        pos += len(w)
        if pos >= i + n:
            return pos == i + n
    return False


def _jieba():
    from hotline_api.drafting.text import word_freq, word_tag

    return word_freq, word_tag


# --------------------------------------------------------------------------------- strong cues
def _strong_name(s: str, i: int, surname: str = "") -> SelfName | None:
    """A name of 2-3 characters (4 with a compound surname) at i, after a strong cue. With
    ``surname`` (我姓王，叫…) a name not starting with it is a given name: nothing of it is kept."""
    if i >= len(s) or not _is_han(s[i]) or s[i] in _STRONG_STOP:
        return None
    sur = _surname_len(s, i)
    if surname:
        sur = len(surname) if s.startswith(surname, i) else 0
    limit = (sur or 1) + 2
    j = i
    while j < len(s) and j - i < limit and _is_han(s[j]) and (j == i or s[j] not in _STRONG_STOP):
        j += 1
    if surname and sur == 0:
        j = min(j, i + 2)  # a given name: one or two characters
    elif j - i < 2:
        return None
    return SelfName(i, j, sur if sur < j - i else 0, True)


# ----------------------------------------------------------------------------------- weak cues
# After 一 these make a numeral or a measure (一个, 一名, 一直, 一九九零), not a given name (钟一鸣).
_AFTER_YI = frozenset("个名位次下些点直般定切样起共同边面九八七六五四三二零〇十百千万两")


def _given_char(s: str, k: int) -> bool:
    if k >= len(s) or not _is_han(s[k]) or s[k] in _WEAK_STOP:
        return False
    if s[k] == "一":  # only inside a name: 一 and one more given character
        nxt = s[k + 1:k + 2]
        return _is_han(nxt) and nxt not in _WEAK_STOP and nxt not in _AFTER_YI
    return True


def weak_name_len(s: str, i: int) -> int:
    """Length of a person name at i that looks like one (see the module doc), else 0."""
    if i >= len(s):
        return 0
    sur = _surname_len(s, i)
    if not sur or _title_at(s, i + sur):
        return 0
    g = 0
    while g < 2 and _given_char(s, i + sur + g):
        g += 1
    if g == 0:
        return 0
    word_freq, word_tag = _jieba()
    for gl in range(g, 0, -1):
        n = sur + gl
        w = s[i:i + n]
        after = s[i + n:i + n + 1]
        if after in _PLACE_AFTER or w[-1] in _PLACE_LAST or s.startswith(_UNIT_AFTER, i + n):
            continue
        if after == "的":
            return 0  # 我是王小明的邻居: someone else's name (maybe the person reported), not the speaker's
        if any(word_freq(s[i:i + k]) > 0 and not word_tag(s[i:i + k]).startswith("nr")
               for k in range(n + 1, min(n + 2, len(s) - i) + 1)):
            continue  # a dictionary word runs past the name (党员干部, 任课老师, 常住人口)
        f, tag = word_freq(w), word_tag(w)
        given = w[sur:]
        if n == 2:
            # two characters collide with ordinary words: rare words only, or a known name said alone
            boundary = not after or after in _PUNCT
            if f < 20 or (tag.startswith("nr") and f <= 500 and boundary):
                return n
            continue
        if tag and not tag.startswith("nr"):
            continue  # an ordinary word (管理员, 包工头, 万元户)
        pre, pf = w[:sur + 1], word_freq(w[:sur + 1])
        if w[-1] in _ROLE_LAST and pf > 50:
            continue  # 高中生, 明白人, 江西人
        if word_tag(given)[:1] in _NOT_GIVEN_TAGS and word_freq(given) > 200:
            continue  # 于今年, 王已经
        rest2 = s[i + n - 1:i + n + 1]  # the last character and the next one
        rest_f = word_freq(rest2) if len(rest2) == 2 else 0
        if pf > 10 and word_tag(pre) and not word_tag(pre).startswith("nr") and rest_f > 50:
            continue  # the last character starts the next word (单亲|妈妈)
        if rest_f > 5000 and rest2 not in L.TITLE_SET:
            continue  # 王明|说话: prefer the shorter reading
        if rest_f > 50 and _cut_at(s, i, n - 1):
            continue  # 韩雪|家住: jieba cuts before the last character
        common_pre = pf > 1000 and _ordinary(word_tag(pre))
        common_given = word_freq(given) > 100 and _ordinary(word_tag(given))
        if (common_pre and not tag.startswith("nr")) or (tag.startswith("nr") and f > 200 and (common_pre or common_given)):
            continue  # an ordinary word and one more character (黄金|周, 胡|萝卜): jieba's nr tag is loose
        return n
    return 0


def _weak_name(s: str, i: int) -> SelfName | None:
    n = weak_name_len(s, i)
    if not n:
        return None
    return SelfName(i, i + n, _surname_len(s, i), False)


_UNIT_OR_PLACE = tuple(sorted(L.UNIT_SUFFIXES + L.PLACE_SUFFIXES, key=len, reverse=True))


def _after_unit(s: str, k: int, stop: int) -> SelfName | None:
    """我是<unit/place>的<name>: the name after a 的 that follows a unit or place word."""
    j = s.find("的", k, stop)
    while j != -1:
        mid = s[k:j]
        if mid.endswith(_UNIT_OR_PLACE) and all(c not in _PUNCT for c in mid):
            sp = _weak_name(s, j + 1)
            if sp:
                return sp
        j = s.find("的", j + 1, stop)
    return None


# ----------------------------------------------------------------------------------------- API
def find_self_names(s: str, start: int = 0, end: int | None = None) -> list[SelfName]:
    """Every self-introduced name in ``s[start:end]`` (text without whitespace), in text order."""
    end = len(s) if end is None else end
    seg = s[:end]
    out: dict[int, SelfName] = {}

    def add(sp: SelfName | None) -> None:
        if sp is not None and sp.end <= end and not any(o.start <= sp.start < o.end for o in out.values()):
            out[sp.start] = sp

    for m in _SURNAME_CUE.finditer(seg, start):
        k = m.end()
        sl = _surname_len(seg, k)
        if not sl:
            continue
        sur, k = seg[k:k + sl], k + sl
        cue = _AFTER_SURNAME.match(seg, k)
        if cue:
            add(_strong_name(seg, cue.end(), surname=sur))  # 我姓王，叫王小明 / 我姓王名小明
        else:
            j = k + 1 if seg[k:k + 1] in "，,、" else k
            if seg.startswith(sur, j) and weak_name_len(seg, j) > sl:
                add(_strong_name(seg, j, surname=sur))  # 我姓王，王小明
    for m in _STRONG.finditer(seg, start):
        k = m.end()
        while k < len(seg) and seg[k] in "：:":
            k += 1
        add(_strong_name(seg, k))
    for m in _WEAK.finditer(seg, start):
        k = m.end()
        sp = _weak_name(seg, k)
        if sp is None and m.group(0) in ("我是", "我就是", "我事", "本人是"):
            sp = _after_unit(seg, k, min(end, k + 20))
        add(sp)
    return [out[k] for k in sorted(out)]
