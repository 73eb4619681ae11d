"""HTTP load test of POST /api/v1/decisions on granian, side by side with the same server's /health.

One fresh database (SQLite in a temp dir, or a scratch PostgreSQL database with --database-url)
gets --customers demo customers, the demo catalog of 8 offers, the five models trained on the
demo data into a temp models folder (--no-train: every model serves its fallback rule) and the
bulk analytics (RFM, stages, value, journeys, segments), so that decisions see real profiles,
scores and offers. Then, for each rules backend (RULES_BACKEND=durable and python), granian
serves the app (2 workers, as `decision-server serve` does) and client processes holding
persistent HTTP/1.1 connections measure:

  /health           saturation (closed loop, --connections levels) and a fixed --rate (open loop)
  POST /decisions   the same: saturation and the fixed rate, every feature on (learning, contact
                    policy, arbitration, logging), the log written on every request

Decisions go to random demo customers (DEMO-000001 ...) with --unknown-share of unknown ids (the
prospect path), on app / call_centre / sms at random, intent mostly browse (also upgrade, cancel,
complaint, billing), one action, with a key of role channel. Every response must be 201; any
other status or a connection error is counted and shown. The server-side time comes from each
response's `Server-Timing: decision;dur=<ms>` header (the whole view: decide, log write, JSON).
The decision rows written are counted around every run and per server: they must equal the 201s
sent (priming and warm-up requests included); the share of decisions that made an action is
shown. Before each decision run the decision log and learning counters are emptied (--keep-log
keeps them), so that every run starts from the same contact history: otherwise the contact
policy soon holds back every offer for most of the 10k customers, and decisions without an
action are cheaper. Last, unless --samples 0, each backend's decision is timed in process (a
forked child, no HTTP: `Decider.decide` alone, the whole POST through Flask's test client and
its Server-Timing); --profile adds a cProfile of `Decider.decide`. Other processes' share of
the CPU during each run is shown, since they disturb the figures. The goals table applies the
issue's targets; the exit status is 1 when an answer was not 201 or a 201 was not logged.

    .venv/bin/python bench/decision_load.py                              # SQLite, about 6 minutes
    .venv/bin/python bench/decision_load.py --database-url postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/decision_load.py --backends python --no-train --duration 5 --profile
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import http.client
import io
import json
import multiprocessing
import os
import pstats
import random
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import harness

SCRATCH_DATABASE = "ds_bench_decisions"
CHANNELS = ("app", "call_centre", "sms")
# Mostly browsing; the others make arbitration (context weights) and offer rules fire.
INTENTS = ("browse",) * 6 + ("upgrade", "cancel", "complaint", "billing")
DEMO_ID = "DEMO-{:06d}"  # decision_server.demo.generator.external_customer_id; checked in prepare()
RATE_MODE = "rate {:g}/s"
GOALS = {"throughput": 1000.0, "p99_ms": 10.0, "server_p50_ms": 0.5}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--database-url",
        help=f"PostgreSQL server to use (a scratch database {SCRATCH_DATABASE} is created and dropped); default: SQLite in a temp dir",
    )
    parser.add_argument(
        "--synchronous-commit",
        choices=["on", "off"],
        default="on",
        help="PostgreSQL only: the servers' synchronous_commit (default on, PostgreSQL's default: every commit waits for the WAL flush; off is the durability SQLite's WAL + synchronous=NORMAL gives)",
    )
    parser.add_argument("--customers", type=int, default=10_000, help="demo customers to load (default 10000)")
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=["durable", "python"],
        default=["durable", "python"],
        help="RULES_BACKEND values to serve with, one server each (default: both)",
    )
    parser.add_argument(
        "--no-train",
        action="store_true",
        help="do not train the models: every model serves its fallback rule (saves ~20 s at 10k customers)",
    )
    parser.add_argument(
        "--no-analytics", action="store_true", help="skip the bulk analytics (customers then have no stage or value segment)"
    )
    parser.add_argument("--workers", type=int, default=2, help="granian worker processes (default 2)")
    parser.add_argument("--threads", type=int, default=4, help="granian blocking threads per worker (default 4)")
    parser.add_argument(
        "--connections",
        type=int,
        nargs="+",
        default=[2, 8, 32],
        help="saturation concurrency levels, closed loop (default 2 8 32); the best req/s is the saturation figure",
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
        "--keep-log",
        action="store_true",
        help="do not empty the decision log and learning counters before each decision run (they then accumulate: most customers soon hit the contact policy's limits)",
    )
    parser.add_argument(
        "--unknown-share",
        type=float,
        default=0.02,
        help="share of decisions for unknown customer ids, the prospect path (default 0.02)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="rounds over the backends, order reversed every other round; the tables show medians (default 1)",
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=2000,
        help="sequential decisions per in-process measurement after the HTTP runs (default 2000; 0 to skip)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="also cProfile Decider.decide in process and print the top functions"
    )
    return parser.parse_args(argv)


# --- requests ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DecisionEndpoint(harness.Endpoint):
    """POST /api/v1/decisions for a random demo customer (or an unknown id), channel and intent."""

    unknown_share: float = 0.02

    def next_request(self, rng: random.Random) -> tuple[str, str, bytes | None]:
        """Return the method, path and JSON body of the next decision request."""
        return "POST", self.path, json.dumps(decision_body(rng, self.customers, self.unknown_share)).encode()

    def headers(self) -> dict[str, str]:
        """Return the bearer key and the JSON content type."""
        return {**super().headers(), "Content-Type": "application/json"}


def decision_body(rng: random.Random, customers: int, unknown_share: float) -> dict[str, Any]:
    """Return one decision request: a random demo customer or unknown id, channel and intent."""
    if rng.random() < unknown_share:
        customer = f"BENCH-NEW-{rng.getrandbits(40):010x}"  # never loaded: the prospect path
    else:
        customer = DEMO_ID.format(rng.randint(1, customers))
    return {"customer_id": customer, "channel": rng.choice(CHANNELS), "context": {"intent": rng.choice(INTENTS)}, "actions": 1}


def decision_endpoint(dataset: harness.Dataset, key: str, unknown_share: float) -> DecisionEndpoint:
    """Return the decision endpoint with a channel key, Server-Timing collected, 201 as success."""
    return DecisionEndpoint(
        "POST /decisions",
        "/api/v1/decisions",
        dataset.customers,
        key,
        ok_status=201,
        server_timing="decision",
        unknown_share=unknown_share,
    )


# --- set-up ------------------------------------------------------------------------------------


def prepare(args: argparse.Namespace, dataset: harness.Dataset, models_dir: Path) -> dict[str, Any]:
    """Add the demo catalog, a channel key, trained models and the analytics; return what was done."""
    from decision_server.auth import service as keys
    from decision_server.cli import Context
    from decision_server.config import DEFAULT_CHANNELS, Config
    from decision_server.db import Database
    from decision_server.demo import generator
    from decision_server.offers import service as offers

    assert generator.external_customer_id(7) == DEMO_ID.format(7), "the demo id format changed"
    database = Database(dataset.url)
    done: dict[str, Any] = {}
    try:
        with database.session(write=True) as session:
            done["offers_added"] = offers.load_demo_catalog(session, channels=DEFAULT_CHANNELS, words=offers.vocabulary(None))
            done["channel_key"] = keys.create_key(session, name="bench-channel", role="channel").secret
        print(f"  demo catalog: {done['offers_added']} offers added", flush=True)
        if not args.no_train:
            from decision_server.scoring import training

            started = time.perf_counter()
            results = training.train(database, models_dir, seed=1)
            done["trained"] = {r.name: (r.error or "ok") for r in results}
            print(f"  models trained in {time.perf_counter() - started:.1f} s: {done['trained']}", flush=True)
        if not args.no_analytics:
            from decision_server.jobs.commands import run_all

            started = time.perf_counter()
            config = Config.from_env({}, database_url=dataset.url, rules_dir=harness.REPO / "rules", models_dir=models_dir)
            context = Context(config)
            context._database = database  # reuse the open engine
            run_all(context, echo=lambda line: print(f"  {line.strip()}", flush=True))
            print(f"  analytics in {time.perf_counter() - started:.1f} s", flush=True)
        harness._settle(database)  # the harness's own post-load maintenance
    finally:
        database.dispose()
    return done


LOG_TABLES = ("decision_responses", "decision_actions", "decisions", "offer_learning")  # children first


def log_counts(url: str) -> tuple[int, int]:
    """Return the number of decisions and of decision actions in the log."""
    from decision_server.db import Database

    database = Database(url)
    try:
        with database.engine.connect() as conn:
            decisions = conn.exec_driver_sql("SELECT count(*) FROM decisions").scalar_one()
            actions = conn.exec_driver_sql("SELECT count(*) FROM decision_actions").scalar_one()
            return decisions, actions
    finally:
        database.dispose()


def reset_log(url: str) -> None:
    """Empty the decision log and the learning counters, so that every measurement starts from the same state.

    Without it, each run's decisions count against the next run's contact policy (cool-down,
    channel and offer limits): on 10k customers most decisions soon find every offer held back
    and answer with no action, which is cheaper (no action row, no learning update, no rendering).
    """
    from decision_server.db import Database

    database = Database(url)
    try:
        with database.connection(write=True) as conn:
            for table in LOG_TABLES:
                conn.exec_driver_sql(f"DELETE FROM {table}")
        harness._settle(database)  # checkpoint the WAL (SQLite) / VACUUM ANALYZE (PostgreSQL)
    finally:
        database.dispose()


def server_env(backend: str, models_dir: Path, database_url: str) -> dict[str, str]:
    """Return the settings a decision server gets on top of the harness's."""
    return {
        "RULES_BACKEND": backend,
        "MODELS_DIR": str(models_dir),
        "RULES_DIR": str(harness.REPO / "rules"),
        "DATABASE_URL": database_url,
    }


