"""The decision log summed by channel over a period: volume, actions, responses, acceptance and latency.

Latency is counted in fixed buckets in the database (no row leaves it), so a day of 86M
decisions costs one grouped scan, and p50/p95 are read off the bucket counts: each is the upper
edge of the bucket where the cumulative count crosses the share (an upper bound, never an
underestimate).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from decision_server.decisions.log import RESPONSES, _a, _d, _r

# Upper edges of the latency buckets, in microseconds; the last bucket is everything slower.
LATENCY_EDGES_US = (250, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000)


def _bucket(column: sa.ColumnElement) -> sa.ColumnElement:
    whens = [(column <= edge, i) for i, edge in enumerate(LATENCY_EDGES_US)]
    return sa.case(*whens, else_=len(LATENCY_EDGES_US))


def _percentile(counts: list[int], share: float) -> int | None:
    """The upper edge (µs) of the bucket holding the `share` quantile; None without decisions; -1 past the last edge."""
    total = sum(counts)
    if not total:
        return None
    running = 0
    for i, n in enumerate(counts):
        running += n
        if running >= share * total:
            return LATENCY_EDGES_US[i] if i < len(LATENCY_EDGES_US) else -1
    return -1


def by_channel(conn: Connection, *, since: dt.datetime, until: dt.datetime) -> dict[str, Any]:
    """Return decisions in [since, until) per channel with actions, responses, acceptance rate and latency."""
    in_period = sa.and_(_d.c.decided_at >= since, _d.c.decided_at < until)
    bucket = _bucket(_d.c.latency_us).label("bucket")
    channels: dict[str, dict[str, Any]] = {}

    def row(channel: str) -> dict[str, Any]:
        return channels.setdefault(
            channel,
            {
                "channel": channel,
                "decisions": 0,
                "with_action": 0,
                "actions": 0,
                "responses": {r: 0 for r in RESPONSES},
                "latency_buckets": [0] * (len(LATENCY_EDGES_US) + 1),
            },
        )

    decided = sa.select(_d.c.channel, bucket, sa.func.count()).where(in_period).group_by(_d.c.channel, bucket)
    for channel, b, n in conn.execute(decided):
        row(channel)["decisions"] += n
        row(channel)["latency_buckets"][b] += n
    acted = (
        sa.select(_a.c.channel, sa.func.count(), sa.func.count(sa.distinct(_a.c.decision_id)))
        .where(_a.c.decided_at >= since, _a.c.decided_at < until)
        .group_by(_a.c.channel)
    )
    for channel, actions, decisions in conn.execute(acted):
        row(channel)["actions"] = actions
        row(channel)["with_action"] = decisions
    answered = (
        sa.select(_a.c.channel, _r.c.response, sa.func.count())
        .join(_a, sa.and_(_a.c.decision_id == _r.c.decision_id, _a.c.rank == _r.c.rank, _a.c.decided_at == _r.c.decided_at))
        .where(_r.c.decided_at >= since, _r.c.decided_at < until)
        .group_by(_a.c.channel, _r.c.response)
    )
    for channel, response, n in conn.execute(answered):
        row(channel)["responses"][response] = n
    items = [channels[c] for c in sorted(channels)]
    for item in items:
        item["acceptance_rate"] = round(item["responses"]["accepted"] / item["actions"], 6) if item["actions"] else None
        item["latency_p50_us"] = _percentile(item["latency_buckets"], 0.5)
        item["latency_p95_us"] = _percentile(item["latency_buckets"], 0.95)
    actions = sum(i["actions"] for i in items)
    accepted = sum(i["responses"]["accepted"] for i in items)
    return {
        "since": since,
        "until": until,
        "decisions": sum(i["decisions"] for i in items),
        "actions": actions,
        "accepted": accepted,
        "acceptance_rate": round(accepted / actions, 6) if actions else None,
        "latency_edges_us": list(LATENCY_EDGES_US),
        "channels": items,
    }
