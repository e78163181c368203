"""Drafting metrics, exactly as defined in CONTRACT.md (`hotline eval-drafts`)."""
from __future__ import annotations

from typing import Any, Iterable

from pypinyin import lazy_pinyin

METRICS = ("category_accuracy", "urgent_recall", "urgent_precision", "real_name_accuracy", "subject_name_recall",
           "unit_recall", "issue_type_f1", "amount_accuracy", "phone_accuracy", "place_recall")


def _nospace(s: str) -> str:
    return "".join((s or "").split())


def _div(a: float, b: float) -> float:
    return a / b if b else 0.0


def score(pairs: Iterable[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, float]:
    """pairs: (labels, predicted draft). Returns every metric over the records."""
    n = cat = realn = amount = phone = 0
    u_tp = u_fn = u_fp = 0
    names_total = names_found = 0
    units_total = units_found = 0
    it_tp = it_fp = it_fn = 0
    pl_total = pl_found = 0
    for gold, pred in pairs:
        n += 1
        cat += gold.get("category") == pred.get("category")
        gu, pu = bool(gold.get("urgent")), bool(pred.get("urgent"))
        u_tp += gu and pu
        u_fn += gu and not pu
        u_fp += pu and not gu
        realn += bool(gold.get("real_name")) == bool(pred.get("real_name"))
        amount += gold.get("amount_yuan") == pred.get("amount_yuan")
        phone += (gold.get("reporter_phone") or "") == (pred.get("reporter_phone") or "")
        psubs = pred.get("subjects") or []
        pnames = [s.get("name") or "" for s in psubs]
        punits = [_nospace(s.get("unit") or "") for s in psubs]
        for g in gold.get("subjects") or []:
            gname = g.get("name") or ""
            if gname:
                names_total += 1
                gp = lazy_pinyin(gname)
                if any(p == gname or (p and lazy_pinyin(p) == gp) for p in pnames):
                    names_found += 1
            gunit = _nospace(g.get("unit") or "")
            if gunit:
                units_total += 1
                if any(u and (gunit in u or u in gunit) for u in punits):
                    units_found += 1
        gi, pi = set(gold.get("issue_types") or []), set(pred.get("issue_types") or [])
        it_tp += len(gi & pi)
        it_fp += len(pi - gi)
        it_fn += len(gi - pi)
        pplaces = {_nospace(p) for p in pred.get("places") or []}
        for p in gold.get("places") or []:
            pl_total += 1
            pl_found += _nospace(p) in pplaces
    prec = _div(it_tp, it_tp + it_fp)
    rec = _div(it_tp, it_tp + it_fn)
    return {
        "category_accuracy": _div(cat, n),
        "urgent_recall": _div(u_tp, u_tp + u_fn) if (u_tp + u_fn) else 1.0,
        "urgent_precision": _div(u_tp, u_tp + u_fp) if (u_tp + u_fp) else 1.0,
        "real_name_accuracy": _div(realn, n),
        "subject_name_recall": _div(names_found, names_total) if names_total else 1.0,
        "unit_recall": _div(units_found, units_total) if units_total else 1.0,
        "issue_type_f1": _div(2 * prec * rec, prec + rec) if (it_tp + it_fp + it_fn) else 1.0,
        "amount_accuracy": _div(amount, n),
        "phone_accuracy": _div(phone, n),
        "place_recall": _div(pl_found, pl_total) if pl_total else 1.0,
    }
