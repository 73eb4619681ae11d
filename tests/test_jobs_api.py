"""The jobs API: run the re-evaluation now, follow it, refuse a second runner (saying when its lease
expires) or take over a dead one at once, try a draft rule change on every customer without writing anything."""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from decision_server.cli import cli
from decision_server.demo import generator
from decision_server.jobs import reevaluation, runners
from decision_server.jobs.records import BulkRunRecord

_runs = BulkRunRecord.__table__


@pytest.fixture
def demo(database, client):
    generator.load(database, generator.DemoSpec(customers=300, seed=4))
    return database


def _stages(database) -> dict:
    with database.connection() as conn:
        return dict(conn.exec_driver_sql("SELECT stage, count(*) FROM customer_state GROUP BY stage").all())


def test_run_now_and_follow_it(client, auth, demo, run_ended):
    started = client.post("/api/v1/jobs/reevaluate", json={"steps": ["rfm", "stages"]}, headers=auth("admin"))
    assert started.status_code == 202, started.get_json()
    run = run_ended(started.get_json()["id"])
    assert run["status"] == "succeeded" and run["source"] == "api" and run["steps"] == ["rfm", "stages"]
    assert run["done"] == run["total"] == 300 and run["result"]["pass"]["changed"] == 300 and run["eta_seconds"] is None
    assert sum(_stages(demo).values()) == 300 and None not in _stages(demo)
    again = client.post("/api/v1/jobs/reevaluate", json={"steps": ["stages"]}, headers=auth("admin")).get_json()
    assert run_ended(again["id"])["result"]["pass"]["changed"] == 0
    page = client.get("/api/v1/jobs/runs?limit=1", headers=auth("editor")).get_json()
    assert [r["id"] for r in page["items"]] == [again["id"]] and page["next_cursor"]
    rest = client.get(f"/api/v1/jobs/runs?limit=1&cursor={page['next_cursor']}", headers=auth("editor")).get_json()
    assert [r["id"] for r in rest["items"]] == [run["id"]] and rest["next_cursor"] is None
    assert client.get("/api/v1/jobs/runs?status=failed", headers=auth("admin")).get_json()["items"] == []


def _held(database, runner: str, now: dt.datetime) -> None:
    """A running re-evaluation held by `runner`, 10 of 300 customers done, as its process would have written it."""
    with database.connection(write=True) as conn:
        conn.execute(
            sa.insert(_runs).values(
                job="reevaluate",
                steps=["stages"],
                dry_run=False,
                source="api",
                status="running",
                as_of=now,
                started_at=now,
                heartbeat_at=now,
                runner=runner,
                done=10,
                total=300,
                resumes=0,
            )
        )


def test_a_second_runner_gets_409_and_bad_input_422(client, auth, demo, run_ended):
    now = dt.datetime.now(dt.UTC)
    _held(demo, "other-host:7", now)
    busy = client.post("/api/v1/jobs/reevaluate", json={}, headers=auth("admin"))
    expires = (now + reevaluation.LEASE).isoformat(timespec="seconds").replace("+00:00", "Z")
    assert busy.status_code == 409 and busy.get_json()["code"] == "job_running"
    assert "other-host:7" in busy.get_json()["message"] and f"its lease expires at {expires} (" in busy.get_json()["message"]
    assert busy.get_json()["errors"]["lease_expires_at"] == [expires]
    meanwhile = client.post("/api/v1/jobs/what-if", json={"steps": ["stages"]}, headers=auth("editor"))
    assert meanwhile.status_code == 202  # a dry run writes nothing: it has a lease of its own
    assert run_ended(meanwhile.get_json()["id"])["job"] == "what-if"
    running = client.get("/api/v1/jobs/runs?status=running", headers=auth("admin")).get_json()["items"]
    assert running[0]["rate"] >= 0 and running[0]["eta_seconds"] is not None
    bad = client.post("/api/v1/jobs/reevaluate", json={"steps": ["stage"], "chunk": 5}, headers=auth("admin"))
    assert bad.status_code == 422 and {"steps", "chunk"} <= {k.split(".")[0] for k in bad.get_json()["errors"]}, bad.get_json()
    assert client.get("/api/v1/jobs/runs/999", headers=auth("admin")).status_code == 404


def test_what_if_a_draft_rule_change_reports_its_effect_and_writes_nothing(client, auth, demo, run_ended, rules_dir):
    first = client.post("/api/v1/jobs/reevaluate", json={}, headers=auth("admin")).get_json()
    assert run_ended(first["id"])["status"] == "succeeded"
    before = _stages(demo)
    with demo.connection() as conn:
        transitions = conn.exec_driver_sql("SELECT count(*) FROM stage_transitions").scalar()
        rfm_runs = conn.exec_driver_sql("SELECT count(*) FROM rfm_runs").scalar()
    lifecycle = (rules_dir / "lifecycle.yaml").read_text()
    sooner = lifecycle.replace("when: days_since(last_purchase_at) >= 60", "when: days_since(last_purchase_at) >= 20")
    assert sooner != lifecycle
    asked = client.post(
        "/api/v1/jobs/what-if",
        json={"files": {"lifecycle.yaml": sooner}, "steps": ["stages", "segments"]},
        headers=auth("editor"),
    )
    assert asked.status_code == 202, asked.get_json()
    run = run_ended(asked.get_json()["id"])
    assert run["status"] == "succeeded" and run["dry_run"] and run["rule_revision"] != first["rule_revision"]
    result = run["result"]["pass"]
    moves = {(t["from"], t["to"]): t["count"] for t in result["transitions"]}
    assert moves and all(to == "win_back" for _, to in moves) and result["written"] >= sum(moves.values())
    assert result["before"]["stage"] == {k: v for k, v in before.items()}
    assert result["after"]["stage"]["win_back"] == before.get("win_back", 0) + sum(moves.values())
    assert _stages(demo) == before  # nothing written
    with demo.connection() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM stage_transitions").scalar() == transitions
        assert conn.exec_driver_sql("SELECT count(*) FROM rfm_runs").scalar() == rfm_runs
    broken = client.post(
        "/api/v1/jobs/what-if", json={"files": {"lifecycle.yaml": lifecycle.replace("when:", "whn:", 1)}}, headers=auth("editor")
    )
    assert broken.status_code == 422 and broken.get_json()["code"] == "rule_file_invalid"
    assert "lifecycle.yaml" in broken.get_json()["message"]


