"""Generate a realistic synthetic customer base: archetypes, seasonality, churners, VIPs, tastes.

Customers are drawn in slices of SLICE, each from a generator seeded by (seed, first customer), so
the same spec gives the same data and memory follows the slice, not the customer base. Ids are
deterministic (DEMO-000001, DEMO-T000001-0001, ...), so loading twice changes nothing.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from decision_server.customers.records import CustomerRecord
from decision_server.customers.state import refresh_state
from decision_server.db import UTC, Database, utcnow
from decision_server.ingest import bulk

Progress = Callable[[str, int, int | None], None]
DAY = 86_400.0

# Archetype: share of customers, mean purchases and touchpoints for a customer present over the
# whole history (fewer for later joiners), spend multiplier. Churners stop buying 90-300 days before the end; new customers joined in
# the last 60 days; prospects never bought.
ARCHETYPES = {
    "vip": (0.05, 130, 2.5, 45),
    "regular": (0.35, 55, 1.0, 22),
    "occasional": (0.30, 18, 0.8, 10),
    "churned": (0.15, 40, 0.9, 12),
    "new": (0.10, 2, 1.0, 4),
    "prospect": (0.05, 0, 1.0, 2),
}
# Category: (typical amount, log-normal spread, margin, products).
CATEGORIES = {
    "data_bundle": (15.0, 0.35, 0.70, ["Data 5GB", "Data 10GB", "Data 25GB", "Unlimited Data Week"]),
    "voice_bundle": (10.0, 0.30, 0.65, ["Voice 100 min", "Voice 500 min", "International 60 min"]),
    "streaming": (9.99, 0.10, 0.40, ["Music Plus", "Video Pass", "Sports Pass"]),
    "roaming": (25.0, 0.45, 0.55, ["Roam EU 7 days", "Roam World 3 days"]),
    "accessory": (30.0, 0.60, 0.45, ["Charger", "Earbuds", "Phone Case", "Screen Protector"]),
    "device": (350.0, 0.50, 0.15, ["Phone A15", "Phone X Pro", "Tablet 10", "Smartwatch"]),
}
CATEGORY_SHARE = [0.38, 0.20, 0.14, 0.08, 0.14, 0.06]
# How close personal tastes stay to CATEGORY_SHARE (Dirichlet concentration; lower = stronger tastes).
TASTE_CONCENTRATION = 3.0
PURCHASE_CHANNELS = (["app", "store", "web", "call_centre"], [0.50, 0.25, 0.15, 0.10])
TOUCHPOINT_KINDS = {
    "app": ["app_open", "app_open", "app_open", "offer_view", "offer_click"],
    "call_centre": ["inbound_call", "inbound_call", "complaint", "outbound_call"],
    "sms": ["campaign_sms", "campaign_sms", "sms_click"],
}
TOUCHPOINT_CHANNELS = (["app", "call_centre", "sms"], [0.6, 0.15, 0.25])
# Retail seasonality by month (Jan..Dec): the holidays sell, January is quiet.
SEASONALITY = np.array([0.75, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.05, 0.95, 1.0, 1.35, 1.6])
FIRST_NAMES = [
    "Ana",
    "Ben",
    "Chloé",
    "David",
    "Elif",
    "Fatima",
    "Gabriel",
    "Hana",
    "Ivan",
    "Jamal",
    "Keiko",
    "Lucas",
    "María",
    "Noah",
    "Olga",
    "Priya",
    "Quentin",
    "Rosa",
    "Sven",
    "Tariq",
    "Uma",
    "Victor",
    "Wei",
    "Ximena",
    "Yusuf",
    "Zoë",
]
LAST_NAMES = [
    "Silva",
    "Müller",
    "Nguyen",
    "Okafor",
    "García",
    "Kowalski",
    "Haddad",
    "Tanaka",
    "Jensen",
    "Rossi",
    "Dubois",
    "Novak",
    "Patel",
    "Kim",
    "Ivanova",
    "Brown",
    "Costa",
    "Yilmaz",
]
REGIONS = ["north", "south", "east", "west", "central"]


@dataclasses.dataclass(frozen=True)
class DemoSpec:
    """How much demo data to make, ending when, from which seed."""

    customers: int = 10_000
    seed: int = 42
    as_of: dt.date | None = None
    months: int = 24

    def end(self) -> dt.datetime:
        """Return the end of the history: the end of `as_of` (default yesterday), UTC.

        Yesterday, not today: the end of today is still ahead, and events in the future would
        count in the state row (which sums everything stored) but not in features as of now.
        """
        day = self.as_of or utcnow().date() - dt.timedelta(days=1)
        return dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=UTC)


@dataclasses.dataclass
class DemoData:
    """Generated rows, in the column names of the tables (customer ids are external ids)."""

    customers: list[dict[str, Any]]
    transactions: list[dict[str, Any]]
    touchpoints: list[dict[str, Any]]


# Customers drawn per slice: memory follows the slice (about 0.2 GB), not the customer base.
SLICE = 10_000


def generate(spec: DemoSpec) -> DemoData:
    """Draw the whole demo data set for `spec` at once (small sets: tests, examples)."""
    whole = DemoData([], [], [])
    for part in generate_slices(spec):
        whole.customers += part.customers
        whole.transactions += part.transactions
        whole.touchpoints += part.touchpoints
    return whole


def generate_slices(spec: DemoSpec) -> Iterator[DemoData]:
    """Draw the demo data slice by slice of customers (deterministic for a given spec)."""
    for first in range(0, spec.customers, SLICE):
        yield _generate_slice(spec, first, min(first + SLICE, spec.customers) - first)


def _generate_slice(spec: DemoSpec, first: int, n: int) -> DemoData:
    """Draw customers first+1 .. first+n with a generator seeded by (seed, first)."""
    rng = np.random.default_rng([spec.seed, first])
    end = spec.end().timestamp()
    start = end - spec.months * 30.44 * DAY

    names = list(ARCHETYPES)
    shares = np.array([ARCHETYPES[a][0] for a in names])
    kind = rng.choice(len(names), size=n, p=shares / shares.sum())
    is_new = kind == names.index("new")
    is_prospect = kind == names.index("prospect")
    is_churned = kind == names.index("churned")

    signup = rng.uniform(start, end - 60 * DAY, size=n)
    signup[is_new] = rng.uniform(end - 60 * DAY, end - DAY, size=is_new.sum())
    signup[is_prospect] = rng.uniform(end - 90 * DAY, end - DAY, size=is_prospect.sum())
    active_until = np.full(n, end)
    active_until[is_churned] = end - rng.uniform(90, 300, size=is_churned.sum()) * DAY
    signup[is_churned] = np.minimum(signup[is_churned], active_until[is_churned] - 120 * DAY)
    signup = np.maximum(signup, start)
    # Short histories (--months 3) can put a churner's last day before the history starts.
    active_until = np.maximum(active_until, np.minimum(signup + DAY, end))
    # Customers who joined late buy proportionally less over the history.
    life_share = np.clip((active_until - signup) / (end - start), 0.02, 1.0)

    mean_purchases = np.array([ARCHETYPES[a][1] for a in names])[kind] * life_share
    purchases = rng.poisson(mean_purchases)
    purchases[is_new] = np.maximum(purchases[is_new], rng.integers(0, 3, size=is_new.sum()))
    purchases[is_prospect] = 0
    spend_factor = np.array([ARCHETYPES[a][2] for a in names])[kind] * rng.lognormal(0, 0.25, size=n)
    touches = rng.poisson(np.array([ARCHETYPES[a][3] for a in names])[kind] * np.maximum(life_share, 0.2))

    customers = [_customer(first + i, rng, signup[i]) for i in range(n)]
    transactions = _transactions(rng, first, purchases, signup, active_until, spend_factor)
    touchpoints = _touchpoints(rng, first, touches, signup, end)
    return DemoData(customers, transactions, touchpoints)


def _customer(i: int, rng: np.random.Generator, signup: float) -> dict[str, Any]:
    first = FIRST_NAMES[int(rng.integers(len(FIRST_NAMES)))]
    last = LAST_NAMES[int(rng.integers(len(LAST_NAMES)))]
    consent = {
        "sms": bool(rng.random() < 0.8),
        "app": bool(rng.random() < 0.7),
        "call_centre": bool(rng.random() < 0.6),
    }
    created = dt.datetime.fromtimestamp(round(signup), UTC)
    return {
        "external_id": external_customer_id(i + 1),
        "first_name": first,
        "last_name": last,
        "email": f"{_ascii(first)}.{_ascii(last)}{i + 1}@example.com".lower(),
        "phone": f"+1555{i + 1:07d}",
        "consent": consent,
        "attributes": {
            "plan": "postpaid" if rng.random() < 0.45 else "prepaid",
            "region": REGIONS[int(rng.integers(len(REGIONS)))],
        },
        "created_at": created,
        "updated_at": created,
    }


def external_customer_id(number: int) -> str:
    """Return the external id of the demo customer with this 1-based number."""
    return f"DEMO-{number:06d}"


def _ascii(name: str) -> str:
    return name.translate(str.maketrans("éëüíá", "eeuia"))


def _seasonal_times(rng: np.random.Generator, lows: np.ndarray, highs: np.ndarray) -> np.ndarray:
    """Draw one time in [low, high) per row, denser in the busy months (rejection sampling)."""
    times = rng.uniform(lows, highs)
    for _ in range(4):
        months = np.array(times.astype("datetime64[s]").astype("datetime64[M]").astype(int) % 12)
        reject = rng.random(len(times)) > SEASONALITY[months] / SEASONALITY.max()
        if not reject.any():
            break
        times[reject] = rng.uniform(lows[reject], highs[reject])
    return times


def _transactions(rng, first, purchases, signup, active_until, spend_factor) -> list[dict[str, Any]]:
    owner = np.repeat(np.arange(len(purchases)), purchases)
    total = len(owner)
    times = _seasonal_times(rng, signup[owner], active_until[owner])
    order = np.lexsort((times, owner))
    owner, times = owner[order], times[order]
    categories = list(CATEGORIES)
    # Everyone has a taste: a personal category mix around the shares, so what a customer bought
    # says something about what they buy next (the next-best-offer model learns from it).
    taste = np.cumsum(rng.dirichlet(np.array(CATEGORY_SHARE) * TASTE_CONCENTRATION, size=len(purchases)), axis=1)
    cat = np.minimum((rng.random(total)[:, None] > taste[owner]).sum(axis=1), len(categories) - 1)
    typical = np.array([CATEGORIES[c][0] for c in categories])[cat]
    spread = np.array([CATEGORIES[c][1] for c in categories])[cat]
    margin = np.array([CATEGORIES[c][2] for c in categories])[cat]
    amount = np.round(typical * spend_factor[owner] * rng.lognormal(0, spread), 2)
    amount = np.maximum(amount, 0.99)
    cost = np.round(amount * (1 - margin * rng.uniform(0.85, 1.15, size=total)), 2)
    channel_names, channel_p = PURCHASE_CHANNELS
    channel = rng.choice(len(channel_names), size=total, p=channel_p)
    product_pick = rng.random(total)

    rows = []
    sequence = np.zeros(len(purchases), dtype=np.int64)
    for k in range(total):
        i = int(owner[k])
        sequence[i] += 1
        products = CATEGORIES[categories[cat[k]]][3]
        rows.append(
            {
                "external_id": f"DEMO-T{first + i + 1:06d}-{sequence[i]:04d}",
                "customer_id": external_customer_id(first + i + 1),
                "occurred_at": dt.datetime.fromtimestamp(round(float(times[k])), UTC),
                "amount_cents": int(round(amount[k] * 100)),
                "cost_cents": int(round(max(cost[k], 0.0) * 100)),
                "product": products[int(product_pick[k] * len(products))],
                "category": categories[cat[k]],
                "channel": channel_names[channel[k]],
            }
        )
    return rows


def _touchpoints(rng, first, touches, signup, end) -> list[dict[str, Any]]:
    owner = np.repeat(np.arange(len(touches)), touches)
    total = len(owner)
    times = rng.uniform(signup[owner], np.full(total, end))
    order = np.lexsort((times, owner))
    owner, times = owner[order], times[order]
    channel_names, channel_p = TOUCHPOINT_CHANNELS
    channel = rng.choice(len(channel_names), size=total, p=channel_p)
    kind_pick = rng.random(total)
    rows = []
    sequence = np.zeros(len(touches), dtype=np.int64)
    for k in range(total):
        i = int(owner[k])
        sequence[i] += 1
        name = channel_names[channel[k]]
        kinds = TOUCHPOINT_KINDS[name]
        rows.append(
            {
                "external_id": f"DEMO-P{first + i + 1:06d}-{sequence[i]:04d}",
                "customer_id": external_customer_id(first + i + 1),
                "occurred_at": dt.datetime.fromtimestamp(round(float(times[k])), UTC),
                "channel": name,
                "kind": kinds[int(kind_pick[k] * len(kinds))],
                "payload": {},
            }
        )
    return rows


def load(database: Database, spec: DemoSpec, *, progress: Progress | None = None) -> dict[str, int]:
    """Generate the demo data and write it slice by slice, one transaction each; return row counts."""
    progress = progress or (lambda label, done, total: None)
    counts = {"customers": 0, "transactions": 0, "touchpoints": 0}
    for part in generate_slices(spec):
        now = utcnow()
        with database.connection(write=True) as conn:
            bulk.upsert_customers(conn, part.customers)
            ids = bulk.customer_id_map(conn, (c["external_id"] for c in part.customers))
            for rows, write in ((part.transactions, bulk.insert_transactions), (part.touchpoints, bulk.insert_touchpoints)):
                write(conn, [{**row, "customer_id": ids[row["customer_id"]], "ingested_at": now} for row in rows])
        _count(counts, part)
        progress("customers", counts["customers"], spec.customers)
    with database.connection(write=True) as conn:
        refresh_state(conn)
    progress("customer state", 1, 1)
    return counts


def _count(counts: dict[str, int], part: DemoData) -> None:
    for name in counts:
        counts[name] += len(getattr(part, name))


def is_empty(database: Database) -> bool:
    """Tell whether the database has no customers yet."""
    with database.connection() as conn:
        return conn.execute(sa.select(CustomerRecord.id).limit(1)).first() is None


def export_csv(spec: DemoSpec, directory: Path, *, progress: Progress | None = None) -> dict[str, int]:
    """Write the demo data as CSV files in the importer's format, slice by slice; return row counts."""
    progress = progress or (lambda label, done, total: None)
    directory.mkdir(parents=True, exist_ok=True)
    counts = {"customers": 0, "transactions": 0, "touchpoints": 0}
    names = ("customers.csv", "transactions.csv", "touchpoints.csv")
    with contextlib.ExitStack() as stack:
        customers, transactions, touchpoints = (
            csv.writer(stack.enter_context(open(directory / name, "w", newline="", encoding="utf-8"))) for name in names
        )
        customers.writerow(
            [
                "external_id",
                "first_name",
                "last_name",
                "email",
                "phone",
                "created_at",
                "consent_sms",
                "consent_app",
                "consent_call_centre",
                "plan",
                "region",
            ]
        )
        transactions.writerow(["external_id", "customer_id", "occurred_at", "amount", "cost", "product", "category", "channel"])
        touchpoints.writerow(["external_id", "customer_id", "occurred_at", "channel", "kind", "payload"])
        for part in generate_slices(spec):
            customers.writerows(
                [
                    c["external_id"],
                    c["first_name"],
                    c["last_name"],
                    c["email"],
                    c["phone"],
                    c["created_at"].isoformat(),
                    *(str(c["consent"][k]).lower() for k in ("sms", "app", "call_centre")),
                    c["attributes"]["plan"],
                    c["attributes"]["region"],
                ]
                for c in part.customers
            )
            transactions.writerows(
                [
                    t["external_id"],
                    t["customer_id"],
                    t["occurred_at"].isoformat(),
                    f"{t['amount_cents'] / 100:.2f}",
                    f"{t['cost_cents'] / 100:.2f}",
                    t["product"],
                    t["category"],
                    t["channel"],
                ]
                for t in part.transactions
            )
            touchpoints.writerows(
                [
                    p["external_id"],
                    p["customer_id"],
                    p["occurred_at"].isoformat(),
                    p["channel"],
                    p["kind"],
                    json.dumps(p["payload"]),
                ]
                for p in part.touchpoints
            )
            _count(counts, part)
            progress("customers", counts["customers"], spec.customers)
    return counts
