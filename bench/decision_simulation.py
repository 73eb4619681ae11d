"""Decision simulation: does learning from responses find the offers customers actually take?

Synthetic customers answer the server's decisions from acceptance rates the server never sees.
The same seeded stream of visits is played twice, each time against a fresh copy of one scratch
SQLite database (same demo customers, catalog, stages and value segments), in process:

    adaptive     the server as shipped: an adaptive propensity per offer and value segment that
                 starts from the model's score and moves with the responses, with the exploration
                 of rules/learning.yaml (app and SMS: Thompson sampling; call centre 0.2; churn risk 0)
    rules-only   learning off (ADAPTIVE_LEARNING=off): model propensity × weights × business value

and, from every decision of the adaptive run, two counterfactual baselines over the offers the
server found eligible (rules and contact policy) at that moment:

    random       an eligible offer at random: the mean true rate over the eligible offers
    oracle       the best possible: the highest true rate among the eligible offers
    knowable     the eligible offer with the highest rate before the per-customer noise (below): the
                 best any model could do, since nothing it sees predicts the noise (contested table)

Hidden truth. Every (customer, offer) has a true acceptance probability

    p = base[offer][value segment] × taste^TASTE × noise,   clipped to [0.001, 0.9]

- base (TRUE_RATES below) deliberately disagrees with the model. The model ranks the upgrade to
  unlimited data first for most customers (data bundles are the most bought category) and the VIP
  offer last (devices are rarely bought); in truth the upgrade is the worst offer in every segment,
  double points are best for low and medium value customers, the streaming pass for high value
  ones, and VIP early access is second best for them.
- taste: the customer's share of purchases in the offer's product category relative to an even
  share, from the whole purchase history ((n_category + 1) / (n + 6) × 6, divided by its mean over
  customers). TASTE (default 0.5, `--taste`) is how much of the model's personal signal is real:
  0 = none (the rate depends on offer and segment only), 1 = fully proportional. Offers without a
  product category have taste 1.
- noise: log-normal per customer and offer, mean 1, σ = 0.25 (`--noise`): something no model sees.

Responses: the top action is accepted with probability p; otherwise declined (35 %) or ignored
(65 %). A response arrives 1 minute plus an exponential delay (mean 1 h) of virtual time after the
decision and is posted through the decision log's `respond` (as POST /decisions/{id}/responses
does) once the virtual clock reaches it; 5 % are sent twice (a retry: recorded once, counted once).

Visits: `--decisions` visits over `--days` virtual days from 2026-11-01, by `--customers` demo
customers (history ending 2026-10-31), each customer with a log-normal visit rate; 80 % in the
app, 10 % by SMS, 10 % on the phone, no context. The contact policy counts the log by virtual time,
so limits, the two-day cool-down and "declined twice" shape what is eligible, as they would live.
The draws of the visits and of the responses (one uniform per decision, so both runs share them)
come from `--seed`; Thompson sampling from the learning's own seeded generator: runs repeat exactly.

Reported per window of decisions (`--windows`, default 10), over decisions that made an action:
the expected acceptance rate (mean true p of the top action; less noisy than counting) for each
policy and the realized rate (acceptances counted) for the two runs; the last window's ratios; the
same over "contested" decisions (two or more eligible offers: the only ones where ranking matters);
what each segment was shown; and what the adaptive run learned per offer and segment.

Business value. The server ranks by propensity × business value × levers, not by acceptance. By
default (`--values flat`) every offer's business value is set to 1 in the scratch catalog, so the
server's objective is the acceptance rate measured here (the arbitration levers stay as shipped:
VIP ×1.3 for high value, win-back ×1.5 at churn risk). `--values catalog` keeps the demo catalog's
values (upgrade 15, VIP 30, double points 5, ...) and adds expected value per decision (p × value)
against the value oracle (the highest p × value among the eligible offers).

    .venv/bin/python bench/decision_simulation.py              # 5,000 customers, 20,000 decisions, 28 days
    .venv/bin/python bench/decision_simulation.py --quick      # 1,500 customers, 6,000 decisions, 14 days
    .venv/bin/python bench/decision_simulation.py --values catalog
    .venv/bin/python bench/decision_simulation.py --exploration 0   # greedy (no exploring) in the scratch rules
    .venv/bin/python bench/decision_simulation.py --train      # real models instead of their fallbacks
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import heapq
import random
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
import yaml

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:  # imported from the tests
    sys.path.insert(0, str(BENCH))

import harness  # noqa: E402

from decision_server import migrate  # noqa: E402
from decision_server.db import Database  # noqa: E402

# Hidden truth: base acceptance rate per offer code and value segment (one number: every segment).
TRUE_RATES: dict[str, dict[str, float] | float] = {
    "WELCOME10": 0.12,
    "STARTER_BOOST": 0.20,
    "UPSELL_UNLIMITED": {"high": 0.07, "medium": 0.05, "low": 0.03},  # the model's favourite: over-rated
    "STREAMING_PASS": {"high": 0.22, "medium": 0.11, "low": 0.06},  # under-rated for high value
    "DOUBLE_POINTS": {"high": 0.08, "medium": 0.17, "low": 0.19},  # under-rated for low and medium value
    "VIP_EARLY_ACCESS": {"high": 0.15, "medium": 0.05, "low": 0.02},  # the model's last: under-rated
    "WINBACK20": 0.07,
    "RETENTION_SAVE": 0.25,
}
OTHER_OFFER_RATE = 0.05  # an offer not in the table (none in the demo catalog)
TASTE, NOISE = 0.5, 0.25
DECLINE_SHARE = 0.35  # of the responses that are not acceptances; the rest are ignored
RETRY_SHARE = 0.05
MEAN_DELAY_S = 3600.0
CHANNELS = (("app", 0.8), ("sms", 0.1), ("call_centre", 0.1))
HISTORY_END = dt.date(2026, 10, 31)  # the demo history ends here; the simulation starts the next day
START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
SEGMENTS = ("high", "medium", "low")
POLICIES = ("adaptive", "rules_only", "random", "oracle")


# --- the world --------------------------------------------------------------------------------


@dataclasses.dataclass
class World:
    """The prepared scratch database (copied per run), the hidden truth and the visits."""

    workdir: Path
    base_db: Path
    rules_dir: Path
    models_dir: Path
    values: str
    customers: list[str]  # external ids, by customer index
    segment: list[str]  # value segment by customer index
    stage: list[str]
    offers: dict[int, dict[str, Any]]  # offer id -> code, business value (the demo catalog's), product category
    rates: np.ndarray  # (customers, offer slots): true acceptance probability
    knowable: np.ndarray  # the same without the per-customer noise: all a perfect model could know
    slot: dict[int, int]  # offer id -> column of rates
    visits: list[Visit]
    prior_strength: float = 20.0  # the shipped default unless overridden: for reporting θ
    setup_s: float = 0.0


@dataclasses.dataclass(frozen=True)
class Visit:
    """One decision request and the draws that decide what the customer does with it."""

    at: dt.datetime
    customer: int
    channel: str
    accept_u: float  # accepted when below the top action's true p (the same draw for both runs)
    kind_u: float  # declined or ignored
    delay_s: float
    retry: bool


def prepare(
    workdir: Path,
    *,
    customers: int,
    decisions: int,
    days: float,
    seed: int,
    values: str = "flat",
    taste: float = TASTE,
    noise: float = NOISE,
    train: bool = False,
    exploration: float | None = None,
    prior_strength: float | None = None,
    echo=print,
) -> World:
    """Build the scratch database once (demo data, catalog, analytics, optional models), the truth and the visits."""
    from decision_server.config import DEFAULT_CHANNELS
    from decision_server.demo import generator
    from decision_server.jobs import bulk_pass
    from decision_server.offers import service as offer_service
    from decision_server.offers.records import OfferRecord
    from decision_server.rulebook.service import published_revision
    from decision_server.scoring.serving import ModelSet

    started = time.perf_counter()
    rules_dir = workdir / "rules"
    shutil.copytree(harness.REPO / "rules", rules_dir)  # the run never sees edits made meanwhile
    _override_learning(rules_dir, exploration, prior_strength)
    models_dir = workdir / "models"
    base_db = workdir / "base.db"
    database = Database(f"sqlite:///{base_db}")
    try:
        migrate.upgrade(database.engine)
        generator.load(database, generator.DemoSpec(customers=customers, seed=seed, as_of=HISTORY_END))
        with database.session(write=True) as session:
            offer_service.load_demo_catalog(
                session, channels=DEFAULT_CHANNELS, words=offer_service.vocabulary(None), now=START - dt.timedelta(days=1)
            )
        offers_table = OfferRecord.__table__
        with database.connection(write=True) as conn:
            rows = conn.execute(
                sa.select(
                    offers_table.c.id, offers_table.c.code, offers_table.c.business_value, offers_table.c.product_category
                ).order_by(offers_table.c.id)
            ).all()
            if values == "flat":
                conn.execute(sa.update(offers_table).values(business_value=1.0))
        offers = {
            r.id: {"code": r.code, "business_value": float(r.business_value), "product_category": r.product_category}
            for r in rows
        }
        if train:
            from decision_server.scoring import training

            t0 = time.perf_counter()
            training.train(database, models_dir, seed=seed)
            echo(f"  models trained in {time.perf_counter() - t0:.1f} s")
        revision = published_revision(database, rules_dir)
        try:
            models = ModelSet(models_dir)
            bulk_pass.run(database, revision, models, as_of=START)  # RFM, stages, value, journeys, segments
        finally:
            revision.close()
        ids, segment, stage, categories = _customers(database)
    finally:
        database.dispose()
    slot = {offer_id: i for i, offer_id in enumerate(sorted(offers))}
    rates, knowable = _true_rates(offers, slot, segment, categories, taste=taste, noise=noise, seed=seed)
    visits = draw_visits(len(ids), decisions=decisions, days=days, seed=seed)
    return World(
        workdir,
        base_db,
        rules_dir,
        models_dir,
        values,
        ids,
        segment,
        stage,
        offers,
        rates,
        knowable,
        slot,
        visits,
        prior_strength=20.0 if prior_strength is None else prior_strength,
        setup_s=time.perf_counter() - started,
    )


def _override_learning(rules_dir: Path, exploration: float | None, prior_strength: float | None) -> None:
    """Set exploration and/or prior strength everywhere in the scratch copy of learning.yaml (its cases go)."""
    if exploration is None and prior_strength is None:
        return
    path = rules_dir / "learning.yaml"
    doc = yaml.safe_load(path.read_text())
    for outcome in [doc["default"], *(rule["then"] for rule in doc.get("rules", []))]:
        if exploration is not None:
            outcome["exploration"] = exploration
        if prior_strength is not None:
            outcome["prior_strength"] = prior_strength
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    (rules_dir / "learning.cases.yaml").unlink(missing_ok=True)


def _customers(database: Database) -> tuple[list[str], list[str], list[str], list[dict[str, int]]]:
    """Return every customer's external id, value segment, stage and purchase counts by category."""
    from decision_server.customers.records import CustomerRecord, CustomerStateRecord
    from decision_server.transactions.records import TransactionRecord

    c, s, t = CustomerRecord.__table__, CustomerStateRecord.__table__, TransactionRecord.__table__
    with database.connection() as conn:
        people = conn.execute(
            sa.select(c.c.id, c.c.external_id, s.c.value_segment, s.c.stage)
            .select_from(c.outerjoin(s, s.c.customer_id == c.c.id))
            .order_by(c.c.id)
        ).all()
        bought = conn.execute(
            sa.select(t.c.customer_id, t.c.category, sa.func.count()).group_by(t.c.customer_id, t.c.category)
        ).all()
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    for customer_id, category, n in bought:
        counts[customer_id][category] = n
    return (
        [p.external_id for p in people],
        [p.value_segment or "low" for p in people],
        [p.stage or "unknown" for p in people],
        [counts.get(p.id, {}) for p in people],
    )


