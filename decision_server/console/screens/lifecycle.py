"""Lifecycle (CLM): customers per stage now and over time, the transition matrix of a period, who moved, what to do.

The numbers are those of GET /api/v1/lifecycle/statistics (distribution, matrix, actions),
GET /api/v1/lifecycle/statistics/history (over time) and GET /api/v1/lifecycle/transitions (who moved).
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote, urlencode

import marshmallow as ma
from flask import current_app, request, url_for
from marshmallow import fields

from decision_server.auth.roles import Permission
from decision_server.console.pages import page, view
from decision_server.console.queryargs import parse
from decision_server.console.render import render
from decision_server.db import utcnow
from decision_server.lifecycle import history, service
from decision_server.schemas import Timestamp

PAGE_SIZE = 25
HISTORY_WEEKS = 12
NO_STAGE = "(none)"  # `from` of a first stage (from_stage null) in a link to the movers


class PeriodFilters(ma.Schema):
    since = Timestamp()
    until = Timestamp()

    @ma.validates_schema
    def _ordered(self, data, **kwargs):
        if data.get("since") and data.get("until") and data["since"] >= data["until"]:
            raise ma.ValidationError("must be after since", field_name="until")


class MoverFilters(PeriodFilters):
    from_stage = fields.String(data_key="from", validate=ma.validate.Length(min=1, max=32))
    to_stage = fields.String(data_key="to", validate=ma.validate.Length(min=1, max=32))
    before = fields.Integer(validate=ma.validate.Range(min=1))


def presets(today: dt.date) -> list[dict[str, Any]]:
    """The period presets: label and the since/until dates (until excluded) of each."""
    tomorrow = today + dt.timedelta(days=1)
    month = today.replace(day=1)
    previous = (month - dt.timedelta(days=1)).replace(day=1)
    return [
        {"label": "Last 7 days", "since": tomorrow - dt.timedelta(days=7), "until": tomorrow},
        {"label": "Last 30 days", "since": tomorrow - dt.timedelta(days=30), "until": tomorrow},
        {"label": f"Last month ({previous:%B %Y})", "since": previous, "until": month},
        {"label": "Last 90 days", "since": tomorrow - dt.timedelta(days=90), "until": tomorrow},
    ]


def period(query: dict[str, Any]) -> tuple[dt.datetime, dt.datetime]:
    """The chosen period: since/until from the query, by default the last 30 days (today included)."""
    default = presets(utcnow().date())[1]
    until = query.get("until") or _midnight(default["until"])
    since = query.get("since") or min(_midnight(default["since"]), until - dt.timedelta(days=30))
    return since, until


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def matrix_spec(statistics: dict[str, Any], link: str, source: str) -> dict[str, Any]:
    """The heatmap of the period's moves between stages (x = to, y = from); a cell opens the customers who moved.

    First stages (from no stage) are left to their own chart: on a young base they outnumber the
    moves between stages by far and would wash every other cell out of the colour scale.
    """
    stages = [s["stage"] for s in statistics["stages"]]
    moves = [m for m in statistics["matrix"] if m["from"] is not None]
    labels = stages + sorted({m[k] for m in moves for k in ("from", "to")} - set(stages))
    return {
        "kind": "heatmap",
        "x": labels,
        "y": labels,
        "cells": [[labels.index(m["to"]), labels.index(m["from"]), m["count"]] for m in moves],
        "cell_link": link,
        "x_name": "to",
        "y_name": "from",
        "source": source,
        "empty_text": "No customer changed stage in this period",
    }


def first_spec(statistics: dict[str, Any], source: str) -> dict[str, Any]:
    """Bars of the customers who got their first stage in the period, by that stage."""
    firsts = {m["to"]: m["count"] for m in statistics["matrix"] if m["from"] is None}
    stages = [s["stage"] for s in statistics["stages"]]
    categories = stages + sorted(set(firsts) - set(stages))
    return {
        "kind": "bar",
        "categories": categories if firsts else [],
        "series": [{"name": "first stage", "values": [firsts.get(c, 0) for c in categories]}],
        "source": source,
        "empty_text": "No customer got a first stage in this period",
    }


def history_spec(answer: dict[str, Any], source: str) -> dict[str, Any]:
    """Stacked bars of customers per stage at the end of each week."""
    return {
        "kind": "bar",
        "stacked": True,
        "categories": [f"{p['start']:%Y-%m-%d}" for p in answer["periods"]],
        "series": [{"name": s["stage"], "values": s["customers"]} for s in answer["stages"]],
        "x_name": "week from",
        "source": source,
        "empty_text": "No customers have a stage yet",
    }


@page("/lifecycle", title="Lifecycle", group="Dashboards", permission=Permission.ANALYTICS_READ, position=10)
def lifecycle():
    """Customers per stage now and over time, the period's moves as a heatmap, and each stage's recommended actions."""
    since, until = period(parse(PeriodFilters, request.args))
    revision = current_app.extensions["rulebook"].current
    history_since = min(since, until - dt.timedelta(weeks=HISTORY_WEEKS))
    with current_app.extensions["database"].session() as session:
        stats = service.statistics(session, revision=revision, since=since, until=until)
        past = history.stage_history(session, stages=service.stages(revision), since=history_since, until=until, interval="week")
    window = {"since": _iso(since), "until": _iso(until)}
    link = url_for("console.lifecycle_movers") + "?from={y}&to={x}&" + urlencode(window, quote_via=quote)
    return render(
        "console/lifecycle.html",
        title="Lifecycle",
        stats=stats,
        since=since,
        until=until,
        presets=presets(utcnow().date()),
        matrix=matrix_spec(stats, link, "/api/v1/lifecycle/statistics?" + urlencode(window)),
        firsts=first_spec(stats, "/api/v1/lifecycle/statistics?" + urlencode(window)),
        window=window,
        history=history_spec(
            past,
            "/api/v1/lifecycle/statistics/history?"
            + urlencode({"since": _iso(history_since), "until": _iso(until), "interval": "week"}),
        ),
        past=past,
        moves=sum(m["count"] for m in stats["matrix"] if m["from"] is not None),
        no_stage=NO_STAGE,
    )


@view("/lifecycle/movers", permission=Permission.ANALYTICS_READ)
def lifecycle_movers():
    """The customers who moved from one stage to another in a period (one heatmap cell), newest first, paged."""
    query = parse(MoverFilters, request.args)
    since, until = period(query)
    from_stage, to_stage = query.get("from_stage"), query.get("to_stage")
    filters = {
        "from_stage": None if from_stage == NO_STAGE else from_stage,
        "first": from_stage == NO_STAGE,
        "to_stage": to_stage,
        "since": since,
        "until": until,
    }
    revision = current_app.extensions["rulebook"].current
    with current_app.extensions["database"].session() as session:
        total = service.count_transitions(session, **filters)
        rows = service.list_transitions(session, limit=PAGE_SIZE + 1, before_id=query.get("before"), **filters)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return render(
        "console/lifecycle_movers.html",
        title="Who moved",
        active_page="console.lifecycle",
        rows=rows,
        more=more,
        total=total,
        from_stage=from_stage,
        to_stage=to_stage,
        since=since,
        until=until,
        actions=service.actions(revision, to_stage) if to_stage in service.stages(revision) else [],
        back=url_for("console.lifecycle", since=_iso(since), until=_iso(until)),
        no_stage=NO_STAGE,
    )
