"""Supervisor statistics: the dashboard (counts by day/week/month, category, issue type, place,
channel, real-name ratio, duplicates, review compliance; each a Chart.js chart plus the numbers) and
the period analysis report (信访分析), laid out for printing to PDF from the browser. Both count
only the supervisor's unit (``queries.stats_scope``; a supervisor without a unit: every unit)."""
from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from hotline_api.web import queries
from hotline_api.web.core import PageRoute, SessionDep, SettingsDep, SupervisorUser, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)

GRAN_LABELS = {"day": "按日", "week": "按周", "month": "按月"}


def _chart(kind: str, labels: list[str], datasets: list[tuple[str, list[int]]], **opts: Any) -> str:
    spec = {"type": kind, "labels": labels, "datasets": [{"label": n, "data": v} for n, v in datasets]}
    spec.update(opts)
    # JSON inside <script type="application/json">: "<" escaped so text can never close the tag
    return json.dumps(spec, ensure_ascii=False).replace("<", "\\u003c")


def _charts(dash: queries.Dashboard) -> dict[str, str]:
    comp = dash.compliance
    return {
        "calls": _chart("bar", dash.calls.labels, [(queries.CHANNEL_LABELS[c], dash.calls.values[c])
                                                   for c in queries.CALL_CHANNELS], stacked=True),
        "cases": _chart("line", dash.cases_by_period.labels, [("受理案件", dash.cases_by_period.values["cases"])]),
        "category": _chart("doughnut", [c for c, _ in dash.by_category], [("案件数", [n for _, n in dash.by_category])]),
        "issue": _chart("bar", [c for c, _ in dash.by_issue_type], [("案件数", [n for _, n in dash.by_issue_type])],
                        horizontal=True),
        "place": _chart("bar", [c for c, _ in dash.by_place], [("案件数", [n for _, n in dash.by_place])], horizontal=True),
        "channel": _chart("doughnut", [queries.CHANNEL_LABELS[c] for c in queries.CALL_CHANNELS],
                          [("来电数", [dash.calls_by_channel[c] for c in queries.CALL_CHANNELS])]),
        "realname": _chart("doughnut", ["实名", "匿名"], [("案件数", [dash.real_name, dash.cases_total - dash.real_name])]),
        "compliance": _chart("bar", [r.manager for r in comp],
                             [("按时完成", [r.done_on_time for r in comp]), ("逾期完成", [r.late for r in comp]),
                              ("未完成", [r.open for r in comp])], stacked=True),
    }


def _period_from_request(period: str | None, start: str | None, end: str | None, today: date) -> str | None:
    if start and end:
        return f"{start}..{end}"
    return period


def _shift_months(d: date, months: int) -> date:
    m = d.year * 12 + d.month - 1 + months
    return date(m // 12, m % 12 + 1, 1)


def previous_period(start: date, end: date) -> tuple[date, date]:
    """The period of the same shape just before [start, end): previous month / quarter / year when
    the period is whole months, else the same number of days."""
    if start.day == 1 and end.day == 1:
        months = (end.year - start.year) * 12 + end.month - start.month
        return _shift_months(start, -months), start
    return queries.previous_period(start, end)


@router.get("/stats")
def stats(request: Request, session: SessionDep, settings: SettingsDep, user: SupervisorUser,
          period: str | None = None, start: str | None = None, end: str | None = None, gran: str | None = None) -> Response:
    today = datetime.now(queries.tz_of(settings)).date()
    p_start, p_end, label = queries.parse_period(_period_from_request(period, start, end, today), today)
    dash = queries.dashboard(session, p_start, p_end, settings, granularity=gran if gran in GRAN_LABELS else None,
                             user=user)
    month_opts = [_shift_months(today.replace(day=1), -i) for i in range(0, 13)]
    quarter = (today.month - 1) // 3 + 1
    return render(request, "sup/stats.html", {
        "dash": dash, "label": label, "charts": _charts(dash), "period": period or "", "gran_labels": GRAN_LABELS,
        "month_opts": month_opts, "this_quarter": f"{today.year}-Q{quarter}", "this_year": str(today.year),
        "start_value": p_start.isoformat(), "end_value": date.fromordinal(p_end.toordinal() - 1).isoformat(),
        "channel_labels": queries.CHANNEL_LABELS,
    }, active="stats")


@router.get("/report")
def report(request: Request, session: SessionDep, settings: SettingsDep, user: SupervisorUser,
           period: str | None = None) -> Response:
    today = datetime.now(queries.tz_of(settings)).date()
    if not period:
        q = (today.month - 1) // 3 + 1
        period = f"{today.year}-Q{q}"
    p_start, p_end, label = queries.parse_period(period, today)
    dash = queries.dashboard(session, p_start, p_end, settings, user=user)
    prev_start, prev_end = previous_period(p_start, p_end)
    prev = queries.dashboard(session, prev_start, prev_end, settings, granularity="month", totals_only=True, user=user)
    quarters = []
    for y in (today.year, today.year - 1):
        for q in (4, 3, 2, 1):
            if date(y, 3 * q - 2, 1) <= today:
                quarters.append((f"{y}-Q{q}", f"{y}年第{'一二三四'[q - 1]}季度"))
    return render(request, "sup/report.html", {
        "dash": dash, "prev": prev, "label": label, "charts": _charts(dash), "period": period, "quarters": quarters,
        "generated": datetime.now(queries.tz_of(settings)), "prev_range": (prev_start, prev_end),
        "end_inclusive": date.fromordinal(p_end.toordinal() - 1), "channel_labels": queries.CHANNEL_LABELS,
    }, active="report")


def change_text(now: int, before: int) -> str:
    if before == 0:
        return "上期无数据" if now else "与上期持平"
    pct = (now - before) / before * 100
    if abs(pct) < 0.05:
        return "与上期持平"
    return f"较上期{'增长' if pct > 0 else '下降'} {abs(pct):.1f}%"


from hotline_api.web.core import templates as _templates  # noqa: E402

_templates.env.globals["change_text"] = change_text