def _true_rates(offers, slot, segment, categories, *, taste: float, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the hidden acceptance probabilities, (customers, offers), with and without the noise."""
    from decision_server.features.definition import CATEGORIES

    rng = np.random.default_rng([seed, 7])
    n = len(segment)
    rates, knowable = np.zeros((n, len(slot))), np.zeros((n, len(slot)))
    for offer_id, j in slot.items():
        offer = offers[offer_id]
        table = TRUE_RATES.get(offer["code"], OTHER_OFFER_RATE)
        base = np.array([table[s] if isinstance(table, dict) else table for s in segment])
        personal = np.ones(n)
        category = offer["product_category"]
        if category is not None and taste:
            share = np.array([(c.get(category, 0) + 1) / (sum(c.values()) + len(CATEGORIES)) for c in categories])
            personal = (share * len(CATEGORIES)) ** taste
            personal /= personal.mean()
        luck = rng.lognormal(-noise * noise / 2, noise, size=n)
        rates[:, j] = np.clip(base * personal * luck, 0.001, 0.9)
        knowable[:, j] = np.clip(base * personal, 0.001, 0.9)
    return rates, knowable


def draw_visits(customers: int, *, decisions: int, days: float, seed: int) -> list[Visit]:
    """Draw the visits in time order: who, when, on which channel, and the response draws."""
    rng = random.Random(seed)
    weights = [rng.lognormvariate(0, 0.8) for _ in range(customers)]
    who = rng.choices(range(customers), weights=weights, k=decisions)
    seconds = sorted(rng.uniform(0, days * 86400) for _ in range(decisions))
    names, shares = zip(*CHANNELS, strict=True)
    visits = []
    for i in range(decisions):
        visits.append(
            Visit(
                START + dt.timedelta(seconds=seconds[i]),
                who[i],
                rng.choices(names, weights=shares)[0],
                rng.random(),
                rng.random(),
                60 + rng.expovariate(1 / MEAN_DELAY_S),
                rng.random() < RETRY_SHARE,
            )
        )
    return visits


# --- one run ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    """One decision: the top action's true p and whether it was taken, and the eligible set's baselines."""

    acted: bool
    eligible: int = 0
    offer: str = ""
    p_top: float = 0.0
    accepted: bool = False
    p_random: float = 0.0
    p_oracle: float = 0.0
    v_top: float = 0.0
    v_random: float = 0.0
    v_oracle: float = 0.0
    p_knowable: float = 0.0  # true p of the eligible offer with the best noise-free rate


def run_policy(world: World, *, adaptive: bool, seed: int, echo=print) -> dict[str, Any]:
    """Play every visit against a fresh copy of the database; return the outcomes and the log's checks."""
    from decision_server import create_app
    from decision_server.config import Config
    from decision_server.decisions import log
    from decision_server.decisions.learning import Learning
    from decision_server.decisions.records import (
        DecisionActionRecord,
        DecisionResponseRecord,
        OfferLearningRecord,
    )
    from decision_server.decisions.service import Decider, DecisionRequest

    name = "adaptive" if adaptive else "rules_only"
    path = world.workdir / f"{name}.db"
    shutil.copyfile(world.base_db, path)
    config = Config(
        database_url=f"sqlite:///{path}",
        rules_dir=world.rules_dir,
        models_dir=world.models_dir,
        log_level="WARNING",
        rules_backend="python",
        rules_poll_seconds=0,
        models_poll_seconds=0,
        catalog_poll_seconds=0,
        learning_poll_seconds=0,
        adaptive_learning=adaptive,
    )
    app = create_app(config)
    database = app.extensions["database"]
    learning = Learning(database, enabled=adaptive, poll_seconds=0, seed=seed)
    learning.start()
    decider = Decider(
        database,
        rulebook=app.extensions["rulebook"],
        models=app.extensions["models"],
        catalog=app.extensions["catalog"],
        learning=learning,
        channels=config.channels,
    )
    pending: list[tuple[dt.datetime, int, str, str, bool]] = []
    outcomes: list[Outcome] = []
    posted = retried = double = 0

    def post(until: dt.datetime | None) -> None:
        nonlocal posted, retried, double
        while pending and (until is None or pending[0][0] <= until):
            at, _seq, decision_id, response, retry = heapq.heappop(pending)
            for attempt in range(2 if retry else 1):
                with database.connection(write=True) as conn:
                    _stored, created, counted = log.respond(
                        conn, learning, decision_id, response=response, occurred_at=at, now=at
                    )
                if counted:
                    learning.applied([counted])
                posted += created
                retried += attempt
                double += bool(attempt and created)

    started = time.perf_counter()
    for i, visit in enumerate(world.visits):
        post(visit.at)
        answer = decider.decide(DecisionRequest(world.customers[visit.customer], visit.channel), now=visit.at)
        if not answer["actions"]:
            outcomes.append(Outcome(acted=False))
            continue
        row = world.rates[visit.customer]
        eligible = [c["offer_id"] for c in answer["explanation"] if c["eligible"]]
        p = [row[world.slot[o]] for o in eligible]
        v = [row[world.slot[o]] * world.offers[o]["business_value"] for o in eligible]
        top = answer["actions"][0]["offer"]["id"]
        p_top = row[world.slot[top]]
        accepted = visit.accept_u < p_top
        known = max(eligible, key=lambda o: world.knowable[visit.customer, world.slot[o]])
        outcomes.append(
            Outcome(
                True,
                len(eligible),
                world.offers[top]["code"],
                p_top,
                accepted,
                sum(p) / len(p),
                max(p),
                p_top * world.offers[top]["business_value"],
                sum(v) / len(v),
                max(v),
                row[world.slot[known]],
            )
        )
        response = "accepted" if accepted else "declined" if visit.kind_u < DECLINE_SHARE else "ignored"
        heapq.heappush(pending, (visit.at + dt.timedelta(seconds=visit.delay_s), i, answer["decision_id"], response, visit.retry))
        if (i + 1) % max(1, len(world.visits) // 5) == 0:
            echo(f"  {name}: {i + 1:,}/{len(world.visits):,} decisions, {time.perf_counter() - started:.0f} s")
    post(None)
    seconds = time.perf_counter() - started

    actions_t, responses_t, learning_t = (
        DecisionActionRecord.__table__,
        DecisionResponseRecord.__table__,
        OfferLearningRecord.__table__,
    )
    with database.connection() as conn:
        actions = conn.execute(sa.select(sa.func.count()).select_from(actions_t)).scalar_one()
        responses = dict(conn.execute(sa.select(responses_t.c.response, sa.func.count()).group_by(responses_t.c.response)).all())
        answered = conn.execute(sa.select(sa.func.count(sa.distinct(responses_t.c.decision_id)))).scalar_one()
        counted = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(learning_t.c.accepted), 0))).scalar_one()
    learned = _learned(world, learning) if adaptive else []
    learning.stop()
    for key in ("catalog", "models", "rulebook"):
        app.extensions[key].stop()
    database.dispose()
    checks = {
        "decisions": len(outcomes),
        "actions": actions,
        "answered_decisions": answered,
        "responses": sum(responses.values()),
        "by_response": responses,
        "posted": posted,
        "retries": retried,
        "retries_recorded_twice": double,
        "acceptances_counted_by_learning": int(counted),
    }
    return {"name": name, "outcomes": outcomes, "checks": checks, "seconds": seconds, "learned": learned}


