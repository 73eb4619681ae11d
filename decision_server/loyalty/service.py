"""Loyalty members: enrolment, tiers (definitions, qualification, history), earning and adjusting points.

Who qualifies for which tier is `rules/tiers.yaml`; what a tier is worth (rank, multiplier,
benefits) is the `loyalty_tiers` table, edited over the API (`loyalty.tiers`). A member moves up at once when an
event qualifies them (a purchase's points count in the same transaction); how they move down is
`rules/loyalty_policy.yaml` (never, at a review, or after a grace period), applied by
`loyalty.bulk.review_tiers`. Points movements go through `ledger` under the member's row lock.
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import ROUND_FLOOR, Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from decision_server.customers.records import CustomerRecord, CustomerStateRecord
from decision_server.db import upsert, utcnow
from decision_server.errors import Conflict, NotFound, ValidationError
from decision_server.features import online
from decision_server.features.definition import as_dict
from decision_server.loyalty import ledger
from decision_server.loyalty.records import MemberRecord, TierChangeRecord
from decision_server.loyalty.tiers import tiers
from decision_server.rulebook.requirements import missing

log = logging.getLogger(__name__)

_m, _h = MemberRecord.__table__, TierChangeRecord.__table__
_c, _s = CustomerRecord.__table__, CustomerStateRecord.__table__
DEFAULT_POLICY = {"pending_days": 0, "points_expire_days": 730, "downgrade": "grace", "grace_days": 90}
# --- policy and qualification ------------------------------------------------------------------


def policy(revision: Any, tier: str | None) -> dict[str, Any]:
    """The pending, expiry and downgrade policy for a tier (rules/loyalty_policy.yaml)."""
    if missing(revision, "loyalty_policy"):
        return dict(DEFAULT_POLICY)
    outcome = revision.evaluate("loyalty_policy", {"tier": tier}, backend="python").outcome or {}
    return {**DEFAULT_POLICY, **outcome}


_READ_FACTS = online.READ_BY_ID.add_columns(_s.c.stage, _s.c.value_segment)


def tier_facts(conn: Connection, customer_id: int, now: dt.datetime) -> dict[str, Any]:
    """What the tier rules may read about one customer: features, stage and segment, points earned in 12 months."""
    row = conn.execute(_READ_FACTS, {"id": customer_id}).first()
    if row is None:
        raise NotFound(f"no customer {customer_id}", code="customer_not_found")
    features = online.from_row(row._mapping, now)
    facts: dict[str, Any] = as_dict(features.values[0])
    facts.update(
        customer_since=row.created_at,
        points_earned_12m=ledger.earned_12m(conn, customer_id, now),
        stage=row.stage,
        value_segment=row.value_segment,
    )
    return facts


def qualify(
    revision: Any, facts: dict[str, Any], defined: dict[str, dict[str, Any]], now: dt.datetime
) -> tuple[str | None, str | None]:
    """Return (tier, rule id) the tier rules give, or (None, None) when they give no defined tier."""
    if missing(revision, "tiers"):
        return None, None
    result = revision.evaluate("tiers", facts, now=now.timestamp(), backend="python")
    tier = (result.outcome or {}).get("tier")
    if tier not in defined:
        if tier is not None:
            log.warning("tier rules gave an undefined tier", extra={"tier": tier})
        return None, None
    return tier, (result.fired_ids[0] if result.fired_ids else "default")


def change_tier(
    conn: Connection,
    member: dict[str, Any],
    to_tier: str,
    *,
    now: dt.datetime,
    source: str,
    rule_id: str | None = None,
    revision_id: str | None = None,
    actor: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """Move a member (row locked) to another tier and record the change."""
    change = {
        "customer_id": member["customer_id"],
        "from_tier": member["tier"],
        "to_tier": to_tier,
        "at": now,
        "source": source,
        "rule_id": rule_id,
        "rule_revision": revision_id,
        "actor": actor,
        "reason": reason,
    }
    conn.execute(sa.insert(_h).values(**change))
    conn.execute(
        sa.update(_m)
        .where(_m.c.customer_id == member["customer_id"])
        .values(tier=to_tier, tier_since=now, below_since=None, updated_at=now)
    )
    member.update(tier=to_tier, tier_since=now, below_since=None)
    return change


def check_tier(
    conn: Connection,
    member: dict[str, Any],
    revision: Any,
    now: dt.datetime,
    *,
    defined: dict[str, dict[str, Any]] | None = None,
    source: str = "event",
) -> dict[str, Any] | None:
    """Upgrade a member (row locked) the moment they qualify; note when they first fall below their tier.

    Downgrades never happen here: they follow the downgrade policy in the bulk review.
    """
    defined = defined if defined is not None else tiers(conn)
    qualified, rule_id = qualify(revision, tier_facts(conn, member["customer_id"], now), defined, now)
    if qualified is None:
        return None
    have, get = defined[member["tier"]]["rank"], defined[qualified]["rank"]
    if get > have:
        return change_tier(conn, member, qualified, now=now, source=source, rule_id=rule_id, revision_id=revision.id)
    below = now if get < have else None
    if (member["below_since"] is None) != (below is None):
        conn.execute(sa.update(_m).where(_m.c.customer_id == member["customer_id"]).values(below_since=below))
        member["below_since"] = below
    return None


def set_tier(
    conn: Connection, customer_id: int, tier: str, *, actor: str, reason: str, now: dt.datetime | None = None
) -> dict[str, Any] | None:
    """Give a member a tier by hand (a status match, a goodwill gesture), audited; None when unchanged.

    The next review applies the downgrade policy as for anyone: with `never` the tier stays.
    """
    now = now or utcnow()
    defined = tiers(conn)
    if tier not in defined:
        message = f"not a defined tier; the tiers are {', '.join(defined)}"
        raise ValidationError(message, errors={"tier": [message]}, code="tier_invalid")
    member = _member_or_409(conn, customer_id)
    if member["tier"] == tier:
        return None
    return change_tier(conn, member, tier, now=now, source="manual", actor=actor, reason=reason)


# --- membership --------------------------------------------------------------------------------


def customer_id_of(conn: Connection, external_id: str) -> int:
    """The internal id of a customer, or 404."""
    found = conn.execute(sa.select(_c.c.id).where(_c.c.external_id == external_id)).scalar()
    if found is None:
        raise NotFound(f"no customer with id {external_id!r}", code="customer_not_found")
    return found


def enroll(
    conn: Connection,
    customer_id: int,
    *,
    via: str,
    revision: Any,
    now: dt.datetime | None = None,
    actor: str | None = None,
    check: bool = True,
) -> tuple[dict[str, Any], bool]:
    """Enrol a customer (idempotent): they start in the tier the rules give them. Returns (member, created).

    `check=False` leaves the tier check to the caller (a purchase checks once it has earned).
    """
    now = now or utcnow()
    defined = tiers(conn)
    if not defined:
        raise Conflict("no loyalty tier is defined; define one at /api/v1/loyalty/tiers", code="no_tiers")
    lowest = next(iter(defined))
    inserted = conn.execute(
        upsert(conn, _m)
        .values(
            customer_id=customer_id,
            tier=lowest,
            tier_since=now,
            enrolled_at=now,
            enrolled_via=via,
            balance=0,
            earned_total=0,
            updated_at=now,
        )
        .on_conflict_do_nothing()
        .returning(_m.c.customer_id)
    ).first()
    member = ledger.lock(conn, customer_id)
    if inserted is None:
        return member, False
    conn.execute(
        sa.insert(_h).values(
            customer_id=customer_id,
            from_tier=None,
            to_tier=lowest,
            at=now,
            source="enroll",
            rule_id=None,
            rule_revision=revision.id,
            actor=actor,
            reason=f"enrolled via {via}",
        )
    )
    if check:
        check_tier(conn, member, revision, now, defined=defined, source="enroll")
    return member, True


def _member_or_409(conn: Connection, customer_id: int) -> dict[str, Any]:
    member = ledger.lock(conn, customer_id)
    if member is None:
        raise ledger.NotEnrolled(
            "the customer is not a loyalty member; enroll them first", errors={"customer_id": ["not enrolled"]}
        )
    return member


# --- earning -----------------------------------------------------------------------------------


def purchase_points(amount_cents: int, tier_multiplier: float, outcomes: Any) -> tuple[int, dict[str, Any]]:
    """Points for a purchase: floor(amount × tier multiplier × rule multipliers) + rule bonuses."""
    multiplier = Decimal(repr(float(tier_multiplier)))
    bonus = Decimal(0)
    for o in outcomes or ():
        if "multiplier" in o:
            multiplier *= Decimal(repr(float(o["multiplier"])))
        if "bonus" in o:
            bonus += Decimal(repr(float(o["bonus"])))
    points = (Decimal(amount_cents) * multiplier / 100).to_integral_value(ROUND_FLOOR) + bonus.to_integral_value(ROUND_FLOOR)
    return int(points), {"multiplier": str(multiplier), "bonus": int(bonus)}


def earn_for_purchases(
    conn: Connection, rows: list[dict[str, Any]], *, revision: Any, auto_enroll: bool, now: dt.datetime | None = None
) -> list[dict[str, Any]]:
    """Earn (or, for refunds, take back) the points of newly stored transactions, in their transaction.

    Called by the ingestion API with the rows it just created. Customers who are not members are
    enrolled on their first purchase when `auto_enroll`; otherwise their purchases earn nothing.
    """
    now = now or utcnow()
    defined = tiers(conn)
    policies: dict[str, dict[str, Any]] = {}
    written = []
    by_customer: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_customer.setdefault(row["customer_id"], []).append(row)
    for customer_id in sorted(by_customer):
        member = ledger.lock(conn, customer_id)
        purchases = sorted(by_customer[customer_id], key=lambda r: (r["occurred_at"], r["id"]))
        if member is None:
            if not (auto_enroll and defined and any(r["amount_cents"] > 0 for r in purchases)):
                continue
            member, _ = enroll(conn, customer_id, via="first_purchase", revision=revision, now=now, check=False)
        known = _Known(conn, customer_id)
        for row in purchases:
            entry = (
                _earn_purchase(conn, member, row, revision, defined, now, known, policies)
                if row["amount_cents"] >= 0
                else _reverse_refund(conn, member, row, revision, defined, now, known)
            )
            if entry is not None:
                written.append(entry)
        ledger.expire_due(conn, member, now)
        check_tier(conn, member, revision, now, defined=defined)
    return written


class _Known:
    """What the earning rules read about one member, read once per batch of their purchases."""

    _read = sa.select(
        sa.select(sa.func.count())
        .select_from(ledger._l)
        .where(ledger._l.c.customer_id == sa.bindparam("cid"), ledger._l.c.kind == "earn")
        .scalar_subquery(),
        sa.select(_s.c.stage).where(_s.c.customer_id == sa.bindparam("cid")).scalar_subquery(),
    )

    def __init__(self, conn: Connection, customer_id: int):
        earns, self.stage = conn.execute(self._read, {"cid": customer_id}).one()
        self.first_purchase = not earns


def _earn_purchase(
    conn: Connection,
    member: dict[str, Any],
    row: dict[str, Any],
    revision: Any,
    defined: dict[str, dict[str, Any]],
    now: dt.datetime,
    known: _Known,
    policies: dict[str, dict[str, Any]],
) -> dict[str, Any] | None:
    key = f"txn:{row['external_id']}"
    if ledger.find(conn, member["customer_id"], key) is not None:
        return None
    outcomes, fired = _earning_rules(member, row, revision, known, refund=False)
    points, detail = purchase_points(row["amount_cents"], defined[member["tier"]]["multiplier"], outcomes)
    if points <= 0:
        return None
    known.first_purchase = False
    rules = policies.get(member["tier"]) or policies.setdefault(member["tier"], policy(revision, member["tier"]))
    return ledger.post(
        conn,
        member,
        kind="earn",
        points=points,
        key=key,
        now=now,
        occurred_at=row["occurred_at"],
        pending_days=rules["pending_days"],
        expire_days=rules["points_expire_days"],
        transaction_id=row["id"],
        details={
            **detail,
            "tier": member["tier"],
            "tier_multiplier": defined[member["tier"]]["multiplier"],
            "rules": fired,
            "amount_cents": row["amount_cents"],
            "revision": revision.id,
        },
    )


def _reverse_refund(
    conn: Connection,
    member: dict[str, Any],
    row: dict[str, Any],
    revision: Any,
    defined: dict[str, dict[str, Any]],
    now: dt.datetime,
    known: _Known,
) -> dict[str, Any] | None:
    """Take back a refund's points: in proportion to what the refunded purchase earned when it is named,
    else at today's earning rate; never more than the balance (the shortfall is recorded)."""
    key = f"txn:{row['external_id']}"
    if ledger.find(conn, member["customer_id"], key) is not None:
        return None
    refunded = -row["amount_cents"]
    detail: dict[str, Any] = {"amount_cents": row["amount_cents"]}
    original = ledger.find(conn, member["customer_id"], f"txn:{row['refund_of']}") if row.get("refund_of") else None
    if original is not None and original["kind"] == "earn":
        purchase = max(int(original["details"].get("amount_cents") or 0), 1)
        taken = -int(
            conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(ledger._l.c.points), 0)).where(
                    ledger._l.c.customer_id == member["customer_id"],
                    ledger._l.c.kind == "reverse",
                    ledger._l.c.details["refund_of"].as_string() == row["refund_of"],
                )
            ).scalar_one()
        )
        base = (Decimal(original["points"]) * min(refunded, purchase) / purchase).to_integral_value(ROUND_FLOOR)
        want = max(0, min(int(base), original["points"] - taken))
        detail.update(refund_of=row["refund_of"], purchase_points=original["points"], already_taken=taken)
    else:
        outcomes, fired = _earning_rules(member, row, revision, known, refund=True)
        want, rate = purchase_points(refunded, defined[member["tier"]]["multiplier"], [o for o in outcomes if "multiplier" in o])
        detail.update(rate=rate, rules=fired, refund_of=row.get("refund_of"))
    points = min(want, member["balance"])
    if points < want:
        detail["shortfall"] = want - points  # already spent: the balance never goes below zero
        log.warning(
            "refund takes back fewer points than it earned",
            extra={"customer_id": member["customer_id"], "shortfall": want - points},
        )
    if points <= 0:
        return None
    return ledger.post(
        conn,
        member,
        kind="reverse",
        points=-points,
        key=key,
        now=now,
        occurred_at=row["occurred_at"],
        transaction_id=row["id"],
        reason="refund",
        details=detail,
    )


