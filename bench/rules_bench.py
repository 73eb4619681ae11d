"""Benchmark the rules engine on the shipped rule sets (rules/*.yaml): per-decision latency of every
backend against a hand-written Python floor and zen-engine, the vectorized backend over many
customers, and a durable-rules soak checked result by result against the compiled backend.

    .venv/bin/python bench/rules_bench.py                  # everything, about 6 minutes
    .venv/bin/python bench/rules_bench.py --quick          # smoke run, about a minute
    .venv/bin/python bench/rules_bench.py --parts latency --sample 20000

Parts (--parts, default all three):

  latency  One decision = lifecycle + value + tiers + segments once, then offers + contact_policy +
           arbitration for each of 8 offers (28 rule-set evaluations). --sample synthetic customers
           (seeded numpy), each with a channel, an intent and 8 of 12 catalogue offers. Every call is
           timed alone (perf_counter_ns, timer overhead subtracted, gc off, warmed up) for:
             durable       Revision.evaluate(backend="durable"): normalize, durable_rules, explanation
             durable raw   compiled.durable.evaluate(values, now, skip): the engine path alone
             durable evaluate_many, python evaluate_many (per decision only, when the revision has it):
                           Revision.evaluate_many for each offer-level set over the 8 offers at once
             python        Revision.evaluate(backend="python"): normalize, compiled function, explanation
             compiled raw  compiled.evaluate_python(values, now, skip): the generated function alone
             hand-written  a plain if/elif function per rule set on the same values tuple (the floor)
             zen-engine    an equivalent JDM decision table per rule set (ZenEngine.evaluate, with the
                           parsed content cached by the loader; ZenDecision.evaluate is shown too)
           Each figure is the median over --rounds rounds (order reversed every other round). Calls of
           well under a microsecond are close to the clock's own overhead, so compiled vs hand-written
           is also timed with each loop measured whole. Before timing, every backend's fired rule ids
           are compared with the compiled backend's on every sample input; the counts are printed.
  vector   Revision.evaluate_columns for lifecycle, value, tiers and segments over --rows synthetic
           customers (default 1M), median of --repeat runs; baselines from the same run: lifecycle +
           value written by hand with np.select, and the compiled function per row over 100k rows,
           extrapolated to --rows.
  soak     --soak durable rule-set evaluations (default 1M) from --threads threads (default 8) in a
           child process (half the threads through evaluate_many, 8 inputs of one rule set per call,
           when the revision has it), each compared with the compiled backend's fired rule ids;
           wrong results, exceptions, the child's exit status (a crash shows as a signal), throughput
           and RSS before/after (a leaked session per evaluation would grow it, and more than 1,024
           live sessions per rule set raise MemoryError). Then a short probe of edge inputs (infinite
           numbers, NaN times, exponent notation, quotes, NUL) on durable, python and vector, reported
           separately: disagreements there are listed with the exact input.

The clock is fixed at 2026-12-10T12:00Z, inside the December campaign window of arbitration.yaml,
so every rule can fire. Timestamps are given as epoch seconds (what the engine normalizes to);
inputs that come from other rule sets (stage, tier, value segment) are filled in beforehand from the
compiled backend's outcomes, so all backends get identical inputs and the timed loops hold no glue.
Results are printed as tables and saved as JSON in bench/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import harness
import numpy as np

from decision_server.rules.durable_host import DurableHost
from decision_server.rules.engine import Revision, build_revision
from decision_server.rules.model import normalize, to_epoch
from decision_server.rules.source import read_rules_dir

RULES_DIR = harness.REPO / "rules"
NOW = to_epoch("2026-12-10T12:00:00Z")
DAY = 86_400.0
CUSTOMER_SETS = ("lifecycle", "value", "tiers", "segments")
OFFER_SETS = ("offers", "contact_policy", "arbitration")
ALL_SETS = CUSTOMER_SETS + OFFER_SETS
OFFERS_PER_DECISION = 8
EVALS_PER_DECISION = len(CUSTOMER_SETS) + OFFERS_PER_DECISION * len(OFFER_SETS)
GOAL_RATIO = 2.0  # compiled within 2x of hand-written
GOAL_DURABLE_MS = 0.5  # durable p50 per decision
GOAL_VECTOR_S = 3.0  # seconds per million customers, all customer-level rule sets
MACHINE_NOTE = (
    f"{os.cpu_count()} CPUs, shared with whatever else runs: absolute figures move between runs; "
    "compare the ratios within one run."
)
QUICK = {"sample": 2_000, "rows": 100_000, "soak": 50_000, "repeat": 1, "rounds": 1}
FULL = {"sample": 10_000, "rows": 1_000_000, "soak": 1_000_000, "repeat": 3, "rounds": 3}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Read the command line; options left out take the --quick or the full-run default."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=["latency", "vector", "soak"],
        default=["latency", "vector", "soak"],
        help="which parts to run (default: all)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: --sample {QUICK['sample']} --rows {QUICK['rows']} --soak {QUICK['soak']} --repeat 1 --rounds 1",
    )
    parser.add_argument("--sample", type=int, help=f"customers (= decisions) for the latency part (default {FULL['sample']})")
    parser.add_argument(
        "--rounds",
        type=int,
        help=f"rounds of the latency timings, order reversed every other round, medians shown (default {FULL['rounds']})",
    )
    parser.add_argument("--rows", type=int, help=f"customers for the vectorized part (default {FULL['rows']})")
    parser.add_argument(
        "--repeat", type=int, help=f"runs per vectorized rule set, the median is shown (default {FULL['repeat']})"
    )
    parser.add_argument("--soak", type=int, help=f"durable rule-set evaluations in the soak (default {FULL['soak']})")
    parser.add_argument("--threads", type=int, default=8, help="soak threads (default 8)")
    parser.add_argument("--no-zen", action="store_true", help="leave zen-engine out of the latency part")
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic data (default 7)")
    parser.add_argument("--soak-child", action="store_true", help=argparse.SUPPRESS)  # the soak's own process
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


# --- the revision ----------------------------------------------------------------------------


def load_revision() -> tuple[Revision, DurableHost]:
    """Build the shipped rules on the durable backend (the compiled functions come with it)."""
    host = DurableHost()
    return build_revision(read_rules_dir(RULES_DIR), backend="durable", durable_host=host), host


# --- synthetic data --------------------------------------------------------------------------

STAGES = ("acquisition", "onboarding", "growth", "retention", "win_back", "churn_risk")
CHANNELS = ("app", "call_centre", "sms")
INTENTS = ("browse", "upgrade", "cancel", "complaint", "billing", None)
OFFER_CATALOGUE = (  # (id, category, target stages, target value segments, points cost); None = any / free
    ("welcome10", "welcome", ("acquisition",), None, None),
    ("starter_bundle", "onboarding", ("onboarding",), None, None),
    ("data_upgrade", "upsell", ("growth", "retention"), ("medium", "high"), None),
    ("handset_upgrade", "upsell", ("retention",), ("high",), None),
    ("roaming_week", "cross_sell", None, None, None),
    ("music_plus", "cross_sell", ("onboarding", "growth", "retention"), None, None),
    ("double_points", "loyalty", None, None, None),
    ("points_voucher", "loyalty", None, None, 500.0),
    ("vip_early_access", "vip", None, ("high",), None),
    ("we_miss_you", "win_back", ("win_back", "churn_risk"), None, None),
    ("save_discount", "retention", ("retention", "win_back", "churn_risk"), None, None),
    ("lounge_pass", "vip", None, None, 2000.0),
)
INTEGER_FACTS = {
    "transaction_count",
    "touchpoints_30d",
    "channel_contacts_1d",
    "channel_contacts_7d",
    "offer_contacts_30d",
    "offer_declines_30d",
    "points_earned_12m",
    "points_balance",
}


def _objects(rng: np.random.Generator, n: int, choices: tuple, p: list[float]) -> np.ndarray:
    table = np.empty(len(choices), dtype=object)
    table[:] = list(choices)
    return table[rng.choice(len(choices), size=n, p=p)]


def customer_columns(n: int, seed: int) -> dict[str, np.ndarray]:
    """Return customer-level inputs as columns: float64 with NaN for missing, object with None for text."""
    rng = np.random.default_rng(seed)

    def blank(values: np.ndarray, share: float) -> np.ndarray:
        values = values.astype(np.float64)
        values[rng.random(n) < share] = np.nan
        return values

    count = rng.negative_binomial(1.2, 0.12, n).astype(np.float64)  # purchases, mean ~9
    count[rng.random(n) < 0.12] = 0  # prospects
    count = blank(count, 0.01)
    buyer = count > 0
    first_age = rng.uniform(0, 730, n)  # first purchase within the last 2 years
    last_age = np.minimum(first_age, rng.exponential(45, n))
    first = np.where(buyer, np.floor(NOW - first_age * DAY), np.nan)
    last = np.where(buyer, np.floor(NOW - last_age * DAY), np.nan)
    since = np.floor(NOW - rng.uniform(0, 5 * 365, n) * DAY)
    since = np.where(buyer, np.minimum(since, first), since)
    earned = blank(np.round(rng.lognormal(6.8, 1.1, n)), 0.02)
    return {
        "stage": _objects(rng, n, (*STAGES, None), [0.12, 0.15, 0.3, 0.2, 0.08, 0.1, 0.05]),
        "transaction_count": count,
        "first_purchase_at": first,
        "last_purchase_at": last,
        "churn_risk": blank(np.round(rng.beta(2, 5, n), 2), 0.05),
        "value_score": blank(np.round(rng.beta(2, 3, n) * 100, 1), 0.03),
        "points_earned_12m": earned,
        "points_balance": blank(np.round(np.nan_to_num(earned) * rng.uniform(0, 1, n)), 0.03),
        "spend_12m": blank(np.round(rng.lognormal(6.3, 1.0, n), 2), 0.02),
        "customer_since": blank(since, 0.02),
        "touchpoints_30d": blank(rng.poisson(2.0, n), 0.02),
    }


def outcome_column(rev: Revision, name: str, chosen: np.ndarray, field: str) -> np.ndarray:
    """Map a `first` rule set's chosen rule indexes (-1: none) to one output field (default or None)."""
    rs = rev.compiled[name].ruleset
    table = np.empty(len(rs.rules) + 1, dtype=object)
    table[:] = [rule.then.get(field) for rule in rs.rules] + [(rs.default or {}).get(field)]
    return table[chosen]  # index -1 is the last entry: the default