def _learned(world: World, learning: Any) -> list[dict[str, Any]]:
    """What the adaptive run learned per offer and segment, next to the truth of the customers it showed."""
    rows = []
    for offer_id in sorted(world.offers):
        for segment in SEGMENTS:
            counts, _ = learning.counts(offer_id, segment)
            if not counts.shown:
                continue
            rows.append(
                {
                    "offer": world.offers[offer_id]["code"],
                    "segment": segment,
                    "shown": counts.shown,
                    "accepted": counts.accepted,
                    "observed_rate": counts.accepted / counts.shown,
                    "model_rate": counts.expected / counts.shown,
                    "multiplier": _multiplier(learning, offer_id, segment, world.prior_strength),
                }
            )
    return rows


def _multiplier(learning: Any, offer_id: int, segment: str, strength: float) -> float:
    """The posterior mean θ of one offer and segment."""
    _value, why = learning.propensity(offer_id, segment, 1.0, exploration=0.0, prior_strength=strength)
    return why["multiplier"]


# --- report -----------------------------------------------------------------------------------


def windows(runs: dict[str, dict[str, Any]], count: int, *, contested: bool = False) -> list[dict[str, Any]]:
    """Per window of decisions: expected and realized acceptance of each policy, and the value figures."""
    adaptive, rules = runs["adaptive"]["outcomes"], runs["rules_only"]["outcomes"]
    n = len(adaptive)
    rows = []
    for w in range(count):
        lo, hi = n * w // count, n * (w + 1) // count
        a = [o for o in adaptive[lo:hi] if o.acted and (not contested or o.eligible > 1)]
        r = [o for o in rules[lo:hi] if o.acted and (not contested or o.eligible > 1)]
        rows.append(
            {
                "window": w + 1,
                "decisions": f"{lo + 1}-{hi}",
                "acted": len(a),
                "rules_acted": len(r),
                "adaptive": _mean(o.p_top for o in a),
                "rules_only": _mean(o.p_top for o in r),
                "random": _mean(o.p_random for o in a),
                "oracle": _mean(o.p_oracle for o in a),
                "rules_oracle": _mean(o.p_oracle for o in r),
                "knowable": _mean(o.p_knowable for o in a),
                "adaptive_realized": _mean(o.accepted for o in a),
                "rules_only_realized": _mean(o.accepted for o in r),
                "adaptive_value": _mean(o.v_top for o in a),
                "rules_only_value": _mean(o.v_top for o in r),
                "random_value": _mean(o.v_random for o in a),
                "oracle_value": _mean(o.v_oracle for o in a),
            }
        )
    return rows


