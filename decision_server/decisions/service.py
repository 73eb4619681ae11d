"""The next-best-action decision: read, score, rules, eligibility, contact policy, arbitration, log.

One request does two indexed reads (customer + state row; the customer's recent actions and
declines), one merged onnxruntime call, one rule-engine session over every active offer, and
one short write transaction (decision, actions, learning counters). No ORM objects.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import secrets
import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from decision_server import fastsql, metrics
from decision_server.customers.records import CustomerRecord, CustomerStateRecord
from decision_server.db import Database, UtcDateTime, to_utc, utcnow
from decision_server.decisions.learning import (
    Learning,
    exposure,
    increment_statement,
    learning_key,
)
from decision_server.decisions.records import (
    DecisionActionRecord,
    DecisionRecord,
    DecisionResponseRecord,
)
from decision_server.errors import Unavailable
from decision_server.features import online
from decision_server.features.definition import CATEGORIES, as_dict
from decision_server.loyalty.records import LedgerEntryRecord, MemberRecord
from decision_server.offers import treatments
from decision_server.offers.catalog import Offer
from decision_server.rulebook.requirements import missing, require

log = logging.getLogger("decision_server.decisions")

RULESETS = ("offers", "contact_policy", "arbitration")
OPTIONAL_RULESETS = ("learning",)
LEARNING_DEFAULTS = {"exploration": 1.0, "prior_strength": 20.0}
MAX_ACTIONS = 10
# The contact policy's windows: its inputs are named after them (channel_contacts_1d, ...).
DAY = dt.timedelta(days=1)
HISTORY = dt.timedelta(days=30)

_c, _s = CustomerRecord.__table__, CustomerStateRecord.__table__
_d, _a, _r = DecisionRecord.__table__, DecisionActionRecord.__table__, DecisionResponseRecord.__table__
_lm, _ll = MemberRecord.__table__, LedgerEntryRecord.__table__
# Points still pending (not spendable yet): rules/loyalty_policy.yaml pending_days; 0 rows by default.
_PENDING = (
    sa.select(sa.func.coalesce(sa.func.sum(_ll.c.points), 0))
    .where(_ll.c.customer_id == _c.c.id, _ll.c.points > 0, _ll.c.available_at > sa.bindparam("now", type_=UtcDateTime()))
    .scalar_subquery()
)
READ_PROFILE = online.READ_BY_EXTERNAL_ID.add_columns(
    _c.c.first_name,
    _c.c.last_name,
    _c.c.consent,
    _s.c.stage,
    _s.c.value_segment,
    _s.c.rfm_segment,
    _s.c.journey_stage,
    _lm.c.tier,
    _lm.c.balance.label("points_total"),
    _PENDING.label("points_pending"),
).outerjoin(_lm, _lm.c.customer_id == _c.c.id)
_external, _since = sa.bindparam("external_id"), sa.bindparam("since")
READ_CONTACTS = sa.union_all(
    sa.select(sa.literal(0).label("declined"), _a.c.offer_id, _a.c.channel, _a.c.decided_at.label("at")).where(
        _a.c.external_id == _external, _a.c.decided_at >= _since
    ),
    sa.select(sa.literal(1), _r.c.offer_id, sa.literal(""), _r.c.responded_at).where(
        _r.c.external_id == _external, _r.c.response == "declined", _r.c.responded_at >= _since
    ),
)

# PostgreSQL: the contact read spans the log's daily partitions (30 days of actions; every day of
# responses, whose partition key is the decision's time). Planned for each call, as PostgreSQL
# chose to, it took 3.1 ms at 99 partitions (0.03 ms on a plain table); one generic plan, pruned as
# it runs, 0.55 ms (bench/retention_bench.py). For the rest of the read transaction only.
_GENERIC_PLANS = "SET LOCAL plan_cache_mode = force_generic_plan"


@dataclasses.dataclass(frozen=True)
class DecisionRequest:
    """What a channel asks: the customer, the channel, the moment's context, how many actions."""

    customer_id: str
    channel: str
    context: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    actions: int = 1


@dataclasses.dataclass(frozen=True)
class Trial:
    """A decision tried, not made: under `revision` with `profile` facts (stage, value_segment, tier, ...)
    over the stored ones, ranked by the learned mean (no Thompson draw), so two trials of one
    customer differ only where their rules and profiles do (studio/trace.py)."""

    revision: Any
    profile: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class History:
    """The customer's recent contacts, counted the way the contact policy reads them."""

    channel_1d: int = 0
    channel_7d: int = 0
    offers: dict[int, list] = dataclasses.field(default_factory=dict)  # offer id -> [contacts 30d, declines 30d, last contact]


