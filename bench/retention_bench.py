"""Decision log retention: purge N old decisions while decisions are being made, in process.

For each backend: a scratch database, the app's own Decider (shipped rules, models falling back),
N old decisions (two actions each, a response to every tenth) copied from a real one and spread
over ten days 100-109 days ago. Decision latency (the whole `Decider.decide`, log write included)
is measured alone, then again while `retention.purge` removes those days: on SQLite in batches;
on PostgreSQL once with the days in their own partitions (detached and dropped) and once with the
rows in the default partition (batched DELETE), so drop and delete are compared on the same rows.
Every purge is checked: nothing older than the cutoff is left, the offer statistics are the same.

    .venv/bin/python bench/retention_bench.py                       # 200k decisions, SQLite and PostgreSQL
    .venv/bin/python bench/retention_bench.py --decisions 20000 --backend sqlite
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

DAYS = 10
OLDEST = 109  # days ago


def _app(url: str, models_dir: Path):
    from decision_server import create_app
    from decision_server.config import Config

    config = Config(
        database_url=url,
        rules_dir=harness.REPO / "rules",
        models_dir=models_dir,
        log_level="WARNING",
        rules_backend="python",
        rules_poll_seconds=0,
        models_poll_seconds=0,
        catalog_poll_seconds=0,
        learning_poll_seconds=0,
    )
    return create_app(config)


def _load_old(database, template: dict, decisions: int, *, partitioned: bool) -> None:
    """Write `decisions` old decisions like `template` (two actions each, a response to every tenth)."""
    import sqlalchemy as sa

    from decision_server.decisions import retention
    from decision_server.decisions.records import DecisionActionRecord, DecisionRecord, DecisionResponseRecord

    start = retention.cutoff(OLDEST, dt.datetime.now(dt.UTC))
    if partitioned:
        for day in range(DAYS):
            retention.ensure_partitions(database, now=start + dt.timedelta(days=day), ahead=0)
    step = dt.timedelta(days=DAYS) / decisions
    chunk = 10_000
    started = time.perf_counter()
    for lo in range(0, decisions, chunk):
        rows, actions, responses = [], [], []
        for i in range(lo, min(lo + chunk, decisions)):
            at = start + step * i
            decision_id = f"{int(at.timestamp() * 1000):012x}{i:020x}"
            rows.append({**template, "id": decision_id, "external_id": f"OLD-{i % 5000}", "decided_at": at})
            for rank in (1, 2):
                actions.append(
                    {
                        "decision_id": decision_id,
                        "rank": rank,
                        "external_id": f"OLD-{i % 5000}",
                        "offer_id": (i + rank) % 8,
                        "channel": "app",
                        "decided_at": at,
                        "priority": 0.5,
                        "propensity": 0.1,
                        "learning_key": "medium",
                    }
                )
            if i % 10 == 0:
                responses.append(
                    {
                        "decision_id": decision_id,
                        "rank": 1,
                        "response": ("accepted", "declined", "ignored")[i % 3],
                        "decided_at": at,
                        "external_id": f"OLD-{i % 5000}",
                        "offer_id": (i + 1) % 8,
                        "responded_at": at + dt.timedelta(hours=2),
                        "recorded_at": at + dt.timedelta(hours=2),
                        "attributes": {},
                    }
                )
        with database.connection(write=True) as conn:
            conn.execute(sa.insert(DecisionRecord.__table__), rows)
            conn.execute(sa.insert(DecisionActionRecord.__table__), actions)
            conn.execute(sa.insert(DecisionResponseRecord.__table__), responses)
    harness._settle(database)
    print(
        f"  {decisions:,} old decisions ({2 * decisions:,} actions, {decisions // 10:,} responses) written in "
        f"{time.perf_counter() - started:.0f} s" + (" into day partitions" if partitioned else ""),
        flush=True,
    )


def _latencies(
    decider, seconds: float | None = None, count: int | None = None, while_alive: threading.Thread | None = None
) -> list[float]:
    from decision_server.decisions.service import DecisionRequest

    out: list[float] = []
    i = 0
    deadline = time.perf_counter() + (seconds or 0)
    while True:
        if count is not None and i >= count:
            break
        if while_alive is not None and not while_alive.is_alive():
            break
        if seconds is not None and while_alive is None and time.perf_counter() > deadline:
            break
        started = time.perf_counter()
        decider.decide(DecisionRequest(f"P-{i}", "app", {}, 2))
        out.append((time.perf_counter() - started) * 1000)
        i += 1
    return out


def _summary(ms: list[float]) -> dict:
    s = harness.latency_summary(sorted(m / 1000 for m in ms))
    return {"n": len(ms), **s}


def run_case(label: str, url: str, template: dict, decisions: int, batch: int, partitioned: bool, models_dir: Path) -> dict:
    import sqlalchemy as sa

    from decision_server.decisions import log, retention
    from decision_server.decisions.records import DecisionRecord

    app = _app(url, models_dir)
    database, decider = app.extensions["database"], app.extensions["decider"]
    try:
        _load_old(database, template, decisions, partitioned=partitioned)
        _latencies(decider, count=200)  # warm up
        alone = _latencies(decider, seconds=10.0)
        with database.connection() as conn:
            before = log.offer_statistics(conn)
        box: dict = {}
        purge = threading.Thread(target=lambda: box.setdefault("r", retention.purge(database, days=90, batch_size=batch)))
        started = time.perf_counter()
        purge.start()
        during = _latencies(decider, while_alive=purge)
        purge.join()
        seconds = time.perf_counter() - started
        result = box["r"]
        with database.connection() as conn:
            left = conn.execute(
                sa.select(sa.func.count()).where(DecisionRecord.__table__.c.decided_at < result.cutoff)
            ).scalar_one()
            after = log.offer_statistics(conn)
        made = {s["offer_id"]: s["actions"] for s in after}
        grown = {s["offer_id"]: s["actions"] for s in before}
        # The decisions made during the purge add actions; the old ones' counts must all still be there.
        assert left == 0 and result.decisions == decisions, (left, result.decisions)
        assert all(made.get(o, 0) >= n for o, n in grown.items()) and sum(made.values()) - sum(grown.values()) >= 0
        print(
            f"  {label}: purged {result.decisions:,} decisions in {seconds:.1f} s ({result.decisions / seconds:,.0f}/s), "
            f"{len(result.days_dropped)} days dropped, {result.batches} batches",
            flush=True,
        )
        return {
            "case": label,
            "purge_s": seconds,
            "rate": result.decisions / seconds,
            "days_dropped": len(result.days_dropped),
            "batches": result.batches,
            "alone": _summary(alone),
            "during": _summary(during),
        }
    finally:
        app.extensions["rulebook"].stop()
        app.extensions["models"].stop()
        app.extensions["catalog"].stop()
        app.extensions["decider"].learning.stop()
        database.dispose()


def _contact_read_ms(database, n: int = 2000) -> float:
    """p50 of the decision path's read of one customer's last 30 days of actions and declines (the contact policy's)."""
    from decision_server import fastsql
    from decision_server.decisions.service import HISTORY, READ_CONTACTS

    statement = fastsql.Prepared(database.engine, READ_CONTACTS)
    since = dt.datetime.now(dt.UTC) - HISTORY
    times = []
    with fastsql.cursor(database.engine) as cur:
        for i in range(n):
            started = time.perf_counter()
            statement.rows(cur, {"external_id": f"P-{i}", "since": since})
            times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return times[len(times) // 2]


def partition_overhead(url: str, models_dir: Path, seconds: float) -> list[dict]:
    """Decision latency on PostgreSQL with plain log tables, the migration's partitions, and 90 days' worth (custom and generic plans)."""
    from decision_server.decisions import retention

    app = _app(url, models_dir)
    database, decider = app.extensions["database"], app.extensions["decider"]
    out = []
    try:
        with database.session(write=True) as session:
            from decision_server.offers import service as offers

            offers.load_demo_catalog(session, channels=app.extensions["config"].channels, words=offers.vocabulary(None))
        app.extensions["catalog"].sync()
        with database.connection() as conn:
            fresh = len(retention.partitions(conn))
        _latencies(decider, count=300)
        out.append(
            {
                "case": f"partitioned, {fresh} partitions",
                **_summary(_latencies(decider, seconds=seconds)),
                "contacts_ms": _contact_read_ms(database),
            }
        )
        now = dt.datetime.now(dt.UTC)
        for back in range(1, 91):
            retention.ensure_partitions(database, now=now - dt.timedelta(days=back), ahead=0)
        with database.connection() as conn:
            full = len(retention.partitions(conn))
        _latencies(decider, count=300)
        out.append(
            {
                "case": f"partitioned, {full} partitions",
                **_summary(_latencies(decider, seconds=seconds)),
                "contacts_ms": _contact_read_ms(database),
            }
        )
        with database.connection() as conn:  # plans made once per statement, pruned when they run
            conn.exec_driver_sql("SELECT set_config('plan_cache_mode', 'force_generic_plan', false)")
            name = conn.exec_driver_sql("SELECT current_database()").scalar_one()
            conn.exec_driver_sql(f'ALTER DATABASE "{name}" SET plan_cache_mode = force_generic_plan')
        database.engine.dispose()
        _latencies(decider, count=300)
        out.append(
            {
                "case": f"partitioned, {full} partitions, generic plans",
                **_summary(_latencies(decider, seconds=seconds)),
                "contacts_ms": _contact_read_ms(database),
            }
        )
        with database.connection() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{name}" RESET plan_cache_mode')
        database.engine.dispose()
        with database.connection() as conn:  # the same tables, plain: what the log was before migration 0014
            for table in retention.TABLES:
                conn.exec_driver_sql(f"CREATE TABLE {table}_plain (LIKE {table} INCLUDING ALL)")
                conn.exec_driver_sql(f"INSERT INTO {table}_plain SELECT * FROM {table}")
                conn.exec_driver_sql(f"ALTER TABLE {table} RENAME TO {table}_parted")
                conn.exec_driver_sql(f"ALTER TABLE {table}_plain RENAME TO {table}")
        database.engine.dispose()  # prepared statements name the old tables
        _latencies(decider, count=300)
        out.append(
            {"case": "plain tables", **_summary(_latencies(decider, seconds=seconds)), "contacts_ms": _contact_read_ms(database)}
        )
    finally:
        app.extensions["rulebook"].stop()
        app.extensions["models"].stop()
        app.extensions["catalog"].stop()
        app.extensions["decider"].learning.stop()
        database.dispose()
    for row in out:
        print(
            f"  {row['case']}: n {row['n']:,}, p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, "
            f"contact read p50 {row['contacts_ms']:.3f} ms",
            flush=True,
        )
    return out


def _template(url: str, models_dir: Path) -> dict:
    """A real decision's row (its candidates, models, profile), to copy old decisions from."""
    import sqlalchemy as sa

    from decision_server.decisions.records import DecisionRecord
    from decision_server.decisions.service import DecisionRequest
    from decision_server.offers import service as offers

    app = _app(url, models_dir)
    database = app.extensions["database"]
    try:
        with database.session(write=True) as session:
            offers.load_demo_catalog(session, channels=app.extensions["config"].channels, words=offers.vocabulary(None))
        app.extensions["catalog"].sync()
        answer = app.extensions["decider"].decide(DecisionRequest("TEMPLATE", "app", {"intent": "browse"}, 2))
        with database.connection() as conn:
            row = dict(
                conn.execute(sa.select(DecisionRecord.__table__).where(DecisionRecord.__table__.c.id == answer["decision_id"]))
                .one()
                ._mapping
            )
        return {k: v for k, v in row.items() if k not in ("id", "external_id", "decided_at")}
    finally:
        app.extensions["rulebook"].stop()
        app.extensions["models"].stop()
        app.extensions["catalog"].stop()
        app.extensions["decider"].learning.stop()
        database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=200_000, help="old decisions to purge (default 200,000)")
    parser.add_argument("--batch-size", type=int, default=5_000, help="decisions per delete transaction (default 5,000)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument(
        "--overhead-seconds",
        type=float,
        default=10.0,
        help="per case of decision latency with plain and partitioned tables (PostgreSQL; 0: skip)",
    )
    args = parser.parse_args()
    models_dir = Path(tempfile.mkdtemp(prefix="ds-retention-models-"))  # empty: every model falls back
    rows = []
    try:
        cases = []
        if args.backend in ("sqlite", "both"):
            cases.append(("sqlite batches", None, False))
        if args.backend in ("postgresql", "both"):
            if harness.postgres_reachable(args.postgres_url):
                cases += [("postgresql partitions", args.postgres_url, True), ("postgresql batches", args.postgres_url, False)]
            else:
                print(f"PostgreSQL not reachable at {args.postgres_url}: skipped")
        for label, pg, partitioned in cases:
            print(f"{label}:", flush=True)
            with harness.scratch_database(pg, name="ds_bench_retention", customers=200) as dataset:
                template = _template(dataset.url, models_dir)
                rows.append(run_case(label, dataset.url, template, args.decisions, args.batch_size, partitioned, models_dir))
        overhead = []
        if args.overhead_seconds and any(pg for _, pg, _ in cases):
            print("decision latency, plain and partitioned log tables (PostgreSQL):", flush=True)
            with harness.scratch_database(args.postgres_url, name="ds_bench_retention", customers=200) as dataset:
                overhead = partition_overhead(dataset.url, models_dir, args.overhead_seconds)
    finally:
        shutil.rmtree(models_dir, ignore_errors=True)
    table = [
        {
            "case": r["case"],
            "purge_s": r["purge_s"],
            "rate": r["rate"],
            "dropped": r["days_dropped"],
            "batches": r["batches"],
            "n_alone": r["alone"]["n"],
            "p50_alone": r["alone"]["p50_ms"],
            "p99_alone": r["alone"]["p99_ms"],
            "max_alone": r["alone"]["max_ms"],
            "n_during": r["during"]["n"],
            "p50_during": r["during"]["p50_ms"],
            "p99_during": r["during"]["p99_ms"],
            "max_during": r["during"]["max_ms"],
        }
        for r in rows
    ]
    print(f"\n{args.decisions:,} old decisions, batches of {args.batch_size:,}; decision latency in ms (whole Decider.decide)")
    harness.print_table(
        table,
        [
            ("case", "case", ""),
            ("purge s", "purge_s", ",.1f"),
            ("decisions/s", "rate", ",.0f"),
            ("days dropped", "dropped", ""),
            ("batches", "batches", ""),
            ("n alone", "n_alone", ",.0f"),
            ("p50 alone", "p50_alone", ".2f"),
            ("p99 alone", "p99_alone", ".2f"),
            ("max alone", "max_alone", ".1f"),
            ("n during", "n_during", ",.0f"),
            ("p50 during", "p50_during", ".2f"),
            ("p99 during", "p99_during", ".2f"),
            ("max during", "max_during", ".1f"),
        ],
    )
    if overhead:
        print("\ndecision latency in ms on PostgreSQL (whole Decider.decide), by log table layout")
        harness.print_table(
            overhead,
            [
                ("layout", "case", ""),
                ("n", "n", ",.0f"),
                ("p50", "p50_ms", ".2f"),
                ("p90", "p90_ms", ".2f"),
                ("p99", "p99_ms", ".2f"),
                ("max", "max_ms", ".1f"),
                ("contact read p50", "contacts_ms", ".3f"),
            ],
        )
    print(harness.MACHINE_NOTE)
    harness.write_results(
        "retention_bench",
        {"args": harness.public_args(args), "rows": rows, "overhead": overhead, "environment": harness.environment()},
    )


if __name__ == "__main__":
    main()
