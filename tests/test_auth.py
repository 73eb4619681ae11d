"""Every route × no key / bad key / each role: 401, 403 or allowed, as the roles table says."""

from __future__ import annotations

import itertools
import time

import pytest
from click.testing import CliRunner

from decision_server.cli import cli

ALL = {"channel", "analyst", "editor", "ingest", "admin"}
WRITERS = {"ingest", "admin"}
ADMIN = {"admin"}
RULE_READERS = {"analyst", "editor", "admin"}
ANALYSTS = {"analyst", "editor", "admin"}  # base-wide figures (analytics:read)
RULE_EDITORS = {"editor", "admin"}
REVISION = "/api/v1/rules/revisions/<revision:revision>"
CUSTOMER = "/api/v1/customers/<string:customer_id>"
MODEL = "/api/v1/models/<string:name>"
SEGMENT = "/api/v1/segments/<string:name>"
OFFER = "/api/v1/offers/<id:offer_id>"
CONNECTOR = "/api/v1/catalog/connectors/<string:name>"
OFFER_READERS = {"channel", "analyst", "editor", "admin"}
DECIDERS = {"channel", "admin"}
DECISION = "/api/v1/decisions/<string:decision_id>"
LOYALTY = "/api/v1/loyalty"
LOYAL_MEMBER = LOYALTY + "/members/<string:customer_id>"
TIER = LOYALTY + "/tiers/<id:tier_id>"
REWARD = LOYALTY + "/rewards/<id:reward_id>"
REDEMPTION = LOYALTY + "/redemptions/<id:redemption_id>"
JOBS = "/api/v1/jobs"
ONE_OFFER = {
    "id": 1,
    "code": "ONE",
    "name": "One",
    "category": "loyalty",
    "business_value": 1,
    "treatments": {"app": {"title": "One", "body": "One offer"}},
}

