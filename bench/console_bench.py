"""Console pages: server time of every dashboard on a demo base, against the cheapest page of the same run.

    .venv/bin/python bench/console_bench.py                          # makes a 10k demo base with quickstart (~3 min)
    .venv/bin/python bench/console_bench.py --folder /tmp/qs         # reuse a quickstart folder (demo.db, rules, models)

Goal (issue 18): p95 < 150 ms server time per dashboard on the 10k demo base. Each page is asked
`--repeat` times in process (Flask's test client: server time, no network) after one warm-up; the
baseline is the sign-in page (a template and nothing else) measured in the same run.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PAGES = (
    "/console/overview",
    "/console/lifecycle",
    "/console/lifecycle/movers?from=growth&to=win_back",
    "/console/value",
    "/console/rfm",
    "/console/clv",
    "/console/segments",
    "/console/journeys",
    "/console/loyalty",
    "/console/offers",
    "/console/customers?q=novak",
    "/console/customers/DEMO-000002",
)


def _demo(folder: Path, customers: int) -> None:
    command = [sys.executable, "-c", "from decision_server.cli import main; main()"]
    options = [
        "--database-url",
        f"sqlite:///{folder / 'demo.db'}",
        "--rules-dir",
        str(folder / "rules"),
        "--models-dir",
        str(folder / "models"),
    ]
    print(f"making a {customers:,}-customer demo base in {folder} (quickstart --no-serve)...", flush=True)
    subprocess.run(
        [*command, *options, "quickstart", "--no-serve", "--customers", str(customers)], check=True, capture_output=True
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, help="a quickstart folder with demo.db, rules/ and models/ (default: make one)")
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    folder = args.folder or Path(tempfile.mkdtemp(prefix="console-bench-"))
    if not (folder / "demo.db").exists():
        _demo(folder, args.customers)

    from decision_server import create_app, migrate
    from decision_server.auth import service
    from decision_server.config import Config
    from decision_server.db import Database

    url = f"sqlite:///{folder / 'demo.db'}"
    migrate.upgrade(Database(url).engine)
    app = create_app(
        Config.from_env(
            database_url=url,
            rules_dir=folder / "rules",
            models_dir=folder / "models",
            rules_poll_seconds=0,
            models_poll_seconds=0,
            catalog_poll_seconds=0,
            learning_poll_seconds=0,
        )
    )
    with app.extensions["database"].session(write=True) as session:
        key = service.create_key(session, name="console-bench", role="admin").secret
    client = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/console/sign-in").get_data(as_text=True)).group(1)
    assert client.post("/console/sign-in", data={"api_key": key, "csrf_token": token}).status_code == 302

    def measure(path: str) -> tuple[float, float]:
        assert client.get(path).status_code == 200, path  # warm-up (and caches a page may keep per run)
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            response = client.get(path)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, path
        return statistics.median(times), statistics.quantiles(times, n=20)[-1]

    base50, base95 = measure("/console/sign-in")
    print(f"baseline /console/sign-in: p50 {base50:.1f} ms, p95 {base95:.1f} ms")
    print(f"{'page':<55} {'p50 ms':>8} {'p95 ms':>8} {'p95/base':>9}  goal p95 < 150 ms")
    over = []
    for path in PAGES:
        p50, p95 = measure(path)
        flag = "ok" if p95 < 150 else "OVER"
        if p95 >= 150:
            over.append(path)
        print(f"{path:<55} {p50:8.1f} {p95:8.1f} {p95 / base95:8.1f}x  {flag}")
    print(f"{len(PAGES) - len(over)} of {len(PAGES)} pages within the goal" + (f"; over: {', '.join(over)}" if over else ""))


if __name__ == "__main__":
    main()
