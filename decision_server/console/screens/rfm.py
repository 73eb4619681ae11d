"""RFM: the R×F grid (buyers or revenue), segment sizes, the newest run's cut points, segment moves between runs."""

from __future__ import annotations

import datetime as dt
from typing import Any

import marshmallow as ma
from flask import current_app, request

from decision_server.auth.roles import Permission
from decision_server.console.pages import page
from decision_server.console.render import render
from decision_server.errors import ValidationError
from decision_server.rfm import service as rfm
from decision_server.rfm.schemas import RfmGridQuerySchema
from decision_server.validation import cents_to_decimal

SCORES = range(1, rfm.SCORES + 1)


def query_args(schema: ma.Schema) -> dict[str, Any]:
    """Validate this page's query string with the API's schema; a bad value becomes the console's 422 page."""
    try:
        return schema.load(request.args)
    except ma.ValidationError as error:
        raise ValidationError("check the filters in the address", errors=error.normalized_messages()) from error


def grid_spec(grid: dict[str, Any]) -> dict[str, Any]:
    """The heatmap: x = frequency score 1..5, y = recency score 5..1 (best top left), the same numbers as GET /rfm/grid."""
    revenue = grid["measure"] == "revenue"
    return {
        "kind": "heatmap",
        "x": [str(f) for f in SCORES],
        "y": [str(r) for r in reversed(SCORES)],
        "x_name": "Frequency score",
        "y_name": "Recency score",
        "format": "integer",  # revenue to the unit in labels (the numbers keep their cents)
        "cells": [[c["f"] - 1, rfm.SCORES - c["r"], float(c["value"]) if revenue else c["value"]] for c in grid["cells"]],
    }


def cut_rows(run: Any) -> list[dict[str, Any]]:
    """The newest run's four cut points per measure, in words: a value above the k-th scores k + 1."""
    cuts = run["cuts"] if run else None
    if not cuts or not cuts.get("recency"):
        return []
    as_date = lambda v: dt.datetime.fromtimestamp(v, dt.UTC).strftime("%Y-%m-%d")  # noqa: E731
    return [
        {"measure": "Recency (last purchase)", "edges": [as_date(v) for v in cuts["recency"]]},
        {"measure": "Frequency (purchases)", "edges": [f"{v:,.0f}" for v in cuts["frequency"]]},
        {"measure": "Monetary (spend)", "edges": [f"{cents_to_decimal(round(v)):,}" for v in cuts["monetary"]]},
    ]


def moves_spec(moves: dict[str, Any]) -> dict[str, Any]:
    """The from → to heatmap of segment moves (GET /rfm/moves): the segments held before as rows, after as columns, by size."""

    def ordered(side: str) -> list[str]:
        size: dict[str, int] = {}
        for m in moves["moves"]:
            size[m[side]] = size.get(m[side], 0) + m["customers"]
        return sorted(size, key=lambda n: (n == "none", -size[n], n))

    rows, columns = ordered("from"), ordered("to")
    y, x = {n: i for i, n in enumerate(rows)}, {n: i for i, n in enumerate(columns)}
    return {
        "kind": "heatmap",
        "x": columns,
        "y": rows,
        "x_name": "to",
        "y_name": "from",
        "format": "integer",
        "cells": [[x[m["to"]], y[m["from"]], m["customers"]] for m in moves["moves"]],
    }


def moves_height(spec: dict[str, Any]) -> int:
    """A chart height (a console.css h- class) that suits the number of rows."""
    return 200 if len(spec["y"]) <= 2 else 320 if len(spec["y"]) <= 6 else 480


@page("/rfm", title="RFM", group="Dashboards", permission=Permission.ANALYTICS_READ, position=30)
def rfm_dashboard():
    """Recency, frequency and monetary scores of the base: where buyers sit and how they move."""
    args = query_args(RfmGridQuerySchema())
    with current_app.extensions["database"].session() as session:
        stats = rfm.statistics(session)
        grid = rfm.grid(session, measure=args["measure"])
        moves = rfm.moves(session)
    run = stats["run"]
    spec = moves_spec(moves)
    segments = stats["segments"]
    return render(
        "console/rfm.html",
        title="RFM",
        measure=args["measure"],
        run=run,
        grid=grid,
        grid_spec=grid_spec(grid),
        segments=segments,
        segments_spec={
            "kind": "bar",
            "horizontal": True,
            "categories": [s["segment"] for s in segments],
            "series": [{"name": "customers", "values": [s["customers"] for s in segments]}],
        },
        cuts=cut_rows(run),
        moves=moves,
        moves_spec=spec,
        moves_height=moves_height(spec),
        changed=[m for m in moves["moves"] if m["moved"]][:15],
    )