def _earning_rules(
    member: dict[str, Any], row: dict[str, Any], revision: Any, known: _Known, *, refund: bool
) -> tuple[Any, list[str]]:
    if missing(revision, "earning"):
        return (), []
    facts = {
        "amount": abs(row["amount_cents"]) / 100,
        "category": row.get("category"),
        "channel": row.get("channel"),
        "tier": member["tier"],
        "stage": known.stage,
        "first_purchase": known.first_purchase and not refund,
    }
    result = revision.evaluate("earning", facts, now=row["occurred_at"].timestamp(), backend="python")
    return result.outcome, list(result.fired_ids)


def earn(
    conn: Connection,
    customer_id: int,
    *,
    points: int,
    key: str,
    reason: str,
    actor: str | None,
    revision: Any,
    now: dt.datetime | None = None,
) -> tuple[dict[str, Any], bool]:
    """Credit points that do not come from a purchase (a partner, a survey); idempotent on `key`; may upgrade."""
    return _by_request(conn, customer_id, "earn", points=points, key=key, reason=reason, actor=actor, revision=revision, now=now)


def adjust(
    conn: Connection,
    customer_id: int,
    *,
    points: int,
    key: str,
    reason: str,
    actor: str | None,
    revision: Any,
    now: dt.datetime | None = None,
) -> tuple[dict[str, Any], bool]:
    """Correct a balance by hand, with a reason (admin); idempotent on `key`; never below zero."""
    return _by_request(
        conn, customer_id, "adjust", points=points, key=key, reason=reason, actor=actor, revision=revision, now=now
    )