# (method, rule) -> roles allowed. Written out by hand on purpose: the expectation must not be
# derived from the code under test. A new route fails test_every_route_is_in_the_matrix until
# it is added here.
MATRIX = {
    ("GET", "/api/v1/customers"): ALL,
    ("POST", "/api/v1/customers"): WRITERS,
    ("GET", CUSTOMER): ALL,
    ("PATCH", CUSTOMER): WRITERS,
    ("POST", "/api/v1/transactions"): WRITERS,
    ("POST", "/api/v1/transactions/batch"): WRITERS,
    ("GET", CUSTOMER + "/transactions"): ALL,
    ("POST", "/api/v1/touchpoints"): WRITERS,
    ("POST", "/api/v1/touchpoints/batch"): WRITERS,
    ("GET", "/api/v1/touchpoints/statistics"): ANALYSTS,
    ("GET", CUSTOMER + "/touchpoints"): ALL,
    ("GET", "/api/v1/keys"): ADMIN,
    ("POST", "/api/v1/keys"): ADMIN,
    ("DELETE", "/api/v1/keys/<id:key_id>"): ADMIN,
    ("GET", "/api/v1/rules"): RULE_READERS,
    ("GET", "/api/v1/rules/revisions"): RULE_READERS,
    ("GET", REVISION): RULE_READERS,
    ("GET", REVISION + "/diff"): RULE_READERS,
    ("GET", "/api/v1/rules/publications"): RULE_READERS,
    ("POST", "/api/v1/rules/validate"): RULE_READERS,
    ("POST", "/api/v1/rules/test"): RULE_READERS,
    ("POST", "/api/v1/rules/evaluate"): RULE_READERS,
    ("POST", "/api/v1/rules/publish"): RULE_EDITORS,
    ("POST", "/api/v1/rules/rollback"): RULE_EDITORS,
    ("GET", CUSTOMER + "/scores"): ALL,
    ("GET", "/api/v1/models"): RULE_READERS,
    ("GET", MODEL): RULE_READERS,
    ("POST", MODEL + "/promote"): ADMIN,
    ("POST", MODEL + "/rollback"): ADMIN,
    ("GET", CUSTOMER + "/transitions"): ALL,
    ("POST", CUSTOMER + "/stage"): RULE_EDITORS,
    ("GET", CUSTOMER + "/journey"): ALL,
    ("POST", CUSTOMER + "/journey"): RULE_EDITORS,
    ("GET", "/api/v1/journeys/statistics"): ALL,
    ("GET", "/api/v1/journeys/transitions"): ALL,
    ("GET", CUSTOMER + "/clv"): ALL,
    ("GET", CUSTOMER + "/profile"): ALL,
    ("GET", CUSTOMER + "/rfm"): ALL,
    ("GET", "/api/v1/clv"): ALL,
    ("GET", "/api/v1/clv/statistics"): ALL,
    ("GET", "/api/v1/clv/summary"): ANALYSTS,
    ("GET", "/api/v1/lifecycle/statistics"): ALL,
    ("GET", "/api/v1/lifecycle/transitions"): ALL,
    ("GET", "/api/v1/lifecycle/statistics/history"): ANALYSTS,
    ("POST", "/api/v1/lifecycle/evaluate"): RULE_EDITORS,
    ("POST", "/api/v1/rfm/calculate"): RULE_EDITORS,
    ("GET", "/api/v1/rfm/runs"): ALL,
    ("GET", "/api/v1/rfm/statistics"): ALL,
    ("GET", "/api/v1/rfm/grid"): ANALYSTS,
    ("GET", "/api/v1/rfm/moves"): ANALYSTS,
    ("GET", "/api/v1/value/statistics"): ALL,
    ("GET", "/api/v1/value/thresholds"): RULE_READERS,
    ("GET", "/api/v1/segments"): ALL,
    ("POST", "/api/v1/segments"): RULE_EDITORS,
    ("GET", SEGMENT): ALL,
    ("PATCH", SEGMENT): RULE_EDITORS,
    ("DELETE", SEGMENT): RULE_EDITORS,
    ("GET", SEGMENT + "/members"): ALL,
    ("GET", SEGMENT + "/counts"): ALL,
    ("POST", "/api/v1/segments/recompute"): RULE_EDITORS,
    ("GET", "/api/v1/offers"): OFFER_READERS,
    ("POST", "/api/v1/offers"): RULE_EDITORS,
    ("GET", OFFER): OFFER_READERS,
    ("PATCH", OFFER): RULE_EDITORS,
    ("DELETE", OFFER): RULE_EDITORS,
    ("POST", "/api/v1/decisions"): DECIDERS,
    ("GET", "/api/v1/decisions"): OFFER_READERS,
    ("GET", DECISION): OFFER_READERS,
    ("POST", DECISION + "/responses"): DECIDERS,
    ("GET", "/api/v1/decisions/offers/statistics"): OFFER_READERS,
    ("GET", "/api/v1/decisions/statistics"): ANALYSTS,
    ("GET", "/api/v1/decisions/statistics/offers"): ANALYSTS,
    ("GET", "/api/v1/decisions/statistics/daily"): ANALYSTS,
    ("GET", "/api/v1/decisions/statistics/removals"): ANALYSTS,
    ("POST", "/api/v1/decisions/preview"): OFFER_READERS,
    ("GET", "/api/v1/value/offers"): OFFER_READERS,
    ("GET", "/api/v1/catalog/connectors"): RULE_EDITORS,
    ("POST", "/api/v1/catalog/connectors"): ADMIN,
    ("GET", CONNECTOR): RULE_EDITORS,
    ("PATCH", CONNECTOR): ADMIN,
    ("DELETE", CONNECTOR): ADMIN,
    ("POST", CONNECTOR + "/sync"): RULE_EDITORS,
    ("GET", "/api/v1/catalog/sync-runs"): OFFER_READERS,
    ("GET", LOYALTY + "/tiers"): OFFER_READERS,
    ("POST", LOYALTY + "/tiers"): RULE_EDITORS,
    ("GET", TIER): OFFER_READERS,
    ("PATCH", TIER): RULE_EDITORS,
    ("DELETE", TIER): RULE_EDITORS,
    ("GET", LOYALTY + "/tier-changes"): OFFER_READERS,
    ("GET", LOYALTY + "/members"): OFFER_READERS,
    ("GET", LOYAL_MEMBER): OFFER_READERS,
    ("POST", LOYAL_MEMBER + "/enroll"): DECIDERS,
    ("GET", LOYAL_MEMBER + "/ledger"): OFFER_READERS,
    ("POST", LOYAL_MEMBER + "/tier"): ADMIN,
    ("POST", LOYAL_MEMBER + "/earn"): DECIDERS,
    ("POST", LOYAL_MEMBER + "/adjust"): ADMIN,
    ("GET", LOYAL_MEMBER + "/redemptions"): OFFER_READERS,
    ("POST", LOYAL_MEMBER + "/redemptions"): DECIDERS,
    ("GET", LOYALTY + "/redemptions"): OFFER_READERS,
    ("GET", REDEMPTION): OFFER_READERS,
    ("POST", REDEMPTION + "/cancel"): DECIDERS,
    ("GET", LOYALTY + "/rewards"): OFFER_READERS,
    ("POST", LOYALTY + "/rewards"): RULE_EDITORS,
    ("GET", REWARD): OFFER_READERS,
    ("PATCH", REWARD): RULE_EDITORS,
    ("DELETE", REWARD): RULE_EDITORS,
    ("GET", LOYALTY + "/statistics"): OFFER_READERS,
    ("GET", LOYALTY + "/statistics/points"): ANALYSTS,
    ("POST", LOYALTY + "/review"): RULE_EDITORS,
    ("POST", LOYALTY + "/expire"): RULE_EDITORS,
    ("POST", JOBS + "/reevaluate"): ADMIN,
    ("POST", JOBS + "/what-if"): RULE_READERS,  # a dry run: analysts try drafts too
    ("GET", JOBS + "/runs"): RULE_READERS,
    ("GET", JOBS + "/runs/<id:run_id>"): RULE_READERS,
    ("GET", JOBS + "/schedules"): RULE_READERS,
    ("PATCH", JOBS + "/schedules/<string:name>"): ADMIN,
    ("POST", JOBS + "/schedules/<string:name>/run"): ADMIN,
}

