"""Compare WSGI servers (granian, gunicorn gthread, gunicorn sync) serving the same app, side by side.

Each server runs as a subprocess with 2 workers on loopback against one fresh database (SQLite in
a temp dir, or a scratch PostgreSQL database with --database-url). Client processes hold
persistent HTTP/1.1 connections and measure, per server and endpoint: saturation throughput with
C concurrent connections (closed loop) and latency at a fixed request rate (open loop).

    .venv/bin/python bench/servers.py
    .venv/bin/python bench/servers.py --database-url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import harness

SCRATCH_DATABASE = "ds_bench_servers"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--database-url",
        help=f"PostgreSQL server to use (a scratch database {SCRATCH_DATABASE} is created and dropped); default: SQLite in a temp dir",
    )
    parser.add_argument("--customers", type=int, default=10_000, help="demo customers to load (default 10000)")
    parser.add_argument(
        "--servers",
        nargs="+",
        choices=list(harness.SERVERS),
        default=list(harness.SERVERS),
        help="servers to compare (default: all)",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes per server (default 2)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker for granian and gthread (default 4)")
    parser.add_argument("--endpoints", nargs="+", choices=["health", "customer"], default=["health", "customer"])
    parser.add_argument(
        "--connections", type=int, nargs="+", default=[8, 32], help="saturation concurrency levels (default 8 32)"
    )
    parser.add_argument("--rate", type=float, default=200.0, help="open-loop request rate, req/s (default 200; 0 to skip)")
    parser.add_argument(
        "--rate-connections", type=int, default=16, help="connections the open-loop run spreads its requests over (default 16)"
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per run (default 10)")
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="seconds of load discarded before each saturation run (default 1)"
    )
    parser.add_argument("--clients", type=int, default=2, help="load-generator processes (default 2)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="rounds over all servers, order reversed every other round; the table shows medians (default 1)",
    )
    return parser.parse_args(argv)


def loads_for(args: argparse.Namespace, port: int, endpoint: harness.Endpoint) -> list[harness.Load]:
    """Return the saturation runs and the fixed-rate run for one endpoint on one server."""
    loads = [harness.Load(port, endpoint, c, args.duration, warmup=args.warmup, processes=args.clients) for c in args.connections]
    if args.rate:
        loads.append(harness.Load(port, endpoint, args.rate_connections, args.duration, rate=args.rate, processes=args.clients))
    return loads


def bench_server(
    args: argparse.Namespace, spec: harness.ServerSpec, dataset: harness.Dataset, log_dir: Path, round_: int
) -> list[dict[str, Any]]:
    """Start one server, run every load against it, stop it; return one row per run."""
    endpoints = {"health": harness.health_endpoint(), "customer": harness.customer_endpoint(dataset)}
    rows = []
    with harness.serving(spec, dataset, log_dir) as server:
        print(f"\n{spec.name} (round {round_}): {' '.join(spec.command(server.port))}", flush=True)
        for name in args.endpoints:
            for load in loads_for(args, server.port, endpoints[name]):
                row = {"server": spec.name, "database": dataset.dialect, "round": round_, **harness.run_load(load, server)}
                print(
                    f"  {row['endpoint']:<16} {row['mode']:<14} {row['req_per_s']:>8,.0f} req/s  p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:7.2f} ms  non-200 {row['non_200']}",
                    flush=True,
                )
                rows.append(row)
        problems = server.log_problems()
    if problems:
        print(f"  {len(problems)} problem lines in the server output, first ones:")
        for line in problems[:5]:
            print(f"    {line[:200]}")
    for row in rows:
        row["server_log_problems"] = len(problems)
    return rows


MEDIAN_FIELDS = (
    "req_per_s",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "max_ms",
    "server_cpu_us_per_req",
    "client_cpu_s",
    "machine_idle_pct",
)


def print_report(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Print the results table and the ratios against granian; return the ratios."""
    rounds = rows[0].get("rounds", 1)
    what = f"medians of {rounds} rounds" if rounds > 1 else "one round"
    print(f"\nResults ({rows[0]['database']}, {what}); {harness.MACHINE_NOTE}")
    harness.print_table(
        rows,
        [
            ("server", "server", ""),
            ("endpoint", "endpoint", ""),
            ("load", "mode", ""),
            ("req/s", "req_per_s", ",.0f"),
            ("p50 ms", "p50_ms", ".2f"),
            ("p90 ms", "p90_ms", ".2f"),
            ("p99 ms", "p99_ms", ".2f"),
            ("max ms", "max_ms", ".1f"),
            ("non-200", "non_200", ""),
            ("server CPU µs/req", "server_cpu_us_per_req", ",.0f"),
            ("client CPU s", "client_cpu_s", ".1f"),
            ("idle %", "machine_idle_pct", ".0f"),
        ],
    )
    ratios = []
    by_key = {(r["server"], r["endpoint"], r["mode"]): r for r in rows}
    base = harness.SERVERS["granian"].name
    print(f"\nRatios, {base} vs the others (req/s: higher is better for {base}; p99: lower is better)")
    for (server, endpoint, mode), row in by_key.items():
        ours = by_key.get((base, endpoint, mode))
        if server == base or not ours:
            continue
        entry = {
            "vs": server,
            "endpoint": endpoint,
            "mode": mode,
            # at a fixed rate both serve the same req/s: only the latencies compare
            "req_per_s": harness.ratio(ours["req_per_s"], row["req_per_s"]) if not row["rate"] else "-",
            "p50": harness.ratio(ours["p50_ms"], row["p50_ms"]),
            "p99": harness.ratio(ours["p99_ms"], row["p99_ms"]),
        }
        ratios.append(entry)
        print(
            f"  {base} / {server:<17} {endpoint:<16} {mode:<14} req/s {entry['req_per_s']:>6}   p50 {entry['p50']:>6}   p99 {entry['p99']:>6}"
        )
    return ratios


def main(argv: list[str] | None = None) -> None:
    """Set up the database, benchmark each server in turn, print and save the results."""
    args = parse_args(argv)
    print(f"servers.py at {harness.CODE_AT_START}: {', '.join(args.servers)}; {harness.MACHINE_NOTE}")
    print(
        f"setting up {'PostgreSQL ' + SCRATCH_DATABASE if args.database_url else 'SQLite'} with {args.customers:,} demo customers...",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    with (
        harness.scratch_database(args.database_url, name=SCRATCH_DATABASE, customers=args.customers) as dataset,
        tempfile.TemporaryDirectory(prefix="ds-bench-logs-") as log_dir,
    ):
        for round_ in range(1, args.rounds + 1):
            # ABBA order, so that drift on the shared machine does not always favour the same server
            order = args.servers if round_ % 2 else list(reversed(args.servers))
            for key in order:
                spec = dataclasses.replace(harness.SERVERS[key], workers=args.workers, threads=args.threads)
                rows += bench_server(args, spec, dataset, Path(log_dir), round_)
    summary = harness.medians(rows, key=("server", "endpoint", "mode"), fields=MEDIAN_FIELDS)
    ratios = print_report(summary)
    payload = {"args": harness.public_args(args), "summary": summary, "ratios": ratios, "rows": rows}
    path = harness.write_results(f"servers-{rows[0]['database']}", payload)
    print(f"\nwritten {path}")


if __name__ == "__main__":
    main()
