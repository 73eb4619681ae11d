"""Loyalty runs over every member: points expiry and the periodic tier review, chunk by chunk.

Each chunk is one transaction that first locks its members' rows (in id order, as every other
writer takes one member at a time), so a purchase or a redemption arriving meanwhile waits for
the chunk or runs before it, never half-way. A run stopped half-way keeps the chunks it finished;
running it again continues (expiry only looks at members with points due; the review only writes
changes).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from decision_server import metrics
from decision_server.customers.records import CustomerRecord, CustomerStateRecord
from decision_server.db import Database, UtcDateTime, utcnow
from decision_server.features import bulk as feature_bulk
from decision_server.features.definition import FEATURE_NAMES, Windows
from decision_server.loyalty.records import (
    LedgerEntryRecord,
    MemberRecord,
    TierChangeRecord,
)
from decision_server.loyalty.service import policy
from decision_server.loyalty.tiers import tiers
from decision_server.rulebook.requirements import require
from decision_server.transactions.records import TransactionRecord

_m, _l, _h = MemberRecord.__table__, LedgerEntryRecord.__table__, TierChangeRecord.__table__
_c, _s, _t = CustomerRecord.__table__, CustomerStateRecord.__table__, TransactionRecord.__table__
CHUNK = 10_000
Progress = Callable[[int, int], None]  # (members done, members in all)


def _count(conn: Connection, *where) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(_m).where(*where)).scalar_one()


def _chunk(conn: Connection, columns: tuple[str, ...], after: int, chunk: int, *where, lock: bool = True) -> list[dict[str, Any]]:
    """The next `chunk` members after id `after` (only the columns a job reads), locked for this transaction."""
    query = (
        sa.select(*(_m.c[name] for name in columns))
        .where(_m.c.customer_id > after, *where)
        .order_by(_m.c.customer_id)
        .limit(chunk)
    )
    return [dict(zip(columns, r, strict=True)) for r in conn.execute(query.with_for_update() if lock else query)]


def expire_points(
    database: Database, *, now: dt.datetime | None = None, chunk: int = CHUNK, progress: Progress | None = None
) -> dict[str, Any]:
    """Expire every member's points past their expiry date (oldest credits are spent first)."""
    now = now or utcnow()
    started = time.perf_counter()
    due_filter = sa.and_(_m.c.next_expiry_at.is_not(None), _m.c.next_expiry_at <= now)
    with database.connection() as conn:
        total = _count(conn, due_filter)
    members = changed = points = 0
    after = 0
    key = f"expire:{now.isoformat()}"
    while True:
        with database.connection(write=True) as conn:
            rows = _chunk(conn, ("customer_id", "balance"), after, chunk, due_filter)
            if not rows:
                break
            ids = [r["customer_id"] for r in rows]
            expired = sa.and_(_l.c.points > 0, _l.c.expires_at <= now)
            sums = {
                r[0]: r[1:]
                for r in conn.execute(
                    sa.select(
                        _l.c.customer_id,
                        sa.func.coalesce(sa.func.sum(sa.case((expired, _l.c.points), else_=0)), 0),
                        sa.func.coalesce(sa.func.sum(sa.case((_l.c.points < 0, -_l.c.points), else_=0)), 0),
                        sa.func.min(
                            sa.case((sa.and_(_l.c.points > 0, _l.c.expires_at > now), _l.c.expires_at), else_=sa.null()),
                            type_=UtcDateTime(),
                        ),
                    )
                    .where(_l.c.customer_id.in_(ids))
                    .group_by(_l.c.customer_id)
                )
            }  # the due members only, not the id range
            entries, updates = [], []
            for member in rows:
                credits, debits, upcoming = sums.get(member["customer_id"], (0, 0, None))
                due = max(0, int(credits) - int(debits))
                balance = member["balance"] - due
                if due > 0:
                    entries.append(
                        {
                            "customer_id": member["customer_id"],
                            "kind": "expire",
                            "points": -due,
                            "balance_after": balance,
                            "idempotency_key": key,
                            "transaction_id": None,
                            "redemption_id": None,
                            "occurred_at": now,
                            "available_at": None,
                            "expires_at": None,
                            "reason": "points past their expiry date",
                            "actor": "bulk",
                            "details": {},
                            "created_at": now,
                        }
                    )
                    points += due
                updates.append({"cid": member["customer_id"], "balance": balance, "upcoming": upcoming})
            if entries:
                conn.execute(sa.insert(_l), entries)
            conn.execute(
                sa.update(_m)
                .where(_m.c.customer_id == sa.bindparam("cid"))
                .values(balance=sa.bindparam("balance"), next_expiry_at=sa.bindparam("upcoming"), updated_at=now),
                updates,
            )
            changed += len(entries)
            members += len(rows)
            after = ids[-1]
        metrics.points_posted("expire", sum(e["points"] for e in entries))  # the chunk has committed
        if progress:
            progress(members, total)
    return {
        "members": members,
        "changed": changed,
        "points": points,
        "transitions": [],
        "seconds": round(time.perf_counter() - started, 3),
    }


# Tier rule inputs computed here without the full feature pass; any other input named after a
# feature makes the review compute the chunk's features (slower, but any rule condition works).
_CHEAP = {"points_earned_12m", "spend_12m", "customer_since", "stage", "value_segment"}


