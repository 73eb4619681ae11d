"""Latency of GET /api/v1/customers/{id} under load on granian, on SQLite and PostgreSQL, against baselines.

For each database, in one run: baselines measured in this process before the server starts (the
same row read with the raw driver on a held connection; the whole app called through Flask's test
client, no HTTP server), then granian (2 workers) on loopback: /health and the customer endpoint
at a fixed request rate (open loop) and at saturation. The ratios say what the HTTP server, the
framework and the data access each add.

    .venv/bin/python bench/api_latency.py
    .venv/bin/python bench/api_latency.py --databases sqlite --profile
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness

SCRATCH_DATABASE = "ds_bench_api_latency"
DEFAULT_POSTGRES = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
# The same row the endpoint reads: the customer joined to its state row, by external id.
ROW_SQL = "SELECT * FROM customers c LEFT JOIN customer_state s ON s.customer_id = c.id WHERE c.external_id = {param}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--databases", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"])
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES,
        help=f"PostgreSQL server (scratch database {SCRATCH_DATABASE} is created and dropped); default {DEFAULT_POSTGRES} or env BENCH_POSTGRES_URL",
    )
    parser.add_argument("--customers", type=int, default=10_000, help="demo customers to load (default 10000)")
    parser.add_argument("--threads", type=int, default=4, help="granian blocking threads per worker (default 4)")
    parser.add_argument("--rate", type=float, default=200.0, help="open-loop request rate, req/s (default 200)")
    parser.add_argument(
        "--rate-connections", type=int, default=16, help="connections the open-loop run spreads its requests over (default 16)"
    )
    parser.add_argument("--connections", type=int, default=8, help="saturation concurrency (default 8)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per HTTP run (default 10)")
    parser.add_argument("--samples", type=int, default=3000, help="sequential calls per in-process baseline (default 3000)")
    parser.add_argument("--clients", type=int, default=2, help="load-generator processes (default 2)")
    parser.add_argument(
        "--profile", action="store_true", help="also cProfile the in-process app call and print the top functions"
    )
    return parser.parse_args(argv)


def timed_calls(call: Callable[[str], Any], customers: int, samples: int) -> dict[str, Any]:
    """Call `call(external_id)` on random customers, sequentially; return the latency summary."""
    rng = random.Random(7)
    ids = [f"DEMO-{rng.randint(1, customers):06d}" for _ in range(samples + samples // 10)]
    for external_id in ids[: samples // 10]:  # warm caches, pools and prepared statements
        call(external_id)
    latencies = []
    for external_id in ids[samples // 10 :]:
        began = time.perf_counter()
        call(external_id)
        latencies.append(time.perf_counter() - began)
    latencies.sort()
    return {"requests": samples, "req_per_s": None, **harness.latency_summary(latencies)}


def raw_read(dataset: harness.Dataset) -> tuple[Callable[[str], Any], Callable[[], None]]:
    """Return a function reading the row with the bare driver on one held connection, and a closer."""
    from sqlalchemy.engine import make_url

    url = make_url(dataset.url)
    if dataset.dialect == "sqlite":
        import sqlite3

        conn = sqlite3.connect(url.database)
        sql = ROW_SQL.format(param="?")
    else:
        import psycopg

        conn = psycopg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False))
        sql = ROW_SQL.format(param="%s")

    def read(external_id: str) -> Any:
        row = conn.execute(sql, (external_id,)).fetchone()
        assert row is not None, external_id
        return row

    return read, conn.close


def app_call(dataset: harness.Dataset):
    """Return a function calling GET /api/v1/customers/{id} on the app in process, and the app's database."""
    from decision_server.app import create_app

    app = create_app(
        {
            "database_url": dataset.url,
            "log_level": "WARNING",
            "rules_dir": harness.REPO / "rules",
            "models_dir": harness.REPO / "models_onnx",
        }
    )
    client = app.test_client()
    headers = {"Authorization": f"Bearer {dataset.api_key}"}

    def call(external_id: str) -> Any:
        response = client.get(f"/api/v1/customers/{external_id}", headers=headers)
        assert response.status_code == 200, response.status_code
        return response.data

    return call, app.extensions["database"]


def in_process_baselines(args: argparse.Namespace, dataset: harness.Dataset) -> list[dict[str, Any]]:
    """Measure the raw row read and the in-process app call, sequentially, before any server runs."""
    read, close = raw_read(dataset)
    try:
        raw = timed_calls(read, dataset.customers, args.samples)
    finally:
        close()
    call, database = app_call(dataset)
    try:
        app = timed_calls(call, dataset.customers, args.samples)
        if args.profile:
            profile(call, dataset.customers, min(args.samples, 2000))
    finally:
        database.dispose()
    return [
        {"measurement": "raw driver read of the row (in process)", "mode": "sequential", **raw},
        {"measurement": "app via Flask test client (in process)", "mode": "sequential", **app},
    ]


def profile(call: Callable[[str], Any], customers: int, samples: int) -> None:
    """Print where the in-process app call spends its time (cProfile, top functions)."""
    profiler = cProfile.Profile()
    profiler.enable()
    timed_calls(call, customers, samples)
    profiler.disable()
    print(f"\n  cProfile of {samples} in-process GET /api/v1/customers/{{id}} (cumulative, top 30):")
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(15)


