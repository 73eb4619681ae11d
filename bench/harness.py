"""Shared benchmark harness: scratch databases, server subprocesses, HTTP load, stats and reports."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import http.client
import json
import math
import multiprocessing
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
HOST = "127.0.0.1"
MACHINE_NOTE = (
    f"{os.cpu_count()} CPUs shared by the server workers and the load-generator processes on "
    "loopback: absolute figures move between runs; compare ratios within one run."
)


# --- scratch database ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A migrated database with demo customers and an admin key, ready to serve."""

    url: str  # what DATABASE_URL gets
    dialect: str  # "sqlite" or "postgresql"
    customers: int
    api_key: str


def _libpq_url(url: str) -> str:
    """Return a PostgreSQL URL psycopg understands (no SQLAlchemy driver suffix)."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _with_database(url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql", database=name).render_as_string(hide_password=False)


def _pg_admin(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(_libpq_url(url), autocommit=True) as conn:
        conn.execute(sql)


@contextlib.contextmanager
def scratch_database(postgres_url: str | None, *, name: str, customers: int) -> Iterator[Dataset]:
    """Yield a fresh database (SQLite in a temp dir, or scratch database `name` on PostgreSQL), then drop it."""
    tmp = Path(tempfile.mkdtemp(prefix="ds-bench-"))
    if postgres_url:
        _pg_admin(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        _pg_admin(postgres_url, f'CREATE DATABASE "{name}"')
        url = _with_database(postgres_url, name)
    else:
        url = f"sqlite:///{tmp / 'bench.db'}"
    try:
        yield _populate(url, customers)
    finally:
        if postgres_url:
            _pg_admin(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(tmp, ignore_errors=True)


def _populate(url: str, customers: int) -> Dataset:
    from decision_server import migrate
    from decision_server.auth import service
    from decision_server.db import Database
    from decision_server.demo import generator

    database = Database(url)
    try:
        started = time.perf_counter()
        migrate.upgrade(database.engine)
        counts = generator.load(database, generator.DemoSpec(customers=customers))
        with database.session(write=True) as session:
            key = service.create_key(session, name="bench", role="admin")
        _settle(database)
        print(f"  database ready in {time.perf_counter() - started:.1f} s: {counts}", flush=True)
        return Dataset(url, database.dialect, customers, key.secret)
    finally:
        database.dispose()


def _settle(database: Any) -> None:
    """Do now the maintenance a bulk load triggers later, so it does not land in the first server's run."""
    raw = database.engine.raw_connection()
    try:
        driver = raw.driver_connection
        if database.dialect == "postgresql":
            driver.autocommit = True
            driver.execute("VACUUM ANALYZE")  # else autovacuum runs during the first measurements
            with contextlib.suppress(Exception):  # needs superuser or pg_checkpoint; nice to have
                driver.execute("CHECKPOINT")
        else:  # the engine set isolation_level=None: this runs outside any transaction
            driver.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        raw.close()


def postgres_reachable(url: str) -> bool:
    """Tell whether a PostgreSQL server answers at `url`."""
    try:
        _pg_admin(url, "SELECT 1")
        return True
    except Exception as exc:  # any failure: report it and skip the PostgreSQL part
        print(f"  PostgreSQL at {mask_password(url)} not reachable ({type(exc).__name__}: {exc}); skipping it")
        return False


# --- servers ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ServerSpec:
    """How to start one WSGI server on the app factory."""

    name: str
    kind: str  # "granian", "gunicorn-gthread" or "gunicorn-sync"
    workers: int = 2
    threads: int = 4

    def command(self, port: int) -> list[str]:
        """Return the command line that serves decision_server.wsgi on 127.0.0.1:`port`."""
        if self.kind == "granian":
            return [
                str(VENV_BIN / "granian"),
                "--interface",
                "wsgi",
                "--factory",
                "--host",
                HOST,
                "--port",
                str(port),
                "--workers",
                str(self.workers),
                "--blocking-threads",
                str(self.threads),
                "--no-access-log",
                "--log-level",
                "warning",
                "decision_server.wsgi:application",
            ]
        worker = ["-k", "gthread", "--threads", str(self.threads), "--keep-alive", "5"]
        if self.kind == "gunicorn-sync":
            worker = ["-k", "sync"]
        return [
            str(VENV_BIN / "gunicorn"),
            "-w",
            str(self.workers),
            *worker,
            "-b",
            f"{HOST}:{port}",
            "--log-level",
            "warning",
            "decision_server.wsgi:application()",
        ]