class Decider:
    """Makes decisions with the serving rules, models, catalog and learning of one process."""

    def __init__(self, database: Database, *, rulebook, models, catalog, learning: Learning, channels: Mapping[str, str]):
        self.database = database
        self.rulebook, self.models, self.catalog, self.learning = rulebook, models, catalog, learning
        self.channels = dict(channels)
        engine = database.engine
        self._read_profile = fastsql.Prepared(engine, READ_PROFILE)
        self._read_contacts = fastsql.Prepared(engine, READ_CONTACTS)
        self._insert_decision = fastsql.Prepared(
            engine, sa.insert(_d).values({c.name: sa.bindparam(c.name, type_=c.type) for c in _d.columns})
        )
        self._insert_action = fastsql.Prepared(
            engine, sa.insert(_a).values({c.name: sa.bindparam(c.name, type_=c.type) for c in _a.columns})
        )
        self._increment = fastsql.Prepared(engine, increment_statement(engine.dialect.name))
        self._partitioned = engine.dialect.name == "postgresql"
        # Any driver error while logging (locked, unreachable, disk full): answer 503, never a silent loss.
        self._database_error = engine.dialect.loaded_dbapi.Error

    def decide(self, request: DecisionRequest, *, now: dt.datetime | None = None) -> dict[str, Any]:
        """Answer one request and log it; raise Unavailable when the log cannot be written."""
        return self._answer(request, now, logged=True)

    def preview(self, request: DecisionRequest, *, now: dt.datetime | None = None) -> dict[str, Any]:
        """Answer as `decide` would, without logging it (no contact counted, nothing learned): the console's "decide now".

        Thompson sampling still draws, so two previews of the same customer can rank close offers differently.
        """
        return self._answer(request, now, logged=False)

    def trial(self, request: DecisionRequest, trial: Trial, *, now: dt.datetime | None = None) -> dict[str, Any]:
        """Answer as `preview` would under `trial`, deterministically; add each offer's input facts
        (`rows`, by offer code) and the eligible offers' codes in rank order (`ranked`)."""
        answer = self._decide(request, now, time.perf_counter(), logged=False, trial=trial)[0]
        return {**answer, "decision_id": None, "preview": True}

    def _answer(self, request: DecisionRequest, now: dt.datetime | None, *, logged: bool) -> dict[str, Any]:
        started = time.perf_counter()
        if not logged:
            answer = self._decide(request, now, started, logged=False)[0]
            return {**answer, "decision_id": None, "preview": True}  # no id: nothing to respond to
        # Only configured channels become labels (the route refuses others; a direct caller may not).
        channel = request.channel if request.channel in self.channels else "unknown"
        try:
            answer, removed = self._decide(request, now, started)
        except Exception:
            metrics.decided(channel, "error", time.perf_counter() - started)
            raise
        selected = len(answer["actions"])
        metrics.decided(
            channel, "offer" if selected else "no_offer", time.perf_counter() - started, selected=selected, removed=removed
        )
        return answer

    def _decide(
        self,
        request: DecisionRequest,
        now: dt.datetime | None,
        started: float,
        *,
        logged: bool = True,
        trial: Trial | None = None,
    ) -> tuple[dict[str, Any], dict[str, int]]:
        """Make and log the decision; return the answer and how many candidates each rule set removed."""
        now = to_utc(now) if now is not None else utcnow()
        stamp = now.timestamp()
        revision = trial.revision if trial is not None else self.rulebook.current
        model_set, offers = self.models.current, self.catalog.offers
        require(revision, *RULESETS)
        rulesets = RULESETS + tuple(n for n in OPTIONAL_RULESETS if not missing(revision, n))

        with fastsql.cursor(self.database.engine) as cur:
            found = self._read_profile.rows(cur, {"external_id": request.customer_id, "now": now})
            if self._partitioned:
                cur.execute(_GENERIC_PLANS)
            contacts = self._read_contacts.rows(cur, {"external_id": request.customer_id, "since": now - HISTORY})
        prospect = not found
        if prospect:
            x, profile, person = online.prospect(now), _PROSPECT_PROFILE, {}
        else:
            m = dict(zip(self._read_profile.names, found[0], strict=True))
            x = online.from_row(m, now).values
            balance = None if m["tier"] is None else max(0, int(m["points_total"]) - int(m["points_pending"] or 0))
            profile = {
                "stage": m["stage"],
                "value_segment": m["value_segment"],
                "tier": m["tier"],
                "rfm_segment": m["rfm_segment"],
                "journey_stage": m["journey_stage"],
                "points_balance": balance,
            }
            person = m
        if trial is not None:
            profile = {**profile, **{k: v for k, v in trial.profile.items() if k in profile}}
        scores = model_set.score(x)
        values = scores.values
        history = _history(contacts, request.channel, now)

        # The features first, under their own names (rules may read them), then the decision's facts.
        base = {
            **as_dict(x[0]),
            "channel": request.channel,
            "intent": request.context.get("intent"),
            "stage": profile["stage"],
            "value_segment": profile["value_segment"],
            "tier": profile["tier"],
            "points_balance": profile["points_balance"],
            "transaction_count": 0 if prospect else (person["transaction_count"] or 0),
            "last_purchase_at": None if prospect else person["last_purchase_at"],
            "churn_risk": values.get("churn_risk"),
            "propensity_to_buy": values.get("propensity_to_buy"),
            "engagement_score": values.get("engagement_score"),
            "ltv": values.get("ltv"),
            "consent": None if prospect else (person["consent"] or {}).get(request.channel),
            "channel_contacts_1d": history.channel_1d,
            "channel_contacts_7d": history.channel_7d,
        }
        for key, value in (request.context.get("attributes") or {}).items():
            base[f"context.{key}"] = value
        rows = []
        for offer in offers:
            seen = history.offers.get(offer.id) or (0, 0, None)
            rows.append(
                {
                    **base,
                    **offer.facts,
                    "offer_contacts_30d": seen[0],
                    "offer_declines_30d": seen[1],
                    "last_offer_contact_at": seen[2],
                }
            )
        results = revision.evaluate_group_many(rulesets, rows, now=stamp) if rows else []

        key = profile["value_segment"] or ("prospect" if prospect else "unknown")
        buy, nbo = float(values.get("propensity_to_buy") or 0.0), values.get("nbo") or {}
        candidates, eligible = [], []
        removals: dict[str, int] = {}
        for offer, result in zip(offers, results, strict=True):
            removed = _catalog_checks(offer, request.channel, self.channels, stamp)
            if removed:
                removals["catalog"] = removals.get("catalog", 0) + 1
            for name, field in (("offers", "check"), ("contact_policy", "policy")):
                outcomes, fired = result[name].outcome, result[name].fired_ids
                if fired:  # any rule of these sets that fires removes the offer
                    removals[name] = removals.get(name, 0) + 1
                    removed.extend(
                        {"ruleset": name, "rule": rule, field: o.get(field), "reason": o.get("reason")}
                        for rule, o in zip(fired, outcomes, strict=True)
                    )
            model_p = buy * (nbo.get(offer.product_category, 0.0) if offer.product_category else 1.0 / len(CATEGORIES))
            if removed:  # not ranked: no Thompson draw, no factors beyond the model's score
                candidates.append(
                    {
                        "offer_id": offer.id,
                        "code": offer.code,
                        "eligible": False,
                        "removed_by": removed,
                        "priority": None,
                        "factors": {"model_propensity": round(model_p, 6)},
                    }
                )
                continue
            settings = result["learning"].outcome if "learning" in result else LEARNING_DEFAULTS
            offer_key = learning_key(key, model_p)
            adaptive, learned = self.learning.propensity(
                offer.id,
                offer_key,
                model_p,
                exploration=0.0 if trial is not None else float(settings["exploration"]),
                prior_strength=float(settings["prior_strength"]),
            )
            context_weight = levers = 1.0
            weights = []
            for rule, o in zip(result["arbitration"].fired_ids, result["arbitration"].outcome, strict=True):
                if o.get("factor") == "context_weight":
                    context_weight *= float(o["weight"])
                else:
                    levers *= float(o["weight"])
                weights.append({"rule": rule, "factor": o.get("factor"), "weight": o.get("weight")})
            priority = adaptive * context_weight * offer.business_value * levers
            candidate = {
                "offer_id": offer.id,
                "code": offer.code,
                "eligible": True,
                "removed_by": removed,
                "priority": round(priority, 8),
                "factors": {
                    "propensity": round(adaptive, 6),
                    "model_propensity": round(model_p, 6),
                    "context_weight": context_weight,
                    "business_value": offer.business_value,
                    "levers": levers,
                    "weights": weights,
                    "learning": learned,
                },
            }
            candidates.append(candidate)
            eligible.append((priority, offer, candidate, model_p, offer_key))
        eligible.sort(key=lambda e: (-e[0], e[1].id))
        chosen = eligible[: request.actions]

        decision_id = new_decision_id(stamp)
        kind = self.channels[request.channel]
        fill = {"first_name": None if prospect else person["first_name"], "last_name": None if prospect else person["last_name"]}
        actions = []
        for rank, (_priority, offer, candidate, _model_p, _key) in enumerate(chosen, start=1):
            rendered = treatments.render(
                kind,
                offer.treatments[request.channel],
                {**fill, "offer_name": offer.name, "offer_code": offer.code, "points_cost": offer.points_cost},
            )
            actions.append(
                {
                    "rank": rank,
                    "offer": offer.summary(),
                    "treatment": {"kind": kind, **rendered},
                    "priority": candidate["priority"],
                    "factors": candidate["factors"],
                }
            )
        models = scores.models
        latency_us = int((time.perf_counter() - started) * 1e6)
        record = {
            "id": decision_id,
            "external_id": request.customer_id,
            "customer_id": None if prospect else person["id"],
            "prospect": prospect,
            "channel": request.channel,
            "decided_at": now,
            "context": dict(request.context),
            "profile": profile,
            "revision": revision.id,
            "models": models,
            "candidates": candidates,
            "latency_us": latency_us,
        }
        action_rows = [
            {
                "decision_id": decision_id,
                "rank": a["rank"],
                "external_id": request.customer_id,
                "offer_id": offer.id,
                "channel": request.channel,
                "decided_at": now,
                "priority": priority,
                "propensity": model_p,
                "learning_key": offer_key,
            }
            for a, (priority, offer, _c, model_p, offer_key) in zip(actions, chosen, strict=True)
        ]
        if logged:
            self._log(record, action_rows)
        answer = {
            "decision_id": decision_id,
            "decided_at": now,
            "customer_id": request.customer_id,
            "prospect": prospect,
            "channel": request.channel,
            "actions": actions,
            "customer": profile,
            "scores": _public_scores(values),
            "revision": revision.id,
            "models": models,
            "explanation": candidates,
            "latency_us": latency_us,
        }
        if trial is not None:
            answer.update(rows={o.code: row for o, row in zip(offers, rows, strict=True)}, ranked=[e[1].code for e in eligible])
        return answer, removals

    def _log(self, record: dict[str, Any], action_rows: list[dict[str, Any]]) -> None:
        """Write the decision, its actions and the learning counters in one transaction, or fail loudly."""
        increments = self.learning.increments((a["offer_id"], a["learning_key"], exposure(a["propensity"])) for a in action_rows)
        try:
            with fastsql.cursor(self.database.engine, write=True) as cur:
                self._insert_decision.execute(cur, record)
                if action_rows:
                    self._insert_action.execute(cur, action_rows)
                for row in increments:
                    self._increment.execute(cur, row)
        except self._database_error as exc:
            # Never answer without a record: the channel gets a 503 and can retry or fall back.
            metrics.decision_log_failed()
            log.error("decision log write failed", extra={"decision_id": record["id"], "error": type(exc).__name__})
            raise Unavailable(
                "the decision could not be logged (database unavailable); retry", code="decision_log_unavailable"
            ) from None
        self.learning.applied((r["offer_id"], r["learning_key"], r["shown"], r["expected"], 0) for r in increments)