TX = {"customer_id": "C1", "occurred_at": "2026-01-01T10:00:00Z", "amount": "10.00"}
TP = {"customer_id": "C1", "occurred_at": "2026-01-01T10:00:00Z", "channel": "app", "kind": "app_open"}
# A connector whose secret is not set: a sync of it fails at once (a recorded run, 200) without any request.
CONNECTOR_BODY = {
    "url": "http://127.0.0.1:9/offers",
    "auth_header": "X-Api-Key",
    "auth_env": "DS_TEST_UNSET_SECRET",
    "mapping": {"external_id": "id", "code": "code", "name": "name"},
}
BODIES = {
    ("POST", "/api/v1/customers"): lambda n: {"external_id": f"NEW-{n}"},
    ("POST", JOBS + "/reevaluate"): lambda n: {"steps": ["stages"]},
    ("POST", JOBS + "/what-if"): lambda n: {"steps": ["stages"]},
    ("PATCH", JOBS + "/schedules/<string:name>"): lambda n: {"enabled": True},
    ("PATCH", CUSTOMER): lambda n: {"first_name": "Ana"},
    ("POST", "/api/v1/transactions"): lambda n: TX,
    ("POST", "/api/v1/transactions/batch"): lambda n: {"items": [TX]},
    ("POST", "/api/v1/touchpoints"): lambda n: TP,
    ("POST", "/api/v1/touchpoints/batch"): lambda n: {"items": [TP]},
    ("POST", "/api/v1/keys"): lambda n: {"name": f"k{n}", "role": "channel"},
    ("POST", "/api/v1/rules/validate"): lambda n: {"files": {}},
    ("POST", "/api/v1/rules/evaluate"): lambda n: {"ruleset": "value", "inputs": {"value_score": 50}},
    ("POST", "/api/v1/rules/publish"): lambda n: {"files": {}, "message": "no change"},
    ("POST", CUSTOMER + "/stage"): lambda n: {"stage": ["growth", "retention"][n % 2], "reason": "test of roles"},
    ("POST", CUSTOMER + "/journey"): lambda n: {"stage": ["awareness", "consideration"][n % 2], "reason": "test of roles"},
    ("POST", "/api/v1/rfm/calculate"): lambda n: {},
    ("POST", "/api/v1/segments"): lambda n: {"name": f"seg_{n}", "condition": "frequency >= 1"},
    ("PATCH", SEGMENT): lambda n: {"description": f"changed {n}"},
    ("POST", "/api/v1/offers"): lambda n: {"code": f"NEW{n}", "name": "New", "category": "loyalty", "business_value": 1},
    ("PATCH", OFFER): lambda n: {"name": f"Renamed {n}"},
    ("POST", "/api/v1/decisions"): lambda n: {"customer_id": "C1", "channel": "app"},
    ("POST", "/api/v1/decisions/preview"): lambda n: {"customer_id": "C1", "channel": "app"},
    ("POST", DECISION + "/responses"): lambda n: {"response": "clicked"},
    ("POST", "/api/v1/catalog/connectors"): lambda n: {"name": f"conn_{n}", **CONNECTOR_BODY},
    ("PATCH", CONNECTOR): lambda n: {"retries": n % 3},
    ("POST", LOYALTY + "/tiers"): lambda n: {"name": f"tier{n}", "rank": 20 + n, "multiplier": 1},
    ("PATCH", TIER): lambda n: {"description": f"changed {n}"},
    ("POST", LOYAL_MEMBER + "/enroll"): lambda n: {},
    ("POST", LOYAL_MEMBER + "/earn"): lambda n: {"points": 5, "reason": "roles", "idempotency_key": f"earn-{n}"},
    ("POST", LOYAL_MEMBER + "/tier"): lambda n: {"tier": ["silver", "gold"][n % 2], "reason": "roles"},
    ("POST", LOYAL_MEMBER + "/adjust"): lambda n: {"points": 5, "reason": "roles", "idempotency_key": f"adjust-{n}"},
    ("POST", LOYAL_MEMBER + "/redemptions"): lambda n: {"reward_id": 1, "idempotency_key": f"redeem-{n}"},
    ("POST", REDEMPTION + "/cancel"): lambda n: {"reason": "roles"},
    ("POST", LOYALTY + "/rewards"): lambda n: {"code": f"NEW{n}", "name": "New", "points_cost": 5},
    ("PATCH", REWARD): lambda n: {"name": f"Renamed {n}"},
}


