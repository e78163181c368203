"""Masking of reporter identity: phone numbers (``138******18``: at most the first 3 and the last 2
digits stay) and names (``凌**``), in fields and in free text (transcripts, summaries, log lines),
including numbers spoken as Chinese digits and text with the spaces Vosk puts between words.

In free text, besides the known names and numbers of the record: names a speaker gives for
themselves (我叫…, 我是…, 我姓王，叫王…, 本人…, 自称…; found by ``drafting.selfname``, the rules
drafting uses for the reporter, so ``我是群众`` or ``我是县林业局的干部`` stay as said) and fragments of
numbers after a cue (手机尾号 5678, 后四位, 电话 1234, 身份证后六位), which are masked whole.

Everyone without the ``identity`` permission sees masked values; showing the real value is itself
audited (see ``reveal``)."""
from __future__ import annotations

import logging
import re
from typing import Any, Iterable, Mapping

IDENTITY_FIELDS = ("caller_number", "caller_uri", "reporter_name", "reporter_phone")
NAME_FIELDS = ("reporter_name",)

COMPOUND_SURNAMES = (
    "欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "令狐", "慕容", "司徒", "夏侯", "尉迟", "公孙",
    "长孙", "宇文", "轩辕", "端木", "独孤", "南宫", "西门", "申屠", "澹台", "呼延", "钟离", "闻人",
)

_CN_DIGITS = "零〇一二三四五六七八九幺两"
_DIGIT_CHARS = "0-9０-９" + _CN_DIGITS
# a run of at least 7 digit characters (arabic, full-width or Chinese), spaces/hyphens allowed between
_PHONE_RUN = re.compile(rf"(?<![{_DIGIT_CHARS}])(?:[{_DIGIT_CHARS}][\s\-－]?){{6,}}[{_DIGIT_CHARS}Xx]?(?![{_DIGIT_CHARS}])")
_MONEY_AFTER = re.compile(r"^\s*(元|块|万|亿|千|百|岁|年|个|%|％|米|平方|吨|公斤|斤|人|户|次)")


def _spaced(*words: str) -> str:
    """Alternatives that match with whitespace between their characters (ASR text)."""
    return "(?:" + "|".join(r"\s*".join(re.escape(c) for c in w) for w in words) + ")"


# Fragments of numbers after a cue: the tail of a phone number, part of an ID number. Masked whole
# (a run of 7 and more digits is a phone number already, masked by _PHONE_RUN).
_FRAGMENT = re.compile(
    "(?:" + _spaced("尾号", "尾数", "末尾", "后四位", "后4位", "后三位", "后3位", "后五位", "后六位", "后6位", "末四位",
                    "末4位", "前三位", "前四位", "身份证号码", "身份证号", "身份证", "证件号码", "证件号") + r"\s*"
    + "(?:" + _spaced("是", "为", "就是", "号码是", "号是", "的是") + r"|[:：])?\s*)"
    + rf"((?:[{_DIGIT_CHARS}Xx]\s*){{2,5}}[{_DIGIT_CHARS}Xx])(?![{_DIGIT_CHARS}*])"
)
_PHONE_FRAGMENT = re.compile(
    "(?:" + _spaced("手机号码", "手机号", "手机", "电话号码", "电话号", "电话", "号码", "联系方式") + r"\s*"
    + "(?:" + _spaced("是", "为", "就是", "后四位是", "后四位") + r"|[:：])?\s*)"
    + rf"((?:[{_DIGIT_CHARS}]\s*){{3,5}}[{_DIGIT_CHARS}])(?![{_DIGIT_CHARS}*])"
)
_SERVICE_NUMBERS = frozenset({"110", "119", "120", "122", "114", "12345", "12388", "12315", "12306", "12333", "95598"})
# Words that can start a self-introduction (a fast test before the name rules run).
_INTRO_CUE = re.compile(r"我|本人|自称|姓名|名字|举报人|来电人|反映人")


def mask_phone(value: str | None) -> str | None:
    """``13812340918`` -> ``138******18``: at most 3 leading and 2 trailing digits stay (7-10 digits
    keep 2 + 2, 3-6 digits 1 + 1); separators are dropped."""
    if value is None:
        return None
    chars = [c for c in str(value) if not c.isspace() and c not in "-－()（）+"]
    n = len(chars)
    if n == 0:
        return value
    if n >= 11:
        keep_head, keep_tail = 3, 2
    elif n >= 7:
        keep_head, keep_tail = 2, 2
    elif n >= 3:
        keep_head, keep_tail = 1, 1
    else:
        return "*" * n
    return "".join(chars[:keep_head]) + "*" * (n - keep_head - keep_tail) + "".join(chars[n - keep_tail:])


def mask_name(value: str | None) -> str | None:
    """``凌小明`` -> ``凌**``; compound surnames are kept whole (``欧阳**``); Latin names keep their initial."""
    if value is None:
        return None
    name = re.sub(r"\s+", "", str(value))
    if not name:
        return value
    if len(name) == 1:
        return "*"
    head = 2 if len(name) >= 3 and name[:2] in COMPOUND_SURNAMES else 1
    return name[:head] + "*" * (len(name) - head)


