"""Spoken numbers: phone numbers read digit by digit, and money amounts in Chinese numerals
(``cn2an``), with lower bounds for approximate forms (三万多 -> 30000, 五六千 -> 5000, 十几万 -> 100000).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import cn2an

DIGITS = {"零": "0", "〇": "0", "洞": "0", "一": "1", "幺": "1", "二": "2", "两": "2", "三": "3", "四": "4",
          "五": "5", "六": "6", "七": "7", "八": "8", "九": "9"}
DIGITS.update({str(d): str(d) for d in range(10)})
_PHONE_DIGITS = set(DIGITS) - {"两", "洞"}
_SEP = set(" ，,、-—.。 ")

# ---------------------------------------------------------------------------- phones


@dataclass
class PhoneHit:
    number: str
    start: int
    end: int


def find_phones(s: str) -> list[PhoneHit]:
    """Runs of spoken/written digits (separators allowed between groups) that form a Chinese
    mobile number (11 digits, 1[3-9]...) or a landline with area code (0 + 9-11 digits)."""
    hits: list[PhoneHit] = []
    i, n = 0, len(s)
    while i < n:
        if s[i] not in _PHONE_DIGITS:
            i += 1
            continue
        j = i
        digits: list[str] = []
        last = i
        while j < n:
            c = s[j]
            if c in _PHONE_DIGITS:
                digits.append(DIGITS[c])
                last = j
                j += 1
            elif c in _SEP and j + 1 < n and s[j + 1] in _PHONE_DIGITS and len(digits) < 12:
                j += 1
            else:
                break
        # a digit run glued to a numeral unit is a quantity, not a phone number
        nxt = s[last + 1] if last + 1 < n else ""
        prv = s[i - 1] if i > 0 else ""
        num = "".join(digits)
        if not (nxt and nxt in "十百千万亿块元点年月号岁") and not (prv and prv in "十百千万第"):
            if len(num) == 11 and re.match(r"1[3-9]\d{9}$", num):
                hits.append(PhoneHit(num, i, last + 1))
            elif num.startswith("0") and 10 <= len(num) <= 12:
                hits.append(PhoneHit(num, i, last + 1))
            elif len(num) > 11:
                # two numbers read back to back, or a number with an extension: take mobiles inside
                for m in re.finditer(r"1[3-9]\d{9}", num):
                    hits.append(PhoneHit(m.group(0), i + m.start(), i + m.end()))
                    break
        i = max(j, i + 1)
    return hits


# ---------------------------------------------------------------------------- amounts
NUM_CHARS = "零〇一二两三四五六七八九十百千万亿0123456789"
_APPROX = "多来余几"
# money amount: numeral (with approximations), optional 多/来/余 after the unit, optional currency
AMOUNT_RE = re.compile(
    r"(?P<num>[0-9零〇一二两三四五六七八九十百千万亿几多来余]*[零〇一二两三四五六七八九十百千万0-9]"
    r"[0-9零〇一二两三四五六七八九十百千万亿几多来余点]*)"
    r"(?P<cur>块钱|块|元钱|元|万元|块多钱|多块钱|多块|钱)?"
)
NON_MONEY_AFTER = tuple("亩吨人户斤公米平次年月日天号岁个只头桌张份条辆套件层栋间趟倍分秒点届名位根家所项台株棵批篇遍回声期度周克米里辈代手票")
MONEY_VERBS = ("花了", "花", "交了", "交", "赔", "赔了", "给了", "给", "收了", "收", "骗了", "骗", "罚了", "罚", "送了",
               "送", "拿了", "拿", "要了", "要", "输了", "输", "贪了", "挪用了", "挪用", "损失", "损失了", "共计", "一共",
               "总共", "报账", "转了", "借了", "借", "欠了", "欠", "值", "补贴", "赚了", "退了", "扣了", "扣", "付了", "付",
               "出了", "收受", "索要", "好处费", "礼金", "工资", "回扣", "价", "报价", "才")


@dataclass
class AmountHit:
    value: int
    start: int
    end: int
    text: str


def _to_int(num: str) -> int | None:
    """Lower bound of a (possibly approximate) Chinese numeral."""
    t = num
    # 五六千 / 三四万: two adjacent digits -> the smaller (lower bound)
    t = re.sub(r"([一二两三四五六七八九])([二三四五六七八九])(?=[十百千万])",
               lambda m: m.group(1) if "一二两三四五六七八九".index(m.group(1)) < "一二两三四五六七八九".index(m.group(2)) else m.group(0),
               t)
    t = re.sub(f"[{_APPROX}]", "", t)
    if not t or t in ("十百千万亿",):
        return None
    if t[0] in "十百千万亿" and t[0] != "十":
        return None
    try:
        v = cn2an.cn2an(t, "smart")
    except (ValueError, KeyError, IndexError, TypeError):
        # forms cn2an does not take, e.g. a trailing bare digit after 万: 三万五 -> 35000
        m = re.match(r"^(.+[万千百])([一二两三四五六七八九])$", t)
        if not m:
            return None
        try:
            v = cn2an.cn2an(m.group(0), "smart")
        except (ValueError, KeyError, IndexError, TypeError):
            return None
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    if v <= 0:
        return None
    return int(round(v))


def find_amounts(s: str, allowed: list[tuple[int, int]] | None = None) -> list[AmountHit]:
    """Money amounts in s. A numeral is money when it carries a currency word (块/元/钱), or a
    万 without a non-money measure word after it, or follows a money verb (花了/交了/收了/赔...)."""
    hits: list[AmountHit] = []
    for m in AMOUNT_RE.finditer(s):
        num = m.group("num")
        a, b = m.start("num"), m.end()
        if allowed is not None and not any(x <= a < y for x, y in allowed):
            continue
        if not re.search("[零〇一二两三四五六七八九十百千万0-9]", num):
            continue
        if "点" in num:  # times of day / decimals spoken with 点: not handled as money
            num = num.split("点")[0]
            b = m.start("num") + len(num)
            if not num:
                continue
        before = s[max(0, a - 4):a]
        if before.endswith("百分之") or before.endswith("分之") or before.endswith("第"):
            continue
        after = s[b:b + 2]
        cur = m.group("cur") or ""
        pure_digits = all(c in "零〇一二两三四五六七八九0123456789" for c in num)
        if pure_digits and len(num) >= 3 and not cur:
            continue  # phone numbers, years, hotline numbers
        if cur == "钱" and num.endswith("分"):
            continue
        if s[m.end():m.end() + 1] == "分" and not cur:
            continue
        money = False
        if cur and cur != "钱":
            money = True
        elif cur == "钱":
            money = True
        elif "万" in num or "亿" in num:
            money = not after.startswith(NON_MONEY_AFTER)
        else:
            if after.startswith(NON_MONEY_AFTER) or after.startswith(("多", "来")) and s[b + 1:b + 2] in NON_MONEY_AFTER:
                money = False
            else:
                ctx = s[max(0, a - 4):a]
                money = any(ctx.endswith(v) for v in MONEY_VERBS) and not pure_digits or (
                    any(ctx.endswith(v) for v in MONEY_VERBS) and len(num) <= 2 and any(c in "十百千万" for c in num))
        if not money:
            continue
        v = _to_int(num)
        if v is None:
            continue
        if v < 10 and not cur:
            continue
        hits.append(AmountHit(v, a, m.end(), s[a:m.end()]))
    return hits


def total_amount(hits: list[AmountHit]) -> int | None:
    """The total the report is about: the largest amount named (amounts named in a report are
    usually parts of, or the same as, the largest one)."""
    if not hits:
        return None
    return max(h.value for h in hits)
