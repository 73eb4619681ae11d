"""The points ledger: every movement of points, the balance kept equal to it, lots and expiry.

Every write here runs in the caller's transaction, after `lock` has taken the member's row (FOR
UPDATE on PostgreSQL; SQLite's write transactions are serialized by BEGIN IMMEDIATE). So two
requests for one member take turns, each sees what the other committed, and an idempotency key
is looked up under the lock: a retry finds the first attempt's entry instead of writing another.
The unique (customer_id, idempotency_key) index and the CHECK constraints (balance >= 0,
points <> 0) are the database's own last line: they hold even against a bug here.

Lots: every credit (earn, positive adjust, refund of a cancelled redemption) is a lot that can be
spent from `available_at` and expires at `expires_at`; every debit (redeem, expire, reverse,
negative adjust) uses the lots that expire first. Debits never exceed the balance, so the points
due to expire by a moment t are max(0, credits expiring by t - all debits so far): no per-lot
bookkeeping, and the figures follow from the ledger alone.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from decision_server import metrics
from decision_server.db import UtcDateTime, utcnow
from decision_server.errors import Conflict
from decision_server.loyalty.records import LedgerEntryRecord, MemberRecord

_l = LedgerEntryRecord.__table__
_m = MemberRecord.__table__

# Statements built once: constructing Core statements costs more than running them (~100 µs each).
_LOCK = sa.select(_m).where(_m.c.customer_id == sa.bindparam("cid")).with_for_update()
_FIND = sa.select(_l).where(_l.c.customer_id == sa.bindparam("cid"), _l.c.idempotency_key == sa.bindparam("key"))
_INSERT = (
    sa.insert(_l).values({c.name: sa.bindparam(c.name, type_=c.type) for c in _l.columns if c.name != "id"}).returning(_l.c.id)
)
_MOVE = (
    sa.update(_m)
    .where(_m.c.customer_id == sa.bindparam("cid"))
    .values(
        balance=sa.bindparam("balance"),
        earned_total=sa.bindparam("earned"),
        next_expiry_at=sa.bindparam("next_expiry", type_=UtcDateTime()),
        updated_at=sa.bindparam("now", type_=UtcDateTime()),
    )
)
_EARNED_12M = sa.select(sa.func.coalesce(sa.func.sum(_l.c.points), 0)).where(
    _l.c.customer_id == sa.bindparam("cid"),
    _l.c.kind.in_(("earn", "reverse")),
    _l.c.occurred_at >= sa.bindparam("since", type_=UtcDateTime()),
)
KINDS = ("earn", "redeem", "expire", "adjust", "reverse", "refund")


class InsufficientPoints(Conflict):
    """The member cannot afford this."""

    code = "insufficient_points"


class NotEnrolled(Conflict):
    """The customer is not a member of the loyalty program."""

    code = "not_enrolled"


def lock(conn: Connection, customer_id: int) -> dict[str, Any] | None:
    """Take the member's row for this transaction and return it (None: not a member)."""
    row = conn.execute(_LOCK, {"cid": customer_id}).first()
    return dict(row._mapping) if row else None


def find(conn: Connection, customer_id: int, key: str) -> dict[str, Any] | None:
    """Return the entry written under an idempotency key, if any."""
    row = conn.execute(_FIND, {"cid": customer_id, "key": key}).first()
    return dict(row._mapping) if row else None


def same_request(entry: dict[str, Any], request: dict[str, Any], field: str = "idempotency_key") -> None:
    """Refuse a key reused for a different request (409), so a retry can never change what was asked."""
    stored = (entry.get("details") or {}).get("request")
    if stored is not None and stored != request:
        differing = sorted(k for k in set(stored) | set(request) if stored.get(k) != request.get(k))
        message = f"this idempotency key was used for another request (differing: {', '.join(differing)})"
        raise Conflict(message, errors={field: [message]}, code="idempotency_conflict")


