"""Out-of-range input answers 422 with a message, never 500 (issue 11: found by the API fuzz run).

Each case below answered 500 before the fix: an ``offset`` past SQLite's 64-bit integers
(OverflowError in the driver), a month or an instant whose year is 0 or 9999 (datetime overflow
when it is moved to UTC or to the hotline's time zone)."""
from __future__ import annotations

import pytest

from hotline_api.api.routes._common import MAX_YEAR, MIN_YEAR, OFFSET_MAX

HUGE = "9223372036854775808"  # 2**63: one past SQLite's largest integer


def _get(w, who: str, path: str, params: dict):
    return w.client.get(path, headers=w.h(who), params=params)


def _assert_422(r, *words: str) -> str:
    assert r.status_code == 422, (r.status_code, r.text)
    text = r.text
    for word in words:
        assert word in text, text
    return text


# ------------------------------------------------------------------------------------ offset
@pytest.mark.parametrize(("who", "path"), [
    ("op1", "/api/drafts"),
    ("supA", "/api/drafts"),
    ("supA", "/api/cases"),
    ("mgr1", "/api/review/queue"),  # a manager's queue (services.review.queue_for)
    ("supA", "/api/review/queue"),  # a supervisor's (the route's own query)
    ("aud", "/api/audit"),
    ("op1", "/api/calls"),  # already capped before: the same shared bound now
    ("op1", "/api/callbacks"),
])
def test_offset_past_the_bound_is_422(world, who, path):
    _assert_422(_get(world, who, path, {"offset": HUGE}), "offset")
    _assert_422(_get(world, who, path, {"offset": str(OFFSET_MAX + 1)}), "offset")
    r = _get(world, who, path, {"offset": str(OFFSET_MAX)})
    assert r.status_code == 200, r.text
    assert r.json()["items"] == [] and r.json()["offset"] == OFFSET_MAX


def test_offset_bound_is_in_the_schema(world):
    """One shared bound: every listing's ``offset`` says its maximum in the OpenAPI schema."""
    schema = world.client.get("/openapi.json").json()
    seen = []
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            for p in op.get("parameters", []):
                if p["name"] == "offset":
                    seen.append(path)
                    assert p["schema"].get("maximum") == OFFSET_MAX, (method, path, p)
    assert {"/api/drafts", "/api/cases", "/api/review/queue", "/api/audit", "/api/calls"} <= set(seen)


# ----------------------------------------------------------------------------- review report
@pytest.mark.parametrize("month", ["9999-12", "0000-01", f"{MIN_YEAR - 1}-12", f"{MAX_YEAR + 1}-01"])
def test_review_report_month_out_of_range_is_422(world, month):
    _assert_422(_get(world, "supA", "/api/review/report", {"month": month}), "month", str(MIN_YEAR), str(MAX_YEAR))


@pytest.mark.parametrize("month", ["2026-00", "2026-13"])
def test_review_report_month_number_is_422(world, month):
    _assert_422(_get(world, "supA", "/api/review/report", {"month": month}), "month")


def test_review_report_edge_months_answer(world):
    for month in (f"{MIN_YEAR}-01", f"{MAX_YEAR}-12", "2026-03"):
        r = _get(world, "supA", "/api/review/report", {"month": month})
        assert r.status_code == 200, (month, r.text)


# --------------------------------------------------------------------------- schedule status
@pytest.mark.parametrize("at", ["9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00+14:00",
                                f"{MAX_YEAR + 1}-01-01T00:00:00+08:00"])
def test_schedule_status_far_instant_is_422(world, at):
    _assert_422(_get(world, "supA", "/api/schedule/status", {"at": at}), "at", str(MIN_YEAR), str(MAX_YEAR))


def test_schedule_status_edges_answer(world):
    # the last second of MAX_YEAR in UTC is already the next year in Asia/Shanghai: still answered
    for at in (f"{MAX_YEAR}-12-31T23:59:59+00:00", f"{MIN_YEAR}-01-01T00:00:00-12:00", "2026-02-17T10:00:00+08:00"):
        r = _get(world, "adm", "/api/schedule/status", {"at": at})
        assert r.status_code == 200, (at, r.text)
    assert _get(world, "adm", "/api/schedule/status", {"at": "2026-02-17T10:00:00"}).status_code == 400  # no zone


# ------------------------------------------------------------------------------- audit since
@pytest.mark.parametrize("name", ["since", "until"])
@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00",
                                   "9999-12-31T23:59:59+00:00"])
def test_audit_far_since_until_is_422(world, name, value):
    _assert_422(_get(world, "aud", "/api/audit", {name: value}), name, str(MIN_YEAR), str(MAX_YEAR))


def test_audit_edge_instants_answer(world):
    r = _get(world, "aud", "/api/audit", {"since": f"{MIN_YEAR}-01-01T00:00:00+14:00",
                                          "until": f"{MAX_YEAR}-12-31T23:59:59-12:00"})
    assert r.status_code == 200, r.text
    assert r.json()["items"]
    assert _get(world, "aud", "/api/audit", {"since": "2026-01-01T00:00:00"}).status_code == 400  # no zone