def _by_request(
    conn: Connection,
    customer_id: int,
    kind: str,
    *,
    points: int,
    key: str,
    reason: str,
    actor: str | None,
    revision: Any,
    now: dt.datetime | None,
) -> tuple[dict[str, Any], bool]:
    """Post an API request's entry once per key: a retry returns the first entry (created False)."""
    now = now or utcnow()
    member = _member_or_409(conn, customer_id)
    request = {"kind": kind, "points": points, "reason": reason}
    found = ledger.find(conn, customer_id, f"api:{key}")
    if found is not None:
        ledger.same_request(found, request)
        return found, False
    if points < 0:
        ledger.expire_due(conn, member, now)  # a debit never spends points past their date
    rules = policy(revision, member["tier"])
    entry = ledger.post(
        conn,
        member,
        kind=kind,
        points=points,
        key=f"api:{key}",
        now=now,
        reason=reason,
        actor=actor,
        pending_days=rules["pending_days"] if kind == "earn" else 0,
        expire_days=rules["points_expire_days"],
        details={"request": request},
    )
    if kind == "earn":
        check_tier(conn, member, revision, now)
    return entry, True


# --- reading -----------------------------------------------------------------------------------


def member_view(conn: Connection, customer_id: int, *, now: dt.datetime | None = None, history: int = 20) -> dict[str, Any]:
    """A member's tier (with its definition), balance figures and tier history."""
    now = now or utcnow()
    row = conn.execute(sa.select(_m).where(_m.c.customer_id == customer_id)).first()
    if row is None:
        raise ledger.NotEnrolled("the customer is not a loyalty member", errors={"customer_id": ["not enrolled"]})
    member = dict(row._mapping)
    defined = tiers(conn)
    changes = [
        dict(r._mapping)
        for r in conn.execute(
            sa.select(_h).where(_h.c.customer_id == customer_id).order_by(_h.c.at.desc(), _h.c.id.desc()).limit(history)
        )
    ]
    return {
        **member,
        "tier_definition": defined.get(member["tier"]),
        "points": ledger.figures(conn, customer_id, member["balance"], now=now),
        "tier_history": changes,
    }


