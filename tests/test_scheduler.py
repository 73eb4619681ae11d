"""The scheduler: schedules from the file and the API, exactly one of several scheduler processes
runs the jobs (another takes over when it is killed mid-job, at once on the same host), failures
retried with backoff."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy as sa

from decision_server.config import Config
from decision_server.demo import generator
from decision_server.jobs import runners, scheduler
from decision_server.jobs.records import BulkRunRecord, LeaseRecord

_runs = BulkRunRecord.__table__
_leases = LeaseRecord.__table__
CLI = os.path.join(os.path.dirname(sys.executable), "decision-server")


def test_the_shipped_schedules_and_editing_them_over_the_api(client, auth):
    listed = client.get("/api/v1/jobs/schedules", headers=auth("analyst")).get_json()
    by_name = {s["name"]: s for s in listed["items"]}
    assert (
        set(by_name) == {"nightly", "hourly-stages", "points-expiry", "weekly-retrain", "decision-log-retention"}
        and listed["leader"] is None
    )
    assert by_name["nightly"]["cron"] == "30 2 * * *" and by_name["hourly-stages"]["steps"] == ["stages", "segments"]
    assert by_name["nightly"]["updated_by"] == "file"
    bad = client.patch("/api/v1/jobs/schedules/nightly", json={"cron": "61 2 * * *"}, headers=auth("admin"))
    assert bad.status_code == 422 and "cron" in bad.get_json()["errors"], bad.get_json()
    changed = client.patch("/api/v1/jobs/schedules/nightly", json={"cron": "0 1 * * *", "enabled": False}, headers=auth("admin"))
    assert changed.status_code == 200 and (changed.get_json()["cron"], changed.get_json()["enabled"]) == ("0 1 * * *", False)
    assert changed.get_json()["updated_by"] == "key:test-admin"
    every = client.patch("/api/v1/jobs/schedules/nightly", json={"interval_seconds": 600, "cron": None}, headers=auth("admin"))
    assert every.status_code == 200 and every.get_json()["interval_seconds"] == 600 and every.get_json()["cron"] is None
    client.patch("/api/v1/jobs/schedules/hourly-stages", json={"interval_seconds": 900}, headers=auth("admin"))
    back = client.patch("/api/v1/jobs/schedules/hourly-stages", json={"cron": "15 * * * *"}, headers=auth("admin"))
    assert back.status_code == 200 and (back.get_json()["cron"], back.get_json()["interval_seconds"]) == ("15 * * * *", None)
    both = client.patch(
        "/api/v1/jobs/schedules/hourly-stages", json={"cron": "15 * * * *", "interval_seconds": 60}, headers=auth("admin")
    )
    assert both.status_code == 422 and "cron" in both.get_json()["errors"]
    assert client.patch("/api/v1/jobs/schedules/nope", json={"enabled": True}, headers=auth("admin")).status_code == 404
    # a restart does not undo an edit: the file only adds what the database lacks
    again = {s["name"]: s for s in client.get("/api/v1/jobs/schedules", headers=auth("admin")).get_json()["items"]}
    assert again["nightly"]["interval_seconds"] == 600


def test_a_bad_schedules_file_is_refused_with_the_schedule_and_field(tmp_path):
    path = tmp_path / "schedules.yaml"
    path.write_text("schedules:\n  x:\n    job: reevaluate\n    cron: '* * *'\n")
    with pytest.raises(Exception, match="schedule x: cron"):
        scheduler.read_file(path)
    path.write_text("schedules:\n  y:\n    job: reevaluate\n    interval_seconds: 5\n    steps: [stage]\n")
    with pytest.raises(Exception, match="schedule y: steps"):
        scheduler.read_file(path)


def _start(env: dict, log) -> subprocess.Popen:
    return subprocess.Popen([CLI, "scheduler", "start"], env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def _wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_one_of_two_schedulers_runs_the_jobs_and_the_other_takes_over_when_it_is_killed(
    database, database_url, rules_dir, tmp_path
):
    generator.load(database, generator.DemoSpec(customers=400, seed=3))
    schedules = tmp_path / "schedules.yaml"
    schedules.write_text("schedules:\n  tick:\n    job: reevaluate\n    interval_seconds: 1\n    steps: [stages, segments]\n")
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "RULES_DIR": str(rules_dir),
        "MODELS_DIR": str(tmp_path / "none"),
        "SCHEDULES_FILE": str(schedules),
        "SCHEDULER_LEASE_SECONDS": "2",
        "JOB_LEASE_SECONDS": "3",
    }
    logs = [(tmp_path / f"scheduler-{i}.log").open("w") for i in range(2)]
    procs = [_start(env, log) for log in logs]
    try:

        def runs(*where):
            with database.connection() as conn:
                return conn.execute(sa.select(_runs).where(*where).order_by(_runs.c.id)).all()

        first = _wait_for(
            lambda: (
                [r for r in runs(_runs.c.status == "succeeded")][:3] if len(runs(_runs.c.status == "succeeded")) >= 3 else None
            ),
            90,
            "three scheduled runs",
        )
        assert len({r.runner.rsplit(":", 1)[0] for r in first}) == 1 and {r.source for r in first} == {"schedule"}
        with database.connection() as conn:
            holder = conn.execute(sa.select(_leases.c.holder)).scalar()
        leader_pid = int(holder.split(":")[1])
        assert leader_pid in {p.pid for p in procs} and first[0].runner.startswith(holder)
        survivor = next(p for p in procs if p.pid != leader_pid)
        _wait_for(lambda: runs(_runs.c.status == "running"), 30, "the leader in the middle of a job")
        os.kill(leader_pid, signal.SIGKILL)  # mid-job: its run stays `running` with a heartbeat that stops
        taken = _wait_for(
            lambda: [r for r in runs(_runs.c.status == "succeeded") if r.runner.split(":")[1] == str(survivor.pid)],
            90,
            "the other scheduler taking over",
        )
        assert taken
        with database.connection() as conn:
            assert conn.execute(sa.select(_leases.c.holder)).scalar().split(":")[1] == str(survivor.pid)
        # never two runs at once, and nothing left running by the dead leader
        done = runs(_runs.c.finished_at.is_not(None), _runs.c.status == "succeeded")
        for a, b in itertools.pairwise(done):
            assert a.finished_at <= b.started_at or a.id == b.id or b.resumes, (a, b)
        _wait_for(
            lambda: not [r for r in runs(_runs.c.status == "running") if r.runner.split(":")[1] == str(leader_pid)],
            60,
            "the killed leader's run interrupted or resumed",
        )
        survivor.send_signal(signal.SIGTERM)
        survivor.wait(timeout=60)
        with database.connection() as conn:
            assert conn.execute(sa.select(_leases.c.holder)).scalar() is None  # released on a clean stop
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for log in logs:
            log.close()


def test_a_failing_job_is_recorded_and_retried_with_backoff(database, database_url, rules_dir, tmp_path):
    schedules = tmp_path / "schedules.yaml"  # retraining an empty database fails: no purchases to learn from
    schedules.write_text("schedules:\n  learn:\n    job: retrain\n    interval_seconds: 3600\n")
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "RULES_DIR": str(rules_dir),
        "MODELS_DIR": str(tmp_path / "models"),
        "SCHEDULES_FILE": str(schedules),
        "SCHEDULER_LEASE_SECONDS": "2",
        "JOB_RETRY_SECONDS": "1",
    }
    log_path = tmp_path / "scheduler.log"
    with open(log_path, "w") as log:
        proc = _start(env, log)
        try:
            _wait_for(lambda: "holds the lease" in log_path.read_text(), 60, "the scheduler leading")
            ran = subprocess.run([CLI, "scheduler", "run", "learn"], env=env, capture_output=True, text=True, check=False)
            assert ran.returncode == 1 and "no purchases" in ran.stderr  # by hand: the error, no retry
            with database.connection(write=True) as conn:  # make the schedule due now: the scheduler fires it
                conn.execute(sa.text("UPDATE job_schedules SET interval_seconds = 2 WHERE name = 'learn'"))
            _wait_for(lambda: "schedule learn: retry 2 of 3" in log_path.read_text(), 90, "two retries")
            text = log_path.read_text()
            assert "schedule learn failed (attempt 1)" in text and "schedule learn failed (attempt 2)" in text
            assert "retry 1 of 3 in 1 s" in text and "retry 2 of 3 in 4 s" in text
            with database.connection() as conn:
                failed = (
                    conn.execute(sa.select(_runs.c.error).where(_runs.c.job == "retrain", _runs.c.status == "failed"))
                    .scalars()
                    .all()
                )
            assert len(failed) >= 3 and all("no purchases" in e for e in failed)
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def test_a_dead_leader_of_this_host_is_replaced_at_once_a_live_or_distant_one_is_not(database, database_url, tmp_path, caplog):
    schedules = tmp_path / "schedules.yaml"
    schedules.write_text("schedules: {}\n")
    config = Config.from_env({"DATABASE_URL": database_url, "SCHEDULES_FILE": str(schedules), "SCHEDULER_LEASE_SECONDS": "600"})
    here = f"{socket.gethostname()}:{{pid}}:{runners.place()}"
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    time.sleep(0.5)
    runner, thread = scheduler.Scheduler(database, config), None

    def held_by(holder):  # renewed just now, for ten minutes
        with database.connection(write=True) as conn:
            conn.execute(sa.delete(_leases))
            conn.execute(
                sa.insert(_leases).values(
                    name="scheduler", holder=holder, expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
                )
            )

    try:
        for holder in (f"elsewhere:{dead.pid}:{runners.place()}", here.format(pid=alive.pid)):
            held_by(holder)
            runner.step()
            assert not runner.leading, holder
        held_by(here.format(pid=dead.pid))
        leading = threading.Event()
        with caplog.at_level(logging.WARNING, logger="decision_server.jobs.scheduler"):
            thread = threading.Thread(
                target=runner.run_forever, kwargs={"on_change": lambda now: now and leading.set()}, daemon=True
            )
            thread.start()
            assert leading.wait(30)  # at its first step, not after the ten minutes
        with database.connection() as conn:
            assert conn.execute(sa.select(_leases.c.holder)).scalar() == runner.me
        assert f"the process of {here.format(pid=dead.pid)}, which held the lease, is gone" in caplog.text
    finally:
        runner.stop()  # its loop stands down and releases the lease
        if thread is not None:
            thread.join(30)
        alive.kill()
        alive.wait()


def test_schedulers_seeding_at_once_add_each_schedule_once_and_none_fails(database, tmp_path):
    import threading

    path = tmp_path / "schedules.yaml"
    path.write_text("".join(["schedules:\n"] + [f"  s{i}:\n    job: reevaluate\n    interval_seconds: 60\n" for i in range(20)]))
    start, added, failed = threading.Barrier(4), [], []

    def seed():
        start.wait()
        try:
            added.extend(scheduler.seed(database, path))
        except Exception as exc:  # noqa: BLE001 - the failure is what the test looks for
            failed.append(exc)

    threads = [threading.Thread(target=seed) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert failed == [] and sorted(added) == sorted(f"s{i}" for i in range(20))
    assert [s["name"] for s in scheduler.listing(database)] == sorted(f"s{i}" for i in range(20))