def _columns(conn: Connection, ids: list[int], inputs: list[str], now: dt.datetime) -> dict[str, np.ndarray]:
    lo, hi = ids[0], ids[-1]
    position = {cid: i for i, cid in enumerate(ids)}
    n = len(ids)
    earned = np.zeros(n)
    for cid, total in conn.execute(
        sa.select(_l.c.customer_id, sa.func.sum(_l.c.points))
        .where(
            _l.c.customer_id.between(lo, hi), _l.c.kind.in_(("earn", "reverse")), _l.c.occurred_at >= now - dt.timedelta(days=365)
        )
        .group_by(_l.c.customer_id)
    ):
        if cid in position:
            earned[position[cid]] = int(total)
    columns: dict[str, np.ndarray] = {"points_earned_12m": earned}
    since = np.full(n, np.nan)
    for cid, created in conn.execute(sa.select(_c.c.id, _c.c.created_at).where(_c.c.id.between(lo, hi))):
        if cid in position:
            since[position[cid]] = created.timestamp()
    columns["customer_since"] = since
    stage, segment = np.full(n, None, dtype=object), np.full(n, None, dtype=object)
    for cid, st, vs in conn.execute(
        sa.select(_s.c.customer_id, _s.c.stage, _s.c.value_segment).where(_s.c.customer_id.between(lo, hi))
    ):
        if cid in position:
            stage[position[cid]], segment[position[cid]] = st, vs
    columns.update(stage=stage, value_segment=segment)
    if set(inputs) - _CHEAP:
        features = feature_bulk.features(conn, np.array(ids, dtype=np.int64), now)
        for name in inputs:
            if name in FEATURE_NAMES:
                columns[name] = features.values[:, FEATURE_NAMES.index(name)].astype(np.float64)
    elif "spend_12m" in inputs:
        start = Windows.at(now).start_12m
        spend = np.zeros(n)
        for cid, total in conn.execute(
            sa.select(_t.c.customer_id, sa.func.sum(_t.c.amount_cents))
            .where(_t.c.customer_id.between(lo, hi), _t.c.occurred_at >= start, _t.c.occurred_at <= now)
            .group_by(_t.c.customer_id)
        ):
            if cid in position:
                spend[position[cid]] = int(total or 0) / 100.0
        columns["spend_12m"] = spend
    return columns


def review_tiers(
    database: Database,
    revision: Any,
    *,
    now: dt.datetime | None = None,
    chunk: int = CHUNK,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Give every member the tier the rules say, moving down only as rules/loyalty_policy.yaml allows.

    Up: at once (as on a purchase). Down, by the policy of the member's tier: `never`; `review`: now;
    `grace`: once they have qualified lower for `grace_days` (counted from when an event or a review
    first saw it). `dry_run` writes nothing and returns the same counts.
    """
    require(revision, "tiers")
    now = now or utcnow()
    started = time.perf_counter()
    inputs = list(revision.rulesets["tiers"].inputs)
    with database.connection() as conn:
        defined = tiers(conn)
        total = _count(conn)
    rank = {name: t["rank"] for name, t in defined.items()}
    policies = {name: policy(revision, name) for name in defined}
    counts: dict[tuple[str, str], int] = {}
    members = changed = 0
    after = 0
    while True:
        with database.connection(write=not dry_run) as conn:
            rows = _chunk(conn, ("customer_id", "tier", "below_since"), after, chunk, lock=not dry_run)
            if not rows:
                break
            ids = [r["customer_id"] for r in rows]
            columns = _columns(conn, ids, inputs, now)
            decided = revision.outcome_columns("tiers", columns, ("tier",), now=now.timestamp())
            changes, below_updates = [], []
            for i, member in enumerate(rows):
                qualified, rule_id = decided["tier"][i], decided["rule_id"][i]
                if qualified not in rank:
                    continue
                have, get = rank[member["tier"]], rank[qualified]
                move = False
                below = member["below_since"]
                if get > have:
                    move = True
                elif get == have:
                    below = None
                else:
                    rules = policies[member["tier"]]
                    below = below or now
                    if rules["downgrade"] == "review" or (
                        rules["downgrade"] == "grace" and now - below >= dt.timedelta(days=float(rules["grace_days"]))
                    ):
                        move = True
                if move:
                    changes.append(
                        {
                            "customer_id": member["customer_id"],
                            "from_tier": member["tier"],
                            "to_tier": qualified,
                            "at": now,
                            "source": "review",
                            "rule_id": rule_id,
                            "rule_revision": revision.id,
                            "actor": None,
                            "reason": None,
                        }
                    )
                    counts[(member["tier"], qualified)] = counts.get((member["tier"], qualified), 0) + 1
                elif below != member["below_since"]:
                    below_updates.append({"cid": member["customer_id"], "below": below})
            if changes and not dry_run:
                conn.execute(sa.insert(_h), changes)
                conn.execute(
                    sa.update(_m)
                    .where(_m.c.customer_id == sa.bindparam("cid"))
                    .values(tier=sa.bindparam("to"), tier_since=now, below_since=None, updated_at=now),
                    [{"cid": c["customer_id"], "to": c["to_tier"]} for c in changes],
                )
            if below_updates and not dry_run:
                conn.execute(
                    sa.update(_m).where(_m.c.customer_id == sa.bindparam("cid")).values(below_since=sa.bindparam("below")),
                    below_updates,
                )
            changed += len(changes)
            members += len(rows)
            after = ids[-1]
        if progress:
            progress(members, total)
    return {
        "members": members,
        "changed": changed,
        "points": 0,
        "dry_run": dry_run,
        "transitions": [{"from": k[0], "to": k[1], "count": v} for k, v in sorted(counts.items(), key=lambda kv: -kv[1])],
        "seconds": round(time.perf_counter() - started, 3),
    }
