"""The re-evaluation job: one runner at a time, runs recorded, a killed run taken over at once and
resumed without losing or repeating a change, rates counting running time only."""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from decision_server.customers.records import CustomerStateRecord
from decision_server.demo import generator
from decision_server.errors import ValidationError
from decision_server.jobs import reevaluation, runners
from decision_server.jobs.records import BulkRunRecord
from decision_server.lifecycle.records import StageTransitionRecord
from decision_server.scoring.serving import ModelSet

_runs = BulkRunRecord.__table__
_tr = StageTransitionRecord.__table__
_st = CustomerStateRecord.__table__


@pytest.fixture
def demo(database):
    generator.load(database, generator.DemoSpec(customers=600, seed=9))
    return database


def _count(database, table, *where) -> int:
    with database.connection() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar()


def test_a_run_is_recorded_with_its_result(demo, revision, trained_models):
    seen = []
    row = reevaluation.run(demo, revision, ModelSet(trained_models), chunk=200, progress=seen.append)
    assert row["status"] == "succeeded" and row["done"] == row["total"] == 600 and row["error"] is None
    assert row["result"]["pass"]["customers"] == 600 and row["result"]["pass"]["changed"] == 600
    assert {"tiers", "expiry"} <= set(row["result"]) and row["rate"] > 0 and row["eta_seconds"] is None
    assert [s.phase for s in seen][:3] == ["pass", "pass", "pass"] and seen[2].done == 600
    again = reevaluation.run(demo, revision, ModelSet(trained_models), steps=["stages"])
    assert again["id"] == row["id"] + 1 and again["result"]["pass"]["changed"] == 0 and set(again["result"]) == {"pass"}


def test_unknown_steps_are_refused_with_the_valid_ones(demo, revision):
    with pytest.raises(ValidationError, match="the steps are rfm, stages, segments, tiers, expiry"):
        reevaluation.run(demo, revision, ModelSet(Path("/nonexistent")), steps=["stage"])


def _running(database, runner: str, *, started_at: dt.datetime, heartbeat_at: dt.datetime | None = None) -> None:
    """A running run of the re-evaluation held by `runner`, as its process would have written it."""
    with database.connection(write=True) as conn:
        conn.execute(
            sa.insert(_runs).values(
                job="reevaluate",
                steps=["stages"],
                dry_run=False,
                source="cli",
                status="running",
                as_of=started_at,
                started_at=started_at,
                heartbeat_at=heartbeat_at or started_at,
                runner=runner,
                done=5,
                total=600,
                resumes=0,
            )
        )


def test_a_second_runner_is_refused_while_the_first_is_alive(demo, revision, database_url, rules_dir, tmp_path):
    now = dt.datetime.now(dt.UTC)
    elsewhere = f"elsewhere:1:{runners.place()}:7"  # this container's place, but another host: its pids mean nothing here
    _running(demo, elsewhere, started_at=now - dt.timedelta(seconds=50), heartbeat_at=now - dt.timedelta(seconds=20))
    expires = (now - dt.timedelta(seconds=20) + reevaluation.LEASE).isoformat(timespec="seconds").replace("+00:00", "Z")
    with pytest.raises(reevaluation.JobRunning, match=f"running on {elsewhere}") as refused:
        reevaluation.run(demo, revision, ModelSet(Path("/nonexistent")), steps=["stages"])
    left = (reevaluation.LEASE - dt.timedelta(seconds=20)).total_seconds()
    assert f"its lease expires at {expires} (" in refused.value.message and refused.value.errors["lease_expires_at"] == [expires]
    assert abs(float(refused.value.message.split(f"{expires} (")[1].split(" s from now")[0]) - left) <= 2
    env = {**os.environ, "DATABASE_URL": database_url, "RULES_DIR": str(rules_dir), "MODELS_DIR": str(tmp_path / "none")}
    cli = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "decision-server"), "reevaluate", "--only", "stages"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (
        cli.returncode == 1 and f"its lease expires at {expires} (" in cli.stderr and f"lease_expires_at: {expires}" in cli.stderr
    )
    with demo.connection(write=True) as conn:  # the runner stops answering: its lease runs out
        conn.execute(sa.update(_runs).values(heartbeat_at=now - reevaluation.LEASE - dt.timedelta(seconds=1)))
    row = reevaluation.run(demo, revision, ModelSet(Path("/nonexistent")), steps=["stages"])
    assert row["status"] == "succeeded" and row["id"] == 2
    with demo.connection() as conn:
        first = conn.execute(sa.select(_runs.c.status, _runs.c.error).where(_runs.c.id == 1)).one()
    assert first.status == "interrupted" and f"{elsewhere} stopped answering" in first.error


