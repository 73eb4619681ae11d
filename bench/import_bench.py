"""Benchmark `decision-server import`: a generated transactions CSV loaded through the importer,
against a baseline of the same rows written by a bare executemany INSERT with no validation.

    .venv/bin/python bench/import_bench.py                                # 1M rows, SQLite
    .venv/bin/python bench/import_bench.py --rows 200000 --backend both   # and PostgreSQL

The importer's time covers reading the CSV, checking every row, looking up customers, writing in
batches of --batch-size rows (one transaction each) and refreshing the customer state rows. The
baseline only times the INSERTs of rows prepared in memory, in transactions of the same size, into
a fresh database migrated the same way: the ratio is the price of reading and checking.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import make_url

from decision_server import migrate
from decision_server.db import UTC, Database
from decision_server.ingest import importer

DEFAULT_POSTGRES = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
PRODUCTS = [
    ("Data 10GB", "data_bundle"),
    ("Data 50GB", "data_bundle"),
    ("Top-up", "top_up"),
    ("Handset X", "device"),
    ("Roaming week", "roaming"),
    ("Music+", "subscription"),
]
CHANNELS = ["app", "web", "store", "call_centre"]
START = dt.datetime(2024, 1, 1, tzinfo=UTC)
TRANSACTION_COLUMNS = "external_id, customer_id, occurred_at, amount_cents, cost_cents, product, category, channel, ingested_at"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="transactions (default 1000000)")
    parser.add_argument("--customers", type=int, default=10_000, help="customers (default 10000)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument("--batch-size", type=int, default=20_000, help="rows per transaction (default 20000)")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES, help="server for scratch databases (created and dropped)")
    parser.add_argument(
        "--rerun", action="store_true", help="also time a second import of the same file (all rows already present)"
    )
    parser.add_argument("--seed", type=int, default=7)
    return parser.parse_args(argv)


# --- data ------------------------------------------------------------------------------------


def transaction_rows(args: argparse.Namespace) -> Iterator[tuple]:
    """Yield (external_id, customer number, occurred_at, amount_cents, cost_cents, product, category, channel)."""
    rng = random.Random(args.seed)
    span = 730 * 86_400
    for i in range(args.rows):
        product, category = rng.choice(PRODUCTS)
        amount = rng.randrange(100, 20_000)
        cost = amount * 6 // 10 if rng.random() < 0.7 else None
        when = START + dt.timedelta(seconds=rng.randrange(span))
        yield (f"TX-{i:09d}", rng.randrange(args.customers) + 1, when, amount, cost, product, category, rng.choice(CHANNELS))


def write_files(args: argparse.Namespace, directory: Path) -> tuple[Path, Path]:
    """Write customers.csv and transactions.csv in the importer's format."""
    customers, transactions = directory / "customers.csv", directory / "transactions.csv"
    with open(customers, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["external_id", "first_name", "last_name", "email", "created_at", "consent_sms", "plan"])
        for n in range(1, args.customers + 1):
            out.writerow(
                [
                    f"C{n:07d}",
                    "Ana",
                    "Øvergaard",
                    f"c{n}@example.com",
                    "2023-06-01T09:00:00Z",
                    "true" if n % 3 else "false",
                    "prepaid" if n % 2 else "postpaid",
                ]
            )
    with open(transactions, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["external_id", "customer_id", "occurred_at", "amount", "cost", "product", "category", "channel"])
        for tid, customer, when, amount, cost, product, category, channel in transaction_rows(args):
            out.writerow(
                [
                    tid,
                    f"C{customer:07d}",
                    when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    f"{amount / 100:.2f}",
                    "" if cost is None else f"{cost / 100:.2f}",
                    product,
                    category,
                    channel,
                ]
            )
    return customers, transactions


