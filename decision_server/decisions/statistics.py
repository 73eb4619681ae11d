"""The decision log summed over a period: by channel, by offer, per day, and the rules that removed offers.

Latency is counted in fixed buckets in the database (no row leaves it), so a day of 86M
decisions costs one grouped scan, and p50/p95 are read off the bucket counts: each is the upper
edge of the bucket where the cumulative count crosses the share (an upper bound, never an
underestimate).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from decision_server.db import as_date, utc_day
from decision_server.decisions import log
from decision_server.decisions.log import RESPONSES, _a, _d, _r
from decision_server.offers.records import OfferRecord
from decision_server.periods import period_starts

# Upper edges of the latency buckets, in microseconds; the last bucket is everything slower.
LATENCY_EDGES_US = (250, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000)
# A period not given: the 14 days up to today included (the demo traffic's fortnight).
DEFAULT_DAYS = 14
# How many of the newest decisions of a period `removals` reads (the console says it is a sample).
REMOVAL_SAMPLE = 1_000  # the default sample: ~40 ms on the demo (2,000 took ~220 ms, over the pages' 150 ms)
MAX_REMOVAL_SAMPLE = 10_000
_o = OfferRecord.__table__


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


def offers(conn: Connection, *, since: dt.datetime, until: dt.datetime) -> list[dict[str, Any]]:
    """Return per offer made in [since, until): its code, name and category, actions, responses, acceptance; most made first."""
    stats = log.offer_statistics(conn, since=since, until=until)
    ids = [s["offer_id"] for s in stats]
    catalog = {
        row.id: row
        for row in conn.execute(sa.select(_o.c.id, _o.c.code, _o.c.name, _o.c.category, _o.c.status).where(_o.c.id.in_(ids)))
    }
    rows = []
    for s in stats:
        offer = catalog.get(s["offer_id"])  # an offer made is never deleted (offer_in_use); retired ones stay
        names = {k: getattr(offer, k, None) for k in ("code", "name", "category", "status")}
        rows.append({**s, **names})
    return sorted(rows, key=lambda r: (-r["actions"], r["offer_id"]))


def daily(conn: Connection, *, since: dt.datetime, until: dt.datetime) -> dict[str, Any]:
    """Return per UTC day of [since, until): decisions and latency p50/p95, and per channel decisions, actions, acceptance.

    A response counts on its decision's day (the cohort), so a day's acceptance rate is final once
    its late responses are in, and matches by_channel for the same period.
    """
    days = period_starts(since, until, "day")
    index = {d: i for i, d in enumerate(days)}
    n = len(days)
    buckets = [[0] * (len(LATENCY_EDGES_US) + 1) for _ in days]
    channels: dict[str, dict[str, list]] = {}

    def row(channel: str) -> dict[str, list]:
        return channels.setdefault(channel, {"decisions": [0] * n, "actions": [0] * n, "accepted": [0] * n})

    day = utc_day(conn, _d.c.decided_at).label("day")
    bucket = _bucket(_d.c.latency_us).label("bucket")
    decided = (
        sa.select(day, _d.c.channel, bucket, sa.func.count())
        .where(_d.c.decided_at >= since, _d.c.decided_at < until)
        .group_by(day, _d.c.channel, bucket)
    )
    for on, channel, b, count in conn.execute(decided):
        i = index[as_date(on)]
        row(channel)["decisions"][i] += count
        buckets[i][b] += count
    action_day = utc_day(conn, _a.c.decided_at).label("day")
    acted = (
        sa.select(action_day, _a.c.channel, sa.func.count())
        .where(_a.c.decided_at >= since, _a.c.decided_at < until)
        .group_by(action_day, _a.c.channel)
    )
    for on, channel, count in conn.execute(acted):
        row(channel)["actions"][index[as_date(on)]] = count
    response_day = utc_day(conn, _r.c.decided_at).label("day")
    accepted = (
        sa.select(response_day, _a.c.channel, sa.func.count())
        .join(_a, sa.and_(_a.c.decision_id == _r.c.decision_id, _a.c.rank == _r.c.rank, _a.c.decided_at == _r.c.decided_at))
        .where(_r.c.decided_at >= since, _r.c.decided_at < until, _r.c.response == "accepted")
        .group_by(response_day, _a.c.channel)
    )
    for on, channel, count in conn.execute(accepted):
        row(channel)["accepted"][index[as_date(on)]] = count
    return {
        "since": since,
        "until": until,
        "days": [d.isoformat() for d in days],
        "decisions": [sum(b) for b in buckets],
        "latency_p50_us": [_percentile(b, 0.5) for b in buckets],
        "latency_p95_us": [_percentile(b, 0.95) for b in buckets],
        "channels": [
            {
                "channel": name,
                **c,
                "acceptance_rate": [round(a / m, 6) if m else None for a, m in zip(c["accepted"], c["actions"], strict=True)],
            }
            for name, c in sorted(channels.items())
        ],
    }


def removals(conn: Connection, *, since: dt.datetime, until: dt.datetime, sample: int = REMOVAL_SAMPLE) -> dict[str, Any]:
    """Return which rules removed offers, counted over the latest `sample` decisions of [since, until).

    The removals live only in each decision's candidates JSON, which no index can sum: reading a
    bounded sample of the newest decisions keeps the answer fast on any volume, and says so.
    """
    latest = (  # the JSON as text, parsed by orjson: four times faster than the driver's json
        sa.select(sa.cast(_d.c.candidates, sa.Text))
        .where(_d.c.decided_at >= since, _d.c.decided_at < until)
        .order_by(_d.c.decided_at.desc(), _d.c.id.desc())
        .limit(sample)
    )
    rules: dict[tuple[str, str], dict[str, Any]] = {}
    decisions = candidates = removed = 0
    for (text,) in conn.execute(latest):
        found = orjson.loads(text) if text else None
        decisions += 1
        seen: set[tuple[str, str]] = set()
        for candidate in found or []:
            candidates += 1
            removed += bool(candidate.get("removed_by"))
            for removal in candidate.get("removed_by") or []:
                key = (str(removal.get("ruleset")), str(removal.get("rule")))
                entry = rules.setdefault(
                    key,
                    {
                        "ruleset": key[0],
                        "rule": key[1],
                        "removals": 0,
                        "decisions": 0,
                        "reason": removal.get("reason"),
                        "offers": {},
                    },
                )
                entry["removals"] += 1
                code = candidate.get("code") or str(candidate.get("offer_id"))
                entry["offers"][code] = entry["offers"].get(code, 0) + 1
                if key not in seen:
                    seen.add(key)
                    entry["decisions"] += 1
    items = sorted(rules.values(), key=lambda r: (-r["removals"], r["ruleset"], r["rule"]))
    for item in items:
        item["share"] = round(item["removals"] / candidates, 6) if candidates else None
        # The offers it removed most, at most five: what the rule is about, in the catalog's words.
        item["offers"] = [
            {"code": c, "removals": k} for c, k in sorted(item["offers"].items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        ]
    return {
        "since": since,
        "until": until,
        "sample_limit": sample,
        "decisions": decisions,
        "candidates": candidates,
        "removed": removed,
        "rules": items,
    }