_SPARES = itertools.count()


def _loyalty_path(client, auth, rule, path, n):
    """Enrol C1 with points, reward 1 and a redemption of it; a fresh tier or reward for each DELETE."""
    admin = auth("admin")
    client.post(LOYALTY + "/members/C1/enroll", json={}, headers=admin)
    client.post(LOYALTY + "/members/C1/earn", json={"points": 1000, "reason": "setup", "idempotency_key": "setup"}, headers=admin)
    client.post(LOYALTY + "/rewards", json={"code": "ONE", "name": "One", "points_cost": 1}, headers=admin)
    redeemed = client.post(LOYALTY + "/members/C1/redemptions", json={"reward_id": 1, "idempotency_key": "setup"}, headers=admin)
    path = (
        path.replace("<id:redemption_id>", str(redeemed.get_json()["id"]))
        .replace("<id:reward_id>", "1")
        .replace("<id:tier_id>", "1")
    )
    spares = next(_SPARES)
    if rule == TIER:
        spare = client.post(
            LOYALTY + "/tiers", json={"name": f"spare{spares}", "rank": 50 + spares, "multiplier": 1}, headers=admin
        )
        path = LOYALTY + f"/tiers/{spare.get_json()['id']}"
    if rule == REWARD:
        spare = client.post(
            LOYALTY + "/rewards", json={"code": f"SPARE{spares}", "name": "Spare", "points_cost": 1}, headers=admin
        )
        path = LOYALTY + f"/rewards/{spare.get_json()['id']}"
    return path