def test_a_holder_on_this_host_is_taken_over_at_once_only_when_its_process_is_gone(demo, revision, caplog):
    here, models = f"{socket.gethostname()}:{{pid}}:{runners.place()}:1", ModelSet(Path("/nonexistent"))
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.5)
        _running(demo, here.format(pid=other.pid), started_at=dt.datetime.now(dt.UTC))  # it runs the run
        with pytest.raises(reevaluation.JobRunning, match="lease expires at"):
            reevaluation.run(demo, revision, models, steps=["stages"])
        with demo.connection(write=True) as conn:  # the pid names a process started after the holder took the lease: pid reused
            conn.execute(sa.update(_runs).values(started_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)))
        with caplog.at_level(logging.WARNING, logger="decision_server.jobs.reevaluation"):
            assert reevaluation.run(demo, revision, models, steps=["stages"])["status"] == "succeeded"
        assert f"the process of runner {here.format(pid=other.pid)} is gone; taken over at once" in caplog.text
    finally:
        other.kill()
        other.wait()
    _running(demo, here.format(pid=other.pid), started_at=dt.datetime.now(dt.UTC))  # killed and reaped: gone
    assert reevaluation.run(demo, revision, models, steps=["stages"])["status"] == "succeeded"
    _running(demo, runners.runner_name() + ":1", started_at=dt.datetime.now(dt.UTC))  # this process, no thread running it
    assert reevaluation.run(demo, revision, models, steps=["stages"])["status"] == "succeeded"
    with demo.connection() as conn:
        assert [r.status for r in conn.execute(sa.select(_runs.c.status).order_by(_runs.c.id))] == [
            "interrupted",
            "succeeded",
        ] * 3

    refused = []

    def start_again(status):  # a run of this process is alive while it reports: a second start here is refused
        try:
            reevaluation.run(demo, revision, models, steps=["stages"])
        except reevaluation.JobRunning as exc:
            refused.append(exc.message)

    reevaluation.run(demo, revision, models, steps=["stages"], progress=start_again)
    assert refused and "lease expires at" in refused[0]


KILLED_MID_RUN = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from decision_server.db import Database
    from decision_server.jobs import reevaluation
    from decision_server.rules.engine import build_revision
    from decision_server.rules.source import read_rules_dir
    from decision_server.scoring.serving import ModelSet

    def die_after_two_chunks(status):
        if status.phase == "pass" and status.done >= 200:
            os.kill(os.getpid(), signal.SIGKILL)  # no clean-up of any kind, as a crash or an OOM kill

    if __name__ == "__main__":
        revision = build_revision(read_rules_dir(sys.argv[2]), backend="python", run_cases=False)
        reevaluation.run(Database(sys.argv[1]), revision, ModelSet(Path("/nonexistent")), chunk=100,
                         progress=die_after_two_chunks)