SERVERS = {
    "granian": ServerSpec("granian", "granian"),
    "gthread": ServerSpec("gunicorn gthread", "gunicorn-gthread"),
    "sync": ServerSpec("gunicorn sync", "gunicorn-sync"),
}


def free_port() -> int:
    """Return a TCP port that is free on loopback right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class RunningServer:
    """A server subprocess in its own process group, with its log file and CPU accounting."""

    def __init__(self, spec: ServerSpec, dataset: Dataset, log_dir: Path, env: Mapping[str, str] | None = None):
        self.spec = spec
        self.port = free_port()
        self.log_path = log_dir / f"{spec.kind}-{self.port}.log"
        env = {
            **os.environ,
            "DATABASE_URL": dataset.url,
            "RULES_DIR": str(REPO / "rules"),
            "MODELS_DIR": str(REPO / "models_onnx"),
            "LOG_LEVEL": "WARNING",  # the app logs one JSON line per request at INFO
            "PYTHONUNBUFFERED": "1",
            **(env or {}),  # the caller's settings win (MODELS_DIR, RULES_BACKEND, ...)
        }
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            spec.command(self.port),
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: we stop exactly what we started
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until GET /health answers 200 on every worker we can reach, or raise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.spec.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection(HOST, self.port, timeout=2)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    conn.close()
                    time.sleep(1.0)  # let the other workers finish building the app
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.spec.name} not ready after {timeout} s:\n{self.log_tail()}")

    def cpu_seconds(self) -> float:
        """Return user+system CPU seconds used so far by the live processes of the server's group."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == self.proc.pid:  # field 5 (pgrp), counted after the ")"
                    total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / tick

    def log_tail(self, lines: int = 30) -> str:
        """Return the last lines of the server's output."""
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def log_problems(self) -> list[str]:
        """Return lines of the server's output that mention an error, traceback or warning."""
        self._log.flush()
        words = ("error", "traceback", "exception", "critical", "warning", "timeout")
        return [
            line for line in self.log_path.read_text(errors="replace").splitlines() if any(word in line.lower() for word in words)
        ]

    def stop(self) -> None:
        """Stop the server's process group: SIGTERM, then SIGKILL after 10 s."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):  # stray workers of the group, if any
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()


@contextlib.contextmanager
def serving(spec: ServerSpec, dataset: Dataset, log_dir: Path, env: Mapping[str, str] | None = None) -> Iterator[RunningServer]:
    """Run a server for the duration of the block (`env` added to its environment); it is always stopped afterwards."""
    server = RunningServer(spec, dataset, log_dir, env)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


# --- load generation -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A request the load generator sends: a GET of a fixed path, or of a random demo customer each time.

    Subclasses send other requests (a POST with a body) by overriding `next_request`; they must be
    picklable (defined at module level), since every client process gets its own copy.
    """

    name: str
    path: str  # "{customer}" is replaced by a random DEMO-xxxxxx id
    customers: int = 0
    api_key: str | None = None
    ok_status: int = 200  # the status that counts as success; any other one is an error
    server_timing: str | None = None  # collect this metric's dur from the Server-Timing header

    def next_path(self, rng: random.Random) -> str:
        """Return the path of the next request."""
        if "{customer}" not in self.path:
            return self.path
        return self.path.format(customer=f"DEMO-{rng.randint(1, self.customers):06d}")

    def next_request(self, rng: random.Random) -> tuple[str, str, bytes | None]:
        """Return the method, path and body of the next request (here: a GET, no body)."""
        return "GET", self.next_path(rng), None

    def headers(self) -> dict[str, str]:
        """Return the request headers (the bearer key when there is one)."""
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