def _mean(values) -> float | None:
    values = [float(v) for v in values]
    return sum(values) / len(values) if values else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def summary(rows: list[dict[str, Any]], contested_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The last window's ratios: adaptive against the oracle, random and rules-only."""
    last, first, hard = rows[-1], rows[0], contested_rows[-1]
    return {
        "first_window": {k: first[k] for k in POLICIES},
        "last_window": {k: last[k] for k in POLICIES},
        "last_window_realized": {"adaptive": last["adaptive_realized"], "rules_only": last["rules_only_realized"]},
        "adaptive_vs_oracle": _ratio(last["adaptive"], last["oracle"]),
        "adaptive_vs_random": _ratio(last["adaptive"], last["random"]),
        "adaptive_vs_rules_only": _ratio(last["adaptive"], last["rules_only"]),
        "rules_only_vs_its_oracle": _ratio(last["rules_only"], last["rules_oracle"]),
        "contested_last_window": {k: hard[k] for k in (*POLICIES, "knowable")},
        "contested_adaptive_vs_oracle": _ratio(hard["adaptive"], hard["oracle"]),
        "contested_adaptive_vs_random": _ratio(hard["adaptive"], hard["random"]),
        "contested_adaptive_vs_rules_only": _ratio(hard["adaptive"], hard["rules_only"]),
        "contested_adaptive_vs_knowable": _ratio(hard["adaptive"], hard["knowable"]),
        "value_adaptive_vs_oracle": _ratio(last["adaptive_value"], last["oracle_value"]),
        "value_adaptive_vs_rules_only": _ratio(last["adaptive_value"], last["rules_only_value"]),
    }


def shown_by_segment(world: World, runs: dict[str, dict[str, Any]], last_share: float) -> list[dict[str, Any]]:
    """Which offers each policy made in the last part of the run, per value segment (contested decisions)."""
    n = len(world.visits)
    start = int(n * (1 - last_share))
    rows = []
    for name in ("adaptive", "rules_only"):
        for segment in SEGMENTS:
            made = Counter(
                o.offer
                for i, o in enumerate(runs[name]["outcomes"][start:], start=start)
                if o.acted and o.eligible > 1 and world.segment[world.visits[i].customer] == segment
            )
            total = sum(made.values())
            if total:
                rows.append(
                    {
                        "policy": name,
                        "segment": segment,
                        "decisions": total,
                        "shown": ", ".join(f"{code} {100 * k / total:.0f}%" for code, k in made.most_common(4)),
                    }
                )
    return rows


def by_channel(world: World, runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Contested decisions of the second half of the run per channel and value segment: each run against its oracle."""
    half = len(world.visits) // 2
    sums: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for name in ("adaptive", "rules_only"):
        for visit, o in zip(world.visits[half:], runs[name]["outcomes"][half:], strict=True):
            if o.acted and o.eligible > 1:
                cell = sums[(visit.channel, world.segment[visit.customer])]
                cell[name].append(o.p_top)
                cell[f"{name}_oracle"].append(o.p_oracle)
    rows = []
    for (channel, segment), cell in sorted(sums.items(), key=lambda kv: (kv[0][0], SEGMENTS.index(kv[0][1]))):
        adaptive, oracle = _mean(cell["adaptive"]), _mean(cell["adaptive_oracle"])
        rules, rules_oracle = _mean(cell["rules_only"]), _mean(cell["rules_only_oracle"])
        rows.append(
            {
                "channel": channel,
                "segment": segment,
                "decisions": len(cell["adaptive"]),
                "adaptive": adaptive,
                "oracle": oracle,
                "adaptive_vs_oracle": _ratio(adaptive, oracle),
                "rules_only": rules,
                "rules_only_vs_its_oracle": _ratio(rules, rules_oracle),
            }
        )
    return rows


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def print_report(world: World, runs: dict[str, dict[str, Any]], rows, contested_rows, result: dict[str, Any]) -> None:
    print("\nexpected acceptance rate of the top action (mean true p), per window of decisions that made an action:")
    table = [
        {
            **r,
            **{k: _pct(r[k]) for k in ("adaptive", "rules_only", "random", "oracle", "adaptive_realized", "rules_only_realized")},
            "vs_oracle": harness.ratio(r["adaptive"], r["oracle"]),
        }
        for r in rows
    ]
    harness.print_table(
        table,
        [
            ("window", "window", ""),
            ("decisions", "decisions", ""),
            ("acted", "acted", ",.0f"),
            ("adaptive", "adaptive", ""),
            ("rules-only", "rules_only", ""),
            ("random", "random", ""),
            ("oracle", "oracle", ""),
            ("adaptive/oracle", "vs_oracle", ""),
            ("realized adaptive", "adaptive_realized", ""),
            ("realized rules-only", "rules_only_realized", ""),
        ],
    )
    print("\ncontested decisions only (two or more eligible offers), expected acceptance:")
    table = [
        {
            **r,
            **{k: _pct(r[k]) for k in ("adaptive", "rules_only", "random", "oracle", "knowable")},
            "vs_oracle": harness.ratio(r["adaptive"], r["oracle"]),
            "vs_knowable": harness.ratio(r["adaptive"], r["knowable"]),
        }
        for r in contested_rows
    ]
    harness.print_table(
        table,
        [
            ("window", "window", ""),
            ("acted", "acted", ",.0f"),
            ("adaptive", "adaptive", ""),
            ("rules-only", "rules_only", ""),
            ("random", "random", ""),
            ("oracle", "oracle", ""),
            ("adaptive/oracle", "vs_oracle", ""),
            ("knowable", "knowable", ""),
            ("adaptive/knowable", "vs_knowable", ""),
        ],
    )
    if world.values == "catalog":
        print("\nexpected value per decision (true p × business value of the top action):")
        harness.print_table(
            rows,
            [
                ("window", "window", ""),
                ("adaptive", "adaptive_value", ".3f"),
                ("rules-only", "rules_only_value", ".3f"),
                ("random", "random_value", ".3f"),
                ("oracle (max p × value)", "oracle_value", ".3f"),
            ],
        )
    print(f"\nwhat was made in the last {100 // len(rows)}% of the run, contested decisions, per value segment:")
    harness.print_table(
        result["shown"],
        [
            ("policy", "policy", ""),
            ("segment", "segment", ""),
            ("decisions", "decisions", ",.0f"),
            ("offers made (share)", "shown", ""),
        ],
    )
    print("\nsecond half of the run, contested decisions, per channel and value segment (each run against its own oracle):")
    table = [{**r, **{k: _pct(r[k]) for k in ("adaptive", "oracle", "rules_only")}} for r in result["channels"]]
    harness.print_table(
        table,
        [
            ("channel", "channel", ""),
            ("segment", "segment", ""),
            ("decisions", "decisions", ",.0f"),
            ("adaptive", "adaptive", ""),
            ("oracle", "oracle", ""),
            ("adaptive/oracle", "adaptive_vs_oracle", ".3f"),
            ("rules-only", "rules_only", ""),
            ("rules-only/its oracle", "rules_only_vs_its_oracle", ".3f"),
        ],
    )
    print("\nwhat the adaptive run learned (per offer and value segment):")
    learned = [
        {**r, "truth": _pct(r["true_rate"]), "observed": _pct(r["observed_rate"]), "model": _pct(r["model_rate"])}
        for r in result["learned"]
    ]
    harness.print_table(
        learned,
        [
            ("offer", "offer", ""),
            ("segment", "segment", ""),
            ("shown", "shown", ",.0f"),
            ("accepted", "accepted", ",.0f"),
            ("observed", "observed", ""),
            ("true p of those shown", "truth", ""),
            ("model's p", "model", ""),
            ("multiplier θ", "multiplier", ".2f"),
        ],
    )
    s = result["summary"]
    print(
        f"\nlast window, expected acceptance: adaptive {_pct(s['last_window']['adaptive'])}, "
        f"rules-only {_pct(s['last_window']['rules_only'])}, random {_pct(s['last_window']['random'])}, "
        f"oracle {_pct(s['last_window']['oracle'])}"
    )
    print(
        f"  adaptive / oracle {s['adaptive_vs_oracle']:.3f}; adaptive / random {s['adaptive_vs_random']:.2f}x; "
        f"adaptive / rules-only {s['adaptive_vs_rules_only']:.2f}x (rules-only / its own oracle {s['rules_only_vs_its_oracle']:.3f})"
    )
    print(
        f"  contested only: adaptive / oracle {s['contested_adaptive_vs_oracle']:.3f}; adaptive / random "
        f"{s['contested_adaptive_vs_random']:.2f}x; adaptive / rules-only {s['contested_adaptive_vs_rules_only']:.2f}x"
    )
    if world.values == "catalog":
        print(
            f"  value: adaptive / value oracle {s['value_adaptive_vs_oracle']:.3f}; adaptive / rules-only "
            f"{s['value_adaptive_vs_rules_only']:.2f}x"
        )
    for name in ("adaptive", "rules_only"):
        c = runs[name]["checks"]
        print(
            f"  {name}: {c['decisions']:,} decisions, {c['actions']:,} actions, {c['responses']:,} responses "
            f"({', '.join(f'{k} {v:,}' for k, v in sorted(c['by_response'].items()))}) on {c['answered_decisions']:,} "
            f"decisions; {c['retries']:,} retries, {c['retries_recorded_twice']} recorded twice; "
            f"acceptances counted by learning {c['acceptances_counted_by_learning']:,}; {runs[name]['seconds']:.0f} s"
        )


# --- main -------------------------------------------------------------------------------------


def simulate(
    *,
    customers: int,
    decisions: int,
    days: float,
    seed: int,
    windows_count: int = 10,
    values: str = "flat",
    taste: float = TASTE,
    noise: float = NOISE,
    train: bool = False,
    exploration: float | None = None,
    prior_strength: float | None = None,
    echo=print,
) -> dict[str, Any]:
    """Prepare the world, run both policies, and return the figures (the runs' outcomes included)."""
    workdir = Path(tempfile.mkdtemp(prefix="ds-simulation-"))
    try:
        world = prepare(
            workdir,
            customers=customers,
            decisions=decisions,
            days=days,
            seed=seed,
            values=values,
            taste=taste,
            noise=noise,
            train=train,
            exploration=exploration,
            prior_strength=prior_strength,
            echo=echo,
        )
        echo(
            f"  world ready in {world.setup_s:.1f} s: {len(world.customers):,} customers "
            f"({', '.join(f'{k} {v:,}' for k, v in Counter(world.segment).most_common())}), {len(world.visits):,} visits"
        )
        runs = {name: run_policy(world, adaptive=name == "adaptive", seed=seed, echo=echo) for name in ("adaptive", "rules_only")}
        rows = windows(runs, windows_count)
        contested_rows = windows(runs, windows_count, contested=True)
        learned = runs["adaptive"]["learned"]
        truth: dict[tuple[str, str], list[float]] = defaultdict(list)  # true p of the customers each offer was shown to
        for visit, o in zip(world.visits, runs["adaptive"]["outcomes"], strict=True):
            if o.acted:
                truth[(o.offer, world.segment[visit.customer])].append(o.p_top)
        for row in learned:
            row["true_rate"] = _mean(truth[(row["offer"], row["segment"])])
        return {
            "world": world,
            "runs": runs,
            "windows": rows,
            "contested_windows": contested_rows,
            "learned": learned,
            "shown": shown_by_segment(world, runs, 1 / windows_count),
            "channels": by_channel(world, runs),
            "summary": summary(rows, contested_rows),
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=None, help="demo customers (default 5000; --quick 1500)")
    parser.add_argument("--decisions", type=int, default=None, help="visits, one decision each (default 20000; --quick 6000)")
    parser.add_argument("--days", type=float, default=None, help="virtual days the visits spread over (default 28; --quick 14)")
    parser.add_argument("--seed", type=int, default=42, help="demo data, truth, visits, responses and sampling seed (default 42)")
    parser.add_argument("--windows", type=int, default=10, help="windows of decisions in the report (default 10)")
    parser.add_argument(
        "--values",
        choices=("flat", "catalog"),
        default="flat",
        help="flat: every business value 1, so the server ranks by acceptance (default); catalog: the demo values",
    )
    parser.add_argument(
        "--taste",
        type=float,
        default=TASTE,
        help=f"how much of the model's personal category signal is real, 0-1 (default {TASTE})",
    )
    parser.add_argument("--noise", type=float, default=NOISE, help=f"σ of the per-customer log-normal noise (default {NOISE})")
    parser.add_argument(
        "--exploration",
        type=float,
        default=None,
        help="set every exploration of the scratch learning.yaml to this (default: as shipped)",
    )
    parser.add_argument(
        "--prior-strength",
        type=float,
        default=None,
        help="set every prior_strength of the scratch learning.yaml to this (default: as shipped)",
    )
    parser.add_argument(
        "--train", action="store_true", help="train the five models first (about a minute) instead of serving their fallbacks"
    )
    parser.add_argument("--quick", action="store_true", help="a smaller run (about 15 s)")
    args = parser.parse_args(argv)
    defaults = (1_500, 6_000, 14.0) if args.quick else (5_000, 20_000, 28.0)
    for name, default in zip(("customers", "decisions", "days"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, default)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    from decision_server.logs import configure_logging

    configure_logging("WARNING")
    print(
        f"decision simulation: {args.customers:,} customers, {args.decisions:,} decisions over {args.days:g} days, "
        f"values {args.values}, taste {args.taste:g}, noise {args.noise:g}, seed {args.seed}, code {harness.CODE_AT_START}"
    )
    result = simulate(
        customers=args.customers,
        decisions=args.decisions,
        days=args.days,
        seed=args.seed,
        windows_count=args.windows,
        values=args.values,
        taste=args.taste,
        noise=args.noise,
        train=args.train,
        exploration=args.exploration,
        prior_strength=args.prior_strength,
    )
    print_report(result["world"], result["runs"], result["windows"], result["contested_windows"], result)
    elapsed = time.perf_counter() - started
    world = result["world"]
    path = harness.write_results(
        "decision_simulation",
        {
            "args": vars(args),
            "seconds": elapsed,
            "setup_s": world.setup_s,
            "truth": {
                "true_rates": TRUE_RATES,
                "taste": args.taste,
                "noise": args.noise,
                "decline_share": DECLINE_SHARE,
                "retry_share": RETRY_SHARE,
                "channels": dict(CHANNELS),
            },
            "windows": result["windows"],
            "contested_windows": result["contested_windows"],
            "summary": result["summary"],
            "learned": result["learned"],
            "shown": result["shown"],
            "channels": result["channels"],
            "checks": {name: run["checks"] for name, run in result["runs"].items()},
            "run_seconds": {name: run["seconds"] for name, run in result["runs"].items()},
        },
    )
    print(f"\nresults: {path.relative_to(harness.REPO)}; {elapsed:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
