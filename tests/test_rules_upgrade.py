"""A rules folder from an older version (no rfm, value_weights, journey) keeps serving; the gaps are explained."""

from __future__ import annotations

import datetime as dt
import shutil

import pytest
from click.testing import CliRunner
from conftest import REPO

from decision_server.cli import cli

NEWER = ("rfm", "value_weights", "journey")


@pytest.fixture
def rules_dir(tmp_path):
    target = tmp_path / "rules"
    shutil.copytree(REPO / "rules", target)
    for name in NEWER:
        for suffix in (".yaml", ".cases.yaml"):
            (target / f"{name}{suffix}").unlink()
    return target


def test_events_still_work_and_bulk_calls_say_what_is_missing(client, auth, rules_dir, config, app):
    headers = auth("admin")
    client.post("/api/v1/customers", json={"external_id": "U-1"}, headers=headers)
    body = {"customer_id": "U-1", "occurred_at": dt.datetime.now(dt.UTC).isoformat(), "amount": "5.00"}
    assert client.post("/api/v1/transactions", json=body, headers=headers).status_code == 201
    state = client.get("/api/v1/customers/U-1", headers=headers).get_json()["state"]
    assert state["stage"] == "onboarding" and state["journey_stage"] is None and state["value_score"] is None
    refused = client.post("/api/v1/rfm/calculate", json={}, headers=headers)
    assert refused.status_code == 409 and refused.get_json()["code"] == "rules_missing"
    assert "rules add-missing" in refused.get_json()["message"] and "rfm" in refused.get_json()["errors"]["rules"][0]

    # The fix the message names: add the shipped files (edits stay), the server publishes them.
    result = CliRunner().invoke(
        cli, ["--database-url", config.database_url, "--rules-dir", str(rules_dir), "rules", "add-missing"]
    )
    assert result.exit_code == 0 and "rfm.yaml" in result.output and "lifecycle.yaml" not in result.output
    app.extensions["rulebook"].sync()
    assert client.post("/api/v1/rfm/calculate", json={}, headers=headers).status_code == 200
