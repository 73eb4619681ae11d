"""Rule editor: the validation round trip while typing, per shipped rule file, over HTTP.

    .venv/bin/python bench/studio_bench.py                 # about a minute
    .venv/bin/python bench/studio_bench.py --repeat 50 --backend python

Goal (issue 19): under 150 ms for any shipped file on the 2-core machine. A server process (the
app on a fresh SQLite database with the shipped rules, werkzeug on 127.0.0.1) is asked by this
process over one keep-alive connection, as the editor's fetch does:

- typed: `POST /console/rules/<file>/validate` with the file changed at every request (a comment
  with a counter appended), so the file and its cases are checked afresh each time, as after a
  keystroke; every other file comes from the check's memory;
- unchanged: the same text again (nothing to re-check);
- baseline: `POST /api/v1/rules/validate` with the same change, the API's whole check of the draft
  (every file built, every case on every backend), measured in the same run.

Every answer is checked (200, valid). `server ms` is the check's own elapsed_ms.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parent.parent
GOAL_MS = 150.0

SERVER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from werkzeug.serving import make_server
    from decision_server import create_app, migrate
    from decision_server.auth import service
    from decision_server.config import Config
    from decision_server.db import Database

    folder, port, backend = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    url = f"sqlite:///{folder / 'bench.db'}"
    migrate.upgrade(Database(url).engine)
    app = create_app(Config.from_env(
        database_url=url, rules_dir=folder / "rules", models_dir=folder / "models", rules_backend=backend,
        rules_poll_seconds=0, models_poll_seconds=0, catalog_poll_seconds=0, learning_poll_seconds=0,
    ))
    with app.extensions["database"].session(write=True) as session:
        key = service.create_key(session, name="studio-bench", role="editor").secret
    (folder / "key.json").write_text(json.dumps({"key": key}))
    make_server("127.0.0.1", port, app, threaded=True).serve_forever()
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Client:
    """One keep-alive connection with the console session's cookie and CSRF token."""

    def __init__(self, port: int, key: str):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.cookies: dict[str, str] = {}
        self.key = key
        page = self.request("GET", "/console/sign-in")[1].decode()
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        form = urlencode({"api_key": key, "csrf_token": token})
        status, _ = self.request("POST", "/console/sign-in", form, {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 302, status
        page = self.request("GET", "/console/rules/value.yaml")[1].decode()
        self.csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', page).group(1)

    def request(self, method: str, path: str, body: str | None = None, headers: dict | None = None) -> tuple[int, bytes]:
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        self.conn.request(method, path, body=body.encode() if body is not None else None, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                pair = value.split(";", 1)[0]
                self.cookies[pair.split("=", 1)[0]] = pair.split("=", 1)[1]
        return response.status, data

    def post_json(self, path: str, payload: dict, *, api: bool = False) -> tuple[float, dict]:
        headers = {"Content-Type": "application/json"}
        headers.update({"Authorization": f"Bearer {self.key}"} if api else {"X-CSRF-Token": self.csrf})
        started = time.perf_counter()
        status, data = self.request("POST", path, json.dumps(payload), headers)
        elapsed = (time.perf_counter() - started) * 1000
        assert status == 200, (path, status, data[:300])
        return elapsed, json.loads(data)


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 2 else values[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=30, help="typed checks per file")
    parser.add_argument("--baseline-repeat", type=int, default=8, help="API validations per file")
    parser.add_argument("--backend", choices=("durable", "python"), default="durable", help="the server's rules backend")
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="studio-bench-"))
    shutil.copytree(REPO / "rules", folder / "rules")
    files = {p.name: p.read_text() for p in sorted((folder / "rules").glob("*.yaml"))}
    port = _free_port()
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(folder), str(port), args.backend],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (folder / "key.json").exists():
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.2)
        time.sleep(0.5)
        client = Client(port, json.loads((folder / "key.json").read_text())["key"])
        _run(client, files, args)
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def _run(client: Client, files: dict[str, str], args) -> None:
    print(f"rules backend {args.backend}; {args.repeat} typed checks per file, {args.baseline_repeat} API validations")
    header = f"{'file':<26} {'typed p50':>9} {'p95':>7} {'server p50':>10} {'unchanged p50':>13} {'API p50':>8} {'API/typed':>9}"
    print(header + f"  goal p95 < {GOAL_MS:.0f} ms")
    worst = 0.0
    counter = 0
    for name, text in files.items():
        path = f"/console/rules/{name}/validate"
        typed, server = [], []
        for _ in range(args.repeat):
            counter += 1
            elapsed, body = client.post_json(path, {"content": f"{text}\n# edit {counter}\n"})
            assert body["valid"], (name, body["problems"][:3])
            typed.append(elapsed)
            server.append(body["elapsed_ms"])
        unchanged = [client.post_json(path, {"content": text})[0] for _ in range(max(5, args.repeat // 3))]
        api = []
        for _ in range(args.baseline_repeat):
            counter += 1
            elapsed, body = client.post_json("/api/v1/rules/validate", {"files": {name: f"{text}\n# edit {counter}\n"}}, api=True)
            assert body["valid"] and not body["cases"].get("failed"), (name, body.get("problems"))
            api.append(elapsed)
        p50, p95 = statistics.median(typed), _p95(typed)
        worst = max(worst, p95)
        print(
            f"{name:<26} {p50:9.1f} {p95:7.1f} {statistics.median(server):10.1f} {statistics.median(unchanged):13.1f} "
            f"{statistics.median(api):8.1f} {statistics.median(api) / p50:8.1f}x  {'ok' if p95 < GOAL_MS else 'OVER'}"
        )
    print(f"worst typed p95: {worst:.1f} ms ({'within' if worst < GOAL_MS else 'OVER'} the {GOAL_MS:.0f} ms goal)")


if __name__ == "__main__":
    main()