def post(
    conn: Connection,
    member: dict[str, Any],
    *,
    kind: str,
    points: int,
    key: str,
    now: dt.datetime,
    occurred_at: dt.datetime | None = None,
    pending_days: float = 0,
    expire_days: float = 0,
    transaction_id: int | None = None,
    redemption_id: int | None = None,
    reason: str | None = None,
    actor: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Append one entry and move the member's balance with it (the member row must be locked).

    Raises InsufficientPoints rather than let the balance go below zero.
    """
    assert kind in KINDS and points != 0
    balance = member["balance"] + points
    if balance < 0:
        raise InsufficientPoints(
            f"the member has {member['balance']:,} points; this needs {-points:,}",
            errors={"points": [f"balance {member['balance']}"]},
        )
    occurred_at = occurred_at or now
    credit = points > 0
    entry = {
        "customer_id": member["customer_id"],
        "kind": kind,
        "points": points,
        "balance_after": balance,
        "idempotency_key": key,
        "transaction_id": transaction_id,
        "redemption_id": redemption_id,
        "occurred_at": occurred_at,
        "available_at": occurred_at + dt.timedelta(days=pending_days) if credit else None,
        "expires_at": occurred_at + dt.timedelta(days=expire_days) if credit and expire_days > 0 else None,
        "reason": reason,
        "actor": actor,
        "details": details or {},
        "created_at": now,
    }
    entry["id"] = conn.execute(_INSERT, entry).scalar_one()
    earned = points if kind in ("earn", "reverse") else 0
    next_expiry = member["next_expiry_at"]
    if entry["expires_at"] is not None and (next_expiry is None or entry["expires_at"] < next_expiry):
        next_expiry = entry["expires_at"]
    conn.execute(
        _MOVE,
        {
            "cid": member["customer_id"],
            "balance": balance,
            "earned": member["earned_total"] + earned,
            "next_expiry": next_expiry,
            "now": now,
        },
    )
    member.update(balance=balance, earned_total=member["earned_total"] + earned, next_expiry_at=next_expiry)
    metrics.points_posted(kind, points)  # counted as written: a transaction rolled back after this still counts (rare)
    return entry


def expire_due(conn: Connection, member: dict[str, Any], now: dt.datetime) -> dict[str, Any] | None:
    """Expire the member's points whose time has come (member row locked); return the entry or None."""
    if member["next_expiry_at"] is None or member["next_expiry_at"] > now:
        return None
    due, upcoming = _due(conn, member["customer_id"], now)
    entry = None
    if due > 0:
        entry = post(
            conn,
            member,
            kind="expire",
            points=-due,
            key=f"expire:{now.isoformat()}",
            now=now,
            reason="points past their expiry date",
        )
    conn.execute(sa.update(_m).where(_m.c.customer_id == member["customer_id"]).values(next_expiry_at=upcoming))
    member["next_expiry_at"] = upcoming
    return entry


def _due(conn: Connection, customer_id: int, now: dt.datetime) -> tuple[int, dt.datetime | None]:
    """Points due to expire by now, and the next expiry after now (None: none)."""
    expired = sa.and_(_l.c.points > 0, _l.c.expires_at <= now)
    row = conn.execute(
        sa.select(
            sa.func.coalesce(sa.func.sum(sa.case((expired, _l.c.points), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(sa.case((_l.c.points < 0, -_l.c.points), else_=0)), 0),
            sa.func.min(
                sa.case((sa.and_(_l.c.points > 0, _l.c.expires_at > now), _l.c.expires_at), else_=sa.null()), type_=UtcDateTime()
            ),
        ).where(_l.c.customer_id == customer_id)
    ).first()
    return max(0, int(row[0]) - int(row[1])), row[2]


def figures(
    conn: Connection, customer_id: int, balance: int, *, now: dt.datetime | None = None, expiring_days: int = 30
) -> dict[str, Any]:
    """Derive from the ledger: pending, available, expiring within `expiring_days`, earned in 12 months."""
    now = now or utcnow()
    soon = now + dt.timedelta(days=expiring_days)
    year_ago = now - dt.timedelta(days=365)
    row = conn.execute(
        sa.select(
            sa.func.coalesce(sa.func.sum(sa.case((sa.and_(_l.c.points > 0, _l.c.available_at > now), _l.c.points), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(sa.case((sa.and_(_l.c.points > 0, _l.c.expires_at <= soon), _l.c.points), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(sa.case((_l.c.points < 0, -_l.c.points), else_=0)), 0),
            sa.func.coalesce(
                sa.func.sum(
                    sa.case((sa.and_(_l.c.kind.in_(("earn", "reverse")), _l.c.occurred_at >= year_ago), _l.c.points), else_=0)
                ),
                0,
            ),
            sa.func.coalesce(sa.func.sum(_l.c.points), 0),
        ).where(_l.c.customer_id == customer_id)
    ).first()
    pending, expiring_credits, debits, earned_12m, total = (int(v) for v in row)
    return {
        "balance": balance,
        "pending": pending,
        "available": max(0, balance - pending),
        "expiring": max(0, expiring_credits - debits),
        "expiring_by": soon,
        "earned_12m": earned_12m,
        "ledger_sum": total,
    }


def available(conn: Connection, member: dict[str, Any], now: dt.datetime) -> int:
    """Points the member can spend now: the balance less points still pending."""
    pending = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(_l.c.points), 0)).where(
            _l.c.customer_id == member["customer_id"], _l.c.points > 0, _l.c.available_at > now
        )
    ).scalar_one()
    return max(0, member["balance"] - int(pending))


def earned_12m(conn: Connection, customer_id: int, now: dt.datetime) -> int:
    """Points earned by purchases in the last 365 days, net of reversals (what tiers are earned with)."""
    return int(conn.execute(_EARNED_12M, {"cid": customer_id, "since": now - dt.timedelta(days=365)}).scalar_one())


def entries(
    conn: Connection,
    customer_id: int,
    *,
    limit: int,
    before: int | None = None,
    kind: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """Return up to limit + 1 of a member's entries, newest first (keyset on id)."""
    query = sa.select(_l).where(_l.c.customer_id == customer_id)
    if before is not None:
        query = query.where(_l.c.id < before)
    if kind is not None:
        query = query.where(_l.c.kind == kind)
    if since is not None:
        query = query.where(_l.c.created_at >= since)
    if until is not None:
        query = query.where(_l.c.created_at < until)
    return [dict(r._mapping) for r in conn.execute(query.order_by(_l.c.id.desc()).limit(limit + 1))]
