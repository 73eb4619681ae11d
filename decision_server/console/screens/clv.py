"""CLV: historical and predicted distributions, top buyers, CLV by lifecycle stage and by value segment."""

from __future__ import annotations

from typing import Any

from flask import current_app

from decision_server.auth.roles import Permission
from decision_server.clv import dashboard
from decision_server.console.pages import page
from decision_server.console.render import render
from decision_server.db import utcnow


def histogram_spec(distribution: dict[str, Any]) -> dict[str, Any]:
    """A histogram of GET /clv/summary's bins, with the median and the mean marked."""
    marks = [{"value": distribution[k], "label": k} for k in ("median", "mean") if distribution.get(k) is not None]
    return {"kind": "histogram", "bins": distribution["bins"], "marks": marks, "y_name": "customers"}


def groups_spec(rows: list[dict[str, Any]], field: str) -> dict[str, Any]:
    """Average historical and predicted CLV per group (stage or value segment)."""
    return {
        "kind": "bar",
        "categories": [r[field] for r in rows],
        "series": [
            {"name": "avg revenue so far", "values": [r["avg_revenue"] for r in rows]},
            {"name": "avg predicted 12 months", "values": [r["avg_predicted"] for r in rows]},
        ],
    }


@page("/clv", title="CLV", group="Dashboards", permission=Permission.ANALYTICS_READ, position=40)
def clv_dashboard():
    """Customer lifetime value of the base: how it spreads, who holds most, by stage and by value segment."""
    with current_app.extensions["database"].session() as session:
        figures = dashboard.summary(
            session.connection(),
            now=utcnow(),
            margin=current_app.extensions["config"].default_margin,
            models=current_app.extensions["models"].current,
            revision_id=current_app.extensions["rulebook"].current.id,
            cache=current_app.extensions["clv_summaries"],
        )
    return render(
        "console/clv.html",
        title="CLV",
        clv=figures,
        historical_spec=histogram_spec(figures["historical"]),
        predicted_spec=histogram_spec(figures["predicted"]),
        stage_spec=groups_spec(figures["by_stage"], "stage"),
        segment_spec=groups_spec(figures["by_value_segment"], "value_segment"),
    )