def member_summary(conn: Connection, customer_id: int) -> dict[str, Any] | None:
    """Tier and balance for the 360 view and decisions (None: not a member)."""
    row = conn.execute(sa.select(_m.c.tier, _m.c.balance, _m.c.tier_since).where(_m.c.customer_id == customer_id)).first()
    return dict(row._mapping) if row else None


def member_listing(
    conn: Connection, *, limit: int, after: int | None = None, tier: str | None = None, min_balance: int | None = None
) -> list[dict[str, Any]]:
    """Members in customer id order, filtered by tier and balance, with their external ids."""
    query = sa.select(_m, _c.c.external_id).join(_c, _c.c.id == _m.c.customer_id)
    if after is not None:
        query = query.where(_m.c.customer_id > after)
    if tier is not None:
        query = query.where(_m.c.tier == tier)
    if min_balance is not None:
        query = query.where(_m.c.balance >= min_balance)
    return [dict(r._mapping) for r in conn.execute(query.order_by(_m.c.customer_id).limit(limit + 1))]


def statistics(conn: Connection, *, since: dt.datetime, until: dt.datetime | None = None) -> dict[str, Any]:
    """Program figures: members and balances by tier (now), points by kind, redemptions, tier changes in [since, until)."""
    from decision_server.loyalty.records import (
        LedgerEntryRecord,
        RedemptionRecord,
        RewardRecord,
    )

    _l, _x, _r = LedgerEntryRecord.__table__, RedemptionRecord.__table__, RewardRecord.__table__

    def within(column: sa.ColumnElement) -> sa.ColumnElement:
        return column >= since if until is None else sa.and_(column >= since, column < until)

    defined = tiers(conn)
    per_tier = {
        row[0]: (row[1], int(row[2] or 0))
        for row in conn.execute(sa.select(_m.c.tier, sa.func.count(), sa.func.sum(_m.c.balance)).group_by(_m.c.tier))
    }
    by_tier = [
        {"tier": name, "rank": t["rank"], "members": per_tier.get(name, (0, 0))[0], "balance": per_tier.get(name, (0, 0))[1]}
        for name, t in defined.items()
    ]
    kinds = {
        row[0]: {"entries": row[1], "points": int(row[2] or 0)}
        for row in conn.execute(
            sa.select(_l.c.kind, sa.func.count(), sa.func.sum(_l.c.points)).where(within(_l.c.created_at)).group_by(_l.c.kind)
        )
    }
    redemptions = {
        row[0]: {"count": row[1], "points": int(row[2] or 0)}
        for row in conn.execute(
            sa.select(_x.c.status, sa.func.count(), sa.func.sum(_x.c.points)).where(within(_x.c.created_at)).group_by(_x.c.status)
        )
    }
    top = [
        {"reward_id": row[0], "code": row[1], "name": row[2], "redemptions": row[3], "points": int(row[4] or 0)}
        for row in conn.execute(
            sa.select(_x.c.reward_id, _r.c.code, _r.c.name, sa.func.count().label("n"), sa.func.sum(_x.c.points))
            .join(_r, _r.c.id == _x.c.reward_id)
            .where(within(_x.c.created_at), _x.c.status == "completed")
            .group_by(_x.c.reward_id, _r.c.code, _r.c.name)
            .order_by(sa.desc("n"), _x.c.reward_id)
            .limit(10)
        )
    ]
    changes = [
        {"from": row[0], "to": row[1], "source": row[2], "count": row[3]}
        for row in conn.execute(
            sa.select(_h.c.from_tier, _h.c.to_tier, _h.c.source, sa.func.count().label("n"))
            .where(within(_h.c.at))
            .group_by(_h.c.from_tier, _h.c.to_tier, _h.c.source)
            .order_by(sa.desc("n"), _h.c.to_tier)
        )
    ]
    return {
        "members": sum(t["members"] for t in by_tier),
        "by_tier": by_tier,
        "since": since,
        "until": until,
        "points": {"outstanding": sum(t["balance"] for t in by_tier), "by_kind": kinds},
        "redemptions": {"by_status": redemptions, "top_rewards": top},
        "tier_changes": changes,
    }
