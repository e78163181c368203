"""Masking of reporter identity: phone numbers (``138****0918``) and names (``凌**``), in fields and
in free text (transcripts, summaries, log lines), including numbers spoken as Chinese digits and
text with the spaces Vosk puts between words.

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
_CJK = "\u4e00-\u9fff"
_SELF_INTRO = re.compile(
    rf"((?:我\s*叫|我\s*的\s*名\s*字\s*(?:叫|是)|我\s*名\s*字\s*(?:叫|是)|我\s*名\s*叫|本\s*人\s*(?:叫|姓\s*名\s*是?)|姓\s*名\s*(?:是|叫)|名\s*字\s*叫)\s*[:：]?\s*)"
    rf"((?:[{_CJK}]\s*){{1,3}}[{_CJK}])"
)
_SURNAME_ONLY = re.compile(r"我\s*姓\s*$")


def mask_phone(value: str | None) -> str | None:
    """``13812340918`` -> ``138****0918``; shorter numbers keep 2 + 2; separators are dropped."""
    if value is None:
        return None
    chars = [c for c in str(value) if not c.isspace() and c not in "-－()（）+"]
    n = len(chars)
    if n == 0:
        return value
    if n >= 11:
        keep_head, keep_tail = 3, 4
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
    """``sip:13812340918@10.0.0.1`` -> ``sip:138****0918@10.0.0.1``."""
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

    def _intro(m: re.Match) -> str:
        lead, name = m.group(1), m.group(2)
        if _SURNAME_ONLY.search(lead):  # 我姓凌: the surname alone stays, as in 凌**
            return m.group(0)
        chars = [i for i, c in enumerate(name) if not c.isspace()]
        n = 4 if "".join(name[i] for i in chars[:2]) in COMPOUND_SURNAMES else 3  # a name: 2-3 (4) characters
        cut = chars[n - 1] + 1 if len(chars) > n else len(name)
        return lead + mask_name(name[:cut]) + name[cut:]

    return _SELF_INTRO.sub(_intro, out)


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
