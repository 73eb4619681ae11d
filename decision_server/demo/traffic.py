"""Demo decision traffic: a fortnight of decisions and responses made by the real decision pipeline.

A new user's console would otherwise open on empty decision charts. Each decision is a real one
(the serving rules, models, catalog and learning), made at a past moment and logged; customers
respond with a chance that follows the offer's propensity, so acceptance differs by offer and
channel the way the dashboards are meant to show. Deterministic for a seed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections.abc import Callable

import sqlalchemy as sa

from decision_server.customers.records import CustomerRecord
from decision_server.db import utcnow
from decision_server.decisions import log
from decision_server.decisions.service import DecisionRequest

# How often each channel asks: the app most, the call centre least.
CHANNEL_WEIGHTS = {"app": 6, "sms": 3, "call_centre": 1}
INTENTS = (None, None, "browse", "service", "retention")


@dataclasses.dataclass(frozen=True)
class TrafficSpec:
    days: int = 14
    per_day: int | None = None  # default: one decision a day per 60 customers, 10 to 150
    seed: int = 7


def has_decisions(database) -> bool:
    """Tell whether the decision log holds anything (the demo traffic is made only into an empty log)."""
    with database.connection() as conn:
        return conn.execute(sa.select(log._d.c.id).limit(1)).first() is not None


def simulate(
    app, spec: TrafficSpec = TrafficSpec(), *, now: dt.datetime | None = None, progress: Callable | None = None
) -> dict[str, int]:
    """Make `per_day` decisions on each of the last `days` days (today up to now) and their responses; return counts."""
    database, decider = app.extensions["database"], app.extensions["decider"]
    rng = random.Random(spec.seed)
    now = now or utcnow()
    with database.connection() as conn:
        ids = list(conn.execute(sa.select(CustomerRecord.external_id).order_by(CustomerRecord.id)).scalars())
    if not ids:
        return {"decisions": 0, "responses": 0}
    per_day = spec.per_day or min(150, max(10, len(ids) // 60))
    channels = [c for c in CHANNEL_WEIGHTS if c in decider.channels] or list(decider.channels)
    weights = [CHANNEL_WEIGHTS.get(c, 1) for c in channels]
    made = answered = 0
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    for day in range(spec.days - 1, -1, -1):
        start = today - dt.timedelta(days=day)
        span = (min(now, start + dt.timedelta(days=1)) - start).total_seconds()
        moments = sorted(start + dt.timedelta(seconds=rng.uniform(0, span)) for _ in range(per_day))
        for moment in moments:
            channel = rng.choices(channels, weights)[0]
            intent = rng.choice(INTENTS)
            request = DecisionRequest(rng.choice(ids), channel, {"intent": intent} if intent else {}, 1)
            answer = decider.decide(request, now=moment)
            made += 1
            for action in answer["actions"]:
                response = _response(rng, action["factors"]["propensity"], channel)
                if response is None:
                    continue
                at = min(now, moment + dt.timedelta(minutes=rng.uniform(1, 240)))
                with database.connection(write=True) as conn:
                    _stored, created, counted = log.respond(
                        conn, decider.learning, answer["decision_id"], response=response, occurred_at=at, now=at
                    )
                if counted:
                    decider.learning.applied([counted])
                answered += created
        if progress:
            progress("decisions", spec.days - day, spec.days)
    return {"decisions": made, "responses": answered}


def simulate_with_app(config, *, progress: Callable | None = None) -> dict[str, int]:
    """Build an app on `config` (no polling, no scheduler), make the demo traffic with it, and shut it down."""
    from decision_server import create_app

    app = create_app(dataclasses.replace(config, rules_poll_seconds=0, models_poll_seconds=0, scheduler=False))
    try:
        return simulate(app, progress=progress)
    finally:
        for name in ("rulebook", "models", "catalog"):
            app.extensions[name].stop()
        app.extensions["decider"].learning.stop()
        app.extensions["database"].dispose()


def _response(rng: random.Random, propensity: float, channel: str) -> str | None:
    """What the customer did: accept with a chance that grows with the propensity; some never answer."""
    if rng.random() < 0.15:
        return None  # no response reported
    accept = min(0.9, 0.05 + 2.5 * float(propensity) + (0.05 if channel == "call_centre" else 0.0))
    draw = rng.random()
    if draw < accept:
        return "accepted"
    if draw < accept + 0.1 and channel == "app":
        return "clicked"
    return "declined" if rng.random() < 0.5 else "ignored"