""")


def test_a_killed_run_is_taken_over_at_once_and_resumes_after_its_last_chunk(
    demo, revision, database_url, rules_dir, tmp_path, caplog
):
    script = tmp_path / "killed.py"
    script.write_text(KILLED_MID_RUN)
    done = subprocess.run(
        [sys.executable, str(script), database_url, str(rules_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert done.returncode == -9, done.stderr
    with demo.connection() as conn:
        killed = conn.execute(sa.select(_runs)).one()
    assert killed.status == "running" and killed.done == 200 and killed.checkpoint["pass"]["after_id"] > 0
    assert _count(demo, _tr) == 200  # exactly the committed chunks' transitions

    time.sleep(3)  # nobody runs the run meanwhile: this time is not running time
    with caplog.at_level(
        logging.WARNING, logger="decision_server.jobs.reevaluation"
    ):  # its lease has not run out: no waiting for it
        row = reevaluation.run(demo, revision, ModelSet(Path("/nonexistent")), chunk=100)
    assert f"the process of runner {killed.runner} is gone; taken over at once" in caplog.text
    assert (row["id"], row["status"], row["resumes"], row["done"]) == (killed.id, "succeeded", 1, 600)
    assert row["resumed_at"] - killed.heartbeat_at < reevaluation.LEASE
    wall = (row["finished_at"] - row["started_at"]).total_seconds()
    ran = (killed.heartbeat_at - killed.started_at + row["finished_at"] - row["resumed_at"]).total_seconds()
    assert (
        row["running_seconds"] == pytest.approx(ran) and row["running_seconds"] <= wall - 3
    )  # up to its last heartbeat, then again
    assert row["rate"] == pytest.approx(600 / row["running_seconds"]) and row["rate"] > 600 / wall
    assert row["result"]["pass"]["changed"] == 600  # counts carried over from the killed part
    assert _count(demo, _tr) == 600 and _count(demo, _st, _st.c.stage.is_(None)) == 0
    with demo.connection() as conn:  # no customer has two transitions: nothing was done twice
        assert conn.execute(sa.select(sa.func.count(sa.distinct(_tr.c.customer_id)))).scalar() == 600


def test_two_processes_started_together_give_one_run(demo, database_url, rules_dir, tmp_path):
    env = {**os.environ, "DATABASE_URL": database_url, "RULES_DIR": str(rules_dir), "MODELS_DIR": str(tmp_path / "none")}
    command = [
        os.path.join(os.path.dirname(sys.executable), "decision-server"),
        "reevaluate",
        "--chunk",
        "100",
        "--only",
        "stages,segments",
    ]
    procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    finished = _count(demo, _runs, _runs.c.status == "succeeded")
    if codes == [0, 0]:  # they did not overlap after all: then they ran one after the other
        assert finished == 2 and _count(demo, _tr) == 600
    else:
        assert codes == [0, 1] and finished == 1, outs
        refused = next(err for (_, err), p in zip(outs, procs, strict=True) if p.returncode == 1)
        assert "running" in refused
    assert _count(demo, _runs, _runs.c.status == "running") == 0 and _count(demo, _tr) == 600


def test_some_customers_only_from_a_file_or_a_segment(demo, revision, database_url, rules_dir, tmp_path, client, auth):
    env = {**os.environ, "DATABASE_URL": database_url, "RULES_DIR": str(rules_dir), "MODELS_DIR": str(tmp_path / "none")}
    cli = os.path.join(os.path.dirname(sys.executable), "decision-server")
    with demo.connection() as conn:
        some = conn.execute(sa.text("SELECT external_id FROM customers ORDER BY id LIMIT 5")).scalars().all()
    listed = tmp_path / "customers.txt"
    listed.write_text("# five of them\n" + "\n".join(some) + "\n\n")
    first = subprocess.run(
        [cli, "reevaluate", "--customers", str(listed), "--only", "stages"], env=env, capture_output=True, text=True, check=False
    )
    assert first.returncode == 0, first.stderr
    assert "5 customers from" in first.stdout and _count(demo, _tr) == 5 and _count(demo, _st, _st.c.stage.is_not(None)) == 5
    refused = subprocess.run(
        [cli, "reevaluate", "--customers", str(listed), "--only", "rfm"], env=env, capture_output=True, text=True, check=False
    )
    assert refused.returncode == 1 and "run the rfm step for everyone first" in refused.stderr
    listed.write_text("NOBODY-1\n" + some[0] + "\n")
    unknown = subprocess.run(
        [cli, "reevaluate", "--customers", str(listed)], env=env, capture_output=True, text=True, check=False
    )
    assert unknown.returncode == 1 and "1 unknown customer ids, e.g. NOBODY-1" in unknown.stderr

    everyone = reevaluation.run(demo, revision, ModelSet(Path("/nonexistent")), steps=["rfm"])  # the cut points to place on
    with demo.connection(write=True) as conn:  # forget the scores, to see which customers the next run places
        conn.execute(sa.update(_st).values(rfm_r=None))
    created = client.post("/api/v1/segments", json={"name": "frequent", "condition": "frequency >= 12"}, headers=auth("admin"))
    members = created.get_json()["members"]
    assert 0 < members < 600
    by_segment = subprocess.run(
        [cli, "reevaluate", "--segment", "frequent"], env=env, capture_output=True, text=True, check=False
    )
    assert by_segment.returncode == 0, by_segment.stderr
    assert f"{members} customers of segment frequent" in by_segment.stdout
    with demo.connection() as conn:
        runs = conn.execute(sa.select(_runs.c.steps, _runs.c.done, _runs.c.checkpoint).order_by(_runs.c.id)).all()
    assert (
        runs[-1].steps == ["rfm", "stages", "segments"] and runs[-1].done == members and runs[-1].checkpoint["subset"] == members
    )
    assert _count(demo, _st, _st.c.rfm_r.is_not(None)) == members  # only the segment's members were placed again
    with demo.connection() as conn:  # against the run over everyone: no new RFM run for some customers
        assert conn.execute(sa.text("SELECT max(id) FROM rfm_runs")).scalar() == everyone["result"]["pass"]["rfm"]["id"]