def _cell(value: Any, integer: bool) -> Any:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return int(value) if integer else value


def _rows(columns: dict[str, np.ndarray], n: int) -> list[dict[str, Any]]:
    lists = {name: column[:n].tolist() for name, column in columns.items()}
    return [{name: _cell(values[i], name in INTEGER_FACTS) for name, values in lists.items()} for i in range(n)]


@dataclasses.dataclass
class Sample:
    """The latency part's inputs: per customer one facts dict, and 8 per-offer facts dicts."""

    customers: list[dict[str, Any]]
    offers: list[list[dict[str, Any]]]

    def inputs(self, name: str) -> list[dict[str, Any]]:
        """Return one input per customer for rule set `name` (offer-level sets take offer i mod 8)."""
        if name in CUSTOMER_SETS:
            return self.customers
        return [offers[i % OFFERS_PER_DECISION] for i, offers in enumerate(self.offers)]


def make_sample(rev: Revision, n: int, seed: int) -> Sample:
    """Generate n customers with a decision context each; chained inputs come from the compiled backend."""
    columns = customer_columns(n, seed)
    customers = _rows(columns, n)
    for facts in customers:  # segments read tier and value segment, decided by their own rule sets
        facts["tier"] = rev.evaluate("tiers", facts, now=NOW, backend="python").outcome["tier"]
        value = rev.evaluate("value", facts, now=NOW, backend="python").outcome
        facts["value_segment"] = value["value_segment"] if value else None
    rng = np.random.default_rng(seed + 1000)
    channels = _objects(rng, n, CHANNELS, [0.6, 0.15, 0.25]).tolist()
    intents = _objects(rng, n, INTENTS, [0.45, 0.1, 0.08, 0.07, 0.1, 0.2]).tolist()
    consents = _objects(rng, n, (True, False, None), [0.75, 0.15, 0.1]).tolist()
    day1 = rng.poisson(0.6, n)
    week = (day1 + rng.poisson(1.5, n)).tolist()
    day1 = day1.tolist()
    picks = np.argsort(rng.random((n, len(OFFER_CATALOGUE))), axis=1)[:, :OFFERS_PER_DECISION].tolist()
    contacts = rng.poisson(1.0, (n, OFFERS_PER_DECISION)).tolist()
    declines = rng.poisson(0.3, (n, OFFERS_PER_DECISION)).tolist()
    last_contact = np.where(
        rng.random((n, OFFERS_PER_DECISION)) < 0.35, np.floor(NOW - rng.uniform(0, 20, (n, OFFERS_PER_DECISION)) * DAY), np.nan
    ).tolist()
    offers = []
    for i, facts in enumerate(customers):
        stage = rev.evaluate("lifecycle", facts, now=NOW, backend="python").outcome["stage"]
        base = {
            "stage": stage,
            "value_segment": facts["value_segment"],
            "tier": facts["tier"],
            "points_balance": facts["points_balance"],
            "transaction_count": facts["transaction_count"],
            "last_purchase_at": facts["last_purchase_at"],
            "churn_risk": facts["churn_risk"],
            "channel": channels[i],
            "intent": intents[i],
            "consent": consents[i],
            "channel_contacts_1d": day1[i],
            "channel_contacts_7d": week[i],
        }
        row = []
        for k, pick in enumerate(picks[i]):
            _, category, stages, segments, cost = OFFER_CATALOGUE[pick]
            row.append(
                {
                    **base,
                    "offer.category": category,
                    "offer.target_stages": None if stages is None else list(stages),
                    "offer.target_segments": None if segments is None else list(segments),
                    "offer.points_cost": cost,
                    "offer_contacts_30d": contacts[i][k],
                    "offer_declines_30d": declines[i][k],
                    "last_offer_contact_at": _cell(last_contact[i][k], False),
                }
            )
        offers.append(row)
    return Sample(customers, offers)


# --- hand-written rule sets: the floor ---------------------------------------------------------
# Each takes the same normalized values tuple as the compiled function and returns the same rule
# indexes; missing values are None and a rule fires only when its condition is definitely true.

SELLING = frozenset({"upsell", "cross_sell"})
SAVING = frozenset({"retention", "win_back"})
LAPSED_STAGES = frozenset({"win_back", "churn_risk"})
NOT_WHILE = frozenset({"complaint", "billing", "cancel"})
LOW_TIERS = frozenset({"bronze", "silver"})
DECEMBER = (to_epoch("2026-12-01"), to_epoch("2027-01-01"))


def hand_lifecycle(v: tuple, now: float) -> list[int]:
    stage, count, first, last, churn = v
    if count is None or count == 0:
        return [0]
    if last is not None:
        silent_days = (now - last) // DAY
        if silent_days >= 120 or (churn is not None and churn >= 0.85 and silent_days >= 30):
            return [1]
        if silent_days >= 60:
            return [2]
    if stage in LAPSED_STAGES:
        return [3]
    if count < 3:
        return [4]
    if count >= 10 and first is not None and (now - first) // DAY >= 365:
        return [5]
    if count >= 3:
        return [6]
    return []


def hand_value(v: tuple, now: float) -> list[int]:
    (score,) = v
    if score is None:
        return []
    if score >= 70:
        return [0]
    if score >= 40:
        return [1]
    return [2]