def server_timing_ms(header: str | None, metric: str) -> float | None:
    """Return the dur (ms) of `metric` in a Server-Timing header value, or None when it is not there."""
    for entry in (header or "").split(","):
        name, *params = (part.strip() for part in entry.split(";"))
        if name != metric:
            continue
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "dur":
                with contextlib.suppress(ValueError):
                    return float(value.strip().strip('"'))
    return None


def health_endpoint() -> Endpoint:
    """Return the framework floor: GET /health, no key, no database."""
    return Endpoint("/health", "/health")


def customer_endpoint(dataset: Dataset) -> Endpoint:
    """Return GET /api/v1/customers/DEMO-xxxxxx on random demo customers with the admin key."""
    return Endpoint("/customers/{id}", "/api/v1/customers/{customer}", dataset.customers, dataset.api_key)


@dataclasses.dataclass(frozen=True)
class Load:
    """One measurement: closed-loop with `connections` (rate None) or open-loop at `rate` req/s."""

    port: int
    endpoint: Endpoint
    connections: int
    duration: float
    warmup: float = 0.0
    rate: float | None = None
    processes: int = 2


class _Recorder:
    """What one client thread saw: latencies inside the window, statuses, errors, totals."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.total = 0
        self.server_times: list[float] = []  # Server-Timing durs inside the window, seconds
        self.sent: Counter[str] = Counter()  # the status of every request sent, priming and warm-up included


def _send(
    conn: http.client.HTTPConnection, endpoint: Endpoint, rng: random.Random, rec: _Recorder | None = None, count: bool = True
) -> str:
    """Send one request on a persistent connection and read the whole response; return the status.

    With `rec`, every status goes to rec.sent, and when `count` is true the endpoint's
    Server-Timing metric (if it asks for one) goes to rec.server_times.
    """
    method, path, body = endpoint.next_request(rng)
    try:
        conn.request(method, path, body=body, headers=endpoint.headers())
        response = conn.getresponse()
        response.read()
        status = str(response.status)
        if rec is not None and count and endpoint.server_timing:
            ms = server_timing_ms(response.getheader("Server-Timing"), endpoint.server_timing)
            if ms is not None:
                rec.server_times.append(ms / 1e3)
    except (OSError, http.client.HTTPException) as exc:
        conn.close()  # reconnects on the next request
        status = type(exc).__name__
    if rec is not None:
        rec.sent[status] += 1
    return status


def _closed_loop(load: Load, start_at: float, rec: _Recorder, seed: int) -> None:
    rng = random.Random(seed)
    conn = http.client.HTTPConnection(HOST, load.port, timeout=30)
    _send(conn, load.endpoint, rng, rec, count=False)  # connect and prime before the clock starts
    measure_from, end = start_at + load.warmup, start_at + load.warmup + load.duration
    _sleep_until(start_at)
    while (began := time.monotonic()) < end:
        timings = len(rec.server_times)
        status = _send(conn, load.endpoint, rng, rec)
        done = time.monotonic()
        rec.total += 1
        if began >= measure_from and done <= end:
            rec.latencies.append(done - began)
            rec.statuses[status] += 1
        else:
            del rec.server_times[timings:]  # outside the window: not counted
    conn.close()


def _open_loop(load: Load, start_at: float, rec: _Recorder, seed: int, slot: int, slots: int) -> None:
    """Send request i at start_at + i/rate (i = slot, slot+slots, ...); latency counts from then."""
    rng = random.Random(seed)
    conn = http.client.HTTPConnection(HOST, load.port, timeout=30)
    _send(conn, load.endpoint, rng, rec, count=False)
    assert load.rate
    for i in range(slot, int(load.rate * load.duration), slots):
        scheduled = start_at + i / load.rate
        _sleep_until(scheduled)
        status = _send(conn, load.endpoint, rng, rec)
        rec.latencies.append(time.monotonic() - scheduled)  # includes any wait behind a late slot
        rec.statuses[status] += 1
        rec.total += 1
    conn.close()


def _sleep_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def _client_process(load: Load, start_at: float, index: int) -> dict[str, Any]:
    """Run this process's share of the connections as threads; return what they recorded."""
    cpu_before = time.process_time()
    per_process = _share(load.connections, load.processes, index)
    first_slot = sum(_share(load.connections, load.processes, i) for i in range(index))
    recorders = [_Recorder() for _ in range(per_process)]
    threads = []
    for k, rec in enumerate(recorders):
        slot, seed = first_slot + k, index * 1000 + k
        if load.rate:
            args = (load, start_at, rec, seed, slot, load.connections)
            threads.append(threading.Thread(target=_open_loop, args=args))
        else:
            threads.append(threading.Thread(target=_closed_loop, args=(load, start_at, rec, seed)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses: Counter[str] = Counter()
    sent: Counter[str] = Counter()
    for rec in recorders:
        statuses.update(rec.statuses)
        sent.update(rec.sent)
    return {
        "latencies": [lat for rec in recorders for lat in rec.latencies],
        "server_times": [t for rec in recorders for t in rec.server_times],
        "statuses": dict(statuses),
        "sent": dict(sent),
        "total": sum(rec.total for rec in recorders),
        "cpu": time.process_time() - cpu_before,
    }


def machine_cpu_times() -> tuple[float, float]:
    """Return (busy, idle) seconds of all CPUs since boot, from /proc/stat (idle includes iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK"), idle / os.sysconf("SC_CLK_TCK")


def _share(items: int, parts: int, index: int) -> int:
    return items // parts + (1 if index < items % parts else 0)


def run_load(load: Load, server: RunningServer | None = None) -> dict[str, Any]:
    """Drive `load` from separate client processes; return req/s, latency percentiles and errors."""
    processes = min(load.processes, load.connections)
    load = dataclasses.replace(load, processes=processes)
    ctx = multiprocessing.get_context("fork")
    cpu_before = server.cpu_seconds() if server else None
    busy_before, idle_before = machine_cpu_times()
    start_at = time.monotonic() + 1.0  # time for every client to connect and prime
    with ctx.Pool(processes) as pool:
        parts = pool.starmap(_client_process, [(load, start_at, i) for i in range(processes)])
    server_cpu = server.cpu_seconds() - cpu_before if server else None
    busy, idle = (now - before for now, before in zip(machine_cpu_times(), (busy_before, idle_before), strict=True))
    latencies = sorted(lat for part in parts for lat in part["latencies"])
    statuses: Counter[str] = Counter()
    sent: Counter[str] = Counter()
    for part in parts:
        statuses.update(part["statuses"])
        sent.update(part["sent"])
    total = sum(part["total"] for part in parts)
    ok_status = str(load.endpoint.ok_status)
    ok = statuses.get(ok_status, 0)
    errors = {k: v for k, v in statuses.items() if k != ok_status}
    result = {
        "endpoint": load.endpoint.name,
        "mode": f"rate {load.rate:g}/s" if load.rate else f"{load.connections} conns",
        "connections": load.connections,
        "rate": load.rate,
        "duration_s": load.duration,
        "requests": len(latencies),
        "req_per_s": len(latencies) / load.duration,
        "ok": ok,
        "errors": errors,
        # named for the common case: the statuses other than the endpoint's ok_status (200 by default)
        "non_200": ", ".join(f"{k}: {v}" for k, v in sorted(errors.items())) or "0",
        "sent_statuses": dict(sent),  # every request sent, priming and warm-up included
        "client_cpu_s": sum(part["cpu"] for part in parts),
        "machine_idle_pct": 100 * idle / (busy + idle) if busy + idle else None,
        "machine_busy_s": busy,  # every process's CPU during the run: minus server and clients = the others'
        "server_cpu_s": server_cpu,
        "server_cpu_us_per_req": (server_cpu / total * 1e6) if server and total else None,
        **latency_summary(latencies),
    }
    if load.endpoint.server_timing:
        server_times = sorted(t for part in parts for t in part["server_times"])
        result["server_timings"] = len(server_times)
        result.update({f"server_{k}": v for k, v in latency_summary(server_times).items()})
    return result


def latency_summary(latencies: list[float]) -> dict[str, float | None]:
    """Return p50, p90, p99 and max of sorted latencies, in milliseconds."""
    if not latencies:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p90_ms": percentile(latencies, 90) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "max_ms": latencies[-1] * 1e3,
    }


def medians(rows: list[dict[str, Any]], *, key: tuple[str, ...], fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """Merge rounds: one row per `key` with the median of each of `fields` and the errors of all rounds."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in key), []).append(row)
    merged = []
    for group in groups.values():
        row = {**group[0], "rounds": len(group)}
        row.pop("round", None)
        for field in fields:
            values = [r[field] for r in group if r.get(field) is not None]
            row[field] = statistics.median(values) if values else None
        errors: Counter[str] = Counter()
        for r in group:
            errors.update(r["errors"])
        row["errors"] = dict(errors)
        row["non_200"] = ", ".join(f"{k}: {v}" for k, v in sorted(errors.items())) or "0"
        merged.append(row)
    return merged


def percentile(sorted_values: list[float], pct: float) -> float:
    """Return the nearest-rank percentile of already sorted values."""
    rank = math.ceil(pct / 100 * len(sorted_values))
    return sorted_values[min(max(rank, 1), len(sorted_values)) - 1]


# --- reporting -------------------------------------------------------------------------------


def fmt(value: Any, spec: str = ",.0f") -> str:
    """Format a number for a table cell; None becomes a dash."""
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> None:
    """Print rows as an aligned text table; columns are (header, key, format spec or "")."""
    cells = [[h for h, _, _ in columns]]
    for row in rows:
        cells.append([(fmt(row.get(key), spec) if spec else str(row.get(key, ""))) for _, key, spec in columns])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    for n, line in enumerate(cells):
        print("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))))
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))


def ratio(a: float | None, b: float | None) -> str:
    """Return a/b as "1.23x", or a dash when either is missing."""
    return f"{a / b:.2f}x" if a and b else "-"


def code_version() -> str:
    """Return the git commit of the app code, with "+dirty" when decision_server/ has local changes."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    dirty = git("status", "--porcelain", "--", "decision_server", "migrations")
    return (git("rev-parse", "--short", "HEAD") or "unknown") + ("+dirty" if dirty else "")


CODE_AT_START = code_version()


def environment() -> dict[str, Any]:
    """Return what the results depend on: code version, CPUs, Python and server versions."""
    from importlib.metadata import version

    code_now = code_version()
    if code_now != CODE_AT_START:  # other people commit while we measure: say so loudly
        print(
            f"WARNING: the app code changed during the run ({CODE_AT_START} -> {code_now}); "
            "servers started before and after the change ran different code"
        )
    return {
        "code": CODE_AT_START if code_now == CODE_AT_START else f"{CODE_AT_START} -> {code_now}",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "granian": version("granian"),
        "gunicorn": version("gunicorn"),
        "flask": version("flask"),
        "sqlalchemy": version("sqlalchemy"),
        "note": MACHINE_NOTE,
    }


def mask_password(value: Any) -> Any:
    """Return a database URL with its password masked; anything else unchanged."""
    from sqlalchemy.engine import make_url

    if isinstance(value, str) and "://" in value:
        return make_url(value).render_as_string(hide_password=True)
    return value


def public_args(args: Any) -> dict[str, Any]:
    """Return the parsed arguments as a dict, with passwords in database URLs masked."""
    return {k: mask_password(v) for k, v in vars(args).items()}


def write_results(stem: str, payload: dict[str, Any]) -> Path:
    """Write results as JSON to bench/results/<stem>-<timestamp>.json; return the path."""
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = RESULTS_DIR / f"{stem}-{stamp}.json"
    path.write_text(json.dumps({"when": stamp, "environment": environment(), **payload}, indent=2, default=str))
    return path
