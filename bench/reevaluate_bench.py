"""Full re-evaluation (the `decision-server reevaluate` job, every step) against the sum of its floors.

For each database, a copy of a generated demo base (--sqlite-from FILE, --postgres-from DATABASE):
- ours: `jobs.reevaluation.run` with every step (RFM, CLV, the five models, value, stage, journey,
  segments, tier review, points expiry), recorded and checkpointed as the scheduler runs it:
  the **first** run on a fresh base writes every customer; the **nightly** run is the next one;
  with --dask, the first run again on a local two-worker Dask cluster (PostgreSQL only: SQLite
  files are not for several machines), after the state is reset;
- floors, measured in the same run on the same machine: read the 33 feature columns from a
  narrow table (built beforehand, not timed) into numpy; score them with raw onnxruntime (the
  merged graph the server runs) in batches of 100,000; evaluate the lifecycle, value and journey
  rules with the vectorized backend; write a narrow (customer_id, stage) table (executemany on
  SQLite, COPY on PostgreSQL). Their sum is the floor the job is compared with;
- linearity: with --small-from (a base 10x smaller, same generator), the first run there too;
- what-if: with --what-if, a dry run of every what-if step with offer reach (every active offer on
  every customer, on the three channels, before and after) against the same dry run without it:
  the difference is what trying the offers costs.

    .venv/bin/python bench/reevaluate_bench.py --sqlite-from 1m.db --small-from 100k.db --models DIR
    .venv/bin/python bench/reevaluate_bench.py --databases postgresql --postgres-from ds_bench_1m --models DIR --dask
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import harness
import numpy as np

from decision_server import migrate
from decision_server.db import Database, utcnow
from decision_server.features import bulk
from decision_server.features.definition import FEATURE_NAMES
from decision_server.jobs import chunks, reevaluation
from decision_server.lifecycle import service as lifecycle
from decision_server.rules.engine import build_revision
from decision_server.rules.source import read_rules_dir
from decision_server.scoring.onnx_io import INPUT
from decision_server.scoring.serving import ModelSet
from decision_server.value import service as value

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
SCRATCH = "ds_bench_reevaluate"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--databases", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite"])
    parser.add_argument("--sqlite-from", type=Path, help="the SQLite demo base to copy (e.g. 1M customers)")
    parser.add_argument("--small-from", type=Path, help="a SQLite base 10x smaller, for linearity")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument("--postgres-from", metavar="DATABASE", help="the PostgreSQL demo database to copy (TEMPLATE)")
    parser.add_argument("--models", type=Path, required=True, help="trained models folder (the job scores with them)")
    parser.add_argument("--dask", action="store_true", help="also run on a local two-worker Dask cluster (PostgreSQL)")
    parser.add_argument("--what-if", action="store_true", help="also time a what-if with and without offer reach")
    return parser.parse_args(argv)


@contextlib.contextmanager
def copy_of(args: argparse.Namespace, dialect: str, source: Path | str) -> Iterator[str]:
    """A scratch copy of a demo base, migrated to the code's schema."""
    with _copied(args, dialect, source) as url:
        database = Database(url)
        migrate.upgrade(database.engine)
        if dialect == "postgresql":  # a base loaded moments ago has no planner statistics yet; a live one has
            with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("ANALYZE")
        database.dispose()
        yield url


@contextlib.contextmanager
def _copied(args: argparse.Namespace, dialect: str, source: Path | str) -> Iterator[str]:
    if dialect == "sqlite":
        with tempfile.TemporaryDirectory(prefix="ds-bench-") as tmp:
            shutil.copyfile(source, Path(tmp) / "bench.db")
            yield f"sqlite:///{Path(tmp) / 'bench.db'}"
        return
    harness._pg_admin(args.postgres_url, f'DROP DATABASE IF EXISTS "{SCRATCH}" WITH (FORCE)')
    harness._pg_admin(args.postgres_url, f'CREATE DATABASE "{SCRATCH}" TEMPLATE "{source}"')
    try:
        yield harness._with_database(args.postgres_url, SCRATCH)
    finally:
        harness._pg_admin(args.postgres_url, f'DROP DATABASE IF EXISTS "{SCRATCH}" WITH (FORCE)')


