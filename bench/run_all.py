"""Run every benchmark in bench/ with modest settings (a few minutes in all) and show their output.

.venv/bin/python bench/run_all.py                  # SQLite, and PostgreSQL when it answers
.venv/bin/python bench/run_all.py --no-postgres --duration 3
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import harness
from api_latency import DEFAULT_POSTGRES

BENCH = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES,
        help="PostgreSQL server for the PostgreSQL runs (scratch databases are created and dropped)",
    )
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds measured per run (default 3)")
    parser.add_argument(
        "--rounds", type=int, default=2, help="rounds of servers.py, order reversed every other round (default 2)"
    )
    parser.add_argument("--customers", type=int, default=10_000, help="demo customers (default 10000)")
    parser.add_argument("--import-rows", type=int, default=1_000_000, help="transactions for import_bench.py (default 1000000)")
    parser.add_argument(
        "--rules-soak", type=int, default=200_000, help="durable evaluations in rules_bench.py's soak (default 200000)"
    )
    return parser.parse_args(argv)


def commands(args: argparse.Namespace, postgres: bool) -> list[list[str]]:
    """Return the benchmark command lines to run, in order."""
    common = ["--duration", str(args.duration), "--customers", str(args.customers)]
    servers = [str(BENCH / "servers.py"), *common, "--rounds", str(args.rounds)]
    runs = [servers]
    if postgres:  # /health does not touch the database: on PostgreSQL only the customer read
        runs.append([*servers, "--endpoints", "customer", "--database-url", args.postgres_url])
    databases = ["sqlite", "postgresql"] if postgres else ["sqlite"]
    runs.append([str(BENCH / "api_latency.py"), *common, "--databases", *databases, "--postgres-url", args.postgres_url])
    runs.append(
        [
            str(BENCH / "import_bench.py"),
            "--rows",
            str(args.import_rows),
            "--customers",
            str(args.customers),
            "--backend",
            "both" if postgres else "sqlite",
            "--postgres-url",
            args.postgres_url,
        ]
    )
    runs.append([str(BENCH / "rules_bench.py"), "--rounds", "1", "--soak", str(args.rules_soak)])  # no database
    runs.append([str(BENCH / "scoring_bench.py"), "--customers", str(args.customers)])  # its own SQLite
    runs.append(
        [
            str(BENCH / "analytics_bench.py"),
            "--customers",
            str(args.customers),
            "--databases",
            *databases,
            "--postgres-url",
            args.postgres_url,
        ]
    )
    runs.append([str(BENCH / "decision_load.py"), "--duration", str(args.duration), "--customers", str(args.customers)])
    if postgres:
        runs.append(
            [
                str(BENCH / "decision_load.py"),
                "--duration",
                str(args.duration),
                "--customers",
                str(args.customers),
                "--database-url",
                args.postgres_url,
            ]
        )
    runs.append([str(BENCH / "decision_simulation.py")])  # its own SQLite; adaptive vs rules-only vs random vs oracle
    runs.append([str(BENCH / "loyalty_bench.py"), "--quick", "--databases", *databases, "--postgres-url", args.postgres_url])
    return runs


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks one after the other; return non-zero when any failed."""
    args = parse_args(argv)
    postgres = not args.no_postgres and harness.postgres_reachable(args.postgres_url)
    failed = 0
    for command in commands(args, postgres):
        shown = [harness.mask_password(part) for part in command[1:]]
        print(f"\n=== {Path(command[0]).name} {' '.join(shown)}", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, *command])
        print(f"=== exit {code} after {time.monotonic() - started:.0f} s", flush=True)
        failed += code != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