def test_the_loyalty_review_and_expiry_endpoints_start_recorded_runs(client, auth, demo, run_ended, app):
    from decision_server.loyalty.demo import start_program

    start_program(demo, app.extensions["rulebook"].current, days=60)
    with demo.connection() as conn:
        members = conn.exec_driver_sql("SELECT count(*) FROM loyalty_members").scalar()
    assert members > 0
    review = client.post("/api/v1/loyalty/review", headers=auth("editor"))
    assert review.status_code == 202 and review.get_json()["steps"] == ["tiers"], review.get_json()
    run = run_ended(review.get_json()["id"])
    assert run["status"] == "succeeded" and run["source"] == "api"
    assert run["result"]["tiers"]["members"] == members
    expiry = client.post("/api/v1/loyalty/expire", headers=auth("editor")).get_json()
    assert expiry["steps"] == ["expiry"]
    done = run_ended(expiry["id"])
    assert done["status"] == "succeeded" and done["result"]["expiry"]["changed"] == 0  # as shipped, points never expire
    now = dt.datetime.now(dt.UTC)
    with demo.connection(write=True) as conn:  # the nightly run is going: one run at a time
        conn.execute(
            sa.insert(_runs).values(
                job="reevaluate",
                steps=list(reevaluation.STEPS),
                dry_run=False,
                source="schedule",
                status="running",
                as_of=now,
                started_at=now,
                heartbeat_at=now,
                runner="nightly-host:9",
                done=1,
                total=300,
                resumes=0,
            )
        )
    busy = client.post("/api/v1/loyalty/review", headers=auth("editor"))
    assert busy.status_code == 409 and busy.get_json()["code"] == "job_running"


def test_a_dead_runner_of_this_host_is_taken_over_at_once(client, auth, demo, run_ended):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid names no process any more
    _held(demo, f"{socket.gethostname()}:{dead.pid}:{runners.place()}:3", dt.datetime.now(dt.UTC))
    started = client.post("/api/v1/jobs/reevaluate", json={"steps": ["stages"]}, headers=auth("admin"))
    assert started.status_code == 202, started.get_json()
    assert run_ended(started.get_json()["id"])["status"] == "succeeded"
    with demo.connection() as conn:
        first = conn.execute(sa.select(_runs.c.status, _runs.c.error).order_by(_runs.c.id)).first()
    assert first.status == "interrupted" and f"{dead.pid}" in first.error and "is gone" in first.error


def test_rate_and_time_left_count_running_time_only(client, auth, demo, database_url):
    now = dt.datetime.now(dt.UTC)
    with demo.connection(write=True) as conn:  # ran 20 s, nobody ran it for an hour, resumed 10 s ago: 300 done in 30 s
        run_id = conn.execute(
            sa.insert(_runs)
            .values(
                job="reevaluate",
                steps=["stages"],
                dry_run=False,
                source="api",
                status="running",
                as_of=now - dt.timedelta(hours=1),
                started_at=now - dt.timedelta(hours=1),
                heartbeat_at=now,
                resumed_at=now - dt.timedelta(seconds=10),
                prior_seconds=20.0,
                done=300,
                total=600,
                resumes=1,
                runner="other-host:7",
            )
            .returning(_runs.c.id)
        ).scalar_one()
    run = client.get(f"/api/v1/jobs/runs/{run_id}", headers=auth("analyst")).get_json()
    assert run["running_seconds"] == pytest.approx(30, abs=2) and run["rate"] == pytest.approx(10, rel=0.1)
    assert run["eta_seconds"] == pytest.approx(30, rel=0.1)
    shown = CliRunner().invoke(cli, ["--database-url", database_url, "jobs", "show", str(run_id)])
    assert shown.exit_code == 0 and "300 of 600 (10/s over 30 s of running, about 30 s left)" in shown.output, shown.output
    with demo.connection(write=True) as conn:  # it ends 10 s later: 600 in 40 s of running, over an hour from start to end
        conn.execute(
            sa.update(_runs).values(
                status="succeeded",
                done=600,
                finished_at=now + dt.timedelta(seconds=10),
                result={"pass": {"customers": 600, "written": 600, "changed": 5, "transitions": []}},
            )
        )
    ended = client.get(f"/api/v1/jobs/runs/{run_id}", headers=auth("analyst")).get_json()
    assert ended["running_seconds"] == pytest.approx(40) and ended["rate"] == pytest.approx(15) and ended["eta_seconds"] is None
    summary = CliRunner().invoke(cli, ["--database-url", database_url, "jobs", "show", str(run_id)]).output
    assert "succeeded in 40.0 s of running (resumed 1x; 3610.0 s from start to end)" in summary and "(15/s)" in summary, summary
