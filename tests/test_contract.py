"""The API keeps its OpenAPI contract: the problems fuzzing found, one test each, then schemathesis over the spec."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from decision_server.api import IdConverter
from decision_server.auth.records import ApiKeyRecord
from decision_server.cli import cli
from decision_server.db import MAX_ID, Database
from decision_server.offers.records import CatalogConnectorRecord

API = "/api/v1"
TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
# The findings argued to be the tool's mistakes, each with why, and the operations left out, each with why.
BASELINE = TESTS / "contract_baseline.json"
# Enough cases per operation and phase to find what fuzzing found by hand, within CI's few minutes.
MAX_EXAMPLES = int(os.environ.get("CONTRACT_MAX_EXAMPLES", "10"))
SEED = 17  # a fixed seed: the same cases on every run, so a failure reproduces and CI does not flicker


def _id_routes(app) -> list[tuple[str, str]]:
    """Every (method, rule) of the API whose path holds a database id."""
    return [
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(API) and any(isinstance(c, IdConverter) for c in rule._converters.values())
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"})
    ]


def test_every_numeric_path_id_goes_through_the_id_converter_and_the_spec_states_its_range(app):
    routes = _id_routes(app)
    assert {rule for _, rule in routes} >= {
        f"{API}/offers/<id:offer_id>",
        f"{API}/loyalty/tiers/<id:tier_id>",
        f"{API}/loyalty/rewards/<id:reward_id>",
        f"{API}/loyalty/redemptions/<id:redemption_id>/cancel",
        f"{API}/keys/<id:key_id>",
        f"{API}/jobs/runs/<id:run_id>",
    }
    spec = app.test_client().get(f"{API}/openapi.json").get_json()
    integers = {
        (path, p["name"]): p["schema"]
        for path, item in spec["paths"].items()
        for p in item.get("parameters", [])
        if p["in"] == "path" and p["schema"]["type"] == "integer"
    }
    assert set(integers) == {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule), re.search(r"<id:(\w+)>", rule).group(1)) for _, rule in routes
    }
    assert all(schema == {"type": "integer", "minimum": 1, "maximum": MAX_ID} for schema in integers.values())


@pytest.mark.parametrize("number", [2**63, 2**64, 10**30, 0])
def test_an_id_the_database_cannot_hold_is_a_404_on_every_route(client, auth, app, number):
    for method, rule in _id_routes(app):
        path = rule.split("<id:")[0] + str(number) + rule.split(">", 1)[1]
        response = client.open(path, method=method, json={}, headers=auth("admin"))
        assert response.status_code == 404, (method, path, response.get_json())
        assert response.get_json()["code"] == "not_found"


def test_the_largest_id_is_looked_up_and_not_found(client, auth):
    response = client.get(f"{API}/offers/{MAX_ID}", headers=auth("admin"))
    assert response.status_code == 404 and response.get_json()["code"] == "offer_not_found"


def test_touchpoints_filter_by_kind(client, auth):
    headers = auth("admin")
    client.post(f"{API}/customers", json={"external_id": "K-1"}, headers=headers)
    for n, kind in enumerate(["app_open", "complaint", "app_open"]):
        body = {"customer_id": "K-1", "occurred_at": f"2026-01-0{n + 1}T10:00:00Z", "channel": "app", "kind": kind}
        assert client.post(f"{API}/touchpoints", json=body, headers=headers).status_code == 201
    response = client.get(f"{API}/customers/K-1/touchpoints?kind=app_open", headers=headers)
    assert response.status_code == 200, response.get_json()
    assert [t["kind"] for t in response.get_json()["items"]] == ["app_open", "app_open"]
    complaints = client.get(f"{API}/customers/K-1/touchpoints?kind=complaint&channel=app", headers=headers).get_json()
    assert [t["occurred_at"][:10] for t in complaints["items"]] == ["2026-01-02"]


@pytest.mark.parametrize(
    "condition",
    [
        "frequency >= 4\x01",
        "frequency\x7f >= 1",
        "frequency >= 4\x85",
        "frequency >= 1\u2028",
        "frequency >= 1 \ud800",
        "stage == '\udfff'",
        "frequency >= 1\r",
        "\x00",
    ],
)
def test_a_segment_condition_with_control_characters_or_lone_surrogates_is_refused(client, auth, condition):
    response = client.post(f"{API}/segments", json={"name": "odd", "condition": condition}, headers=auth("editor"))
    assert response.status_code == 422, response.get_json()
    assert list(response.get_json()["errors"]) == ["condition"]
    assert client.get(f"{API}/segments/odd", headers=auth("editor")).status_code == 404


def test_a_lone_surrogate_anywhere_in_a_body_is_refused_naming_the_field(client, auth):
    headers = {**auth("admin"), "Content-Type": "application/json"}
    body = '{"items": [{"customer_id": "C1", "occurred_at": "2026-01-01T00:00:00Z", "channel": "app", "kind": "x", "payload": {"note": "a\\ud800b"}}]}'
    response = client.post(f"{API}/touchpoints/batch", data=body, headers=headers)
    assert response.status_code == 422 and response.get_json()["errors"] == {
        "items.0.payload.note": ["not valid Unicode: a lone surrogate (\\ud800-\\udfff escape)"]
    }
    response = client.post(f"{API}/customers", data='{"external_id": "C1", "attributes": {"\\udc00": 1}}', headers=headers)
    assert response.status_code == 422 and list(response.get_json()["errors"]) == ["attributes.\udc00"]
    # A pair of surrogates is one character (here an emoji), and is stored.
    response = client.post(f"{API}/customers", data='{"external_id": "C2", "first_name": "Ana \\ud83d\\ude00"}', headers=headers)
    assert response.status_code == 201 and response.get_json()["first_name"] == "Ana \U0001f600"


def test_a_nul_character_is_refused_in_a_body_a_query_and_a_path(client, auth):
    headers = {**auth("admin"), "Content-Type": "application/json"}
    response = client.post(
        f"{API}/loyalty/tiers", data='{"name": "t", "rank": 50, "multiplier": 1, "benefits": ["a\\u0000"]}', headers=headers
    )
    assert response.status_code == 422 and response.get_json()["errors"] == {"benefits.0": ["must not contain NUL characters"]}
    response = client.get(f"{API}/lifecycle/transitions?from_stage=a%00b", headers=headers)
    assert response.status_code == 422 and list(response.get_json()["errors"]) == ["query.from_stage"]
    assert client.get(f"{API}/customers/C%00D", headers=headers).status_code == 404
    assert client.get(f"{API}/customers/C%00D/touchpoints", headers=headers).status_code == 404


def test_the_spec_says_which_bodies_are_required_and_booleans_are_json_booleans(client, auth, app):
    spec = app.test_client().get(f"{API}/openapi.json").get_json()["paths"]
    assert spec[f"{API}/offers"]["post"]["requestBody"]["required"] is True
    assert spec[f"{API}/offers/{{offer_id}}"]["patch"]["requestBody"]["required"] is False
    assert spec[f"{API}/jobs/reevaluate"]["post"]["requestBody"]["required"] is False
    response = client.post(f"{API}/rules/validate", json={"files": {}, "replace_all": 0}, headers=auth("admin"))
    assert response.status_code == 422 and list(response.get_json()["errors"]) == ["replace_all"]


def test_clv_of_a_customer_without_purchases_matches_its_schema(client, auth, app):
    client.post(f"{API}/customers", json={"external_id": "V-1"}, headers=auth("admin"))
    response = client.get(f"{API}/customers/V-1/clv?as_of=1970-01-01T00:00:00Z", headers=auth("admin"))  # before they joined
    assert response.status_code == 200 and response.get_json()["historical"] is None
    schemas = app.test_client().get(f"{API}/openapi.json").get_json()["components"]["schemas"]
    assert schemas["Clv"]["properties"]["historical"]["nullable"] is True


@pytest.mark.parametrize("url", ["http://[zz]/offers", "https://[:::::]/", "http://[::1/"])
def test_a_connector_url_with_a_broken_host_is_a_422(client, auth, url):
    body = {"name": "bad_host", "url": url, "mapping": {"external_id": "id", "code": "sku", "name": "title"}}
    response = client.post(f"{API}/catalog/connectors", json=body, headers=auth("admin"))
    assert response.status_code == 422 and list(response.get_json()["errors"]) == ["url"], response.get_json()


@pytest.mark.parametrize(
    "method,path,allowed",
    [
        ("PUT", "/offers", {"GET", "POST"}),
        ("DELETE", "/customers", {"GET", "POST"}),
        ("POST", "/offers/1", {"GET", "PATCH", "DELETE"}),
        ("GET", "/loyalty/review", {"POST"}),
    ],
)
def test_a_405_names_the_allowed_methods(client, auth, method, path, allowed):
    response = client.open(API + path, method=method, headers=auth("admin"))
    assert response.status_code == 405 and response.get_json()["code"] == "method_not_allowed"
    assert response.is_json
    assert allowed <= {m.strip() for m in response.headers["Allow"].split(",")}


@pytest.mark.parametrize("query", ["min_balance=1000000000000000000000000000000", "min_balance=-1"])
def test_a_number_beyond_the_database_range_in_a_filter_is_a_422(client, auth, query):
    response = client.get(f"{API}/loyalty/members?{query}", headers=auth("admin"))
    assert response.status_code == 422 and list(response.get_json()["errors"]) == ["query.min_balance"]
    response = client.get(f"{API}/loyalty/rewards?{query.replace('min_balance', 'max_points')}", headers=auth("admin"))
    assert response.status_code == 422 and list(response.get_json()["errors"]) == ["query.max_points"]


def test_a_cursor_is_any_string_of_its_pattern(client, auth):
    headers = auth("admin")
    client.post(f"{API}/customers", json={"external_id": "P-1"}, headers=headers)
    for cursor, status in [("0", 200), ("999999999999999999", 200), ("1.5", 422), ("", 422), ("eyJ4Ijox", 422)]:
        assert client.get(f"{API}/offers?cursor={cursor}", headers=headers).status_code == status, cursor
    for cursor, status in [("0.0", 200), ("9999999999999999.999999999999999999", 200), ("12", 422)]:
        assert client.get(f"{API}/customers/P-1/touchpoints?cursor={cursor}", headers=headers).status_code == status, cursor


# --- schemathesis over the whole spec, against the production server on each database ---------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prepare(url: str, rules_dir: Path, models_dir: Path) -> tuple[str, int]:
    """Migrate, load demo data (customers, analytics, loyalty, offers) so ids exist; return an admin key and its id."""
    env = {"DATABASE_URL": url, "RULES_DIR": str(rules_dir), "MODELS_DIR": str(models_dir)}
    runner = CliRunner()
    output = ""
    for command in (
        ["init"],
        ["demo-data", "--customers", "150", "--seed", "17"],
        ["analytics", "run"],
        ["loyalty", "demo", "--days", "90"],
        ["offers", "demo"],
        ["keys", "create", "--name", "contract", "--role", "admin"],
    ):
        result = runner.invoke(cli, command, env=env, catch_exceptions=False)
        assert result.exit_code == 0, (command, result.output)
        output = result.output
    secret = output.strip().splitlines()[-1].strip()
    database = Database(url)
    with database.engine.connect() as conn:
        key_id = conn.execute(sa.select(ApiKeyRecord.id).where(ApiKeyRecord.name == "contract")).scalar_one()
    database.dispose()
    return secret, key_id


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(request, make_database_url, tmp_path_factory):
    """The production server (granian, as `decision-server serve`) on a demo database of each backend."""
    folder = tmp_path_factory.mktemp(f"contract-{request.param}")
    rules_dir, models_dir = folder / "rules", folder / "models"
    shutil.copytree(REPO / "rules", rules_dir)
    url = make_database_url(request.param)
    secret, key_id = _prepare(url, rules_dir, models_dir)
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": url, "RULES_DIR": str(rules_dir), "MODELS_DIR": str(models_dir), "LOG_LEVEL": "WARNING"}
    log = (folder / "server.log").open("w")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "decision-server"),
            "serve",
            "--port",
            str(port),
            "--workers",
            "1",
            "--threads",
            "4",
            "--no-scheduler",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/ready", timeout=2):
                    break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, (folder / "server.log").read_text()[-3000:]
                time.sleep(0.3)
        yield {"base": base, "key": secret, "key_id": key_id, "folder": folder, "backend": request.param, "url": url}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def _baseline() -> dict:
    document = json.loads(BASELINE.read_text())
    for item in document["entries"] + document["excluded_operations"]:
        assert item.get("why", "").strip(), f"{BASELINE.name}: every entry says why: {item}"
    return document


def test_the_baseline_explains_every_entry():
    _baseline()


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_contract_violation(served):
    """Every phase and every check over the whole spec; only the baseline's argued findings may remain."""
    folder = served["folder"]
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{served['base']}{API}/openapi.json",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--mode",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-database",
        "none",
        "--header",
        f"Authorization: Bearer {served['key']}",
        "--request-timeout",
        "20",
        # One worker: on Python 3.11, hypothesis' ast.parse in two threads at once raises "AST constructor
        # recursion depth mismatch" (CPython gh-106905), a tool error that fails the run at random.
        "--workers",
        "1",
        "--baseline",
        str(folder / "baseline.json"),
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(folder / "report"),
    ]
    # Schemathesis reads (and with CONTRACT_BASELINE_UPDATE=1 rewrites) a copy: the file's `why`s and exclusions are ours.
    (folder / "baseline.json").write_text(json.dumps({"format_version": 1, "entries": _baseline()["entries"]}))
    if os.environ.get("CONTRACT_BASELINE_UPDATE"):
        command.append("--baseline-update")
    for excluded in _baseline()["excluded_operations"]:
        command += ["--exclude-by" if "by" in excluded else "--exclude-path-regex", excluded.get("by") or excluded["path_regex"]]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "contract_hooks",
        "CONTRACT_ADMIN_KEY_ID": str(served["key_id"]),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
    }
    started = time.monotonic()
    run = subprocess.run(command, env=env, cwd=folder, capture_output=True, text=True, timeout=900)
    print(f"schemathesis on {served['backend']}: {time.monotonic() - started:.0f} s, exit {run.returncode}")
    (folder / "schemathesis.txt").write_text(run.stdout + run.stderr)
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-3000:]
    # The hooks did their job: the run's key still works (a revoked one would make every answer a 401, which the
    # checks accept), and every connector the fuzzer made points at this machine.
    database = Database(served["url"])
    with database.engine.connect() as conn:
        assert conn.execute(sa.select(ApiKeyRecord.revoked_at).where(ApiKeyRecord.id == served["key_id"])).scalar_one() is None
        hosts = {urllib.parse.urlsplit(u).hostname for u in conn.execute(sa.select(CatalogConnectorRecord.url)).scalars()}
    database.dispose()
    assert hosts <= {"127.0.0.1", "localhost"}, hosts
    assert "Known failures" in run.stdout and "Test cases:" in run.stdout  # the run tested, and read the baseline