def hand_tiers(v: tuple, now: float) -> list[int]:
    earned, spend, since = v
    if (
        earned is not None
        and earned >= 10000
        or (spend is not None and spend >= 6000 and since is not None and (now - since) // DAY >= 730)
    ):
        return [0]
    if (
        earned is not None
        and earned >= 4000
        or (spend is not None and spend >= 2500 and since is not None and (now - since) // DAY >= 365)
    ):
        return [1]
    if (
        earned is not None
        and earned >= 1000
        or (spend is not None and spend >= 750 and since is not None and (now - since) // DAY >= 180)
    ):
        return [2]
    return [3]


def hand_segments(v: tuple, now: float) -> list[int]:
    tier, value, churn, first, last, touchpoints, spend = v
    fired = []
    if tier == "platinum" or (tier == "gold" and value == "high"):
        fired.append(0)
    if value == "high" and churn is not None and churn >= 0.6:
        fired.append(1)
    if first is not None and (now - first) // DAY < 30:
        fired.append(2)
    if last is not None and (now - last) // DAY >= 180:
        fired.append(3)
    if touchpoints is not None and touchpoints >= 5:
        fired.append(4)
    if spend is not None and spend >= 1000:
        fired.append(5)
    return fired


def hand_offers(v: tuple, now: float) -> list[int]:
    stage, value, tier, balance, count, last, churn, channel, intent, category, stages, segments, cost = v
    fired = []
    if stage is not None and stages is not None and stage not in stages:
        fired.append(0)
    if value is not None and segments is not None and value not in segments:
        fired.append(1)
    if category == "vip" and (tier is None or tier in LOW_TIERS) and value != "high":
        fired.append(2)
    if cost is not None and cost > (0.0 if balance is None else balance):
        fired.append(3)
    if category == "retention" and channel != "call_centre":
        fired.append(4)
    if category == "vip" and channel == "sms":
        fired.append(5)
    if category in SELLING and intent in NOT_WHILE:
        fired.append(6)
    if category in SELLING and churn is not None and churn >= 0.6:
        fired.append(7)
    if category == "win_back" and last is not None and (now - last) // DAY < 30:
        fired.append(8)
    if category == "welcome" and count is not None and count > 0:
        fired.append(9)
    return fired


def hand_contact_policy(v: tuple, now: float) -> list[int]:
    channel, consent, day1, week, offer_contacts, declines, last_contact = v
    fired = []
    if channel == "sms" and consent is not True:
        fired.append(0)
    if channel == "app" and consent is False:
        fired.append(1)
    if channel == "sms" and day1 is not None and day1 >= 1:
        fired.append(2)
    if channel == "sms" and week is not None and week >= 3:
        fired.append(3)
    if channel == "app" and day1 is not None and day1 >= 5:
        fired.append(4)
    if offer_contacts is not None and offer_contacts >= 4:
        fired.append(5)
    if declines is not None and declines >= 2:
        fired.append(6)
    if last_contact is not None and (now - last_contact) // DAY < 2 and channel != "call_centre":
        fired.append(7)
    return fired


def hand_arbitration(v: tuple, now: float) -> list[int]:
    channel, intent, value, churn, category = v
    fired = []
    if channel == "call_centre" and intent == "cancel" and category in SAVING:
        fired.append(0)
    if intent == "upgrade" and category == "upsell":
        fired.append(1)
    if channel == "app" and intent == "browse" and category in SELLING:
        fired.append(2)
    if value == "high" and category == "vip":
        fired.append(3)
    if churn is not None and churn >= 0.6 and category in SAVING:
        fired.append(4)
    if category == "upsell" and DECEMBER[0] <= now < DECEMBER[1]:
        fired.append(5)
    return fired


HAND = {
    "lifecycle": hand_lifecycle,
    "value": hand_value,
    "tiers": hand_tiers,
    "segments": hand_segments,
    "offers": hand_offers,
    "contact_policy": hand_contact_policy,
    "arbitration": hand_arbitration,
}


# --- zen-engine: the same rule sets as JDM decision tables ---------------------------------------
# Inputs are named with "_" for "." (zen reads dots as nesting) and `now` is passed in. Each rule
# becomes a row (an `or` of independent branches becomes one row per branch, same rule id). A unary
# comparison with null does not match in zen, which is "missing: does not fire"; where our rule
# accepts a missing value (`x is missing or ...`) the cell says so. zen holds numbers as decimals
# (0.1 + 0.2 > 0.3 is false there): equal on the generated data, whose values have <= 2 decimals.


def _days(field: str) -> str:
    return f"{field} == null ? null : floor((now - {field}) / 86400)"


ZEN_TABLES: dict[str, tuple[list[str], list[tuple[str | None, dict[int, str]]]]] = {
    "lifecycle": (
        ["transaction_count", _days("last_purchase_at"), "churn_risk", "stage", _days("first_purchase_at")],
        [
            ("prospect", {0: "$ == null or $ == 0"}),
            ("lapsed", {1: ">= 120"}),
            ("lapsed", {1: ">= 30", 2: ">= 0.85"}),
            ("silent", {1: ">= 60"}),
            ("won_back", {3: '"win_back", "churn_risk"'}),
            ("first_purchases", {0: "< 3"}),
            ("loyal", {0: ">= 10", 4: ">= 365"}),
            ("growing", {0: ">= 3"}),
            (None, {}),
        ],
    ),
    "value": (
        ["value_score"],
        [("high_value", {0: ">= 70"}), ("medium_value", {0: "[40..70)"}), ("low_value", {0: "< 40"})],
    ),
    "tiers": (
        ["points_earned_12m", "spend_12m", _days("customer_since")],
        [
            ("platinum", {0: ">= 10000"}),
            ("platinum", {1: ">= 6000", 2: ">= 730"}),
            ("gold", {0: ">= 4000"}),
            ("gold", {1: ">= 2500", 2: ">= 365"}),
            ("silver", {0: ">= 1000"}),
            ("silver", {1: ">= 750", 2: ">= 180"}),
            ("bronze", {}),
        ],
    ),
    "segments": (
        [
            "tier",
            "value_segment",
            "churn_risk",
            _days("first_purchase_at"),
            _days("last_purchase_at"),
            "touchpoints_30d",
            "spend_12m",
        ],
        [
            ("vip", {0: '"platinum"'}),
            ("vip", {0: '"gold"', 1: '"high"'}),
            ("high_value_at_risk", {1: '"high"', 2: ">= 0.6"}),
            ("new_customers", {3: "< 30"}),
            ("dormant", {4: ">= 180"}),
            ("engaged", {5: ">= 5"}),
            ("big_spenders", {6: ">= 1000"}),
        ],
    ),
    "offers": (
        [
            "offer_category",
            "tier",
            "value_segment",
            "channel",
            "intent",
            "churn_risk",
            _days("last_purchase_at"),
            "transaction_count",
            "",
        ],
        [
            ("wrong_stage", {8: "stage != null and offer_target_stages != null and not (stage in offer_target_stages)"}),
            (
                "wrong_segment",
                {8: "value_segment != null and offer_target_segments != null and not (value_segment in offer_target_segments)"},
            ),
            ("vip_needs_status", {0: '"vip"', 1: '$ == null or $ == "bronze" or $ == "silver"', 2: '$ == null or $ != "high"'}),
            ("not_enough_points", {8: "offer_points_cost != null and offer_points_cost > (points_balance ?? 0)"}),
            ("save_offer_by_agent_only", {0: '"retention"', 3: '$ == null or $ != "call_centre"'}),
            ("vip_not_by_sms", {0: '"vip"', 3: '"sms"'}),
            ("no_selling_on_complaint", {0: '"upsell", "cross_sell"', 4: '"complaint", "billing", "cancel"'}),
            ("no_selling_at_risk", {0: '"upsell", "cross_sell"', 5: ">= 0.6"}),
            ("no_win_back_for_recent_buyer", {0: '"win_back"', 6: "< 30"}),
            ("welcome_only_before_first_purchase", {0: '"welcome"', 7: "> 0"}),
        ],
    ),
    "contact_policy": (
        [
            "channel",
            "consent",
            "channel_contacts_1d",
            "channel_contacts_7d",
            "offer_contacts_30d",
            "offer_declines_30d",
            _days("last_offer_contact_at"),
        ],
        [
            ("sms_needs_consent", {0: '"sms"', 1: "$ == null or $ == false"}),
            ("app_opt_out", {0: '"app"', 1: "$ == false"}),
            ("sms_daily_limit", {0: '"sms"', 2: ">= 1"}),
            ("sms_weekly_limit", {0: '"sms"', 3: ">= 3"}),
            ("app_daily_limit", {0: '"app"', 2: ">= 5"}),
            ("offer_monthly_limit", {4: ">= 4"}),
            ("declined_twice", {5: ">= 2"}),
            ("cool_down", {6: "< 2", 0: '$ == null or $ != "call_centre"'}),
        ],
    ),
    "arbitration": (
        ["channel", "intent", "value_segment", "churn_risk", "offer_category", "now"],
        [
            ("save_when_cancelling", {0: '"call_centre"', 1: '"cancel"', 4: '"retention", "win_back"'}),
            ("upgrade_when_asking", {1: '"upgrade"', 4: '"upsell"'}),
            ("sell_while_browsing", {0: '"app"', 1: '"browse"', 4: '"upsell", "cross_sell"'}),
            ("vip_for_high_value", {2: '"high"', 4: '"vip"'}),
            ("save_customers_at_risk", {3: ">= 0.6", 4: '"retention", "win_back"'}),
            ("december_upsell_push", {4: '"upsell"', 5: f"[{DECEMBER[0]:.0f}..{DECEMBER[1]:.0f})"}),
        ],
    ),
}


def zen_content(rev: Revision, name: str) -> str:
    """Return the JDM graph (request -> decision table -> response) of one rule set, as JSON."""
    rs = rev.compiled[name].ruleset
    then = {rule.id: rule.then for rule in rs.rules}
    fields, rows = ZEN_TABLES[name]
    out_fields = ["rule", *rs.outputs]
    inputs = [
        {"id": f"in{i}", "type": "expression", "field": field, "name": field or "condition"} for i, field in enumerate(fields)
    ]
    outputs = [{"id": f"out{i}", "type": "expression", "field": field, "name": field} for i, field in enumerate(out_fields)]
    rules = []
    for n, (rule_id, cells) in enumerate(rows):
        values = {"rule": rule_id, **(then[rule_id] if rule_id else (rs.default or {}))}
        row = {"_id": f"row{n}", **{f"in{i}": cells.get(i, "") for i in range(len(fields))}}
        row.update({f"out{i}": json.dumps(values.get(field)) for i, field in enumerate(out_fields)})
        rules.append(row)
    table = {"hitPolicy": "first" if rs.hit == "first" else "collect", "inputs": inputs, "outputs": outputs, "rules": rules}
    nodes = [
        {"id": "request", "type": "inputNode", "name": "Request", "position": {"x": 0, "y": 0}},
        {"id": "table", "type": "decisionTableNode", "name": name, "position": {"x": 300, "y": 0}, "content": table},
        {"id": "response", "type": "outputNode", "name": "Response", "position": {"x": 600, "y": 0}},
    ]
    edges = [
        {"id": "e1", "type": "edge", "sourceId": "request", "targetId": "table"},
        {"id": "e2", "type": "edge", "sourceId": "table", "targetId": "response"},
    ]
    return json.dumps({"contentType": "application/vnd.gorules.decision", "nodes": nodes, "edges": edges})


class Zen:
    """The seven rule sets on zen-engine, keyed by rule-set name."""

    def __init__(self, rev: Revision):
        import zen

        self.contents = {name: zen.ZenDecisionContent(zen_content(rev, name)) for name in ALL_SETS}
        self.engine = zen.ZenEngine({"loader": self.contents.__getitem__})  # parsed content, looked up per call
        self.decisions = {name: self.engine.create_decision(content) for name, content in self.contents.items()}
        self.inputs = {name: [(n, n.replace(".", "_")) for n in rev.compiled[name].ruleset.inputs] for name in ALL_SETS}

    def context(self, name: str, values: tuple) -> dict[str, Any]:
        """Return zen's input for a normalized values tuple (lists as lists, plus `now`)."""
        ctx = {
            zname: list(value) if isinstance(value, tuple) else value
            for (_, zname), value in zip(self.inputs[name], values, strict=True)
        }
        ctx["now"] = NOW
        return ctx

    def fired(self, name: str, ctx: dict[str, Any]) -> list[str]:
        """Return the rule ids zen's table gives for one input."""
        result = self.engine.evaluate(name, ctx)["result"]
        if isinstance(result, list):
            return [row["rule"] for row in result]
        return [result["rule"]] if result.get("rule") else []


# --- timing ----------------------------------------------------------------------------------

clock = time.perf_counter_ns


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Collect, then keep the cyclic collector off for the block."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def timer_overhead() -> int:
    """Return the median ns between two back-to-back clock reads, subtracted from every timing."""
    laps = []
    for _ in range(20_000):
        t0 = clock()
        laps.append(clock() - t0)
    laps.sort()
    return laps[len(laps) // 2]


def loop_rev(evaluate: Callable, name: str, items: list, backend: str) -> list[int]:
    out = []
    for facts in items:
        t0 = clock()
        evaluate(name, facts, now=NOW, backend=backend)
        out.append(clock() - t0)
    return out


def loop_raw(fn: Callable, items: list, skip: frozenset) -> list[int]:
    out = []
    for values in items:
        t0 = clock()
        fn(values, NOW, skip)
        out.append(clock() - t0)
    return out


def loop_hand(fn: Callable, items: list) -> list[int]:
    out = []
    for values in items:
        t0 = clock()
        fn(values, NOW)
        out.append(clock() - t0)
    return out


def loop_zen_decision(decision: Any, items: list) -> list[int]:
    out = []
    for ctx in items:
        t0 = clock()
        decision.evaluate(ctx)
        out.append(clock() - t0)
    return out


def loop_zen(evaluate: Callable, name: str, items: list) -> list[int]:
    out = []
    for ctx in items:
        t0 = clock()
        evaluate(name, ctx)
        out.append(clock() - t0)
    return out


def batch_raw(fn: Callable, items: list, skip: frozenset) -> list[float]:
    """Time the whole loop, no clock per call: the mean ns per call, as a one-item list."""
    t0 = clock()
    for values in items:
        fn(values, NOW, skip)
    return [(clock() - t0) / len(items)]


def batch_hand(fn: Callable, items: list) -> list[float]:
    t0 = clock()
    for values in items:
        fn(values, NOW)
    return [(clock() - t0) / len(items)]


CHUNK = 250


def paired_loops(a: Callable, b: Callable, items: list, rounds: int) -> dict[str, float]:
    """Run loops a and b on the same chunks of items, alternating which goes first; return medians."""
    a(items[:300]), b(items[:300])  # warm-up
    a_ns, b_ns, ratios = [], [], []
    with no_gc():
        for r in range(rounds):
            for k, start in enumerate(range(0, len(items) - CHUNK + 1, CHUNK)):
                chunk = items[start : start + CHUNK]
                if (k + r) % 2:
                    y, x = b(chunk)[0], a(chunk)[0]
                else:
                    x, y = a(chunk)[0], b(chunk)[0]
                a_ns.append(x)
                b_ns.append(y)
                ratios.append(x / y)
    return {"a_ns": statistics.median(a_ns), "b_ns": statistics.median(b_ns), "ratio": statistics.median(ratios)}


def decide_rev(evaluate: Callable, rows: list, backend: str) -> list[int]:
    out = []
    for customer, offers in rows:
        t0 = clock()
        for name in CUSTOMER_SETS:
            evaluate(name, customer, now=NOW, backend=backend)
        for facts in offers:
            for name in OFFER_SETS:
                evaluate(name, facts, now=NOW, backend=backend)
        out.append(clock() - t0)
    return out


def decide_many(evaluate: Callable, evaluate_many: Callable, rows: list, backend: str) -> list[int]:
    """A decision with the offer-level sets evaluated for all 8 offers in one evaluate_many call each."""
    out = []
    for customer, offers in rows:
        t0 = clock()
        for name in CUSTOMER_SETS:
            evaluate(name, customer, now=NOW, backend=backend)
        for name in OFFER_SETS:
            evaluate_many(name, offers, now=NOW, backend=backend)
        out.append(clock() - t0)
    return out


def decide_group(rev, rows: list, backend: str) -> list[int]:
    """A decision as the decision endpoint makes it: the customer-level sets together, then the offer-level
    sets together for all 8 offers (Revision.evaluate_group / evaluate_group_many: two engine sessions)."""
    out = []
    for customer, offers in rows:
        t0 = clock()
        rev.evaluate_group(CUSTOMER_SETS, customer, now=NOW, backend=backend)
        rev.evaluate_group_many(OFFER_SETS, offers, now=NOW, backend=backend)
        out.append(clock() - t0)
    return out


def decide_raw(rows: list) -> list[int]:
    out = []
    for calls in rows:
        t0 = clock()
        for fn, values, skip in calls:
            fn(values, NOW, skip)
        out.append(clock() - t0)
    return out


def decide_hand(rows: list) -> list[int]:
    out = []
    for calls in rows:
        t0 = clock()
        for fn, values in calls:
            fn(values, NOW)
        out.append(clock() - t0)
    return out


def decide_zen(evaluate: Callable, rows: list) -> list[int]:
    out = []
    for calls in rows:
        t0 = clock()
        for name, ctx in calls:
            evaluate(name, ctx)
        out.append(clock() - t0)
    return out


def timed(loop: Callable[[list], list[int]], items: list, overhead: int, warmup: int) -> dict[str, float]:
    """Warm up on the first items, then time every item; return p50/p99/mean in µs."""
    loop(items[:warmup])
    with no_gc():
        laps = loop(items)
    laps = sorted(max(lap - overhead, 0) for lap in laps)
    return {
        "p50_us": harness.percentile(laps, 50) / 1e3,
        "p99_us": harness.percentile(laps, 99) / 1e3,
        "mean_us": sum(laps) / len(laps) / 1e3,
        "n": len(laps),
    }


def run_rounds(jobs: list[tuple[str, str, Callable, list]], overhead: int, rounds: int, warmup: int) -> dict[tuple, dict]:
    """Time every job once per round, in reverse order every other round; keep each figure's median."""
    seen: dict[tuple, list[dict]] = {}
    for r in range(rounds):
        for backend, name, loop, items in jobs if r % 2 == 0 else jobs[::-1]:
            seen.setdefault((backend, name), []).append(timed(loop, items, overhead, warmup))
    return {key: {field: statistics.median(s[field] for s in runs) for field in runs[0]} for key, runs in seen.items()}


# --- part 1: latency -------------------------------------------------------------------------

BACKENDS = ("durable", "durable raw", "python", "compiled raw", "hand-written", "zen-engine", "zen ZenDecision")


def check_agreement(rev: Revision, sample: Sample, values: dict, zen: Zen | None, zen_ctx: dict) -> list[dict[str, Any]]:
    """Compare every backend's fired rule ids with the compiled backend's on every sample input."""
    rows = []
    for name in ALL_SETS:
        compiled = rev.compiled[name]
        ids = [rule.id for rule in compiled.ruleset.rules]
        skip = compiled.skip(NOW)
        agree = {"durable": 0, "python": 0, "hand-written": 0, "zen-engine": 0}
        shown = set()
        for i, facts in enumerate(sample.inputs(name)):
            want = [ids[k] for k in compiled.evaluate_python(values[name][i], NOW, skip)]
            got = {
                "durable": rev.evaluate(name, facts, now=NOW, backend="durable").fired_ids,
                "python": rev.evaluate(name, facts, now=NOW, backend="python").fired_ids,
                "hand-written": [ids[k] for k in HAND[name](values[name][i], NOW)],
            }
            if zen:
                got["zen-engine"] = zen.fired(name, zen_ctx[name][i])
            for backend, fired in got.items():
                if fired == want:
                    agree[backend] += 1
                elif (backend, name) not in shown:
                    shown.add((backend, name))
                    print(f"  DISAGREEMENT {backend} vs compiled on {name}: {fired} != {want}\n    facts: {facts!r}")
        n = len(sample.customers)
        rows.append(
            {
                "ruleset": name,
                "inputs": n,
                **{k: f"{v:,}/{n:,}" for k, v in agree.items()},
                "all_agree": all(v == n for k, v in agree.items() if zen or k != "zen-engine"),
            }
        )
        if not zen:
            rows[-1]["zen-engine"] = "-"
    return rows


def latency_part(rev: Revision, args: argparse.Namespace) -> dict[str, Any]:
    """Per rule set and per decision, every backend on the same sample; returns the results."""
    started = time.perf_counter()
    sample = make_sample(rev, args.sample, args.seed)
    values = {name: [normalize(rev.compiled[name].ruleset, f) for f in sample.inputs(name)] for name in ALL_SETS}
    zen = None if args.no_zen else Zen(rev)
    zen_ctx = {name: [zen.context(name, v) for v in values[name]] for name in ALL_SETS} if zen else {}
    print(
        f"  {args.sample:,} customers, {args.sample * OFFERS_PER_DECISION:,} offer inputs generated "
        f"in {time.perf_counter() - started:.1f} s"
    )

    print("\nagreement with the compiled backend (fired rule ids), every sample input:")
    agreement = check_agreement(rev, sample, values, zen, zen_ctx)
    harness.print_table(
        agreement,
        [
            ("rule set", "ruleset", ""),
            ("durable", "durable", ""),
            ("python", "python", ""),
            ("hand-written", "hand-written", ""),
            ("zen-engine", "zen-engine", ""),
        ],
    )

    if hasattr(rev, "evaluate_many"):
        m = min(2_000, len(sample.offers))
        agree, total = 0, 0
        for name in OFFER_SETS:
            ids = [rule.id for rule in rev.compiled[name].ruleset.rules]
            for offers in sample.offers[:m]:
                skip = rev.compiled[name].skip(NOW)
                want = [
                    [ids[k] for k in rev.compiled[name].evaluate_python(normalize(rev.compiled[name].ruleset, f), NOW, skip)]
                    for f in offers
                ]
                got = [r.fired_ids for r in rev.evaluate_many(name, offers, now=NOW, backend="durable")]
                agree += sum(g == w for g, w in zip(got, want, strict=True))
                total += len(offers)
                if got != want and agree + len(offers) > total - len(offers):  # first disagreement only
                    print(f"  DISAGREEMENT durable evaluate_many vs compiled on {name}: {got} != {want}\n    rows: {offers!r}")
        print(f"  durable evaluate_many (8 offers per call), offer-level sets, first {m:,} customers: {agree:,}/{total:,} agree")
        agreement.append(
            {
                "ruleset": "evaluate_many, offer sets",
                "inputs": total,
                "durable": f"{agree:,}/{total:,}",
                "all_agree": agree == total,
            }
        )

    overhead = timer_overhead()
    evaluate = rev.evaluate
    jobs: list[tuple[str, str, Callable, list]] = []  # (backend, rule set, loop, items)
    for name in ALL_SETS:
        compiled = rev.compiled[name]
        skip = compiled.skip(NOW)
        facts, vals = sample.inputs(name), values[name]
        jobs += [
            ("durable", name, partial(loop_rev, evaluate, name, backend="durable"), facts),
            ("durable raw", name, partial(loop_raw, compiled.durable.evaluate, skip=skip), vals),
            ("python", name, partial(loop_rev, evaluate, name, backend="python"), facts),
            ("compiled raw", name, partial(loop_raw, compiled.evaluate_python, skip=skip), vals),
            ("hand-written", name, partial(loop_hand, HAND[name]), vals),
        ]
        if zen:
            jobs.append(("zen-engine", name, partial(loop_zen, zen.engine.evaluate, name), zen_ctx[name]))
            if name in ("lifecycle", "value"):  # the other zen entry point, for reference
                jobs.append(("zen ZenDecision", name, partial(loop_zen_decision, zen.decisions[name]), zen_ctx[name]))
    print(
        f"\ntiming each rule set over {args.sample:,} inputs per backend, {args.rounds} round(s) "
        f"(timer overhead {overhead} ns subtracted)...",
        flush=True,
    )
    per_set: dict[str, dict[str, dict]] = {backend: {} for backend in BACKENDS}
    for (backend, name), stats in run_rounds(jobs, overhead, args.rounds, 300).items():
        per_set[backend][name] = stats

    print(
        f"\nper rule-set evaluation, µs: p50 / p99 ({args.sample:,} inputs each; offer-level sets: one of the 8 offers per customer)"
    )
    table = []
    for backend in BACKENDS:
        if not per_set[backend]:
            continue
        row = {"backend": backend}
        for name in ALL_SETS:
            stats = per_set[backend].get(name)
            row[name] = f"{stats['p50_us']:.1f} / {stats['p99_us']:.1f}" if stats else "-"
        table.append(row)
    harness.print_table(table, [("backend", "backend", "")] + [(name, name, "") for name in ALL_SETS])
    print("\nratio of p50 to hand-written, per rule set:")
    ratios = []
    for backend in BACKENDS:
        if per_set[backend] and backend != "hand-written":
            ratios.append(
                {
                    "backend": backend,
                    **{
                        name: harness.ratio(per_set[backend][name]["p50_us"], per_set["hand-written"][name]["p50_us"])
                        if name in per_set[backend]
                        else "-"
                        for name in ALL_SETS
                    },
                }
            )
    harness.print_table(ratios, [("backend", "backend", "")] + [(name, name, "") for name in ALL_SETS])

    # Calls well under a µs are near the clock's overhead and jitter, and the machine's speed drifts:
    # time compiled and hand-written as whole loops over the same chunk of inputs, back to back.
    batch = {}
    for name in ALL_SETS:
        skip = rev.compiled[name].skip(NOW)
        batch[name] = paired_loops(
            partial(batch_raw, rev.compiled[name].evaluate_python, skip=skip),
            partial(batch_hand, HAND[name]),
            values[name],
            args.rounds,
        )
    print(
        f"\ncompiled raw vs hand-written, loops of {CHUNK} calls timed whole (no clock per call), alternating on the "
        "same inputs; medians of mean ns per call and of the paired ratios:"
    )
    rows = [
        {"backend": "compiled raw", **{name: f"{batch[name]['a_ns']:.0f}" for name in ALL_SETS}},
        {"backend": "hand-written", **{name: f"{batch[name]['b_ns']:.0f}" for name in ALL_SETS}},
        {"backend": "ratio", **{name: f"{batch[name]['ratio']:.2f}x" for name in ALL_SETS}},
    ]
    harness.print_table(rows, [("", "backend", "")] + [(name, name, "") for name in ALL_SETS])

    # one decision: 4 customer-level sets + 3 offer-level sets x 8 offers
    n = args.sample
    skips = {name: rev.compiled[name].skip(NOW) for name in ALL_SETS}
    rev_rows = list(zip(sample.customers, sample.offers, strict=True))
    raw_rows, durable_rows, hand_rows, zen_rows = [], [], [], []
    for i in range(n):
        raw, durable, hand, zcalls = [], [], [], []
        calls = [(name, sample.customers[i]) for name in CUSTOMER_SETS]
        calls += [(name, facts) for facts in sample.offers[i] for name in OFFER_SETS]
        for name, facts in calls:
            compiled = rev.compiled[name]
            vals = normalize(compiled.ruleset, facts)
            raw.append((compiled.evaluate_python, vals, skips[name]))
            durable.append((compiled.durable.evaluate, vals, skips[name]))
            hand.append((HAND[name], vals))
            if zen:
                zcalls.append((name, zen.context(name, vals)))
        raw_rows.append(raw)
        durable_rows.append(durable)
        hand_rows.append(hand)
        zen_rows.append(zcalls)
    print(
        f"\ntiming {n:,} decisions per backend ({EVALS_PER_DECISION} rule-set evaluations each), {args.rounds} round(s)...",
        flush=True,
    )
    jobs = [
        ("durable", "", partial(decide_rev, evaluate, backend="durable"), rev_rows),
        ("durable raw", "", decide_raw, durable_rows),
        ("python", "", partial(decide_rev, evaluate, backend="python"), rev_rows),
        ("compiled raw", "", decide_raw, raw_rows),
        ("hand-written", "", decide_hand, hand_rows),
    ]
    if hasattr(rev, "evaluate_many"):
        for backend in ("durable", "python"):
            jobs.insert(
                1 if backend == "durable" else 4,
                (f"{backend} evaluate_many", "", partial(decide_many, evaluate, rev.evaluate_many, backend=backend), rev_rows),
            )
    if hasattr(rev, "evaluate_group"):
        for backend in ("durable", "python"):
            jobs.append((f"{backend} grouped", "", partial(decide_group, rev, backend=backend), rev_rows))
    if zen:
        jobs.append(("zen-engine", "", partial(decide_zen, zen.engine.evaluate), zen_rows))
    per_decision = {backend: stats for (backend, _), stats in run_rounds(jobs, overhead, args.rounds, 50).items()}
    floor = per_decision["hand-written"]
    decision_table = [
        {
            "backend": backend,
            **stats,
            "per_eval_us": stats["p50_us"] / EVALS_PER_DECISION,
            "vs_hand": harness.ratio(stats["p50_us"], floor["p50_us"]),
            "vs_raw": harness.ratio(stats["p50_us"], per_decision["compiled raw"]["p50_us"]),
            "per_s": 1e6 / stats["mean_us"],
        }
        for backend, stats in per_decision.items()
    ]
    print(f"\nper decision ({EVALS_PER_DECISION} rule-set evaluations), µs; one thread:")
    harness.print_table(
        decision_table,
        [
            ("backend", "backend", ""),
            ("p50 µs", "p50_us", ",.1f"),
            ("p99 µs", "p99_us", ",.1f"),
            ("mean µs", "mean_us", ",.1f"),
            ("p50/eval µs", "per_eval_us", ",.2f"),
            ("decisions/s", "per_s", ",.0f"),
            ("p50 vs hand", "vs_hand", ""),
            ("p50 vs compiled raw", "vs_raw", ""),
        ],
    )
    return {
        "agreement": agreement,
        "per_ruleset": per_set,
        "per_decision": per_decision,
        "compiled_vs_hand_whole_loops": batch,
        "timer_overhead_ns": overhead,
        "sample": n,
    }


# --- part 2: vectorized ----------------------------------------------------------------------


def numpy_lifecycle_value(cols: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Lifecycle and value written by hand with np.select; NaN compares false, which is 'does not fire'."""
    count, churn, stage = cols["transaction_count"], cols["churn_risk"], cols["stage"]
    with np.errstate(invalid="ignore"):
        silent = np.floor((NOW - cols["last_purchase_at"]) / DAY)
        tenure = np.floor((NOW - cols["first_purchase_at"]) / DAY)
        lifecycle = np.select(
            [
                np.isnan(count) | (count == 0),
                (silent >= 120) | ((churn >= 0.85) & (silent >= 30)),
                silent >= 60,
                (stage == "win_back") | (stage == "churn_risk"),
                count < 3,
                (count >= 10) & (tenure >= 365),
                count >= 3,
            ],
            range(7),
            default=-1,
        )
        score = cols["value_score"]
        value = np.select([score >= 70, (score >= 40) & (score < 70), score < 40], range(3), default=-1)
    return lifecycle, value


def _tuples(rev: Revision, name: str, cols: dict[str, np.ndarray], m: int) -> list[tuple]:
    """Return the first m rows of the columns as the compiled function's values tuples."""
    lists = []
    for input_name in rev.compiled[name].ruleset.inputs:
        column = cols[input_name][:m].tolist()
        lists.append([None if v is None or v != v else v for v in column])
    return list(zip(*lists, strict=True))


def vector_part(rev: Revision, args: argparse.Namespace) -> dict[str, Any]:
    """evaluate_columns per customer-level rule set over args.rows customers, with baselines."""
    started = time.perf_counter()
    cols = customer_columns(args.rows, args.seed + 1)
    print(f"  {args.rows:,} customers generated in {time.perf_counter() - started:.1f} s; median of {args.repeat} run(s) each")
    seconds, results = {}, {}
    for name in CUSTOMER_SETS:
        columns = {k: cols[k] for k in rev.compiled[name].ruleset.inputs}
        laps = []
        for _ in range(args.repeat):
            with no_gc():
                t0 = time.perf_counter()
                result = rev.evaluate_columns(name, columns, now=NOW)
                laps.append(time.perf_counter() - t0)
            del result
        with no_gc():
            results[name] = rev.evaluate_columns(name, columns, now=NOW)  # kept for the checks below
        seconds[name] = sorted(laps)[len(laps) // 2]
        if name == "value":  # segments read the outcomes of value and tiers
            cols["value_segment"] = outcome_column(rev, "value", results[name].chosen, "value_segment")
        if name == "tiers":
            cols["tier"] = outcome_column(rev, "tiers", results[name].chosen, "tier")

    laps = []
    for _ in range(args.repeat):
        with no_gc():
            t0 = time.perf_counter()
            hand_life, hand_value = numpy_lifecycle_value(cols)
            laps.append(time.perf_counter() - t0)
    numpy_seconds = sorted(laps)[len(laps) // 2]
    numpy_agree = int(np.sum(hand_life == results["lifecycle"].chosen) + np.sum(hand_value == results["value"].chosen))

    m = min(100_000, args.rows)
    per_row_seconds, per_row_agree = {}, {}
    for name in CUSTOMER_SETS:
        compiled = rev.compiled[name]
        skip = compiled.skip(NOW)
        tuples = _tuples(rev, name, cols, m)
        fn = compiled.evaluate_python
        with no_gc():
            t0 = time.perf_counter()
            for values in tuples:
                fn(values, NOW, skip)
            per_row_seconds[name] = (time.perf_counter() - t0) * args.rows / m
        fired = results[name].fired
        agree = 0
        for i, values in enumerate(tuples):  # same rows, per-row compiled vs vectorized
            agree += fn(values, NOW, skip) == np.flatnonzero(fired[:, i]).tolist()
        per_row_agree[name] = agree

    total = sum(seconds.values())
    scale = 1e6 / args.rows
    table = [
        {
            "what": f"evaluate_columns {name}",
            "s": s,
            "per_m": s * scale,
            "rows_s": args.rows / s,
            "agree": f"{per_row_agree[name]:,}/{m:,}",
        }
        for name, s in seconds.items()
    ]
    table.append({"what": "evaluate_columns, all four", "s": total, "per_m": total * scale, "rows_s": args.rows / total})
    lv = seconds["lifecycle"] + seconds["value"]
    table.append(
        {
            "what": "evaluate_columns lifecycle+value",
            "s": lv,
            "per_m": lv * scale,
            "rows_s": args.rows / lv,
            "vs": harness.ratio(lv, numpy_seconds),
        }
    )
    table.append(
        {
            "what": "baseline: np.select lifecycle+value",
            "s": numpy_seconds,
            "per_m": numpy_seconds * scale,
            "rows_s": args.rows / numpy_seconds,
            "agree": f"{numpy_agree:,}/{2 * args.rows:,}",
        }
    )
    row_total = sum(per_row_seconds.values())
    for name, s in per_row_seconds.items():
        table.append({"what": f"compiled per row {name} (extrapolated)", "s": s, "per_m": s * scale, "rows_s": args.rows / s})
    table.append(
        {
            "what": "compiled per row, all four (extrapolated)",
            "s": row_total,
            "per_m": row_total * scale,
            "rows_s": args.rows / row_total,
            "vs": harness.ratio(row_total, total),
        }
    )
    print(
        f"\nvectorized backend over {args.rows:,} customers (per-row figures: {m:,} rows timed, scaled to {args.rows:,}; "
        f"'agree' = rows equal to the vectorized result):"
    )
    harness.print_table(
        table,
        [
            ("", "what", ""),
            ("seconds", "s", ",.2f"),
            ("s per 1M", "per_m", ",.2f"),
            ("rows/s", "rows_s", ",.0f"),
            ("ratio", "vs", ""),
            ("agree", "agree", ""),
        ],
    )
    return {
        "rows": args.rows,
        "repeat": args.repeat,
        "seconds": seconds,
        "total_s": total,
        "per_million_s": total * scale,
        "numpy_lifecycle_value_s": numpy_seconds,
        "numpy_agree": numpy_agree,
        "per_row_extrapolated_s": per_row_seconds,
        "per_row_rows_timed": m,
        "per_row_agree": per_row_agree,
    }


# --- part 3: durable soak (in a child process) ----------------------------------------------------


def rss_kb() -> dict[str, int]:
    """Return this process's current and peak resident memory in kB, from /proc/self/status."""
    fields = {}
    for line in open("/proc/self/status"):
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(rest.split()[0])
    return fields


EDGE_INPUTS: list[tuple[str, dict[str, Any], str]] = [
    ("value", {"value_score": float("inf")}, "JSON 1e400 or Infinity"),
    ("value", {"value_score": float("-inf")}, "JSON -1e400"),
    ("tiers", {"points_earned_12m": float("inf")}, "infinite number"),
    ("offers", {"offer.points_cost": float("inf")}, "infinite number"),
    ("offers", {"offer.category": "upsell", "intent": "complaint", "churn_risk": float("inf")}, "infinite number"),
    ("lifecycle", {"transaction_count": 5, "last_purchase_at": float("inf")}, "infinite time (JSON 1e400)"),
    ("lifecycle", {"transaction_count": 5, "last_purchase_at": float("nan")}, "NaN time (JSON NaN)"),
    ("lifecycle", {"transaction_count": 5, "last_purchase_at": 1e300}, "far-future time"),
    ("value", {"value_score": 1e-7}, "exponent notation"),
    ("value", {"value_score": 69.99999999999999}, "just below a threshold"),
    ("value", {"value_score": 2**70}, "integer beyond int64"),
    ("lifecycle", {"transaction_count": 5e-324, "stage": "win_back"}, "denormal"),
    ("lifecycle", {"transaction_count": 5, "last_purchase_at": NOW - 120 * DAY, "stage": "growth"}, "exactly 120 days"),
    ("arbitration", {"intent": 'can"cel\\', "channel": "call_centre", "offer.category": "retention"}, "quote, backslash"),
    ("arbitration", {"intent": "cancel\x00", "channel": "call_centre", "offer.category": "retention"}, "NUL in text"),
    ("arbitration", {"intent": "browse\u2028\U0001f600", "channel": "app", "offer.category": "upsell"}, "unicode"),
    (
        "offers",
        {"stage": "growth", "offer.target_stages": [], "offer.target_segments": ["high\x00"], "value_segment": "high"},
        "empty list, NUL in list",
    ),
    (
        "contact_policy",
        {
            "channel": "sms",
            "consent": False,
            "channel_contacts_1d": 1,
            "channel_contacts_7d": 3,
            "offer_contacts_30d": 4,
            "offer_declines_30d": 2,
            "last_offer_contact_at": NOW - 2 * DAY + 1,
        },
        "every threshold exactly",
    ),
    (
        "segments",
        {
            "tier": "gold",
            "value_segment": "high",
            "churn_risk": 0.6,
            "first_purchase_at": NOW - 30 * DAY + 1,
            "last_purchase_at": NOW - 180 * DAY,
            "touchpoints_30d": 5,
            "spend_12m": 1000,
        },
        "every threshold exactly",
    ),
]


def edge_probe(rev: Revision) -> list[dict[str, Any]]:
    """Evaluate EDGE_INPUTS on durable, python and vector; return one row per input."""
    rows = []
    for name, facts, note in EDGE_INPUTS:
        ids = [rule.id for rule in rev.compiled[name].ruleset.rules]
        got = {}
        for backend in ("durable", "python", "vector"):
            try:
                if backend == "vector":
                    result = rev.evaluate_columns(name, {k: [v] for k, v in facts.items()}, now=NOW)
                    got[backend] = [ids[i] for i in np.flatnonzero(result.fired[:, 0])]
                else:
                    got[backend] = rev.evaluate(name, facts, now=NOW, backend=backend).fired_ids
            except Exception as exc:  # an exception is a result here: it is what the probe reports
                got[backend] = f"{type(exc).__name__}: {exc}"
        rows.append(
            {
                "ruleset": name,
                "facts": repr(facts),
                "note": note,
                **{k: str(v) for k, v in got.items()},
                "agree": got["durable"] == got["python"] == got["vector"],
            }
        )
    return rows


def soak_child(args: argparse.Namespace) -> int:
    """Run the soak in this process and print its results as one JSON line; then the edge probe."""
    before = rss_kb()
    rev, host = load_revision()
    sample = make_sample(rev, min(2_000, max(args.soak // 100, 200)), args.seed + 2)
    items = [(name, facts) for facts in sample.customers for name in CUSTOMER_SETS]
    items += [(name, facts) for offers in sample.offers for facts in offers for name in OFFER_SETS]
    expected = [rev.evaluate(name, facts, now=NOW, backend="python").fired_ids for name, facts in items]
    # batches of 8 inputs of one rule set for evaluate_many: 8 customers, or one customer's 8 offers
    sets, group = len(CUSTOMER_SETS), OFFERS_PER_DECISION
    batches = [
        (name, [c * sets + si for c in range(first, first + group)])
        for si, name in enumerate(CUSTOMER_SETS)
        for first in range(0, len(sample.customers) - group + 1, group)
    ]
    offset, width = len(sample.customers) * sets, group * len(OFFER_SETS)
    batches += [
        (name, [offset + c * width + k * len(OFFER_SETS) + si for k in range(group)])
        for c in range(len(sample.offers))
        for si, name in enumerate(OFFER_SETS)
    ]
    assert all(items[i][0] == name for name, indexes in batches for i in indexes)
    many = hasattr(rev, "evaluate_many")  # batched durable sessions, when this revision of the engine has them
    for name, facts in items[:2_000]:  # warm-up
        rev.evaluate(name, facts, now=NOW, backend="durable")
    gc.collect()
    warm = rss_kb()
    threads = args.threads
    done = [0] * threads
    wrong: list[dict[str, Any]] = []
    errors: list[str] = []

    def check(name: str, index: int, fired: list[str]) -> None:
        if fired != expected[index]:
            wrong.append({"ruleset": name, "facts": repr(items[index][1]), "durable": fired, "compiled": expected[index]})

    def worker_many(k: int, quota: int) -> None:
        evaluate_many, j = rev.evaluate_many, k // 2
        while done[k] < quota:
            name, indexes = batches[j % len(batches)]
            indexes = indexes[: quota - done[k]]
            j += threads // 2
            try:
                results = evaluate_many(name, [items[i][1] for i in indexes], now=NOW, backend="durable")
            except Exception as exc:  # counted and reported; the soak goes on
                errors.append(f"{name} (evaluate_many): {type(exc).__name__}: {exc}")
            else:
                for index, result in zip(indexes, results, strict=True):
                    check(name, index, result.fired_ids)
            done[k] += len(indexes)

    def worker(k: int) -> None:
        quota = args.soak // threads + (1 if k < args.soak % threads else 0)
        if many and k % 2:
            return worker_many(k, quota)
        evaluate, size = rev.evaluate, len(items)
        for j in range(quota):
            index = (k + j * threads) % size
            name, facts = items[index]
            try:
                fired = evaluate(name, facts, now=NOW, backend="durable").fired_ids
            except Exception as exc:  # counted and reported; the soak goes on
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
            else:
                check(name, index, fired)
            done[k] += 1

    pool = [threading.Thread(target=worker, args=(k,), name=f"soak-{k}") for k in range(threads)]
    samples = []
    started = time.perf_counter()
    for thread in pool:
        thread.start()
    next_report = 0.1
    while any(thread.is_alive() for thread in pool):
        time.sleep(0.5)
        count = sum(done)
        samples.append((round(time.perf_counter() - started, 1), count, rss_kb()["VmRSS"]))
        if count >= next_report * args.soak:
            print(f"    soak {count:,}/{args.soak:,}  RSS {samples[-1][2] / 1024:.1f} MB", file=sys.stderr, flush=True)
            next_report += 0.1
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    gc.collect()
    end = rss_kb()
    registered = len(host.names())
    rev.close()
    gc.collect()
    result = {
        "evaluations": sum(done),
        "threads": threads,
        "distinct_inputs": len(items),
        "seconds": elapsed,
        "via_evaluate_many": sum(done[1::2]) if many else 0,
        "per_s": sum(done) / elapsed,
        "wrong": len(wrong),
        "wrong_examples": wrong[:5],
        "errors": len(errors),
        "error_examples": errors[:5],
        "rss_kb": {
            "start": before["VmRSS"],
            "after_warmup": warm["VmRSS"],
            "end": end["VmRSS"],
            "after_close": rss_kb()["VmRSS"],
            "peak": end["VmHWM"],
        },
        "rss_samples": samples[:: max(1, len(samples) // 40)] + samples[-1:],
        "rulesets_registered_before_close": registered,
        "rulesets_registered_after_close": len(host.names()),
    }
    print("SOAK-RESULT " + json.dumps(result), flush=True)
    rev, _ = load_revision()
    probe = edge_probe(rev)
    rev.close()
    print("EDGE-RESULT " + json.dumps(probe), flush=True)
    return 0


def soak_part(args: argparse.Namespace) -> dict[str, Any]:
    """Run the soak in a child process, so that a crash is reported instead of ending this run."""
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--soak-child",
        "--soak",
        str(args.soak),
        "--threads",
        str(args.threads),
        "--seed",
        str(args.seed),
    ]
    print(f"  child: {' '.join(command[1:])}", flush=True)
    proc = subprocess.run(command, stdout=subprocess.PIPE, text=True, timeout=max(900, args.soak / 500))
    status = (
        "exit 0"
        if proc.returncode == 0
        else (f"killed by {signal.Signals(-proc.returncode).name}" if proc.returncode < 0 else f"exit {proc.returncode}")
    )
    lines = {
        line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in proc.stdout.splitlines() if line.startswith(("SOAK-", "EDGE-"))
    }
    soak = json.loads(lines["SOAK-RESULT"]) if "SOAK-RESULT" in lines else None
    probe = json.loads(lines["EDGE-RESULT"]) if "EDGE-RESULT" in lines else None
    if soak is None:
        print(f"\nsoak: the child process died ({status}) before reporting: a crash.")
        return {"status": status, "crashed": True}
    mb = {k: v / 1024 for k, v in soak["rss_kb"].items()}
    # RSS once a tenth of the evaluations are done (threads started, allocator settled) vs the end
    settled = next((r for _, c, r in soak["rss_samples"] if c >= soak["evaluations"] / 10), soak["rss_kb"]["end"]) / 1024
    growth = mb["end"] - settled
    print(
        f"\ndurable soak: {soak['evaluations']:,} rule-set evaluations, {soak['threads']} threads, "
        f"{soak['distinct_inputs']:,} distinct inputs ({soak.get('via_evaluate_many', 0):,} evaluations through evaluate_many "
        "in batches of 8, on half the threads), each compared with the compiled backend:"
    )
    harness.print_table(
        [
            {
                "evals": soak["evaluations"],
                "s": soak["seconds"],
                "per_s": soak["per_s"],
                "wrong": soak["wrong"],
                "errors": soak["errors"],
                "status": status,
                "start": mb["start"],
                "warm": mb["after_warmup"],
                "end": mb["end"],
                "settled": settled,
                "growth": growth,
                "closed": mb["after_close"],
                "peak": mb["peak"],
            }
        ],
        [
            ("evaluations", "evals", ",.0f"),
            ("seconds", "s", ",.1f"),
            ("evals/s", "per_s", ",.0f"),
            ("wrong", "wrong", ",.0f"),
            ("exceptions", "errors", ",.0f"),
            ("child", "status", ""),
            ("RSS MB start", "start", ",.1f"),
            ("after warm-up", "warm", ",.1f"),
            ("at 10%", "settled", ",.1f"),
            ("end", "end", ",.1f"),
            ("10%->end", "growth", "+,.1f"),
            ("after close", "closed", ",.1f"),
            ("peak", "peak", ",.1f"),
        ],
    )
    print(
        "  RSS over time (s, evaluations, MB): "
        + ", ".join(
            f"({t:g}, {c:,}, {r / 1024:.1f})" for t, c, r in soak["rss_samples"][:: max(1, len(soak["rss_samples"]) // 8)]
        )
    )
    print(
        f"  rule sets registered with the host: {soak['rulesets_registered_before_close']} before close, "
        f"{soak['rulesets_registered_after_close']} after"
    )
    for example in soak["wrong_examples"]:
        print(f"  WRONG: {example}")
    for example in soak["error_examples"]:
        print(f"  EXCEPTION: {example}")
    if probe is not None:
        bad = [row for row in probe if not row["agree"]]
        print(
            f"\nedge-input probe (not part of the soak's count): {len(probe) - len(bad)}/{len(probe)} inputs agree "
            "on durable, python and vector"
        )
        if bad:
            harness.print_table(
                bad,
                [
                    ("rule set", "ruleset", ""),
                    ("input", "facts", ""),
                    ("note", "note", ""),
                    ("durable", "durable", ""),
                    ("python", "python", ""),
                    ("vector", "vector", ""),
                ],
            )
    else:
        print(f"\nedge-input probe: the child died during it ({status}): a crash on one of EDGE_INPUTS")
    return {"status": status, "crashed": proc.returncode != 0, "soak": soak, "edge_probe": probe}


# --- main ------------------------------------------------------------------------------------


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the issue's goals next to what this run measured."""
    rows = []
    latency = results.get("latency")
    if latency:
        decision = latency["per_decision"]
        hand = decision["hand-written"]["p50_us"]
        for backend in ("compiled raw", "python", "python grouped"):
            value = decision[backend]["p50_us"] / hand
            rows.append(
                {
                    "goal": f"{backend} / hand-written, p50 per decision",
                    "target": f"<= {GOAL_RATIO:g}x",
                    "measured": f"{value:.2f}x",
                    "met": "yes" if value <= GOAL_RATIO else "NO",
                }
            )
        for backend in ("durable", "durable evaluate_many", "durable grouped"):
            if backend in decision:
                durable = decision[backend]["p50_us"] / 1e3
                rows.append(
                    {
                        "goal": f"{backend} p50 per decision",
                        "target": f"<= {GOAL_DURABLE_MS:g} ms",
                        "measured": f"{durable:.2f} ms ({durable * 1e3 / EVALS_PER_DECISION:.0f} µs per rule set)",
                        "met": "yes" if durable <= GOAL_DURABLE_MS else "NO",
                    }
                )
    vector = results.get("vector")
    if vector:
        rows.append(
            {
                "goal": "vectorized, 4 customer rule sets per 1M customers",
                "target": f"<= {GOAL_VECTOR_S:g} s",
                "measured": f"{vector['per_million_s']:.2f} s"
                + ("" if vector["rows"] == 1_000_000 else f" (scaled from {vector['rows']:,})"),
                "met": "yes" if vector["per_million_s"] <= GOAL_VECTOR_S else "NO",
            }
        )
    soak = results.get("soak")
    if soak:
        detail = soak.get("soak") or {}
        ok = not soak["crashed"] and detail.get("wrong") == 0 and detail.get("errors") == 0
        rows.append(
            {
                "goal": "durable soak: wrong results, exceptions, crashes",
                "target": "0 / 0 / 0",
                "measured": f"{detail.get('wrong', '-')} / {detail.get('errors', '-')} / {0 if not soak['crashed'] else 1}",
                "met": "yes" if ok else "NO",
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the chosen parts, print the tables and save the results."""
    args = parse_args(argv)
    if args.soak_child:
        return soak_child(args)
    started = time.perf_counter()
    print(
        f"rules bench: {', '.join(args.parts)}; now = 2026-12-10T12:00Z; seed {args.seed}; {os.cpu_count()} CPUs; "
        f"code {harness.CODE_AT_START}"
    )
    results: dict[str, Any] = {}
    if "latency" in args.parts or "vector" in args.parts:
        t0 = time.perf_counter()
        rev, _ = load_revision()
        print(f"  revision {rev.short_id} built (checked, compiled, cases run) in {time.perf_counter() - t0:.2f} s")
        try:
            if "latency" in args.parts:
                print(f"\n== latency: {args.sample:,} decisions")
                results["latency"] = latency_part(rev, args)
            if "vector" in args.parts:
                print(f"\n== vectorized: {args.rows:,} customers")
                results["vector"] = vector_part(rev, args)
        finally:
            rev.close()
    if "soak" in args.parts:
        print(f"\n== durable soak: {args.soak:,} evaluations, {args.threads} threads")
        results["soak"] = soak_part(args)
    summary = goals(results)
    print("\ngoals:")
    harness.print_table(
        summary, [("goal", "goal", ""), ("target", "target", ""), ("measured", "measured", ""), ("met", "met", "")]
    )
    from importlib.metadata import version

    versions = {name: version(name) for name in ("durable_rules", "zen-engine", "numpy")}
    path = harness.write_results("rules_bench", {"args": vars(args), "versions": versions, "goals": summary, **results})
    print(f"\n{MACHINE_NOTE}\nresults: {path.relative_to(harness.REPO)}; {time.perf_counter() - started:.0f} s in all")
    soak = results.get("soak")
    return 1 if soak and (soak["crashed"] or (soak.get("soak") or {}).get("wrong")) else 0


if __name__ == "__main__":
    sys.exit(main())