# --- databases -------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(backend: str, args: argparse.Namespace, directory: Path, name: str) -> Iterator[Database]:
    """Yield a migrated, empty database (a new SQLite file or a scratch PostgreSQL database)."""
    import psycopg

    admin = make_url(args.postgres_url).set(drivername="postgresql")
    if backend == "sqlite":
        url = f"sqlite:///{directory / (name + '.db')}"
    else:
        with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        url = admin.set(database=name).render_as_string(hide_password=False)
    database = Database(url)
    try:
        migrate.upgrade(database.engine)
        yield database
    finally:
        database.dispose()
        if backend == "postgresql":
            with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_importer(database: Database, customers: Path, transactions: Path, args: argparse.Namespace) -> dict[str, float]:
    """Import both files through importer.import_file; return the transactions' seconds."""
    report = importer.import_file(database, "customers", customers, batch_size=args.batch_size)
    print(f"    {report.summary()}")
    report = importer.import_file(database, "transactions", transactions, batch_size=args.batch_size)
    print(f"    {report.summary()}")
    assert report.new == args.rows and not report.errors, "the benchmark file must load completely"
    result = {"import": report.seconds}
    if args.rerun:
        again = importer.import_file(database, "transactions", transactions, batch_size=args.batch_size)
        print(f"    re-run: {again.summary()}")
        result["rerun"] = again.seconds
    return result


def run_baseline(database: Database, args: argparse.Namespace) -> float:
    """Insert the same transactions with a bare driver executemany, no checks; return seconds."""
    postgres = database.dialect == "postgresql"
    mark = "%s" if postgres else "?"
    now = dt.datetime.now(UTC)
    raw = database.engine.raw_connection()
    try:
        driver = raw.driver_connection
        cursor = driver.cursor()
        if not postgres:
            driver.execute("BEGIN")
        stamp = now if postgres else "2024-01-01 00:00:00.000000"
        cursor.executemany(
            f"INSERT INTO customers (external_id, consent, attributes, created_at, updated_at) VALUES ({', '.join([mark] * 5)})",
            [(f"C{n:07d}", "{}", "{}", stamp, stamp) for n in range(1, args.customers + 1)],
        )
        driver.commit()
        sql = f"INSERT INTO transactions ({TRANSACTION_COLUMNS}) VALUES ({', '.join([mark] * 9)})"
        ingested = now if postgres else now.replace(tzinfo=None).isoformat(" ", "microseconds")
        rows = transaction_rows(args)
        seconds = 0.0
        while True:
            batch = [
                (
                    tid,
                    customer,
                    when if postgres else when.replace(tzinfo=None).isoformat(" ", "microseconds"),
                    amount,
                    cost,
                    product,
                    category,
                    channel,
                    ingested,
                )
                for tid, customer, when, amount, cost, product, category, channel in _take(rows, args.batch_size)
            ]
            if not batch:
                break
            started = time.perf_counter()
            if not postgres:
                driver.execute("BEGIN")
            cursor.executemany(sql, batch)
            driver.commit()
            seconds += time.perf_counter() - started
        return seconds
    finally:
        raw.close()


def _take(rows: Iterator[tuple], n: int) -> list[tuple]:
    return [row for _, row in zip(range(n), rows, strict=True)]


def main(argv: list[str] | None = None) -> int:
    """Generate the files, then measure importer and baseline on each backend."""
    args = parse_args(argv)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    directory = Path(tempfile.mkdtemp(prefix="ds-import-bench-"))
    try:
        started = time.perf_counter()
        customers, transactions = write_files(args, directory)
        size = transactions.stat().st_size / 1e6
        print(
            f"generated {args.customers:,} customers and {args.rows:,} transactions ({size:.0f} MB) "
            f"in {time.perf_counter() - started:.1f} s; {os.cpu_count()} CPUs"
        )
        results = []
        for backend in backends:
            print(f"\n{backend}")
            with fresh_database(backend, args, directory, f"ds_bench_import_{os.getpid()}") as database:
                measured = run_importer(database, customers, transactions, args)
            with fresh_database(backend, args, directory, f"ds_bench_import_base_{os.getpid()}") as database:
                baseline = run_baseline(database, args)
            print(f"    baseline executemany: {args.rows:,} rows in {baseline:.1f} s")
            results.append((backend, measured, baseline))
        print(f"\n{'backend':<11} {'importer s':>10} {'rows/s':>9} {'baseline s':>10} {'rows/s':>9} {'ratio':>6}")
        for backend, measured, baseline in results:
            seconds = measured["import"]
            print(
                f"{backend:<11} {seconds:>10.1f} {args.rows / seconds:>9,.0f} {baseline:>10.1f} "
                f"{args.rows / baseline:>9,.0f} {seconds / baseline:>5.1f}x"
            )
            if "rerun" in measured:
                print(f"{'  re-run':<11} {measured['rerun']:>10.1f} {args.rows / measured['rerun']:>9,.0f}")
        return 0
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
