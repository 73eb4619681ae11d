"""Rewards (what points buy) and redemptions (spending points on one), atomic and idempotent.

A redemption is one database transaction that takes, in this order, the member's row (so the
member's requests take turns) and then the reward's stock with a conditional UPDATE
(`stock = stock - 1 WHERE stock > 0`), checks balance, tier and validity, and writes the
redemption and its ledger entry. Either all of it commits or none of it does; a process killed
half-way leaves nothing behind. The same lock order everywhere (member, then reward) means two
redemptions cannot deadlock.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from decision_server.db import utcnow
from decision_server.errors import Conflict, NotFound, ValidationError
from decision_server.loyalty import ledger
from decision_server.loyalty.records import RedemptionRecord, RewardRecord
from decision_server.loyalty.service import _member_or_409, policy
from decision_server.loyalty.tiers import tiers

_r, _x = RewardRecord.__table__, RedemptionRecord.__table__


class RewardOutOfStock(Conflict):
    """No stock left."""

    code = "reward_out_of_stock"


class TierNotAllowed(Conflict):
    """The member's tier may not take this reward."""

    code = "tier_not_allowed"


class RewardUnavailable(Conflict):
    """The reward is paused, retired, or outside its validity dates."""

    code = "reward_unavailable"


# --- catalog -----------------------------------------------------------------------------------


def create(conn: Connection, body: dict[str, Any]) -> dict[str, Any]:
    """Add a reward; its code is unique and its tiers must be defined."""
    _check(conn, body)
    now = utcnow()
    reward_id = conn.execute(
        sa.insert(_r)
        .values(
            **{"description": "", "tiers": [], "status": "active", "stock": None, **body},
            created_at=now,
            updated_at=now,
        )
        .returning(_r.c.id)
    ).scalar_one()
    return get(conn, reward_id)


def update(conn: Connection, reward_id: int, body: dict[str, Any]) -> dict[str, Any]:
    """Change a reward (stock included: set the new count, or null for unlimited)."""
    current = get(conn, reward_id)
    _check(conn, {**current, **body}, reward_id)
    if body:
        conn.execute(sa.update(_r).where(_r.c.id == reward_id).values(**body, updated_at=utcnow()))
    return get(conn, reward_id)


def delete(conn: Connection, reward_id: int) -> None:
    """Delete a reward never redeemed (otherwise retire it: redemptions refer to it)."""
    get(conn, reward_id)
    used = conn.execute(sa.select(sa.func.count()).select_from(_x).where(_x.c.reward_id == reward_id)).scalar_one()
    if used:
        raise Conflict(f"the reward was redeemed {used:,} times; retire it instead (status: retired)", code="reward_in_use")
    conn.execute(sa.delete(_r).where(_r.c.id == reward_id))


def get(conn: Connection, reward_id: int) -> dict[str, Any]:
    """One reward, or 404."""
    row = conn.execute(sa.select(_r).where(_r.c.id == reward_id)).first()
    if row is None:
        raise NotFound(f"no reward {reward_id}", code="reward_not_found")
    return dict(row._mapping)


def listing(
    conn: Connection,
    *,
    limit: int,
    after: int | None = None,
    status: str | None = None,
    tier: str | None = None,
    available_at: dt.datetime | None = None,
    max_points: int | None = None,
) -> list[dict[str, Any]]:
    """Rewards in id order; `tier` keeps those that tier may take, `available_at` those valid then and in stock."""
    query = sa.select(_r)
    if after is not None:
        query = query.where(_r.c.id > after)
    if status is not None:
        query = query.where(_r.c.status == status)
    if max_points is not None:
        query = query.where(_r.c.points_cost <= max_points)
    if available_at is not None:
        query = query.where(
            sa.or_(_r.c.valid_from.is_(None), _r.c.valid_from <= available_at),
            sa.or_(_r.c.valid_to.is_(None), _r.c.valid_to > available_at),
            sa.or_(_r.c.stock.is_(None), _r.c.stock > 0),
        )
    rows = [dict(r._mapping) for r in conn.execute(query.order_by(_r.c.id).limit(limit + 1 if tier is None else None))]
    if tier is not None:  # a JSON list: filtered here, the same way on both databases
        rows = [r for r in rows if not r["tiers"] or tier in r["tiers"]][: limit + 1]
    return rows