def job(url: str, revision, models, dask_address: str | None = None) -> dict:
    database = Database(url)
    try:
        reset_peak = Path("/proc/self/clear_refs")
        with contextlib.suppress(OSError):
            reset_peak.write_text("5")
        row = reevaluation.run(
            database,
            revision,
            models,
            source="bench",
            dask_address=dask_address,
            progress=lambda s: s.done % 200_000 == 0 and print(f"    {s.phase} {s.done:,}/{s.total:,}", flush=True),
        )
        seconds = (row["finished_at"] - row["started_at"]).total_seconds()
        return {
            "s": seconds,
            "written": row["result"]["pass"]["written"],
            "customers": row["result"]["pass"]["customers"],
            "rss_main_mb": chunks.peak_memory_mb(),
            "rss_reader_mb": row["result"]["pass"]["reader_peak_mb"],
        }
    finally:
        database.dispose()


def what_if(url: str, revision, models) -> dict:
    """A dry run of every what-if step, with offer reach on every channel, then without it."""
    from decision_server.config import DEFAULT_CHANNELS
    from decision_server.jobs import offer_reach

    database = Database(url)
    out = {}
    try:
        for label, steps in (
            ("what_if_s", reevaluation.WHAT_IF_STEPS),
            ("what_if_no_offers_s", tuple(s for s in reevaluation.WHAT_IF_STEPS if s != "offers")),
        ):
            trial = offer_reach.trial(database, revision, channels=list(DEFAULT_CHANNELS)) if "offers" in steps else None
            row = reevaluation.run(database, revision, models, steps=steps, dry_run=True, source="bench", offers=trial)
            out[label] = (row["finished_at"] - row["started_at"]).total_seconds()
            if trial is not None:
                out["offers_tried"] = len(trial.offers) * len(trial.channels)
        out["offers_s"] = out["what_if_s"] - out["what_if_no_offers_s"]
    finally:
        database.dispose()
    return out


def floors(url: str, revision, models) -> dict:
    """Build the narrow feature table (not timed), then time each floor step."""
    database = Database(url)
    columns = ", ".join(f'"{n}" REAL' for n in FEATURE_NAMES)
    now = utcnow()
    with database.connection(write=True) as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS bench_features")
        conn.exec_driver_sql(f"CREATE TABLE bench_features (customer_id BIGINT PRIMARY KEY, {columns})")
    for ids in _chunks(database, now):
        with database.connection(write=True) as conn:
            chunk = bulk.features(conn, ids, now)
            rows = [(int(c), *map(float, row)) for c, row in zip(chunk.ids, chunk.values, strict=True)]
            marks = ", ".join(["?" if database.dialect == "sqlite" else "%s"] * (len(FEATURE_NAMES) + 1))
            conn.connection.driver_connection.cursor().executemany(f"INSERT INTO bench_features VALUES ({marks})", rows)
    out = {}
    t0 = time.perf_counter()
    with database.connection() as conn:
        cur = conn.connection.driver_connection.cursor()
        cur.execute("SELECT * FROM bench_features ORDER BY customer_id")
        data = np.array(cur.fetchall(), dtype=np.float64)
    ids, x = data[:, 0].astype(np.int64), np.ascontiguousarray(data[:, 1:], dtype=np.float32)
    out["read_s"] = time.perf_counter() - t0
    session, outputs, _, _ = models._runners[0]  # the very graph the job runs
    t0 = time.perf_counter()
    raw = [session.run(outputs, {INPUT: x[i : i + 100_000]}) for i in range(0, len(x), 100_000)]
    out["score_s"] = time.perf_counter() - t0
    del raw
    churn = models.score_batch(x)["churn_risk"]  # the rules' input (not timed: the floor's scoring is above)
    t0 = time.perf_counter()
    named = {n: x[:, i].astype(np.float64) for i, n in enumerate(FEATURE_NAMES)}
    stage = revision.outcome_columns(
        "lifecycle",
        {
            "stage": np.full(len(x), None, dtype=object),
            "transaction_count": named["frequency"],
            "churn_risk": churn,
            "first_purchase_at": now.timestamp() - named["first_purchase_days"] * 86400,
            "last_purchase_at": now.timestamp() - named["recency_days"] * 86400,
        },
        ("stage",),
    )["stage"]
    value.for_columns(
        revision,
        transaction_count=named["frequency"],
        ltv=named["monetary"],
        r=named["frequency"] % 5 + 1,
        f=named["frequency"] % 5 + 1,
        m=named["frequency"] % 5 + 1,
        engagement=named["touchpoints_3m"],
    )
    revision.outcome_columns("journey", {n: named[n] for n in lifecycle.journey_inputs(revision)}, ("journey_stage",))
    out["rules_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with database.connection(write=True) as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS bench_stage")
        conn.exec_driver_sql("CREATE TABLE bench_stage (customer_id BIGINT, stage VARCHAR(32))")
        driver = conn.connection.driver_connection
        if database.dialect == "postgresql":
            with driver.cursor().copy("COPY bench_stage (customer_id, stage) FROM STDIN") as copy:
                for row in zip(ids.tolist(), stage.tolist(), strict=True):
                    copy.write_row(row)
        else:
            driver.cursor().executemany("INSERT INTO bench_stage VALUES (?, ?)", zip(ids.tolist(), stage.tolist(), strict=True))
    out["write_s"] = time.perf_counter() - t0
    out["floor_s"] = out["read_s"] + out["score_s"] + out["rules_s"] + out["write_s"]
    database.dispose()
    return out


