"""One customer as a revision would see them: the bulk pass's evaluation of a chunk of one (stage,
value, journey, RFM: jobs/evaluation.py), the tier they qualify for, the segments rules' names,
and the facts every profile-level rule set reads. Shared by the trace and "make a case".

The customer is read once (features by the bulk pass's SQL, the state row, loyalty facts) and
evaluated under each revision, so a trace agrees with what a what-if or the nightly pass would do.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from decimal import Decimal
from typing import Any

import numpy as np
import sqlalchemy as sa

from decision_server.customers import service as customers
from decision_server.db import Database
from decision_server.features.definition import FEATURE_NAMES
from decision_server.jobs.chunks import Chunk, read_chunk
from decision_server.jobs.evaluation import evaluate
from decision_server.loyalty import service as loyalty
from decision_server.loyalty.tiers import tiers
from decision_server.rfm import service as rfm
from decision_server.rulebook.requirements import NEEDED, missing, require
from decision_server.touchpoints.records import TouchpointRecord

_tp = TouchpointRecord.__table__
SCORES = ("churn_risk", "propensity_to_buy", "engagement_score", "ltv")
# What the profile shows, stored and under each revision.
STORED = ("stage", "value_score", "value_segment", "journey_stage", "rfm_segment", "tier")


@dataclasses.dataclass(frozen=True)
class Customer:
    """One customer as read, before any rules: the chunk of one, scores and the facts no rule set computes."""

    id: int
    external_id: str
    chunk: Chunk
    scores: dict[str, float | None]
    cuts: dict[str, list[float]] | None  # the newest RFM run's cut points (None before the first run)
    defined_tiers: dict[str, dict[str, Any]]
    extra: dict[str, Any]  # customer_since, points_earned_12m, touchpoints_30d

    @property
    def stored(self) -> dict[str, Any]:
        """The profile as the state row (and the loyalty member) hold it now."""
        state = self.chunk.state
        return {k: plain(state[k][0]) if k in state else None for k in STORED}

    @property
    def member(self) -> bool:
        return self.chunk.state.get("tier") is not None and self.chunk.state["tier"][0] is not None


@dataclasses.dataclass(frozen=True)
class Profile:
    """The customer under one revision: each field with the rule that decided it, and the facts read."""

    revision: str
    values: dict[str, Any]  # STORED fields, plus rfm ("R4 F3 M5"), tier_qualifies and segments (names)
    rules: dict[str, str | None]  # field -> id of the rule that decided it
    facts: dict[str, Any]  # every fact the profile-level rule sets may read (timestamps as epoch seconds)


def read_customer(database: Database, *, external_id: str, models: Any, now: dt.datetime) -> Customer:
    """Read one customer (raise customer_not_found) as the bulk pass reads a chunk, and score them."""
    with database.session() as session:
        cid = customers.customer_id(session, external_id=external_id)
        conn = session.connection()
        run = rfm.latest_run(conn)
        tier_facts = loyalty.tier_facts(conn, cid, now)
        touches = conn.execute(
            sa.select(sa.func.count()).where(_tp.c.customer_id == cid, _tp.c.occurred_at > now - dt.timedelta(days=30))
        ).scalar()
        defined = tiers(conn)
    chunk = read_chunk(database, np.array([cid], dtype=np.int64), now, [], loyalty=True)
    scored = models.score_batch(chunk.features.values)
    scores = {k: plain(scored[k][0]) if k in scored else None for k in SCORES}
    extra = {
        "customer_since": tier_facts["customer_since"],
        "points_earned_12m": tier_facts["points_earned_12m"],
        "touchpoints_30d": int(touches or 0),
    }
    cuts = dict(run.cuts) if run is not None and run.cuts and run.cuts.get("recency") else None
    return Customer(cid, external_id, chunk, scores, cuts, defined, extra)


def under(revision: Any, customer: Customer, models: Any, *, now: dt.datetime, margin: Decimal) -> Profile:
    """Evaluate the customer under `revision` as the bulk pass would (RFM against the newest run's cuts)."""
    require(revision, *NEEDED["stages"])
    steps = ("rfm", "stages") if customer.cuts and not missing(revision, "rfm") else ("stages",)
    done = evaluate(
        customer.chunk,
        revision,
        models,
        steps=steps,
        moment=now,
        as_of=None,
        cuts=customer.cuts or {},
        run_id=None,
        compiled={},
        margin=margin,
        dry_run=False,
    )
    new = {k: plain(v[0]) for k, v in done.new.items()}
    agg = {k: plain(v[0]) for k, v in customer.chunk.features.aggregates.items()}
    stamp = now.timestamp()
    rules: dict[str, str | None] = {
        "stage": str(done.rule_ids[0]),
        "journey_stage": str(done.journey_rule_ids[0]),
        "value_segment": _first(revision, "value", {"value_score": new["value_score"]}, stamp),
    }
    r, f, m = new["rfm_r"], new["rfm_f"], new["rfm_m"]
    rules["rfm_segment"] = _first(revision, "rfm", {"r": r, "f": f, "m": m}, stamp) if r is not None else None
    bought = bool(agg["purchases"])
    facts: dict[str, Any] = dict(zip(FEATURE_NAMES, (plain(v) for v in customer.chunk.features.values[0]), strict=True))
    facts.update(customer.scores)
    facts.update(customer.extra)
    facts.update(
        transaction_count=int(agg["purchases"]),
        first_purchase_at=agg["first_purchase_at"] if bought else None,
        last_purchase_at=agg["last_purchase_at"] if bought else None,
        stage=new["stage"],
        value_score=new["value_score"],
        value_segment=new["value_segment"],
        journey_stage=new["journey_stage"],
        rfm_segment=new["rfm_segment"],
        r=r,
        f=f,
        m=m,
        rfm_r=r,
        rfm_f=f,
        rfm_m=m,
        tier=customer.stored["tier"],
        points_balance=plain(customer.chunk.state["points_balance"][0]),
    )
    tier, qualifies, rules["tier"] = _tier(revision, customer, facts, now)
    facts["tier"] = tier
    names: list[str] = []
    if not missing(revision, "segments"):
        result = revision.evaluate("segments", facts, now=stamp, backend="python")
        names = [o["segment"] for o in result.outcome]
        rules["segments"] = ", ".join(result.fired_ids) or None
    values = {
        "stage": new["stage"],
        "value_score": new["value_score"],
        "value_segment": new["value_segment"],
        "journey_stage": new["journey_stage"],
        "rfm_segment": new["rfm_segment"],
        "rfm": None if r is None else f"R{r} F{f} M{m}",
        "tier": tier,
        "tier_qualifies": qualifies,
        "segments": names,
    }
    return Profile(revision.id, values, rules, facts)


def _tier(
    revision: Any, customer: Customer, facts: dict[str, Any], now: dt.datetime
) -> tuple[str | None, str | None, str | None]:
    """The member's tier under `revision`, the tier the rules qualify them for, and the rule that did.

    A tier they qualify for above theirs is theirs at once (an upgrade happens the moment they
    qualify); a lower one is not (downgrades wait for the review and its policy).
    """
    have = customer.stored["tier"]
    if not customer.member:
        return None, None, None
    qualified, rule = loyalty.qualify(revision, facts, customer.defined_tiers, now)
    ranks = {name: t["rank"] for name, t in customer.defined_tiers.items()}
    if qualified is not None and have in ranks and ranks[qualified] > ranks[have]:
        return qualified, qualified, rule
    return have, qualified, rule


def _first(revision: Any, ruleset: str, facts: dict[str, Any], stamp: float) -> str | None:
    """The id of the rule that decided a `first` rule set's outcome ("default" when none fired)."""
    if missing(revision, ruleset):
        return None
    fired = revision.evaluate(ruleset, facts, now=stamp, backend="python").fired_ids
    return fired[0] if fired else "default"


def plain(value: Any) -> Any:
    """A numpy scalar as a Python one; NaN as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