def _check(conn: Connection, body: dict[str, Any], reward_id: int | None = None) -> None:
    errors = {}
    if "code" in body:
        taken = conn.execute(sa.select(_r.c.id).where(_r.c.code == body["code"], _r.c.id != (reward_id or -1))).first()
        if taken:
            raise Conflict("another reward has this code", errors={"code": ["already used"]}, code="reward_conflict")
    unknown = sorted(set(body.get("tiers") or ()) - set(tiers(conn)))
    if unknown:
        errors["tiers"] = [f"not a defined tier: {', '.join(unknown)}"]
    if body.get("valid_from") and body.get("valid_to") and body["valid_to"] <= body["valid_from"]:
        errors["valid_to"] = ["must be after valid_from"]
    if errors:
        raise ValidationError("invalid reward", errors=errors)


# --- redemptions -------------------------------------------------------------------------------


def redeem(
    conn: Connection,
    customer_id: int,
    reward_id: int,
    *,
    key: str,
    channel: str | None = None,
    actor: str | None = None,
    now: dt.datetime | None = None,
) -> tuple[dict[str, Any], bool]:
    """Spend points on a reward, all or nothing; the same key returns the first redemption (created False)."""
    now = now or utcnow()
    member = _member_or_409(conn, customer_id)
    found = conn.execute(sa.select(_x).where(_x.c.customer_id == customer_id, _x.c.idempotency_key == key)).first()
    if found is not None:
        if found.reward_id != reward_id:
            message = "this idempotency key was used to redeem another reward"
            raise Conflict(message, errors={"idempotency_key": [message]}, code="idempotency_conflict")
        return dict(found._mapping), False
    reward = get(conn, reward_id)
    if (
        reward["status"] != "active"
        or (reward["valid_from"] and reward["valid_from"] > now)
        or (reward["valid_to"] and reward["valid_to"] <= now)
    ):
        raise RewardUnavailable(
            f"reward {reward['code']} cannot be redeemed now ({_why_unavailable(reward, now)})",
            errors={"reward_id": [_why_unavailable(reward, now)]},
        )
    if reward["tiers"] and member["tier"] not in reward["tiers"]:
        raise TierNotAllowed(
            f"reward {reward['code']} is for {', '.join(reward['tiers'])} members; the member is {member['tier']}",
            errors={"reward_id": [f"not for tier {member['tier']}"]},
        )
    if reward["stock"] == 0:  # checked again, atomically, when the item is taken below
        raise RewardOutOfStock(f"reward {reward['code']} is out of stock", errors={"reward_id": ["out of stock"]})
    ledger.expire_due(conn, member, now)
    cost = int(reward["points_cost"])
    spendable = ledger.available(conn, member, now)
    if spendable < cost:
        raise ledger.InsufficientPoints(
            f"the reward costs {cost:,} points; the member can spend {spendable:,}",
            errors={"reward_id": [f"costs {cost}, available {spendable}"]},
        )
    if reward["stock"] is not None:
        taken = conn.execute(
            sa.update(_r).where(_r.c.id == reward_id, _r.c.stock > 0).values(stock=_r.c.stock - 1, updated_at=now)
        ).rowcount
        if taken != 1:
            raise RewardOutOfStock(f"reward {reward['code']} is out of stock", errors={"reward_id": ["out of stock"]})
    redemption = {
        "customer_id": customer_id,
        "reward_id": reward_id,
        "points": cost,
        "status": "completed",
        "idempotency_key": key,
        "channel": channel,
        "actor": actor,
        "created_at": now,
    }
    redemption["id"] = conn.execute(sa.insert(_x).values(**redemption).returning(_x.c.id)).scalar_one()
    ledger.post(
        conn,
        member,
        kind="redeem",
        points=-cost,
        key=f"redemption:{redemption['id']}",
        now=now,
        redemption_id=redemption["id"],
        actor=actor,
        reason=f"reward {reward['code']}",
        details={"reward_code": reward["code"]},
    )
    return {**redemption, "cancelled_at": None, "cancel_reason": None, "cancelled_by": None}, True