def _api_routes(app):
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/") and not rule.endpoint.startswith("api-docs"):
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                yield method, rule.rule


def _runs_settled(app) -> None:
    """Wait until no job run is running (runs started over the API go on in a thread)."""
    deadline = time.monotonic() + 60
    while True:
        with app.extensions["database"].connection() as conn:
            if not conn.exec_driver_sql("SELECT count(*) FROM bulk_runs WHERE status = 'running'").scalar():
                return
        assert time.monotonic() < deadline, "a job run did not end"
        time.sleep(0.05)


def test_every_route_is_in_the_matrix(app):
    assert set(_api_routes(app)) == set(MATRIX)


@pytest.mark.parametrize(
    "method,rule", sorted(MATRIX), ids=lambda v: v.replace("<string:customer_id>", "{id}").replace("<revision:revision>", "{rev}")
)
def test_route_enforces_its_roles(client, auth, method, rule, models_dir, app):
    assert client.post("/api/v1/customers", json={"external_id": "C1"}, headers=auth("admin")).status_code == 201
    victim = client.post("/api/v1/keys", json={"name": "victim", "role": "channel"}, headers=auth("admin"))
    revision = client.get("/api/v1/rules", headers=auth("admin")).get_json()["revision"]
    path = (
        rule.replace("<string:customer_id>", "C1")
        .replace("<id:key_id>", str(victim.get_json()["id"]))
        .replace("<id:offer_id>", "1")
        .replace("<revision:revision>", revision)
        .replace("<string:name>", "seg" if rule.startswith(SEGMENT) else "churn")
    )

    app.extensions["models"].sync()
    if rule.startswith(DECISION):  # a decision that made one action, to read and respond to
        client.post("/api/v1/offers", json=ONE_OFFER, headers=auth("admin"))
        decided = client.post("/api/v1/decisions", json={"customer_id": "C1", "channel": "app"}, headers=auth("admin")).get_json()
        assert len(decided["actions"]) == 1, decided
        path = path.replace("<string:decision_id>", decided["decision_id"])
    body = BODIES.get((method, rule), lambda n: None)
    if rule == "/api/v1/rules/rollback":
        body = lambda n: {"revision": revision}
    if rule == MODEL + "/promote":
        active = (models_dir / "churn" / "ACTIVE").read_text().strip()
        body = lambda n: {"version": active}

    def call(headers, n):
        if rule.startswith(SEGMENT):  # (again) there for each role that may delete it; a repeat is a 409
            client.post("/api/v1/segments", json={"name": "seg", "condition": "frequency >= 1"}, headers=auth("admin"))
        if rule.startswith(OFFER):  # the same for offer 1
            client.post("/api/v1/offers", json=ONE_OFFER, headers=auth("admin"))
        if rule.startswith(CONNECTOR):  # the same for connector "churn" (<string:name> becomes churn below)
            client.post("/api/v1/catalog/connectors", json={"name": "churn", **CONNECTOR_BODY}, headers=auth("admin"))
        where = _loyalty_path(client, auth, rule, path, n) if rule.startswith(LOYALTY) else path
        if rule.startswith(JOBS):  # one run at a time: let the last one end; a run to read
            _runs_settled(app)
            if "<string:name>" in rule:
                where = rule.replace("<string:name>", "hourly-stages")
            if "<id:run_id>" in rule:
                started = client.post(JOBS + "/reevaluate", json={"steps": ["stages"]}, headers=auth("admin")).get_json()
                _runs_settled(app)
                where = rule.replace("<id:run_id>", str(started["id"]))
        response = client.open(where, method=method, json=body(n), headers=headers)
        if rule.startswith(JOBS):
            _runs_settled(app)
        return response

    assert call({}, 0).status_code == 401
    assert call({"Authorization": "Bearer ds_00000000_not-a-real-key"}, 0).status_code == 401
    assert call({"Authorization": "Basic dXNlcjpwYXNz"}, 0).status_code == 401
    for n, role in enumerate(sorted(ALL), start=1):
        response = call(auth(role), n)
        if role in MATRIX[(method, rule)]:
            assert response.status_code < 400, (role, response.get_json())
        else:
            assert response.status_code == 403, (role, response.status_code)
            assert response.get_json()["code"] == "forbidden"


