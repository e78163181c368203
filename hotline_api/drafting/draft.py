"""The drafting pipeline: transcript -> draft dict with the CONTRACT keys plus evidence,
confidence, routing and (given a receipt date) deadlines."""
from __future__ import annotations

from datetime import date
from typing import Any

from hotline_api.drafting import classify, extract, numbers
from hotline_api.drafting.text import Doc, build_doc

DRAFT_KEYS = ("category", "issue_types", "subjects", "places", "real_name", "reporter_name", "reporter_phone",
              "urgent", "duplicate_hint", "amount_yuan", "summary")


def draft_doc(doc: Doc) -> dict[str, Any]:
    s = doc.s
    ranges = doc.caller_ranges()
    full_ranges = [(0, len(s))]
    evidence: dict[str, list[list[int]]] = {}
    confidence: dict[str, float] = {}

    def ev(field: str, spans) -> None:
        lst = evidence.setdefault(field, [])
        for a, b in spans:
            sp = doc.raw_span(a, b)
            if sp not in lst:
                lst.append(sp)

    # places (the greeting's county counts: it is where the report is received)
    places = extract.find_places(doc)
    place_list = [p.text for p in places]
    ev("places", [(p.start, p.end) for p in places])
    confidence["places"] = 0.7 if places else 0.5

    # reporter
    rep = extract.find_reporter(doc, ranges)
    phones = [h for h in numbers.find_phones(s) if not doc.is_operator(h.start)]
    if not phones and doc.mode == "text":
        phones = numbers.find_phones(s)
    phone = phones[0].number if phones else ""
    ev("reporter_name", [(rep.start, rep.end)] if rep else [])
    ev("reporter_phone", [(h.start, h.end) for h in phones if h.number == phone])
    ev("real_name", [(rep.start, rep.end)] if rep else [])
    confidence["reporter_name"] = 0.85 if rep else 0.6
    confidence["real_name"] = 0.85 if rep else 0.7
    confidence["reporter_phone"] = 0.95 if phone else 0.7

    # subjects
    subjects = extract.find_subjects(doc, places, rep, ranges)
    ev("subjects", [sp for sj in subjects for sp in sj.spans])
    confidence["subjects"] = round(min([sj.confidence for sj in subjects]), 2) if subjects else 0.4

    # money
    amounts = numbers.find_amounts(s, ranges)
    amount = numbers.total_amount(amounts)
    ev("amount_yuan", [(h.start, h.end) for h in amounts if h.value == amount])
    confidence["amount_yuan"] = 0.8 if amount else 0.7

    # issue types, category
    issue_hits = classify.issue_types(s, ranges)
    allegations = classify.find_in_ranges(s, ranges, extract.L.ALLEGATION_TERMS)
    caller_len = sum(b - a for a, b in ranges)
    category, cconf, cspans = classify.categorize(s, ranges, s, subjects, allegations, caller_len, issue_hits)
    ev("category", cspans)
    confidence["category"] = cconf
    labels = classify.select_issue_types(issue_hits, category)
    ev("issue_types", [sp for h in issue_hits if h.label in labels for sp in h.spans])
    confidence["issue_types"] = 0.6 if labels else 0.5
    if category in ("无实质内容", "咨询", "业务范围外", "申诉"):
        # a subject only exists when someone is accused
        subjects = [sj for sj in subjects if sj.name] if category == "业务范围外" else []
    route = classify.routing(s, ranges, s) if category == "业务范围外" else None

    urgent, uspans, kinds, uconf = classify.urgency(s, ranges)
    ev("urgent", uspans)
    confidence["urgent"] = uconf
    dup, dspans = classify.duplicate_hint(s, ranges)
    ev("duplicate_hint", dspans)
    confidence["duplicate_hint"] = 0.7

    real_name = rep is not None
    out: dict[str, Any] = {
        "category": category,
        "issue_types": labels,
        "subjects": [sj.as_dict() for sj in subjects],
        "places": place_list,
        "real_name": real_name,
        "reporter_name": rep.text if rep else "",
        "reporter_phone": phone,
        "urgent": urgent,
        "duplicate_hint": dup,
        "amount_yuan": amount,
        "summary": classify.summary(category, subjects, place_list, labels, amount, real_name, route),
        "evidence": evidence,
        "confidence": confidence,
        "routing": route,
        "urgent_kinds": kinds,
    }
    confidence["summary"] = round(sum(confidence.values()) / len(confidence), 2)
    return out


def make_draft(text: str | None = None, turns: list[dict] | None = None, received: date | None = None,
               calendar=None, deadlines=None) -> dict[str, Any]:
    """Draft a case from plain/ASR text or speaker turns. Raises DraftInputError on bad input.

    With ``received`` and ``deadlines`` (``deadlines(received, real_name=, calendar=) -> dict``, the
    service's ``calendar.compute_deadlines``: drafting stays below the services), the draft carries
    its working-day deadlines."""
    doc = build_doc(text=text, turns=turns)
    out = draft_doc(doc)
    out["input"] = {"mode": doc.mode, "chars": len(doc.raw),
                    "text_basis": "turn texts joined with \\n" if doc.mode == "turns" else "input text"}
    if received is not None and deadlines is not None:
        out["deadlines"] = deadlines(received, real_name=out["real_name"], calendar=calendar)
    return out
