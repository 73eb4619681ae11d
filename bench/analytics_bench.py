"""Analytics benchmark: RFM and historical CLV for the whole base against a plain pandas floor.

For each database (a scratch one with --customers demo customers, about 19 purchases each):
- ours: `rfm.calculate` (read, quintile scores, segments from the rule file, store the run and
  every state row) and `clv.historical` over every customer (read and exact cents);
- floor: what a data scientist would write: `pandas.read_sql` of the transactions, then groupby
  and `rank(method="min")` for the same scores, and groupby sums for the same CLV figures;
- every score and every CLV figure of ours is checked equal to the floor's before timing counts;
- stages + value + journeys (`lifecycle.evaluate_all`: features, five models, three rule sets,
  writes) is timed too, with no pandas floor (the floor would have to re-implement the features,
  the models and the rules), so it is reported on its own.

    .venv/bin/python bench/analytics_bench.py --customers 100000
    .venv/bin/python bench/analytics_bench.py --customers 1000000 --databases sqlite   # the issue's 1M goal
"""

from __future__ import annotations

import argparse
import sys
import time
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd

import harness

from decision_server.analytics import clv, lifecycle, rfm
from decision_server.db import Database, utcnow
from decision_server.rules.engine import build_revision
from decision_server.rules.source import read_rules_dir
from decision_server.scoring.serving import ModelSet

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000, help="demo customers (default 100000; the goal is for 1000000)")
    parser.add_argument("--databases", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"])
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    return parser.parse_args(argv)


def pandas_floor(url: str, as_of, margin: Decimal) -> tuple[dict[str, float], pd.DataFrame]:
    """Compute RFM scores and CLV figures the plain pandas way; return timings and the frame."""
    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    times = {}
    t0 = time.perf_counter()
    tx = pd.read_sql("SELECT customer_id, occurred_at, amount_cents, cost_cents FROM transactions", engine)
    times["read"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tx["occurred_at"] = pd.to_datetime(tx["occurred_at"], utc=True)
    tx = tx[tx["occurred_at"] <= pd.Timestamp(as_of)]
    tx["uncosted"] = np.where(tx["cost_cents"].isna(), tx["amount_cents"], 0)
    per = tx.groupby("customer_id").agg(last=("occurred_at", "max"), n=("amount_cents", "size"),
                                        spend=("amount_cents", "sum"), known=("cost_cents", "sum"), uncosted=("uncosted", "sum"))
    n = len(per)
    for score, column in (("r", "last"), ("f", "n"), ("m", "spend")):
        below = per[column].rank(method="min") - 1
        per[score] = (1 + np.floor(5 * below / n)).clip(upper=5).astype(int)
    keep = float(1 - margin)
    per["cost"] = per["known"].fillna(0).astype(np.int64) + np.floor(per["uncosted"] * keep + 0.5).astype(np.int64)
    times["compute"] = time.perf_counter() - t0
    engine.dispose()
    return times, per


def run_one(url: str, dialect: str, revision, models) -> dict:
    database = Database(url)
    as_of = utcnow()
    margin = Decimal("0.30")
    out = {"database": dialect}
    t0 = time.perf_counter()
    run = rfm.calculate(database, revision, as_of=as_of)
    out["ours_rfm_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with database.connection() as conn:
        history = clv.historical(conn, as_of=as_of, margin=margin)
    out["ours_clv_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    staged = lifecycle.evaluate_all(database, revision, models)
    out["ours_stages_s"] = time.perf_counter() - t0
    floor_times, per = pandas_floor(url, as_of, margin)
    out["floor_read_s"], out["floor_compute_s"] = floor_times["read"], floor_times["compute"]
    # Same numbers, checked before anything is reported.
    with database.connection() as conn:
        ours = pd.DataFrame(conn.exec_driver_sql(
            "SELECT customer_id, rfm_r, rfm_f, rfm_m FROM customer_state WHERE rfm_r IS NOT NULL").all(),
            columns=["customer_id", "r", "f", "m"]).set_index("customer_id").sort_index()
    joined = per[["r", "f", "m"]].join(ours.add_suffix("_ours"))
    wrong = int((joined[["r", "f", "m"]].to_numpy() != joined[["r_ours", "f_ours", "m_ours"]].to_numpy()).any(axis=1).sum())
    by_id = {h.customer_id: h for h in history if h.orders}
    clv_wrong = sum(1 for cid, row in per.iterrows()
                    if (by_id[cid].revenue_cents, by_id[cid].cost_cents, by_id[cid].orders) != (int(row["spend"]), int(row["cost"]), int(row["n"])))
    out.update(buyers=run.buyers, rfm_mismatches=wrong, clv_mismatches=clv_wrong, customers=staged["customers"])
    database.dispose()
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    print(f"analytics bench: {args.customers:,} demo customers; code {harness.CODE_AT_START}")
    revision = build_revision(read_rules_dir(harness.REPO / "rules"), backend="python", run_cases=False)
    models = ModelSet(Path("/nonexistent"))  # fallback rules: the bench measures analytics, not training
    results = []
    for dialect in args.databases:
        if dialect == "postgresql" and not harness.postgres_reachable(args.postgres_url):
            print("  PostgreSQL not reachable; skipped")
            continue
        with harness.scratch_database(args.postgres_url if dialect == "postgresql" else None,
                                      name="ds_bench_analytics", customers=args.customers) as dataset:
            results.append(run_one(dataset.url, dialect, revision, models))
    for row in results:
        ours = row["ours_rfm_s"] + row["ours_clv_s"]
        floor = row["floor_read_s"] + row["floor_compute_s"]
        row["ours_s"], row["floor_s"], row["ratio"] = ours, floor, harness.ratio(ours, floor)
        row["per_m_s"] = (ours + row["ours_stages_s"]) * 1e6 / max(row["customers"], 1)
    print()
    harness.print_table(results, [
        ("database", "database", ""), ("buyers", "buyers", ",.0f"), ("ours RFM s", "ours_rfm_s", ",.2f"),
        ("ours CLV s", "ours_clv_s", ",.2f"), ("floor read s", "floor_read_s", ",.2f"), ("floor compute s", "floor_compute_s", ",.2f"),
        ("ours/floor", "ratio", ""), ("stages+value+journeys s", "ours_stages_s", ",.2f"),
        ("all, s per 1M", "per_m_s", ",.1f"), ("RFM wrong", "rfm_mismatches", ",.0f"), ("CLV wrong", "clv_mismatches", ",.0f"),
    ])
    path = harness.write_results("analytics_bench", {"args": harness.public_args(args), "results": results})
    print(f"\n{harness.MACHINE_NOTE}\nresults: {path.relative_to(harness.REPO)}; {time.perf_counter() - started:.0f} s in all")
    revision.close()
    return 1 if any(r["rfm_mismatches"] or r["clv_mismatches"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
