"""Segments: every segment with its size now and over time, and one segment's members, paged and filterable."""

from __future__ import annotations

from flask import current_app, request

from decision_server.auth.roles import Permission
from decision_server.console.pages import page, view
from decision_server.console.query import parse_query
from decision_server.console.render import render
from decision_server.schemas import encode_cursor
from decision_server.segments import service as segments
from decision_server.segments.schemas import MemberQuerySchema

PAGE_SIZE = 25
# Points of the list's sparklines: the last recomputes (one a night by default: two months).
SPARK_POINTS = 60


def _rules():
    return current_app.extensions["rulebook"].current


@page("/segments", title="Segments", group="Dashboards", permission=Permission.ANALYTICS_READ, position=60)
def segment_list():
    """Every segment: its condition, its size now and a sparkline of its sizes after the last recomputes."""
    with current_app.extensions["database"].session() as session:
        found = segments.list_segments(session, rules=_rules())["items"]
        sizes = {s["name"]: [c["members"] for c in segments.sizes(session, name=s["name"], last=SPARK_POINTS)] for s in found}
    return render("console/segments.html", title="Segments", segments=found, sizes=sizes, spark_points=SPARK_POINTS)


@view("/segments/<string:name>", permission=Permission.ANALYTICS_READ)
def segment(name: str):
    """One segment: its definition, its size over time and its members (filters and cursor as in the members API)."""
    query = parse_query(MemberQuerySchema, request.args)
    filters = {k: query[k] for k in segments.MEMBER_FILTERS if k in query}
    limit = query["limit"] if "limit" in request.args else PAGE_SIZE
    rules = _rules()
    segments.check_member_filters(rules, **{k: v for k, v in filters.items() if k != "q"})
    after = query["cursor"][0] if query.get("cursor") else None
    with current_app.extensions["database"].session() as session:
        found = segments.get_segment(session, name=name)
        history = segments.sizes(session, name=name)
        rows = segments.members(session, name=name, limit=limit + 1, after_id=after, **filters)
        matching = segments.count_members(session, name=name, **filters) if filters else found["members"]
    more = len(rows) > limit
    rows = rows[:limit]
    vocabulary = segments.vocabulary(rules)
    return render(
        "console/segment.html",
        title=f"Segment {name}",
        segment=found,
        history=history,
        rows=rows,
        more=more,
        next_cursor=encode_cursor(rows[-1]["cid"]) if more else None,
        matching=matching,
        filters=filters,
        stages=vocabulary["stage"]["values"],
        value_segments=vocabulary["value_segment"]["values"],
    )
