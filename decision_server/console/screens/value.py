"""Value (CVM): customers per value segment, the value-score histogram with the serving thresholds, value-based offers.

The numbers are those of GET /api/v1/value/statistics, /value/thresholds and /value/offers. No
history of value segments is stored (each re-evaluation overwrites a customer's segment), so the
page shows what the recent bulk runs changed instead of inventing a trend.
"""

from __future__ import annotations

from typing import Any

from flask import current_app

from decision_server.auth.roles import Permission
from decision_server.console.pages import page
from decision_server.console.render import render
from decision_server.jobs.runs import list_runs
from decision_server.value import service

RECENT_RUNS = 8


def histogram_spec(statistics: dict[str, Any], thresholds: dict[str, Any]) -> dict[str, Any]:
    """The value scores in bands of 10, with a dashed line where each segment of the serving rules begins.

    A mark is labelled with its segment only: the label is drawn along the line, and the axis shows the score.
    """
    starts = {r["from"]: r["segment"] for r in thresholds["segments"]}
    return {
        "kind": "histogram",
        "bins": [{"lo": b["from"], "hi": b["to"], "count": b["customers"]} for b in statistics["histogram"]],
        "marks": [{"value": cut, "label": starts.get(cut) or f"{cut:g}"} for cut in thresholds["cuts"]],
        "x_name": "value score",
        "source": "/api/v1/value/statistics",
        "empty_text": "No customer has a value score yet",
    }


def segments_spec(statistics: dict[str, Any]) -> dict[str, Any]:
    """A donut of customers per value segment."""
    return {
        "kind": "pie",
        "items": [{"name": s["segment"], "value": s["customers"]} for s in statistics["segments"]],
        "source": "/api/v1/value/statistics",
        "empty_text": "No customer has a value segment yet",
    }


def revaluations(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The recent finished bulk runs that valued customers, with how many values each changed."""
    rows = []
    for run in runs:
        result = run.get("result") or {}
        if "stages" in (run.get("steps") or ()) and "revalued" in result:
            rows.append({**run, "revalued": result["revalued"], "customers": result.get("customers")})
    return rows


@page("/value", title="Value", group="Dashboards", permission=Permission.ANALYTICS_READ, position=20)
def value():
    """Customers per value segment, how the scores spread against the thresholds, and the offers made per segment."""
    revision = current_app.extensions["rulebook"].current
    with current_app.extensions["database"].session() as session:
        stats = service.statistics(session)
        runs = list_runs(session.connection(), limit=RECENT_RUNS)[:RECENT_RUNS]
    thresholds = service.thresholds(revision)
    offers = service.offers_by_segment(revision, current_app.extensions["catalog"].offers)
    scored = sum(s["customers"] for s in stats["segments"])
    return render(
        "console/value.html",
        title="Value",
        stats=stats,
        scored=scored,
        thresholds=thresholds,
        segments_chart=segments_spec(stats),
        histogram=histogram_spec(stats, thresholds),
        offers=offers,
        runs=revaluations(runs),
    )
