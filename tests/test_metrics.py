"""GET /metrics after real traffic: the numbers move by what the traffic did; /ready says when rules and models serve.

In-process through the Flask test client (one process, the default registry), and once on a real
`decision-server serve --workers 2`, where a scrape must add up both workers.
"""

from __future__ import annotations

import collections
import concurrent.futures
import datetime as dt
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from decision_server import migrate
from decision_server.auth import service as auth_service
from decision_server.config import DEFAULT_CHANNELS
from decision_server.db import Database
from decision_server.demo import generator
from decision_server.jobs import scheduler
from decision_server.offers import connectors, sync
from decision_server.offers import service as offers
from decision_server.scoring.serving import ModelRuntime

REPO = Path(__file__).resolve().parent.parent
NOW = dt.datetime.now(dt.UTC)
MAPPING = {
    "external_id": "id",
    "code": "sku",
    "name": "title",
    "category": "kind",
    "business_value": "price.margin",
    "treatments.sms.text": "sms",
}


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a scrape, by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value for family in text_string_to_metric_families(text) for s in family.samples
    }


def scrape(client, auth) -> dict[tuple[str, frozenset], float]:
    response = client.get("/metrics", headers=auth("analyst"))
    assert response.status_code == 200 and response.content_type.startswith("text/plain")
    return parse(response.get_data(as_text=True))