def _chunks(database: Database, now) -> list[np.ndarray]:
    with database.connection() as conn:
        return list(bulk.customer_ids(conn, now))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    print(f"re-evaluation bench; code {harness.CODE_AT_START}")
    revision = build_revision(read_rules_dir(harness.REPO / "rules"), backend="python", run_cases=False)
    models = ModelSet(args.models)
    print(f"  models served: {', '.join(n for n, m in models.models.items() if not m['fallback']) or 'none'}")
    results = []
    for dialect in args.databases:
        source = args.sqlite_from if dialect == "sqlite" else args.postgres_from
        if source is None:
            print(f"  {dialect}: no base given (--sqlite-from / --postgres-from); skipped")
            continue
        row: dict = {"database": dialect}
        with copy_of(args, dialect, source) as url:
            print(f"  {dialect}: first run", flush=True)
            first = job(url, revision, models)
            print(f"  {dialect}: nightly run", flush=True)
            nightly = job(url, revision, models)
            if args.what_if:
                print(f"  {dialect}: what-if with and without offer reach", flush=True)
                row.update(what_if(url, revision, models))
            print(f"  {dialect}: floors", flush=True)
            row.update(floors(url, revision, models))
        row.update(
            customers=first["customers"],
            first_s=first["s"],
            written=first["written"],
            nightly_s=nightly["s"],
            nightly_written=nightly["written"],
            rss=f"{first['rss_main_mb'] or 0:,.0f} / {first['rss_reader_mb'] or 0:,.0f}",
        )
        if args.dask and dialect == "postgresql":
            from distributed import LocalCluster

            with (
                copy_of(args, dialect, source) as url,
                LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
            ):
                print(f"  {dialect}: first run on a local two-worker Dask cluster", flush=True)
                row["dask_first_s"] = job(url, revision, models, cluster.scheduler_address)["s"]
        if dialect == "sqlite" and args.small_from:
            with copy_of(args, dialect, args.small_from) as url:
                print(f"  {dialect}: first run on the small base", flush=True)
                small = job(url, revision, models)
            row["small_customers"], row["small_first_s"] = small["customers"], small["s"]
            row["linearity"] = f"{row['first_s'] / small['s']:.1f}x for {first['customers'] / small['customers']:.0f}x"
        row["ratio_first"], row["ratio_nightly"] = (
            harness.ratio(row["first_s"], row["floor_s"]),
            harness.ratio(row["nightly_s"], row["floor_s"]),
        )
        results.append(row)
    print()
    harness.print_table(
        results,
        [
            ("database", "database", ""),
            ("customers", "customers", ",.0f"),
            ("first s", "first_s", ",.1f"),
            ("written", "written", ",.0f"),
            ("nightly s", "nightly_s", ",.1f"),
            ("on Dask s", "dask_first_s", ",.1f"),
            ("floor: read", "read_s", ",.1f"),
            ("score", "score_s", ",.1f"),
            ("rules", "rules_s", ",.1f"),
            ("write", "write_s", ",.1f"),
            ("floor s", "floor_s", ",.1f"),
            ("first/floor", "ratio_first", ""),
            ("nightly/floor", "ratio_nightly", ""),
            ("10x base", "linearity", ""),
            ("peak MB main / reader", "rss", ""),
        ],
    )
    if any("what_if_s" in r for r in results):
        print()
        harness.print_table(
            [r for r in results if "what_if_s" in r],
            [
                ("database", "database", ""),
                ("what-if s", "what_if_s", ",.1f"),
                ("without offers s", "what_if_no_offers_s", ",.1f"),
                ("offer reach s", "offers_s", ",.1f"),
                ("offers x channels", "offers_tried", ",.0f"),
            ],
        )
    path = harness.write_results("reevaluate_bench", {"args": harness.public_args(args), "results": results})
    print(f"\n{harness.MACHINE_NOTE}\nresults: {path.relative_to(harness.REPO)}; {time.perf_counter() - started:.0f} s in all")
    revision.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