def mask_uri(value: str | None) -> str | None:
    """``sip:13812340918@10.0.0.1`` -> ``sip:138******18@10.0.0.1``."""
    if value is None:
        return None
    m = re.match(r"^(?P<scheme>[a-zA-Z]+:)?(?P<user>[^@;>]*)(?P<rest>@.*)?$", str(value))
    if not m:
        return "***"
    user = m.group("user") or ""
    digits = re.sub(r"[^\d]", "", user)
    masked = mask_phone(user) if digits and len(digits) >= len(user.lstrip("+")) - 1 else (user[:1] + "***" if user else "")
    return (m.group("scheme") or "") + masked + (m.group("rest") or "")


def _name_pattern(name: str) -> re.Pattern | None:
    chars = [c for c in re.sub(r"\s+", "", name)]
    if len(chars) < 2:
        return None
    return re.compile(r"\s*".join(re.escape(c) for c in chars))


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def mask_text(text: str | None, names: Iterable[str] = (), phones: Iterable[str] = ()) -> str | None:
    """Mask phone-like digit runs, self-introduced names (我叫…/我的名字是…) and the given names and
    phone numbers anywhere in ``text``. Record ids (UUIDs) are left whole: they identify records,
    not people, and a log line must keep them readable."""
    if text is None:
        return None
    text = str(text)
    if _UUID.search(text):
        parts, pos = [], 0
        for m in _UUID.finditer(text):
            parts.append(_mask_text(text[pos:m.start()], names, phones))
            parts.append(m.group(0))
            pos = m.end()
        parts.append(_mask_text(text[pos:], names, phones))
        return "".join(parts)
    return _mask_text(text, names, phones)


def _mask_text(out: str, names: Iterable[str], phones: Iterable[str]) -> str:
    for phone in phones:
        digits = re.sub(r"\D", "", phone or "")
        if len(digits) >= 5:
            pat = re.compile(r"[\s\-]?".join(re.escape(d) for d in digits))
            out = pat.sub(lambda m: mask_phone(m.group(0)), out)
    for name in sorted({n for n in names if n}, key=len, reverse=True):
        pat = _name_pattern(name)
        if pat is not None:
            out = pat.sub(lambda m: mask_name(m.group(0)), out)

    def _phone(m: re.Match) -> str:
        if _MONEY_AFTER.match(out[m.end():m.end() + 3]):
            return m.group(0)
        run = m.group(0)
        trail = run[len(run.rstrip(" -－")):]
        return mask_phone(run) + trail

    out = _PHONE_RUN.sub(_phone, out)

    def _fragment(m: re.Match) -> str:
        digits = m.group(1)
        if _MONEY_AFTER.match(out[m.end():m.end() + 3]) or re.sub(r"\s", "", digits) in _SERVICE_NUMBERS:
            return m.group(0)
        head = m.group(0)[:m.start(1) - m.start()]
        return head + re.sub(r"\S", "*", digits)

    out = _FRAGMENT.sub(_fragment, out)
    out = _PHONE_FRAGMENT.sub(_fragment, out)
    return _mask_self_names(out)


def _mask_self_names(out: str) -> str:
    """Names a speaker gives for themselves (``drafting.selfname``), found in the text without its
    whitespace; a name is written back without the spaces inside it (``凌 小 明`` -> ``凌**``)."""
    if not _INTRO_CUE.search(out):
        return out
    from hotline_api.drafting.selfname import find_self_names

    idx = [i for i, c in enumerate(out) if not c.isspace()]
    compact = "".join(out[i] for i in idx)
    names = find_self_names(compact)
    if not names:
        return out
    parts, pos = [], 0
    for sp in names:
        a, b = idx[sp.start], idx[sp.end - 1] + 1
        name = compact[sp.start:sp.end]
        parts.append(out[pos:a])
        parts.append(name[:sp.keep] + "*" * (len(name) - sp.keep))
        pos = b
    parts.append(out[pos:])
    return "".join(parts)


def mask_identity_fields(data: Mapping[str, Any], fields: Iterable[str] = IDENTITY_FIELDS) -> dict[str, Any]:
    """A copy of ``data`` with identity fields masked (phones, names, URIs)."""
    out = dict(data)
    for f in fields:
        v = out.get(f)
        if v is None:
            continue
        if f in NAME_FIELDS:
            out[f] = mask_name(v)
        elif f.endswith("_uri"):
            out[f] = mask_uri(v)
        else:
            out[f] = mask_phone(v)
    return out


class MaskingLogFilter(logging.Filter):
    """Masks phone numbers and self-introduced names in every log record it sees. Install it on the
    root handlers (``install_log_masking()``) so identity never reaches the logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken log call must not break logging
            return True
        masked = mask_text(msg)
        if masked != msg:
            record.msg, record.args = masked, None
        return True


def install_log_masking(logger: logging.Logger | None = None) -> MaskingLogFilter:
    flt = MaskingLogFilter()
    target = logger or logging.getLogger()
    for h in target.handlers:
        if not any(isinstance(f, MaskingLogFilter) for f in h.filters):
            h.addFilter(flt)
    target.addFilter(flt)
    return flt


def reveal(session, actor, object_type: str, object_id: str, fields: Mapping[str, Any], *, ip: str | None = None,
           reason: str | None = None) -> dict[str, Any]:
    """Return identity values unmasked for a user holding ``identity``, and audit the reading.
    Without the permission, the masked values are returned and nothing is revealed."""
    from hotline_api.services import audit

    if actor is None or not actor.has_permission("identity"):
        return mask_identity_fields(fields, fields=list(fields))
    audit.record(session, "identity.view", actor=actor, object_type=object_type, object_id=object_id, ip=ip,
                 reason=reason, detail={"fields": sorted(fields)})
    return dict(fields)