_PROSPECT_PROFILE = {
    "stage": "acquisition",
    "value_segment": None,
    "tier": None,
    "rfm_segment": None,
    "journey_stage": None,
    "points_balance": None,
}


def new_decision_id(stamp: float) -> str:
    """Return a 32-hex-digit id: milliseconds since 1970, then 80 random bits (sorts by time)."""
    return f"{int(stamp * 1000):012x}{secrets.token_hex(10)}"


def _history(rows: list, channel: str, now: dt.datetime) -> History:
    history = History()
    day, week = now - DAY, now - 7 * DAY
    for declined, offer_id, on_channel, at in rows:
        seen = history.offers.setdefault(offer_id, [0, 0, None])
        if declined:
            seen[1] += 1
            continue
        seen[0] += 1
        if seen[2] is None or at > seen[2]:
            seen[2] = at
        if on_channel == channel:
            history.channel_7d += at >= week
            history.channel_1d += at >= day
    return history


def _catalog_checks(offer: Offer, channel: str, channels: Mapping[str, str], stamp: float) -> list[dict[str, Any]]:
    removed = []
    if not offer.valid_at(stamp):
        removed.append(
            {
                "ruleset": "catalog",
                "rule": "outside_validity",
                "check": "catalog",
                "reason": "The offer is outside its validity dates.",
            }
        )
    if channel not in offer.treatments:
        removed.append(
            {
                "ruleset": "catalog",
                "rule": "no_treatment",
                "check": "catalog",
                "reason": f"The offer has no treatment for the {channel} channel.",
            }
        )
    return removed


def _public_scores(values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: (round(v, 6) if isinstance(v, float) else {c: round(p, 6) for c, p in v.items()} if isinstance(v, dict) else v)
        for k, v in values.items()
    }
