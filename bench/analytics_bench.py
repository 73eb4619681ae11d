"""Analytics benchmark: the bulk pass (RFM + CLV + value + stage + journey) against a plain pandas floor.

For each database (a scratch one with --customers demo customers, about 19 purchases each):
- ours: `bulk_pass.run` (jobs/bulk_pass.py): RFM cut points, then one pass over every
  customer in chunks (features by set-based SQL in two reader processes, every model, RFM
  scores and segments from the rule file, historical CLV in exact cents, value, stage and
  journey with the vectorized rules), writing what changed with the transitions. Run twice:
  the first run writes every customer (a fresh base); the second is a nightly run (little changes);
- floor: what a data scientist would write for RFM + CLV alone: `pandas.read_sql` of the
  transactions, then groupby and `rank(method="min")` for the same scores, and groupby sums for
  the same CLV figures;
- every RFM score (from the state rows the pass wrote) and the CLV totals are checked equal to
  the floor's before anything is reported;
- peak memory (VmHWM) of the main process over both passes, and of the reader processes.

    .venv/bin/python bench/analytics_bench.py --customers 100000
    .venv/bin/python bench/analytics_bench.py --customers 1000000 --databases sqlite   # the issue's 1M goal
    .venv/bin/python bench/analytics_bench.py --sqlite-from /path/1m.db --databases sqlite   # reuse a generated base
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import harness
import numpy as np
import pandas as pd

from decision_server.db import Database, utcnow
from decision_server.jobs import bulk_pass, chunks
from decision_server.rules.engine import build_revision
from decision_server.rules.source import read_rules_dir
from decision_server.scoring.serving import ModelSet

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000, help="demo customers (default 100000; the goal is for 1000000)")
    parser.add_argument("--databases", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"])
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument(
        "--postgres-from",
        metavar="DATABASE",
        help="copy this PostgreSQL demo database (CREATE DATABASE ... TEMPLATE) instead of generating one",
    )
    parser.add_argument(
        "--sqlite-from", type=Path, help="copy this SQLite demo database instead of generating one (it is not changed)"
    )
    parser.add_argument(
        "--models", type=Path, help="models folder to score with (default: none, every model falls back to its rule)"
    )
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
    per = tx.groupby("customer_id").agg(
        last=("occurred_at", "max"),
        n=("amount_cents", "size"),
        spend=("amount_cents", "sum"),
        known=("cost_cents", "sum"),
        uncosted=("uncosted", "sum"),
    )
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
    margin = Decimal("0.30")
    out = {"database": dialect}
    as_of = utcnow()
    reset_peak_memory()
    first = bulk_pass.run(database, revision, models, margin=margin, progress=_progress)
    second = bulk_pass.run(database, revision, models, margin=margin)
    out["rss_main_mb"] = chunks.peak_memory_mb() or 0.0
    out["rss_reader_mb"] = max(first["reader_peak_mb"] or 0.0, second["reader_peak_mb"] or 0.0)
    out.update(
        first_s=first["seconds"],
        first_written=first["written"],
        second_s=second["seconds"],
        second_written=second["written"],
        customers=first["customers"],
        buyers=first["buyers"],
    )
    floor_times, per = pandas_floor(url, as_of, margin)
    out["floor_read_s"], out["floor_compute_s"] = floor_times["read"], floor_times["compute"]
    # Same numbers, checked before anything is reported.
    with database.connection() as conn:
        ours = (
            pd.DataFrame(
                conn.exec_driver_sql("SELECT customer_id, rfm_r, rfm_f, rfm_m FROM customer_state WHERE rfm_r IS NOT NULL").all(),
                columns=["customer_id", "r", "f", "m"],
            )
            .set_index("customer_id")
            .sort_index()
        )
    joined = per[["r", "f", "m"]].join(ours.add_suffix("_ours"))
    out["rfm_mismatches"] = int(
        (joined[["r", "f", "m"]].to_numpy() != joined[["r_ours", "f_ours", "m_ours"]].to_numpy()).any(axis=1).sum()
    )
    out["rfm_mismatches"] += abs(len(ours) - len(per))
    floor_clv = {"revenue_cents": int(per["spend"].sum()), "cost_cents": int(per["cost"].sum())}
    out["clv_mismatches"] = sum(first["clv"][k] != v for k, v in floor_clv.items())
    database.dispose()
    return out


def reset_peak_memory() -> None:
    """Reset this process's VmHWM (Linux clear_refs 5), so each database's pass is measured alone."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def _progress(p: bulk_pass.Progress) -> None:
    if p.done == p.total or (p.done // 50_000) % 4 == 0:
        print(f"    {p.done:,} of {p.total:,} customers, {p.rate:,.0f}/s", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    print(f"analytics bench: {args.customers:,} demo customers; code {harness.CODE_AT_START}")
    revision = build_revision(read_rules_dir(harness.REPO / "rules"), backend="python", run_cases=False)
    models = ModelSet(args.models or Path("/nonexistent"))  # default: fallback rules
    served = [name for name, m in models.models.items() if not m["fallback"]]
    print(f"  models served: {', '.join(served) or 'none (every score from its fallback rule)'}")
    results = []
    for dialect in args.databases:
        if dialect == "postgresql" and not harness.postgres_reachable(args.postgres_url):
            print("  PostgreSQL not reachable; skipped")
            continue
        if dialect == "postgresql" and args.postgres_from:
            harness._pg_admin(args.postgres_url, 'DROP DATABASE IF EXISTS "ds_bench_analytics" WITH (FORCE)')
            harness._pg_admin(args.postgres_url, f'CREATE DATABASE "ds_bench_analytics" TEMPLATE "{args.postgres_from}"')
            try:
                results.append(
                    run_one(harness._with_database(args.postgres_url, "ds_bench_analytics"), dialect, revision, models)
                )
            finally:
                harness._pg_admin(args.postgres_url, 'DROP DATABASE IF EXISTS "ds_bench_analytics" WITH (FORCE)')
            continue
        if dialect == "sqlite" and args.sqlite_from:
            with tempfile.TemporaryDirectory(prefix="ds-bench-") as tmp:
                copy = Path(tmp) / "bench.db"
                shutil.copyfile(args.sqlite_from, copy)
                results.append(run_one(f"sqlite:///{copy}", dialect, revision, models))
            continue
        with harness.scratch_database(
            args.postgres_url if dialect == "postgresql" else None, name="ds_bench_analytics", customers=args.customers
        ) as dataset:
            results.append(run_one(dataset.url, dialect, revision, models))
    for row in results:
        floor = row["floor_read_s"] + row["floor_compute_s"]
        row["floor_s"], row["ratio_first"], row["ratio_second"] = (
            floor,
            harness.ratio(row["first_s"], floor),
            harness.ratio(row["second_s"], floor),
        )
        row["per_m_first"] = row["first_s"] * 1e6 / max(row["customers"], 1)
        row["per_m_second"] = row["second_s"] * 1e6 / max(row["customers"], 1)
        row["rss"] = f"{row['rss_main_mb']:,.0f} / {row['rss_reader_mb']:,.0f}"
    print()
    harness.print_table(
        results,
        [
            ("database", "database", ""),
            ("customers", "customers", ",.0f"),
            ("buyers", "buyers", ",.0f"),
            ("first pass s", "first_s", ",.2f"),
            ("rows written", "first_written", ",.0f"),
            ("nightly pass s", "second_s", ",.2f"),
            ("rows written ", "second_written", ",.0f"),
            ("floor read s", "floor_read_s", ",.2f"),
            ("floor compute s", "floor_compute_s", ",.2f"),
            ("first/floor", "ratio_first", ""),
            ("nightly/floor", "ratio_second", ""),
            ("first, s per 1M", "per_m_first", ",.1f"),
            ("nightly, s per 1M", "per_m_second", ",.1f"),
            ("peak MB main / reader", "rss", ""),
            ("RFM wrong", "rfm_mismatches", ",.0f"),
            ("CLV wrong", "clv_mismatches", ",.0f"),
        ],
    )
    path = harness.write_results("analytics_bench", {"args": harness.public_args(args), "results": results})
    print(f"\n{harness.MACHINE_NOTE}\nresults: {path.relative_to(harness.REPO)}; {time.perf_counter() - started:.0f} s in all")
    revision.close()
    return 1 if any(r["rfm_mismatches"] or r["clv_mismatches"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
