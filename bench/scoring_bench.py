"""Scoring benchmark: our serving path against raw onnxruntime (the floor) and scikit-learn.

Builds a scratch SQLite database of demo customers, trains the five models with our pipeline
(keeping the fitted scikit-learn pipelines in memory), then, in one process and one run:

- single customer: every call timed alone (perf_counter_ns, gc off, warmed up) over real feature
  rows read from the state rows, for
    ours          ModelSet.score(x): one merged-graph call plus the scores dict
    raw merged    session.run on the same merged graph (the floor for ours)
    raw 5         five sessions, one per model file, run one after the other
    scikit-learn  the five fitted pipelines' predict / predict_proba on the same row
    features      reading the customer + state row and computing the features (context)
- batch: ModelSet.score_batch over --rows rows (real rows tiled) in chunks of --batch, against raw
  session.run on the same merged graph and chunks.

    .venv/bin/python bench/scoring_bench.py                 # 10k customers, 1M rows
    .venv/bin/python bench/scoring_bench.py --customers 3000 --rows 200000 --calls 5000
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

import harness
import numpy as np

from decision_server import migrate
from decision_server.db import Database, utcnow
from decision_server.demo import generator
from decision_server.features import online
from decision_server.scoring import training
from decision_server.scoring.onnx_io import INPUT, make_session, score_output
from decision_server.scoring.serving import ModelSet
from decision_server.scoring.specs import MODELS

GOALS = {"overhead": 1.3, "p50_us": 150.0, "batch_1m_s": 30.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=10_000, help="demo customers to train on and score (default 10000)")
    parser.add_argument("--calls", type=int, default=20_000, help="timed single-customer calls per contender (default 20000)")
    parser.add_argument("--sklearn-calls", type=int, default=1_000, help="timed scikit-learn calls (slow; default 1000)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows scored in the batch part (default 1000000)")
    parser.add_argument("--batch", type=int, default=100_000, help="rows per onnxruntime call in the batch part (default 100000)")
    parser.add_argument("--seed", type=int, default=42, help="demo data and training seed (default 42)")
    return parser.parse_args(argv)


def timed(fn, inputs: list, calls: int) -> list[float]:
    """Time each call alone, in microseconds (clock overhead subtracted), sorted."""
    for x in inputs[:200]:
        fn(x)
    overhead = min(_clock_overhead() for _ in range(5))
    laps = []
    gc.disable()
    try:
        for i in range(calls):
            x = inputs[i % len(inputs)]
            t0 = time.perf_counter_ns()
            fn(x)
            laps.append((time.perf_counter_ns() - t0 - overhead) / 1e3)
    finally:
        gc.enable()
    return sorted(laps)


def _clock_overhead() -> int:
    t0 = time.perf_counter_ns()
    t1 = time.perf_counter_ns()
    return t1 - t0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    print(f"scoring bench: {args.customers:,} demo customers, seed {args.seed}, code {harness.CODE_AT_START}")
    with tempfile.TemporaryDirectory(prefix="scoring-bench-") as tmp:
        database = Database(f"sqlite:///{Path(tmp) / 'bench.db'}")
        migrate.upgrade(database.engine)
        t0 = time.perf_counter()
        generator.load(database, generator.DemoSpec(customers=args.customers, seed=args.seed))
        print(f"  demo data loaded in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        results = training.train(database, Path(tmp) / "models", seed=args.seed)
        train_s = time.perf_counter() - t0
        print(f"  trained {len(results)} models in {train_s:.1f} s")
        failed = [r for r in results if r.error]
        if failed:
            print("  not trained: " + "; ".join(f"{r.name}: {r.error}" for r in failed))
            return 1
        pipelines = {r.name: r.pipeline for r in results}
        models = ModelSet(Path(tmp) / "models")
        now = utcnow()
        with database.connection() as conn:
            ids = [row[0] for row in conn.exec_driver_sql("SELECT id FROM customers ORDER BY id LIMIT 2000")]
            rows = [online.read(conn, customer_id=cid, as_of=now).values for cid in ids]
            feature_laps = timed(lambda cid: online.read(conn, customer_id=cid, as_of=now), ids, min(args.calls, 5000))
        single = single_part(models, pipelines, rows, args, Path(tmp) / "models")
        single.append({"what": "features (state row read + derive)", **_stats(feature_laps)})
        batch = batch_part(models, np.vstack(rows), args)
        database.dispose()

    print(f"\n== single customer, all five models ({args.calls:,} calls; scikit-learn {args.sklearn_calls:,})")
    floor = next(r for r in single if r["what"] == "raw onnxruntime, merged graph")
    for row in single:
        row["x_floor"] = harness.ratio(row["p50_us"], floor["p50_us"])
    harness.print_table(
        single,
        [
            ("", "what", ""),
            ("p50 µs", "p50_us", ",.1f"),
            ("p99 µs", "p99_us", ",.1f"),
            ("mean µs", "mean_us", ",.1f"),
            ("p50 vs floor", "x_floor", ""),
        ],
    )
    print(f"\n== batch: {args.rows:,} rows in chunks of {args.batch:,}, 1 intra-op thread")
    harness.print_table(
        batch, [("", "what", ""), ("seconds", "s", ",.2f"), ("rows/s", "rows_per_s", ",.0f"), ("s per 1M", "per_m", ",.2f")]
    )
    ours = next(r for r in single if r["what"].startswith("ours"))
    ours_batch, floor_batch = batch[0], batch[1]
    summary = [
        {
            "goal": "serving overhead vs raw onnxruntime (p50)",
            "target": f"<= {GOALS['overhead']}x",
            "measured": f"{ours['p50_us'] / floor['p50_us']:.2f}x",
            "met": ours["p50_us"] / floor["p50_us"] <= GOALS["overhead"],
        },
        {
            "goal": "all five models, one customer, p50",
            "target": f"< {GOALS['p50_us']:.0f} µs",
            "measured": f"{ours['p50_us']:.1f} µs",
            "met": ours["p50_us"] < GOALS["p50_us"],
        },
        {
            "goal": "1M customers scored",
            "target": f"< {GOALS['batch_1m_s']:.0f} s",
            "measured": f"{ours_batch['per_m']:.1f} s",
            "met": ours_batch["per_m"] < GOALS["batch_1m_s"],
        },
        {
            "goal": "batch overhead vs raw onnxruntime",
            "target": "(reported)",
            "measured": f"{ours_batch['s'] / floor_batch['s']:.2f}x",
            "met": "-",
        },
    ]
    print("\ngoals:")
    harness.print_table(
        summary, [("goal", "goal", ""), ("target", "target", ""), ("measured", "measured", ""), ("met", "met", "")]
    )
    from importlib.metadata import version

    versions = {name: version(name) for name in ("onnxruntime", "onnx", "skl2onnx", "scikit-learn", "numpy")}
    path = harness.write_results(
        "scoring_bench",
        {"args": vars(args), "versions": versions, "train_s": train_s, "single": single, "batch": batch, "goals": summary},
    )
    print(f"\n{harness.MACHINE_NOTE}\nresults: {path.relative_to(harness.REPO)}; {time.perf_counter() - started:.0f} s in all")
    return 0


def _stats(laps: list[float]) -> dict[str, float]:
    return {"p50_us": harness.percentile(laps, 50), "p99_us": harness.percentile(laps, 99), "mean_us": float(np.mean(laps))}


def single_part(models: ModelSet, pipelines: dict, rows: list[np.ndarray], args, folder: Path) -> list[dict]:
    assert models.merged
    merged, outputs, _, _ = models._runners[0]  # the very session ModelSet runs: the floor is the same graph
    singles = []
    for spec in MODELS:
        version = models.statuses[spec.name].version
        singles.append((make_session((folder / spec.name / version / "model.onnx").read_bytes()), score_output(spec.task)))

    def raw_merged(x):
        return merged.run(outputs, {INPUT: x})

    def raw_five(x):
        return [session.run([name], {INPUT: x}) for session, name in singles]

    estimators = [(pipelines[s.name], s.task) for s in MODELS]

    def sklearn(x):
        return [p.predict(x) if task == "regression" else p.predict_proba(x) for p, task in estimators]

    # Same inputs, same answers, before anything is timed.
    for x in rows[:50]:
        ours = models.score(x).values
        ref = sklearn(x)
        assert abs(ours["churn_risk"] - ref[0][0, 1]) < 1e-5, (ours["churn_risk"], ref[0])
    contenders = [
        ("ours: ModelSet.score (merged graph + scores dict)", models.score, args.calls),
        ("raw onnxruntime, merged graph", raw_merged, args.calls),
        ("raw onnxruntime, 5 sessions", raw_five, args.calls),
        ("scikit-learn predict, 5 pipelines", sklearn, args.sklearn_calls),
    ]
    out = []
    for what, fn, calls in contenders:
        out.append({"what": what, **_stats(timed(fn, rows, calls))})
    return out


def batch_part(models: ModelSet, sample: np.ndarray, args) -> list[dict]:
    reps = -(-args.rows // len(sample))
    x = np.ascontiguousarray(np.tile(sample, (reps, 1))[: args.rows], dtype=np.float32)
    merged, outputs, _, _ = models._runners[0]
    out = []
    for what, fn in (
        ("ours: ModelSet.score_batch", lambda chunk: models.score_batch(chunk)),
        ("raw onnxruntime, merged graph", lambda chunk: merged.run(outputs, {INPUT: chunk})),
    ):
        fn(x[: args.batch])  # warm
        t0 = time.perf_counter()
        for start in range(0, len(x), args.batch):
            fn(x[start : start + args.batch])
        seconds = time.perf_counter() - t0
        out.append({"what": what, "s": seconds, "rows_per_s": len(x) / seconds, "per_m": seconds * 1e6 / len(x)})
    return out


if __name__ == "__main__":
    sys.exit(main())
