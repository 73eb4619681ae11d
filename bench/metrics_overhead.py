"""What the Prometheus metrics add to one decision, in process, with the in-memory registry and in
multiprocess mode (PROMETHEUS_MULTIPROC_DIR, as `decision-server serve` runs).

Two figures per mode, each in a child process of its own (the mode is fixed when prometheus_client
is imported):

  calls      the metric calls one POST /api/v1/decisions makes (the request histogram, the decision
             histogram, offers selected and removed, the log write, the inference histogram), --calls of them in 5 loops: µs per decision in the best loop.
  decisions  Decider.decide on a SQLite base of --customers demo customers and the demo catalog,
             --decisions per round, with the metric calls as they are and with them replaced by
             no-ops, alternating, median of --rounds rounds: µs per decision with and without; then
             "in decide": each metric call timed alone where decide makes it (caches cold from the
             decision's own work), the medians summed (the request histogram of the HTTP layer is
             not in it: add it from "calls").

Times are this process's CPU time (time.process_time), not the wall clock: on a machine shared
with other work, waiting for a core would otherwise swamp differences of a few microseconds.

    .venv/bin/python bench/metrics_overhead.py
    .venv/bin/python bench/metrics_overhead.py --decisions 5000 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100_000, help="decisions' worth of metric calls timed (default 100000)")
    parser.add_argument("--decisions", type=int, default=3000, help="decisions per round and variant (default 3000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, alternating with and without metrics (default 3)")
    parser.add_argument("--customers", type=int, default=2000, help="demo customers (default 2000)")
    parser.add_argument("--child", choices=["memory", "multiprocess"], help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def time_calls(n: int) -> float:
    """Return µs per decision for the metric calls of one decision request (the best of 5 loops: the least disturbed)."""
    from decision_server import metrics

    removed = {"offers": 3, "contact_policy": 1}
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for _ in range(n // 5):
            metrics.scored(0.00012)
            metrics.decided("app", "offer", 0.00045, selected=1, removed=removed)
            metrics.request_done("/api/v1/decisions", "POST", 201, 0.0006)
        best = min(best, (time.process_time() - started) / (n // 5) * 1e6)
    return best


def time_decisions(args: argparse.Namespace) -> dict[str, float]:
    """Return µs per decision through Decider.decide, with the metrics and with no-op metric calls."""
    from decision_server import create_app, metrics, migrate
    from decision_server.config import DEFAULT_CHANNELS, Config
    from decision_server.db import Database
    from decision_server.decisions.service import DecisionRequest
    from decision_server.demo import generator
    from decision_server.offers import service as offers

    folder = Path(tempfile.mkdtemp(prefix="metrics-bench-"))
    url = f"sqlite:///{folder / 'bench.db'}"
    database = Database(url)
    migrate.upgrade(database.engine)
    generator.load(database, generator.DemoSpec(customers=args.customers, seed=3))
    with database.session(write=True) as session:
        offers.load_demo_catalog(session, channels=DEFAULT_CHANNELS, words=offers.vocabulary(None))
    database.dispose()
    app = create_app(
        Config(
            database_url=url,
            rules_dir=REPO / "rules",
            models_dir=REPO / "models_onnx",
            log_level="WARNING",
            rules_backend="python",
            rules_poll_seconds=0,
            models_poll_seconds=0,
            catalog_poll_seconds=0,
            learning_poll_seconds=0,
        )
    )
    decider = app.extensions["decider"]
    rng = random.Random(5)
    requests = [
        DecisionRequest(f"DEMO-{rng.randint(1, args.customers):06d}", rng.choice(list(DEFAULT_CHANNELS)))
        for _ in range(args.decisions)
    ]
    real = {name: getattr(metrics, name) for name in ("decided", "scored")}
    noop = {name: (lambda *a, **k: None) for name in real}

    def run(calls: dict) -> float:
        for name, function in calls.items():
            setattr(metrics, name, function)
        started = time.process_time()
        for request in requests:
            decider.decide(request)
        return (time.process_time() - started) / len(requests) * 1e6

    run(real)  # warm caches, prepared statements, label children
    with_metrics, without = [], []
    for i in range(args.rounds):
        order = [(with_metrics, real), (without, noop)]
        for sink, calls in order if i % 2 == 0 else order[::-1]:
            sink.append(run(calls))
    # Each call timed alone where decide makes it (its caches cold from the decision's own work).
    spent: dict[str, list[float]] = {name: [] for name in real}

    def timed(name: str, function):
        def call(*a, **k):
            started = time.perf_counter()
            function(*a, **k)
            spent[name].append(time.perf_counter() - started)

        return call

    run({name: timed(name, function) for name, function in real.items()})
    in_situ = sum(statistics.median(times) for times in spent.values()) * 1e6
    return {"with": statistics.median(with_metrics), "without": statistics.median(without), "in_situ_us": in_situ}


def child(args: argparse.Namespace) -> None:
    from decision_server import metrics

    assert (metrics.multiprocess_dir() is not None) == (args.child == "multiprocess")
    print(json.dumps({"calls_us": time_calls(args.calls), **time_decisions(args)}))


def main() -> None:
    args = parse_args()
    if args.child:
        child(args)
        return
    print(
        f"metric calls of one decision request ({args.calls:,} timed) and Decider.decide ({args.decisions:,} decisions "
        f"x {args.rounds} rounds, {args.customers:,} customers, SQLite), per decision:"
    )
    print(f"  {'mode':<13} {'calls µs':>9} {'in decide µs':>13} {'decide µs with':>15} {'without':>9} {'difference':>11}")
    for mode in ("memory", "multiprocess"):
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        with tempfile.TemporaryDirectory(prefix="metrics-bench-mp-") as shared:
            if mode == "multiprocess":
                env["PROMETHEUS_MULTIPROC_DIR"] = shared
            out = subprocess.run(
                [sys.executable, __file__, "--child", mode, *sys.argv[1:]],
                env=env,
                cwd=REPO,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"  {mode:<13} {r['calls_us']:>9.2f} {r['in_situ_us']:>13.2f} {r['with']:>15.1f} {r['without']:>9.1f} "
            f"{r['with'] - r['without']:>+11.1f}"
        )


if __name__ == "__main__":
    main()