def test_missing_key_error_is_json_with_a_code(client):
    response = client.get("/api/v1/customers")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.get_json() == {
        "code": "missing_api_key",
        "status": 401,
        "message": "send an API key as `Authorization: Bearer <key>`",
        "errors": {},
    }


def test_docs_and_health_need_no_key(client):
    assert client.get("/health").status_code == 200
    assert client.get("/api/v1/openapi.json").status_code == 200
    assert client.get("/api/v1/docs").status_code == 200
    assert client.get("/api/v1/docs-assets/swagger-ui-bundle.js").status_code == 200


def test_created_key_works_and_revoked_key_stops(client, auth):
    created = client.post("/api/v1/keys", json={"name": "app", "role": "channel"}, headers=auth("admin"))
    assert created.status_code == 201
    new = created.get_json()
    assert new["key"].startswith(f"ds_{new['prefix']}_") and new["role"] == "channel"
    headers = {"Authorization": f"Bearer {new['key']}"}
    assert client.get("/api/v1/customers", headers=headers).status_code == 200

    listed = client.get("/api/v1/keys", headers=auth("admin")).get_json()
    assert "app" in [k["name"] for k in listed]
    assert all("key" not in k and "key_hash" not in k for k in listed)

    assert client.delete(f"/api/v1/keys/{new['id']}", headers=auth("admin")).status_code == 200
    refused = client.get("/api/v1/customers", headers=headers)
    assert refused.status_code == 401 and refused.get_json()["code"] == "api_key_revoked"
    assert client.delete("/api/v1/keys/999999", headers=auth("admin")).status_code == 404


def test_key_is_stored_only_as_a_hash(client, auth, database):
    secret = client.post("/api/v1/keys", json={"name": "h", "role": "analyst"}, headers=auth("admin")).get_json()["key"]
    with database.connection() as conn:
        stored = [tuple(str(v) for v in row) for row in conn.exec_driver_sql("SELECT * FROM api_keys")]
    assert stored and not any(secret in value for row in stored for value in row)


def test_bad_key_requests_are_refused(client, auth):
    assert client.post("/api/v1/keys", json={"name": "x", "role": "root"}, headers=auth("admin")).status_code == 422
    assert client.post("/api/v1/keys", json={"name": "", "role": "admin"}, headers=auth("admin")).status_code == 422


def test_cli_prints_the_new_key_as_last_line(database_url, database):
    result = CliRunner().invoke(cli, ["--database-url", database_url, "keys", "create", "--name", "ops", "--role", "analyst"])
    assert result.exit_code == 0, result.output
    secret = result.output.strip().splitlines()[-1]
    assert secret.startswith("ds_")
    listed = CliRunner().invoke(cli, ["--database-url", database_url, "keys", "list"])
    assert "ops" in listed.output and secret not in listed.output
    key_id = listed.output.split()[0]
    revoked = CliRunner().invoke(cli, ["--database-url", database_url, "keys", "revoke", key_id])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert CliRunner().invoke(cli, ["--database-url", database_url, "keys", "revoke", "424242"]).exit_code == 1


def test_cli_refuses_unknown_role(database_url, database):
    result = CliRunner().invoke(cli, ["--database-url", database_url, "keys", "create", "--name", "x", "--role", "root"])
    assert result.exit_code == 2 and "root" in result.output


def test_spec_documents_auth_failures_and_the_error_payload(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert set(spec["components"]["schemas"]["Error"]["properties"]) == {"code", "status", "message", "errors"}
    operations = [op for path in spec["paths"].values() for op in path.values() if isinstance(op, dict) and "responses" in op]
    assert len(operations) == len(MATRIX)
    assert all({"401", "403"} <= set(op["responses"]) for op in operations)