def over_http(args: argparse.Namespace, dataset: harness.Dataset, log_dir: Path) -> list[dict[str, Any]]:
    """Serve with granian and measure /health and the customer endpoint at a fixed rate and at saturation."""
    spec = harness.ServerSpec("granian", "granian", workers=2, threads=args.threads)
    rows = []
    with harness.serving(spec, dataset, log_dir) as server:
        # a short discarded burst first: pools, caches and both workers warm before anything counts
        harness.run_load(
            harness.Load(server.port, harness.customer_endpoint(dataset), args.connections, 1.0, processes=args.clients)
        )
        for endpoint in (harness.health_endpoint(), harness.customer_endpoint(dataset)):
            for load in (
                harness.Load(server.port, endpoint, args.rate_connections, args.duration, rate=args.rate, processes=args.clients),
                harness.Load(server.port, endpoint, args.connections, args.duration, warmup=1.0, processes=args.clients),
            ):
                result = harness.run_load(load, server)
                rows.append({"measurement": f"granian GET {endpoint.name}", **result})
                print(
                    f"  {rows[-1]['measurement']:<34} {result['mode']:<12} p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:7.2f} ms  {result['req_per_s']:7,.0f} req/s  non-200 {result['non_200']}",
                    flush=True,
                )
        problems = server.log_problems()
    for line in problems[:5]:
        print(f"  server output: {line[:200]}")
    return rows


def bench_database(args: argparse.Namespace, postgres_url: str | None) -> list[dict[str, Any]]:
    """Set up one database, measure the baselines and then the server; return all rows."""
    label = "PostgreSQL" if postgres_url else "SQLite"
    print(f"\n{label}: setting up {args.customers:,} demo customers...", flush=True)
    with (
        harness.scratch_database(postgres_url, name=SCRATCH_DATABASE, customers=args.customers) as dataset,
        tempfile.TemporaryDirectory(prefix="ds-bench-logs-") as log_dir,
    ):
        rows = in_process_baselines(args, dataset)
        for row in rows:
            print(f"  {row['measurement']:<47} p50 {row['p50_ms']:6.3f} ms  p99 {row['p99_ms']:6.3f} ms", flush=True)
        rows += over_http(args, dataset, Path(log_dir))
    for row in rows:
        row["database"] = dataset.dialect
    return rows


def ratios_for(rows: list[dict[str, Any]], rate: float) -> list[dict[str, Any]]:
    """Return the customer endpoint's latency at the fixed rate divided by each baseline's."""
    at_rate = f"rate {rate:g}/s"
    find = {(r["database"], r["measurement"], r["mode"]): r for r in rows}
    ratios = []
    for database in dict.fromkeys(r["database"] for r in rows):
        target = find.get((database, "granian GET /customers/{id}", at_rate))
        baselines = [
            find.get((database, "granian GET /health", at_rate)),
            find.get((database, "app via Flask test client (in process)", "sequential")),
            find.get((database, "raw driver read of the row (in process)", "sequential")),
        ]
        for base in filter(None, baselines):
            if target:
                ratios.append(
                    {
                        "database": database,
                        "customer_at": at_rate,
                        "baseline": f"{base['measurement']} ({base['mode']})",
                        "p50": harness.ratio(target["p50_ms"], base["p50_ms"]),
                        "p99": harness.ratio(target["p99_ms"], base["p99_ms"]),
                        "p50_minus_baseline_ms": target["p50_ms"] - base["p50_ms"],
                    }
                )
    return ratios


def print_report(rows: list[dict[str, Any]], ratios: list[dict[str, Any]]) -> None:
    """Print the latency table and the ratios."""
    print(f"\nGET /api/v1/customers/{{id}} latency on granian; {harness.MACHINE_NOTE}")
    harness.print_table(
        rows,
        [
            ("database", "database", ""),
            ("measurement", "measurement", ""),
            ("load", "mode", ""),
            ("p50 ms", "p50_ms", ".3f"),
            ("p90 ms", "p90_ms", ".3f"),
            ("p99 ms", "p99_ms", ".3f"),
            ("max ms", "max_ms", ".1f"),
            ("req/s", "req_per_s", ",.0f"),
            ("non-200", "non_200", ""),
            ("server CPU µs/req", "server_cpu_us_per_req", ",.0f"),
        ],
    )
    print("\nRatios: customer endpoint at the fixed rate vs each baseline (p50 difference in ms)")
    for r in ratios:
        print(
            f"  {r['database']:<10} vs {r['baseline']:<54} p50 {r['p50']:>7}  p99 {r['p99']:>7}  (+{r['p50_minus_baseline_ms']:.2f} ms)"
        )


def main(argv: list[str] | None = None) -> None:
    """Measure every requested database, print and save the results."""
    args = parse_args(argv)
    print(f"api_latency.py at {harness.CODE_AT_START}; {harness.MACHINE_NOTE}")
    rows: list[dict[str, Any]] = []
    if "sqlite" in args.databases:
        rows += bench_database(args, None)
    if "postgresql" in args.databases and harness.postgres_reachable(args.postgres_url):
        rows += bench_database(args, args.postgres_url)
    ratios = ratios_for(rows, args.rate)
    print_report(rows, ratios)
    path = harness.write_results("api-latency", {"args": harness.public_args(args), "rows": rows, "ratios": ratios})
    print(f"\nwritten {path}")


if __name__ == "__main__":
    main()