def _why_unavailable(reward: dict[str, Any], now: dt.datetime) -> str:
    if reward["status"] != "active":
        return f"it is {reward['status']}"
    if reward["valid_from"] and reward["valid_from"] > now:
        return f"valid from {reward['valid_from'].isoformat()}"
    return f"expired on {reward['valid_to'].isoformat()}"


def cancel(
    conn: Connection, redemption_id: int, *, reason: str, actor: str | None, revision: Any, now: dt.datetime | None = None
) -> tuple[dict[str, Any], bool]:
    """Cancel a redemption: points back to the member, stock back to the reward; cancelling twice is a no-op."""
    now = now or utcnow()
    row = conn.execute(sa.select(_x).where(_x.c.id == redemption_id)).first()
    if row is None:
        raise NotFound(f"no redemption {redemption_id}", code="redemption_not_found")
    member = _member_or_409(conn, row.customer_id)  # member first, then the redemption and the reward
    row = conn.execute(sa.select(_x).where(_x.c.id == redemption_id).with_for_update()).first()
    if row.status == "cancelled":
        return dict(row._mapping), False
    conn.execute(
        sa.update(_x)
        .where(_x.c.id == redemption_id)
        .values(status="cancelled", cancelled_at=now, cancel_reason=reason, cancelled_by=actor)
    )
    conn.execute(
        sa.update(_r).where(_r.c.id == row.reward_id, _r.c.stock.is_not(None)).values(stock=_r.c.stock + 1, updated_at=now)
    )
    rules = policy(revision, member["tier"])
    ledger.post(
        conn,
        member,
        kind="refund",
        points=int(row.points),
        key=f"cancel:{redemption_id}",
        now=now,
        redemption_id=redemption_id,
        actor=actor,
        reason=reason,
        expire_days=rules["points_expire_days"],
    )
    return {**row._mapping, "status": "cancelled", "cancelled_at": now, "cancel_reason": reason, "cancelled_by": actor}, True


def redemption(conn: Connection, redemption_id: int) -> dict[str, Any]:
    """One redemption with its reward code and customer id, or 404."""
    row = conn.execute(_listing_query().where(_x.c.id == redemption_id)).first()
    if row is None:
        raise NotFound(f"no redemption {redemption_id}", code="redemption_not_found")
    return dict(row._mapping)


def _listing_query():
    from decision_server.customers.records import CustomerRecord

    c = CustomerRecord.__table__
    return (
        sa.select(_x, _r.c.code.label("reward_code"), c.c.external_id)
        .join(_r, _r.c.id == _x.c.reward_id)
        .join(c, c.c.id == _x.c.customer_id)
    )


def redemptions(
    conn: Connection,
    *,
    limit: int,
    before: int | None = None,
    customer_id: int | None = None,
    reward_id: int | None = None,
    status: str | None = None,
) -> list[dict[str, Any]]:
    """Redemptions newest first (keyset on id), filtered by customer, reward and status."""
    query = _listing_query()
    for column, value in ((_x.c.customer_id, customer_id), (_x.c.reward_id, reward_id), (_x.c.status, status)):
        if value is not None:
            query = query.where(column == value)
    if before is not None:
        query = query.where(_x.c.id < before)
    return [dict(r._mapping) for r in conn.execute(query.order_by(_x.c.id.desc()).limit(limit + 1))]