def database_label(args: argparse.Namespace, dataset: harness.Dataset) -> str:
    """Return the database's name in tables: its dialect, and the commit setting when it is not the default."""
    return dataset.dialect + (" sync off" if dataset.dialect == "postgresql" and args.synchronous_commit == "off" else "")


def serving_url(args: argparse.Namespace, dataset: harness.Dataset) -> str:
    """Return the database URL the servers get: the dataset's, with synchronous_commit=off when asked (PostgreSQL)."""
    if dataset.dialect != "postgresql" or args.synchronous_commit == "on":
        return dataset.url
    from sqlalchemy.engine import make_url

    url = make_url(dataset.url)
    return url.update_query_dict({"options": "-c synchronous_commit=off"}).render_as_string(hide_password=False)


def get_json(port: int, path: str) -> tuple[int, dict[str, Any]]:
    """GET a path once; return the status and the JSON body."""
    conn = http.client.HTTPConnection(harness.HOST, port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def sanity_check(port: int, endpoint: DecisionEndpoint) -> tuple[Counter[str], list[str]]:
    """Send a known and an unknown customer's decision; return the statuses and any problem found."""
    problems, statuses = [], Counter()
    for body in (
        {"customer_id": DEMO_ID.format(1), "channel": "app", "context": {"intent": "browse"}, "actions": 1},
        {"customer_id": "BENCH-SANITY", "channel": "sms", "context": {"intent": "browse"}, "actions": 1},
    ):
        conn = http.client.HTTPConnection(harness.HOST, port, timeout=10)
        try:
            conn.request("POST", endpoint.path, body=json.dumps(body), headers=endpoint.headers())
            response = conn.getresponse()
            answer = json.loads(response.read() or b"{}")
        finally:
            conn.close()
        statuses[str(response.status)] += 1
        if response.status != 201:
            problems.append(f"{body['customer_id']}: status {response.status}: {str(answer)[:300]}")
            continue
        if harness.server_timing_ms(response.getheader("Server-Timing"), "decision") is None:
            problems.append(f"{body['customer_id']}: no Server-Timing decision;dur in {response.getheader('Server-Timing')!r}")
        if answer.get("prospect") != (body["customer_id"] == "BENCH-SANITY") or "decision_id" not in answer:
            problems.append(f"{body['customer_id']}: unexpected answer {str(answer)[:300]}")
    return statuses, problems


# --- one server ----------------------------------------------------------------------------------


def loads_for(args: argparse.Namespace, port: int, endpoint: harness.Endpoint) -> list[harness.Load]:
    """Return the saturation runs and the fixed-rate run for one endpoint."""
    loads = [harness.Load(port, endpoint, c, args.duration, warmup=args.warmup, processes=args.clients) for c in args.connections]
    if args.rate:
        loads.append(harness.Load(port, endpoint, args.rate_connections, args.duration, rate=args.rate, processes=args.clients))
    return loads


def bench_backend(
    args: argparse.Namespace, dataset: harness.Dataset, key: str, models_dir: Path, backend: str, log_dir: Path, round_: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Serve with one rules backend, run every load, stop; return one row per run and the server's check."""
    spec = harness.ServerSpec("granian", "granian", workers=args.workers, threads=args.threads)
    decisions = decision_endpoint(dataset, key, args.unknown_share)
    rows: list[dict[str, Any]] = []
    sent: Counter[str] = Counter()
    logged = 0
    with harness.serving(spec, dataset, log_dir, server_env(backend, models_dir, serving_url(args, dataset))) as server:
        print(
            f"\n{backend} backend, {database_label(args, dataset)} (round {round_}): {' '.join(spec.command(server.port))}",
            flush=True,
        )
        status, ready = get_json(server.port, "/ready")
        fallbacks = sorted(name for name, m in (ready.get("models") or {}).items() if m.get("fallback"))
        print(
            f"  /ready {status}: rules {ready.get('rules', {}).get('revision')}, models falling back: {', '.join(fallbacks) or 'none'}",
            flush=True,
        )
        before = log_counts(dataset.url)[0]
        statuses, problems = sanity_check(server.port, decisions)
        sent.update(statuses)
        for problem in problems:
            print(f"  SANITY CHECK: {problem}", flush=True)
        # a short discarded burst: pools, caches and both workers warm before anything counts
        burst = harness.run_load(harness.Load(server.port, decisions, 8, 2.0, processes=args.clients))
        sent.update(burst["sent_statuses"])
        logged += log_counts(dataset.url)[0] - before
        for endpoint in (harness.health_endpoint(), decisions):
            for load in loads_for(args, server.port, endpoint):
                if endpoint is decisions and not args.keep_log:
                    reset_log(dataset.url)
                counts = log_counts(dataset.url)
                database_cpu = postgres_cpu_seconds(SCRATCH_DATABASE) if dataset.dialect == "postgresql" else None
                row = {
                    "backend": backend,
                    "database": database_label(args, dataset),
                    "round": round_,
                    **harness.run_load(load, server),
                }
                if database_cpu is not None:
                    row["database_cpu_s"] = postgres_cpu_seconds(SCRATCH_DATABASE) - database_cpu
                    row["database_cpu_us_per_req"] = row["database_cpu_s"] / max(sum(row["sent_statuses"].values()), 1) * 1e6
                row["others_cpu_pct"] = others_cpu_pct(row)
                if endpoint is decisions:
                    written, actions = (now - then for now, then in zip(log_counts(dataset.url), counts, strict=True))
                    row["logged"], row["with_action_pct"] = written, 100 * actions / written if written else None
                    row["not_logged"] = row["sent_statuses"].get("201", 0) - written
                    sent.update(row["sent_statuses"])
                    logged += written
                rows.append(row)
                print(
                    f"  {row['endpoint']:<16} {row['mode']:<13} {row['req_per_s']:>7,.0f} req/s  p50 {row['p50_ms']:6.2f} ms  "
                    f"p99 {row['p99_ms']:7.2f} ms{decision_part(row)}  errors {row['non_200']}  others' CPU {row['others_cpu_pct']:.0f} %",
                    flush=True,
                )
        log_problems = server.log_problems()
    check = {
        "backend": backend,
        "database": database_label(args, dataset),
        "round": round_,
        "models_fallback": fallbacks,
        "rules_revision": ready.get("rules", {}).get("revision"),
        "sanity_problems": problems,
        "sent_201": sent.get("201", 0),
        "sent_other": {k: v for k, v in sent.items() if k != "201"},
        "rows_written": logged,
        "server_log_problems": log_problems[:20],
    }
    check["dropped"] = check["sent_201"] - check["rows_written"]
    verdict = "OK" if check["dropped"] == 0 else "MISMATCH"
    print(
        f"  decision log: {check['rows_written']:,} rows written for {check['sent_201']:,} answers 201 ({verdict}); "
        f"other answers: {check['sent_other'] or 'none'}",
        flush=True,
    )
    if log_problems:
        print(f"  {len(log_problems)} problem lines in the server output, first ones:")
        for line in log_problems[:5]:
            print(f"    {line[:200]}")
    return rows, check


def decision_part(row: dict[str, Any]) -> str:
    """Return the decision-only part of a progress line: server time, logged rows, share with an action."""
    if row.get("server_p50_ms") is None:
        return ""
    lost = f", {row['not_logged']} NOT LOGGED" if row["not_logged"] else ""
    return (
        f"  server p50 {row['server_p50_ms']:5.2f} p99 {row['server_p99_ms']:6.2f} ms  "
        f"{row['logged']:,} logged{lost}, {row['with_action_pct']:.0f} % with an action"
    )


def postgres_cpu_seconds(database: str) -> float:
    """Return the user+system CPU seconds of the live PostgreSQL backends connected to `database`."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            # a backend's title: "postgres: 15/main: user database host(port) state"
            if f" {database} " not in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def others_cpu_pct(row: dict[str, Any]) -> float:
    """Return the share of the machine's CPU used during a run by processes other than ours.

    Ours: the server, the clients and, on PostgreSQL, the backends serving the scratch database
    (the database's shared background processes count as others').
    """
    busy, idle_pct = row["machine_busy_s"], row["machine_idle_pct"] or 0.0
    total = busy / (1 - idle_pct / 100) if idle_pct < 100 else 0.0
    others = busy - (row["server_cpu_s"] or 0.0) - row["client_cpu_s"] - row.get("database_cpu_s", 0.0)
    return max(0.0, 100 * others / total) if total else 0.0


# --- in process ----------------------------------------------------------------------------------


def in_process(
    args: argparse.Namespace, dataset: harness.Dataset, key: str, models_dir: Path, backend: str
) -> list[dict[str, Any]]:
    """Time decisions in a forked child (no HTTP, nothing left behind in this process)."""
    if not args.keep_log:
        reset_log(dataset.url)
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        return pool.apply(_in_process_child, (args, dataset, key, models_dir, backend))


def _in_process_child(
    args: argparse.Namespace, dataset: harness.Dataset, key: str, models_dir: Path, backend: str
) -> list[dict[str, Any]]:
    from decision_server.app import create_app
    from decision_server.config import Config
    from decision_server.decisions.service import DecisionRequest

    config = Config.from_env(
        {},
        database_url=serving_url(args, dataset),
        rules_dir=harness.REPO / "rules",
        models_dir=models_dir,
        log_level="WARNING",
        rules_backend=backend,
    )
    app = create_app(config)
    decider = app.extensions["decider"]
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    rng = random.Random(11)

    def decide() -> None:
        body = decision_body(rng, dataset.customers, args.unknown_share)
        decider.decide(DecisionRequest(body["customer_id"], body["channel"], body["context"], body["actions"]))

    views: list[float] = []

    def post() -> None:
        response = client.post(
            "/api/v1/decisions", json=decision_body(rng, dataset.customers, args.unknown_share), headers=headers
        )
        assert response.status_code == 201, (response.status_code, response.data[:300])
        view_ms = harness.server_timing_ms(response.headers.get("Server-Timing"), "decision")
        if view_ms is not None:  # a missing header shows as fewer requests in the table
            views.append(view_ms / 1e3)

    rows = []
    try:
        for name, call in (("Decider.decide", decide), ("POST via Flask test client", post)):
            for _ in range(max(args.samples // 10, 50)):  # warm caches, pools, prepared statements
                call()
            latencies = []
            for _ in range(args.samples):
                began = time.perf_counter()
                call()
                latencies.append(time.perf_counter() - began)
            latencies.sort()
            rows.append(
                {
                    "backend": backend,
                    "database": database_label(args, dataset),
                    "measurement": f"{name} (in process)",
                    "requests": args.samples,
                    **harness.latency_summary(latencies),
                }
            )
        measured = sorted(views[-args.samples :])
        rows.append(
            {
                "backend": backend,
                "database": database_label(args, dataset),
                "measurement": "  its Server-Timing (the view)",
                "requests": len(measured),
                **harness.latency_summary(measured),
            }
        )
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(args.samples):
                decide()
            profiler.disable()
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            print(f"\n  cProfile of {args.samples} Decider.decide calls, {backend} backend, {dataset.dialect}:")
            stats.sort_stats("cumulative").print_stats(30)
            stats.sort_stats("tottime").print_stats(25)
            print(out.getvalue(), flush=True)
    finally:
        for name in ("rulebook", "models", "catalog"):
            app.extensions[name].stop()
        decider.learning.stop()
        app.extensions["database"].dispose()
    return rows


# --- report --------------------------------------------------------------------------------------


MEDIAN_FIELDS = (
    "req_per_s",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "max_ms",
    "server_p50_ms",
    "server_p90_ms",
    "server_p99_ms",
    "server_max_ms",
    "with_action_pct",
    "server_cpu_us_per_req",
    "database_cpu_us_per_req",
    "client_cpu_s",
    "machine_idle_pct",
    "others_cpu_pct",
)


def summarize(rows: list[dict[str, Any]], rate: float) -> list[dict[str, Any]]:
    """Return one line per backend and endpoint: saturation, fixed rate, server time, ratio to /health."""
    at_rate = RATE_MODE.format(rate)
    lines = []
    for backend in dict.fromkeys(r["backend"] for r in rows):
        mine = [r for r in rows if r["backend"] == backend]
        health_best = max((r["req_per_s"] for r in mine if r["endpoint"] == "/health" and not r["rate"]), default=None)
        for endpoint in dict.fromkeys(r["endpoint"] for r in mine):
            runs = [r for r in mine if r["endpoint"] == endpoint]
            saturation = [r for r in runs if not r["rate"]]
            best = max(saturation, key=lambda r: r["req_per_s"]) if saturation else {}
            fixed = next((r for r in runs if r["mode"] == at_rate), {})
            errors = sum(sum(r["errors"].values()) for r in runs)
            lines.append(
                {
                    "endpoint": endpoint,
                    "backend": backend,
                    "database": runs[0]["database"],
                    "sat_req_per_s": best.get("req_per_s"),
                    "sat_connections": best.get("connections"),
                    "sat_p99_ms": best.get("p99_ms"),
                    "sat_server_p50_ms": best.get("server_p50_ms"),
                    "rate_p50_ms": fixed.get("p50_ms"),
                    "rate_p99_ms": fixed.get("p99_ms"),
                    "rate_server_p50_ms": fixed.get("server_p50_ms"),
                    "rate_server_p99_ms": fixed.get("server_p99_ms"),
                    # at saturation: at the fixed rate the pollers' and idle workers' CPU weighs on every request
                    "sat_cpu_us_per_req": best.get("server_cpu_us_per_req"),
                    "sat_db_cpu_us_per_req": best.get("database_cpu_us_per_req"),
                    "rate_with_action_pct": fixed.get("with_action_pct"),
                    "vs_health": harness.ratio(best.get("req_per_s"), health_best) if endpoint != "/health" else "1.00x",
                    "errors": errors,
                }
            )
    return lines


def goals(summary: list[dict[str, Any]], checks: list[dict[str, Any]], rate: float) -> list[dict[str, Any]]:
    """Return the issue's goals for each backend's decisions, with PASS or FAIL."""
    out = []
    for line in summary:
        if line["endpoint"] == "/health":
            continue
        backend, database = line["backend"], line["database"]
        mine = [c for c in checks if c["backend"] == backend]
        sent = sum(c["sent_201"] for c in mine)
        dropped = sum(c["dropped"] for c in mine)
        others = sum(sum(c["sent_other"].values()) for c in mine)
        for goal, measured, passed in (
            (
                f"≥ {GOALS['throughput']:,.0f} decisions/s at saturation",
                line["sat_req_per_s"],
                line["sat_req_per_s"] is not None and line["sat_req_per_s"] >= GOALS["throughput"],
            ),
            (
                f"p99 ≤ {GOALS['p99_ms']:g} ms at {rate:g} req/s",
                line["rate_p99_ms"],
                line["rate_p99_ms"] is not None and line["rate_p99_ms"] <= GOALS["p99_ms"],
            ),
            (
                f"server-side p50 ≤ {GOALS['server_p50_ms']:g} ms at {rate:g} req/s",
                line["rate_server_p50_ms"],
                line["rate_server_p50_ms"] is not None and line["rate_server_p50_ms"] <= GOALS["server_p50_ms"],
            ),
            ("every answer 201 and logged", f"{others} other, {dropped} not logged of {sent:,}", others == 0 and dropped == 0),
        ):
            shown = measured if isinstance(measured, str) else harness.fmt(measured, ",.0f" if "decisions/s" in goal else ".2f")
            out.append(
                {
                    "database": database,
                    "backend": backend,
                    "goal": goal,
                    "measured": shown,
                    "result": "PASS" if passed else "FAIL",
                }
            )
    return out


def print_report(
    rows: list[dict[str, Any]],
    summary: list[dict[str, Any]],
    goal_rows: list[dict[str, Any]],
    in_process_rows: list[dict[str, Any]],
    rate: float,
) -> None:
    """Print every run, the summary, the in-process figures and the goals."""
    rounds = rows[0].get("rounds", 1)
    what = f"medians of {rounds} rounds" if rounds > 1 else "one round"
    print(f"\nAll runs ({rows[0]['database']}, granian, {what}); {harness.MACHINE_NOTE}")
    harness.print_table(
        rows,
        [
            ("backend", "backend", ""),
            ("endpoint", "endpoint", ""),
            ("load", "mode", ""),
            ("req/s", "req_per_s", ",.0f"),
            ("p50 ms", "p50_ms", ".2f"),
            ("p90 ms", "p90_ms", ".2f"),
            ("p99 ms", "p99_ms", ".2f"),
            ("max ms", "max_ms", ".1f"),
            ("server p50", "server_p50_ms", ".2f"),
            ("server p99", "server_p99_ms", ".2f"),
            ("errors", "non_200", ""),
            ("action %", "with_action_pct", ".0f"),
            ("server CPU µs/req", "server_cpu_us_per_req", ",.0f"),
            *([("db CPU µs/req", "database_cpu_us_per_req", ",.0f")] if rows[0]["database"].startswith("postgresql") else []),
            ("client CPU s", "client_cpu_s", ".1f"),
            ("idle %", "machine_idle_pct", ".0f"),
            ("others' CPU %", "others_cpu_pct", ".0f"),
        ],
    )
    print(
        f"\nSummary: saturation = best req/s over the concurrency levels; latencies at {rate:g} req/s (open loop, from the "
        "scheduled send); server = Server-Timing (the view: decide + log write + JSON); ratio = req/s vs the same server's /health"
    )
    harness.print_table(
        summary,
        [
            ("endpoint", "endpoint", ""),
            ("backend", "backend", ""),
            ("database", "database", ""),
            ("sat req/s", "sat_req_per_s", ",.0f"),
            ("at conns", "sat_connections", ""),
            (f"p50 @{rate:g}", "rate_p50_ms", ".2f"),
            (f"p99 @{rate:g}", "rate_p99_ms", ".2f"),
            ("server p50", "rate_server_p50_ms", ".3f"),
            ("server p99", "rate_server_p99_ms", ".3f"),
            ("server p50 @sat", "sat_server_p50_ms", ".3f"),
            ("CPU µs/req @sat", "sat_cpu_us_per_req", ",.0f"),
            *(
                [("db CPU µs/req @sat", "sat_db_cpu_us_per_req", ",.0f")]
                if summary[0]["database"].startswith("postgresql")
                else []
            ),
            ("action % @rate", "rate_with_action_pct", ".0f"),
            ("vs /health", "vs_health", ""),
            ("errors", "errors", ""),
        ],
    )
    if in_process_rows:
        print("\nIn process, sequential, no HTTP (a forked child; the log written on every decision)")
        harness.print_table(
            in_process_rows,
            [
                ("backend", "backend", ""),
                ("database", "database", ""),
                ("measurement", "measurement", ""),
                ("calls", "requests", ","),
                ("p50 ms", "p50_ms", ".3f"),
                ("p90 ms", "p90_ms", ".3f"),
                ("p99 ms", "p99_ms", ".3f"),
                ("max ms", "max_ms", ".1f"),
            ],
        )
    print("\nGoals (the issue's, applied to every database)")
    harness.print_table(
        goal_rows,
        [
            ("database", "database", ""),
            ("backend", "backend", ""),
            ("goal", "goal", ""),
            ("measured", "measured", ""),
            ("result", "result", ""),
        ],
    )


def main(argv: list[str] | None = None) -> int:
    """Set up the database, serve each backend in turn, print and save the results; 1 if any answer was lost."""
    args = parse_args(argv)
    label = "PostgreSQL " + SCRATCH_DATABASE if args.database_url else "SQLite"
    print(f"decision_load.py at {harness.CODE_AT_START}: backends {', '.join(args.backends)}; {harness.MACHINE_NOTE}")
    print(f"setting up {label} with {args.customers:,} demo customers...", flush=True)
    rows: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    in_process_rows: list[dict[str, Any]] = []
    with (
        harness.scratch_database(args.database_url, name=SCRATCH_DATABASE, customers=args.customers) as dataset,
        tempfile.TemporaryDirectory(prefix="ds-bench-logs-") as log_dir,
        tempfile.TemporaryDirectory(prefix="ds-bench-models-") as models_tmp,
    ):
        models_dir = Path(models_tmp)
        setup = prepare(args, dataset, models_dir)
        key = setup.pop("channel_key")
        for round_ in range(1, args.rounds + 1):
            order = args.backends if round_ % 2 else list(reversed(args.backends))
            for backend in order:
                new_rows, check = bench_backend(args, dataset, key, models_dir, backend, Path(log_dir), round_)
                rows += new_rows
                checks.append(check)
        if args.samples:
            for backend in args.backends:
                in_process_rows += in_process(args, dataset, key, models_dir, backend)
    merged = harness.medians(rows, key=("backend", "endpoint", "mode"), fields=MEDIAN_FIELDS)
    summary = summarize(merged, args.rate)
    goal_rows = goals(summary, checks, args.rate)
    print_report(merged, summary, goal_rows, in_process_rows, args.rate)
    payload = {
        "args": harness.public_args(args),
        "setup": setup,
        "summary": summary,
        "goals": goal_rows,
        "checks": checks,
        "in_process": in_process_rows,
        "runs": merged,
        "rows": rows,
    }
    path = harness.write_results(f"decision-load-{database_label(args, dataset).replace(' ', '-')}", payload)
    print(f"\nwritten {path}")
    lost = any(c["dropped"] or c["sent_other"] or c["sanity_problems"] for c in checks)
    return 1 if lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
