"""Journeys: the funnel from awareness onward with conversion and time in stage, and touchpoints over time."""

from __future__ import annotations

from typing import Any

from flask import current_app, request

from decision_server.auth.roles import Permission
from decision_server.console.pages import page
from decision_server.console.query import parse_query
from decision_server.console.render import render
from decision_server.journeys import statistics as journey_statistics
from decision_server.touchpoints import statistics as touchpoint_statistics
from decision_server.touchpoints.schemas import TouchpointStatisticsQuerySchema


def _chart_series(rows: list[dict[str, Any]], name) -> list[dict[str, Any]]:
    return [{"name": name(row), "values": row["counts"]} for row in rows]


def _kind_name(rows: list[dict[str, Any]]):
    """Name a series by its kind alone when no two channels share it (a shorter legend), else by channel and kind."""
    kinds = [row["kind"] for row in rows]
    return lambda row: row["kind"] if kinds.count(row["kind"]) == 1 else f"{row['channel']}: {row['kind']}"


@page("/journeys", title="Journeys", group="Dashboards", permission=Permission.ANALYTICS_READ, position=70)
def journeys():
    """The journey funnel, the distribution now, time in stage and touchpoints per week, over one period.

    The period defaults to the touchpoints' (the last 12 weeks, from a Monday); the journey
    statistics are asked for the same since and until, so every number on the page covers it.
    """
    query = parse_query(TouchpointStatisticsQuerySchema, request.args)
    with current_app.extensions["database"].connection() as conn:
        touchpoints = touchpoint_statistics.statistics(conn, **query)
        period = {"since": touchpoints["since"], "until": touchpoints["until"]}
        journey = journey_statistics.statistics(conn, revision=current_app.extensions["rulebook"].current, **period)
    time_in_stage = {row["stage"]: row for row in journey["time_in_stage"]}
    return render(
        "console/journeys.html",
        title="Journeys",
        journey=journey,
        funnel=[
            {**step, **{k: time_in_stage.get(step["stage"], {}).get(k) for k in ("stays", "median_days")}}
            for step in journey["funnel"]
        ],
        funnel_stages=[{"name": step["stage"], "value": step["reached"]} for step in journey["funnel"]],
        staged=sum(row["customers"] for row in journey["distribution"]),
        touchpoints=touchpoints,
        weeks=[start.date().isoformat() for start in touchpoints["periods"]],
        by_channel=_chart_series(touchpoints["by_channel"], lambda r: r["channel"]),
        by_kind=_chart_series(touchpoints["by_kind"], _kind_name(touchpoints["by_kind"])),
        form={k: request.args.get(k, "") for k in ("since", "until", "interval")},
    )