def value(samples, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before, after, name: str, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.fixture
def demo(app, client, auth, database):
    """The demo catalog and two customers: GROW (4 purchases, app and SMS consent), NEW (1 purchase, no SMS)."""
    with database.session(write=True) as session:
        offers.load_demo_catalog(session, channels=DEFAULT_CHANNELS, words=offers.vocabulary(None))
    app.extensions["catalog"].sync()
    for external_id, purchases, consent in (("GROW", 4, {"sms": True, "app": True}), ("NEW", 1, {"sms": False})):
        assert (
            client.post(
                "/api/v1/customers", json={"external_id": external_id, "consent": consent}, headers=auth("admin")
            ).status_code
            == 201
        )
        for i in range(purchases):
            tx = {
                "external_id": f"{external_id}-{i}",
                "customer_id": external_id,
                "amount": "25.00",
                "category": "data_bundle",
                "occurred_at": (NOW - dt.timedelta(days=20 - i)).isoformat(),
            }
            assert client.post("/api/v1/transactions", json=tx, headers=auth("admin")).status_code == 201
    return client


def test_metrics_need_a_key_whose_role_may_read_them(client, auth):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics").get_json()["code"] == "missing_api_key"
    assert client.get("/metrics", headers={"Authorization": "Bearer ds_00000000_not-a-real-key"}).status_code == 401
    for role, status in {"channel": 403, "ingest": 403, "analyst": 200, "editor": 200, "admin": 200}.items():
        assert client.get("/metrics", headers=auth(role)).status_code == status, role


def test_a_decision_burst_shows_on_metrics(demo, auth, database):
    before = scrape(demo, auth)
    asked = [("GROW", "app"), ("GROW", "sms"), ("NEW", "app"), ("NEW", "sms"), ("SOMEONE-NEW", "call_centre")] * 3
    answers = []
    for customer_id, channel in asked:
        response = demo.post(
            "/api/v1/decisions", json={"customer_id": customer_id, "channel": channel, "actions": 2}, headers=auth("channel")
        )
        assert response.status_code == 201, response.get_json()
        answers.append(response.get_json())
    refused = demo.post("/api/v1/decisions", json={"customer_id": "GROW", "channel": "fax"}, headers=auth("channel"))
    assert refused.status_code == 422  # refused before deciding: no channel "fax" among the labels
    after = scrape(demo, auth)

    results = collections.Counter((a["channel"], "offer" if a["actions"] else "no_offer") for a in answers)
    assert len(results) > 2 and any(r == "no_offer" for _, r in results)  # NEW has no SMS consent
    for (channel, result), n in results.items():
        assert moved(before, after, "decision_server_decision_duration_seconds_count", channel=channel, result=result) == n
        assert (
            moved(before, after, "decision_server_decision_duration_seconds_bucket", channel=channel, result=result, le="+Inf")
            == n
        )
    for channel in DEFAULT_CHANNELS:
        assert moved(before, after, "decision_server_offers_selected_total", channel=channel) == sum(
            len(a["actions"]) for a in answers if a["channel"] == channel
        )
        assert moved(before, after, "decision_server_decision_duration_seconds_count", channel=channel, result="error") == 0
    assert not any(dict(labels).get("channel") == "fax" for _, labels in after)
    removed = collections.Counter(
        ruleset for a in answers for c in a["explanation"] for ruleset in {r["ruleset"] for r in c["removed_by"]}
    )
    assert removed["offers"] and removed["contact_policy"]
    for ruleset in ("catalog", "offers", "contact_policy"):
        assert moved(before, after, "decision_server_offers_removed_total", ruleset=ruleset) == removed[ruleset]
    assert moved(before, after, "decision_server_decision_log_writes_total", result="ok") == len(answers)
    assert moved(before, after, "decision_server_model_inference_seconds_count") == len(answers)
    route = {"route": "/api/v1/decisions", "method": "POST"}
    assert moved(before, after, "decision_server_http_request_duration_seconds_count", **route, status="201") == len(answers)
    assert moved(before, after, "decision_server_http_request_duration_seconds_count", **route, status="422") == 1
    # The models folder is empty: every model serves its fallback.
    assert value(after, "decision_server_model_fallback", model="churn") == 1
    text = demo.get("/metrics", headers=auth("admin")).get_data(as_text=True)
    assert "GROW" not in text and "SOMEONE-NEW" not in text and answers[0]["decision_id"] not in text


def test_sub_millisecond_decisions_land_in_sub_millisecond_buckets(demo, auth):
    before = scrape(demo, auth)
    for _ in range(5):
        assert (
            demo.post("/api/v1/decisions", json={"customer_id": "GROW", "channel": "app"}, headers=auth("channel")).status_code
            == 201
        )
    after = scrape(demo, auth)
    app = {"channel": "app", "result": "offer"}
    bounds = sorted(
        float(dict(labels)["le"])
        for name, labels in after
        if name == "decision_server_decision_duration_seconds_bucket" and set(app.items()) <= labels
    )
    assert bounds[:5] == [0.0001, 0.0002, 0.0003, 0.0004, 0.0005]
    assert (
        sum(
            moved(before, after, "decision_server_decision_duration_seconds_bucket", channel="app", result=r, le="+Inf")
            for r in ("offer", "no_offer")
        )
        == 5
    )
    assert (
        sum(
            moved(before, after, "decision_server_decision_duration_seconds_sum", channel="app", result=r)
            for r in ("offer", "no_offer")
        )
        > 0
    )


def test_responses_and_a_failed_log_write_are_counted(demo, auth, database):
    before = scrape(demo, auth)
    answer = demo.post("/api/v1/decisions", json={"customer_id": "GROW", "channel": "app"}, headers=auth("channel")).get_json()
    url = f"/api/v1/decisions/{answer['decision_id']}/responses"
    body = {"response": "accepted", "offer_id": answer["actions"][0]["offer"]["id"]}
    assert demo.post(url, json=body, headers=auth("channel")).status_code == 201
    assert demo.post(url, json=body, headers=auth("channel")).status_code == 200  # a retry: not counted again
    assert demo.post(url, json={**body, "response": "clicked"}, headers=auth("channel")).status_code == 201
    with database.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE decisions RENAME TO decisions_away")
    try:
        failed = demo.post("/api/v1/decisions", json={"customer_id": "GROW", "channel": "app"}, headers=auth("channel"))
        assert failed.status_code == 503
    finally:
        with database.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE decisions_away RENAME TO decisions")
    after = scrape(demo, auth)
    assert moved(before, after, "decision_server_responses_total", response="accepted") == 1
    assert moved(before, after, "decision_server_responses_total", response="clicked") == 1
    assert moved(before, after, "decision_server_decision_log_writes_total", result="failed") == 1
    assert moved(before, after, "decision_server_decision_log_writes_total", result="ok") == 1
    assert moved(before, after, "decision_server_decision_duration_seconds_count", channel="app", result="error") == 1
    assert moved(before, after, "decision_server_decision_duration_seconds_count", channel="app", result="offer") == 1


def test_rule_reloads_and_the_revision_serving(app, client, auth, rules_dir):
    rulebook = app.extensions["rulebook"]
    first = rulebook.current.id
    before = scrape(client, auth)
    assert value(before, "decision_server_rules_revision_info", revision=first[:12]) == 1
    path = rules_dir / "value.yaml"
    path.write_text("# edited: a new revision\n" + path.read_text())
    rulebook.sync()
    second = rulebook.current.id
    assert second != first
    (rules_dir / "offers.yaml").write_text("rules: [this is not a rule file\n")
    rulebook.sync()
    assert rulebook.current.id == second  # refused: the last good revision keeps serving
    after = scrape(client, auth)
    assert moved(before, after, "decision_server_rules_reloads_total", result="loaded") == 1
    assert moved(before, after, "decision_server_rules_reloads_total", result="refused") == 1
    assert value(after, "decision_server_rules_revision_info", revision=second[:12]) == 1
    assert value(after, "decision_server_rules_revision_info", revision=first[:12]) == 0


def test_ready_is_503_until_rules_and_models_are_loaded(app, client, config):
    assert client.get("/ready").status_code == 200
    runtime = ModelRuntime(config.models_dir, poll_seconds=0)
    assert not runtime.loaded
    runtime.start()
    assert runtime.loaded
    app.extensions["rulebook"].stop()  # no revision serves in this process any more
    response = client.get("/ready")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "not_ready" and body["checks"]["rules"] == "no rule revision serving"
    assert body["checks"]["database"] == "ok" and body["checks"]["models"] == "ok"


def test_loyalty_points_by_kind(client, auth):
    before = scrape(client, auth)
    assert client.post("/api/v1/customers", json={"external_id": "M-1"}, headers=auth("admin")).status_code == 201
    tx = {"external_id": "T1", "customer_id": "M-1", "occurred_at": NOW.isoformat(), "amount": "50.00", "channel": "store"}
    assert client.post("/api/v1/transactions", json=tx, headers=auth("ingest")).status_code == 201
    ledger = client.get("/api/v1/loyalty/members/M-1/ledger?limit=50", headers=auth("analyst")).get_json()["items"]
    after = scrape(client, auth)
    earned = sum(e["points"] for e in ledger if e["kind"] == "earn")
    assert earned > 0 and moved(before, after, "decision_server_loyalty_points_total", kind="earn") == earned


def test_a_bulk_run_records_its_duration_time_and_customers(client, auth, database, run_ended):
    generator.load(database, generator.DemoSpec(customers=120, seed=4))
    before = scrape(client, auth)
    started = client.post("/api/v1/jobs/reevaluate", json={"steps": ["rfm", "stages"]}, headers=auth("admin"))
    assert started.status_code == 202, started.get_json()
    assert run_ended(started.get_json()["id"])["status"] == "succeeded"
    after = scrape(client, auth)
    assert moved(before, after, "decision_server_job_duration_seconds_count", job="reevaluate", status="succeeded") == 1
    assert moved(before, after, "decision_server_job_records_total", job="reevaluate") == 120
    assert time.time() - 60 < value(after, "decision_server_job_last_success_timestamp_seconds", job="reevaluate") <= time.time()


def test_catalog_sync_results(client, auth, database, config):
    with socket.socket() as s:  # a port nobody listens on: the upstream is down
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with database.session(write=True) as session:
        connectors.create(
            session,
            {
                "name": "acme",
                "url": f"http://127.0.0.1:{port}/items",
                "items_path": "items",
                "mapping": MAPPING,
                "timeout_seconds": 1,
                "retries": 1,
            },
        )
    before = scrape(client, auth)
    run = sync.run_sync(database, "acme", channels=DEFAULT_CHANNELS, words=offers.vocabulary(None), sleep=lambda s: None)
    assert run["status"] == "failed"
    with pytest.raises(RuntimeError, match="catalog sync of acme failed"):  # the same sync as a scheduled job
        scheduler.run_now(database, config, "catalog:acme", source="test", wait=True)
    after = scrape(client, auth)
    assert moved(before, after, "decision_server_catalog_syncs_total", connector="acme", status="failed") == 2
    assert moved(before, after, "decision_server_job_duration_seconds_count", job="catalog", status="failed") == 1


# -- a real server with two workers ------------------------------------------------------------


def test_the_command_line_leaves_prometheus_client_unimported_until_serve_sets_its_directory():
    # prometheus_client picks its multiprocess mode once, at import: were the CLI to import it first,
    # every worker would count alone (and serve refuses to start).
    code = (
        "import sys; from click.testing import CliRunner; from decision_server.cli import cli; "
        "result = CliRunner().invoke(cli, ['serve', '--help']); assert result.exit_code == 0, result.output; "
        "print('prometheus_client' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(port: int, method: str, path: str, key: str | None = None, body: dict | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _per_worker(directory: Path, name: str) -> dict[str, float]:
    """What each worker's own value file holds for a histogram's sample (summed over its labels), by process id."""
    counts = {}
    for path in directory.glob("histogram_*.db"):
        pid = path.stem.split("_")[-1]
        counts[pid] = sum(s.value for m in MultiProcessCollector.merge([str(path)]) for s in m.samples if s.name == name)
    return counts


@pytest.mark.slow
def test_a_two_worker_server_adds_up_both_workers(tmp_path):
    url = f"sqlite:///{tmp_path / 'server.db'}"
    database = Database(url)
    migrate.upgrade(database.engine)
    with database.session(write=True) as session:
        offers.load_demo_catalog(session, channels=DEFAULT_CHANNELS, words=offers.vocabulary(None))
        key = auth_service.create_key(session, name="prometheus", role="analyst").secret
        decider = auth_service.create_key(session, name="app", role="channel").secret
    database.dispose()
    shutil.copytree(REPO / "rules", tmp_path / "rules")
    (tmp_path / "tmp").mkdir()
    port = _free_port()
    # No PROMETHEUS_MULTIPROC_DIR: serve makes a temporary directory itself (under TMPDIR, to find it here).
    env = {
        **{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
        "DATABASE_URL": url,
        "RULES_DIR": str(tmp_path / "rules"),
        "MODELS_DIR": str(tmp_path / "models"),
        "LOG_LEVEL": "WARNING",
        "TMPDIR": str(tmp_path / "tmp"),
    }
    command = [
        sys.executable,
        "-c",
        "from decision_server.cli import main; main()",
        "serve",
        "--port",
        str(port),
        "--workers",
        "2",
        "--threads",
        "4",
        "--no-scheduler",
    ]
    server_log = tmp_path / "server.log"
    with open(server_log, "wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def started() -> int:
        return server_log.read_text().count('"Started worker-')

    try:
        deadline = time.monotonic() + 90
        while not (shared := next((tmp_path / "tmp").glob("decision-server-metrics-*"), None)) or started() < 2:
            assert process.poll() is None and time.monotonic() < deadline, server_log.read_text()[-3000:]
            time.sleep(0.2)
        assert _status(port, "/ready") == 200

        # Bursts of 20 on new connections until both workers have decided some (which worker accepts is up to
        # the kernel): then no single worker's own count is the total, and each scrape must add them up.
        burst, body = 0, {"customer_id": "PROSPECT", "channel": "app"}
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            while sum(1 for n in _per_worker(shared, "decision_server_decision_duration_seconds_count").values() if n) < 2:
                assert burst < 600, _per_worker(shared, "decision_server_decision_duration_seconds_count")
                statuses = list(pool.map(lambda _: _request(port, "POST", "/api/v1/decisions", decider, body)[0], range(20)))
                assert statuses == [201] * 20
                burst += 20

        scrapes = [parse(_request(port, "GET", "/metrics", key)[1].decode()) for _ in range(4)]  # whichever worker answers
        for samples in scrapes:
            decided = sum(
                value(samples, "decision_server_decision_duration_seconds_count", channel="app", result=r)
                for r in ("offer", "no_offer", "error")
            )
            assert decided == burst
            assert value(samples, "decision_server_decision_log_writes_total", result="ok") == burst
            assert value(samples, "decision_server_model_fallback", model="churn") == 1
        assert sum(_per_worker(shared, "decision_server_decision_duration_seconds_count").values()) == burst

        # A worker that stops (granian starts another) takes its live gauges along and leaves its counts.
        [gone, kept] = [path.stem.split("_")[-1] for path in shared.glob("gauge_livemax_*.db")]
        os.kill(int(gone), signal.SIGTERM)
        deadline = time.monotonic() + 60
        while started() < 3:  # granian has started another worker in its place
            assert time.monotonic() < deadline, server_log.read_text()[-3000:]
            time.sleep(0.2)
        assert not (shared / f"gauge_livemax_{gone}.db").exists() and (shared / f"gauge_livemax_{kept}.db").exists()
        assert len(list(shared.glob("gauge_livemax_*.db"))) == 2
        for _ in range(4):
            samples = parse(_request(port, "GET", "/metrics", key)[1].decode())
            assert (
                sum(
                    value(samples, "decision_server_decision_duration_seconds_count", channel="app", result=r)
                    for r in ("offer", "no_offer", "error")
                )
                == burst
            )
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0 and not shared.exists(), server_log.read_text()[-3000:]  # removed at exit


def _status(port: int, path: str) -> int | None:
    try:
        return _request(port, "GET", path)[0]
    except OSError:
        return None
