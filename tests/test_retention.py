"""Decision log retention: old days go (partitions dropped on PostgreSQL, batches elsewhere), statistics stay."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from decision_server import migrate
from decision_server.cli import cli
from decision_server.config import DEFAULT_CHANNELS
from decision_server.db import Database
from decision_server.decisions import retention
from decision_server.decisions.records import (
    DecisionActionRecord,
    DecisionRecord,
    DecisionResponseRecord,
    OfferLearningRecord,
)
from decision_server.decisions.service import DecisionRequest
from decision_server.offers import service as offers

UTC = dt.UTC
_d, _a, _r = DecisionRecord.__table__, DecisionActionRecord.__table__, DecisionResponseRecord.__table__


def midnight(days_ago: int, now: dt.datetime | None = None) -> dt.datetime:
    day = ((now or dt.datetime.now(UTC)) - dt.timedelta(days=days_ago)).date()
    return dt.datetime.combine(day, dt.time(), tzinfo=UTC)


@pytest.fixture
def shop(app, client, auth, database):
    """The demo catalog and two customers with purchases; returns the app's decider."""
    with database.session(write=True) as session:
        offers.load_demo_catalog(session, channels=DEFAULT_CHANNELS, words=offers.vocabulary(None))
    app.extensions["catalog"].sync()
    now = dt.datetime.now(UTC)
    for external_id in ("ANA", "BO"):
        assert (
            client.post(
                "/api/v1/customers", json={"external_id": external_id, "consent": {"app": True}}, headers=auth("admin")
            ).status_code
            == 201
        )
        for i in range(3):
            tx = {
                "external_id": f"{external_id}-{i}",
                "customer_id": external_id,
                "occurred_at": (now - dt.timedelta(days=20 - i)).isoformat(),
                "amount": "25.00",
                "category": "data_bundle",
            }
            assert client.post("/api/v1/transactions", json=tx, headers=auth("admin")).status_code == 201
    return app.extensions["decider"]


def respond(client, auth, answer, response, at):
    body = {"response": response, "offer_id": answer["actions"][0]["offer"]["id"], "occurred_at": at.isoformat()}
    made = client.post(f"/api/v1/decisions/{answer['decision_id']}/responses", json=body, headers=auth("channel"))
    assert made.status_code == 201, made.get_json()


def statistics(client, auth, since=None):
    query = f"?since={since.isoformat().replace('+00:00', 'Z')}" if since else ""
    got = client.get(f"/api/v1/decisions/offers/statistics{query}", headers=auth("analyst"))
    assert got.status_code == 200
    return got.get_json()["items"]


def learning(database):
    with database.connection() as conn:
        return sorted(tuple(r) for r in conn.execute(sa.select(OfferLearningRecord.__table__)).all())


def counts_before(database, cutoff):
    with database.connection() as conn:
        return tuple(conn.execute(sa.select(sa.func.count()).where(t.c.decided_at < cutoff)).scalar_one() for t in (_d, _a, _r))


def day_tables(database, day):
    with database.connection() as conn:
        names = [retention.partition_name(t, day.date()) for t in retention.TABLES]
        return conn.exec_driver_sql("SELECT relname FROM pg_class WHERE relname = ANY(%(n)s)", {"n": names}).scalars().all()


def test_old_decisions_go_with_their_actions_and_responses_and_statistics_stay(shop, client, auth, database):
    now = dt.datetime.now(UTC)
    partitioned = (midnight(130), midnight(125))  # days with partitions on PostgreSQL; 120 days ago falls in the default one
    if database.dialect == "postgresql":
        for day in partitioned:
            retention.ensure_partitions(database, now=day, ahead=0)
            assert len(day_tables(database, day)) == 3
    old, recent = [], []
    for days_ago in (130, 125, 120):
        for hour in (9, 13, 18):
            when = midnight(days_ago) + dt.timedelta(hours=hour)
            old.append(shop.decide(DecisionRequest("ANA" if hour != 13 else "BO", "app", {}, 2), now=when))
    for days_ago in (10, 1):
        recent.append(shop.decide(DecisionRequest("ANA", "app", {}, 2), now=now - dt.timedelta(days=days_ago)))
    recent.append(shop.decide(DecisionRequest("BO", "app", {}, 2)))
    answered = [a for a in old + recent if a["actions"]]
    assert len(answered) >= 8
    for i, answer in enumerate(answered):
        at = min(answer["decided_at"] + dt.timedelta(hours=1), dt.datetime.now(UTC))
        respond(client, auth, answer, ("accepted", "declined", "clicked")[i % 3], at)
    late = next(a for a in old if a["actions"])  # a response today to a decision of 130 days ago
    respond(client, auth, late, "ignored", dt.datetime.now(UTC))
    shop.learning.sync()
    cutoff = midnight(90)
    assert counts_before(database, cutoff)[2] > 0
    windows = (None, midnight(125), midnight(0), now - dt.timedelta(days=5))
    stats = {w: statistics(client, auth, w) for w in windows}
    counters = learning(database)

    result = retention.purge(database, days=90, batch_size=2)

    assert counts_before(database, cutoff) == (0, 0, 0)
    assert result.decisions == len(old) and result.actions == sum(len(a["actions"]) for a in old)
    assert result.responses == sum(1 for a in answered if a in old) + 1
    for answer in old:
        assert client.get(f"/api/v1/decisions/{answer['decision_id']}", headers=auth("analyst")).status_code == 404
    for answer in recent:
        kept = client.get(f"/api/v1/decisions/{answer['decision_id']}", headers=auth("analyst")).get_json()
        assert len(kept["actions"]) == len(answer["actions"]) and len(kept["responses"]) == (1 if answer["actions"] else 0)
    listed = client.get("/api/v1/decisions?limit=100", headers=auth("analyst")).get_json()["items"]
    assert {d["decision_id"] for d in listed} == {a["decision_id"] for a in recent}
    assert {w: statistics(client, auth, w) for w in windows} == stats  # every count as it was, whatever the window
    assert learning(database) == counters
    if database.dialect == "postgresql":
        assert result.days_dropped == [f"{d:%Y-%m-%d}" for d in partitioned]
        assert all(day_tables(database, d) == [] for d in partitioned)  # detached and dropped, all three tables
        assert result.batches >= 1  # 120 days ago: rows of the default partition, deleted in batches
    else:
        assert result.days_dropped == [] and result.batches >= len(old) // 2

    again = retention.purge(database, days=90)
    assert (again.decisions, again.actions, again.responses, again.days_dropped) == (0, 0, 0, [])
    assert {w: statistics(client, auth, w) for w in windows} == stats


def test_zero_days_keeps_everything_and_a_dry_run_removes_nothing(shop, database):
    when = midnight(400) + dt.timedelta(hours=12)
    shop.decide(DecisionRequest("ANA", "app", {}, 1), now=when)
    assert retention.purge(database, days=0).decisions == 0
    dry = retention.purge(database, days=30, dry_run=True)
    assert dry.dry_run and dry.decisions == 1
    assert counts_before(database, midnight(30))[0] == 1
    assert retention.purge(database, days=30).decisions == 1


def test_partitions_are_made_ahead_except_over_rows_of_the_default_partition(database):
    if database.dialect != "postgresql":
        pytest.skip("partitions are PostgreSQL's")
    start = midnight(-30)  # a month ahead: no partitions there yet
    blocked = start + dt.timedelta(days=1)
    with database.connection(write=True) as conn:
        conn.execute(
            sa.insert(_d).values(
                id="f" * 32,
                external_id="X",
                customer_id=None,
                prospect=True,
                channel="app",
                decided_at=blocked + dt.timedelta(hours=3),
                context={},
                profile={},
                revision="r",
                models={},
                candidates=[],
                latency_us=1,
            )
        )
    made = retention.ensure_partitions(database, now=start, ahead=2)
    assert made == [
        f"{start:%Y-%m-%d}",
        f"{blocked + dt.timedelta(days=1):%Y-%m-%d}",
    ]  # not the day the default partition has rows of
    with database.connection() as conn:
        for table in retention.TABLES:
            names = retention.partitions(conn, table)
            assert retention.partition_name(table, start.date()) in names and f"{table}_default" in names
            assert retention.partition_name(table, blocked.date()) not in names
        where = conn.exec_driver_sql(
            "SELECT tableoid::regclass::text FROM decisions WHERE id = %(i)s", {"i": "f" * 32}
        ).scalar_one()
    assert where == "decisions_default"
    assert retention.ensure_partitions(database, now=start, ahead=2) == []  # made once


def test_the_scheduled_job_purges_and_is_recorded(shop, client, auth, database, run_ended):
    shop.decide(DecisionRequest("ANA", "app", {}, 1), now=midnight(200) + dt.timedelta(hours=1))
    kept = shop.decide(DecisionRequest("ANA", "app", {}, 1))
    started = client.post("/api/v1/jobs/schedules/decision-log-retention/run", headers=auth("admin"))
    assert started.status_code == 202, started.get_json()
    run = run_ended(started.get_json()["id"])
    assert run["status"] == "succeeded" and run["job"] == "retention", run
    assert run["result"]["decisions"] == 1 and run["result"]["cutoff"] == midnight(90).isoformat()
    assert counts_before(database, midnight(90)) == (0, 0, 0)
    assert client.get(f"/api/v1/decisions/{kept['decision_id']}", headers=auth("analyst")).status_code == 200


def test_a_decision_made_during_a_purge_is_neither_held_up_nor_lost(shop, database):
    when = midnight(200)
    rows, actions = [], []
    for i in range(3_000):
        at = when + dt.timedelta(seconds=i)
        decision_id = f"{int(at.timestamp() * 1000):012x}{i:020x}"
        rows.append(
            {
                "id": decision_id,
                "external_id": f"C{i}",
                "customer_id": None,
                "prospect": True,
                "channel": "app",
                "decided_at": at,
                "context": {},
                "profile": {},
                "revision": "r",
                "models": {},
                "candidates": [],
                "latency_us": 1,
            }
        )
        actions.append(
            {
                "decision_id": decision_id,
                "rank": 1,
                "external_id": f"C{i}",
                "offer_id": i % 8,
                "channel": "app",
                "decided_at": at,
                "priority": 1.0,
                "propensity": 0.1,
                "learning_key": "low",
            }
        )
    with database.connection(write=True) as conn:
        conn.execute(sa.insert(_d), rows)
        conn.execute(sa.insert(_a), actions)
    batches: list[int] = []
    done: dict = {}
    purge = threading.Thread(
        target=lambda: done.setdefault(
            "result",
            retention.purge(database, days=90, batch_size=100, pause_seconds=0.005, progress=lambda r: batches.append(r.batches)),
        )
    )
    purge.start()
    made, slowest, during = [], 0.0, 0
    while purge.is_alive() or len(made) < 5:
        started = time.perf_counter()
        made.append(shop.decide(DecisionRequest("BO", "app", {}, 1))["decision_id"])
        slowest = max(slowest, time.perf_counter() - started)
        during += bool(batches) and purge.is_alive()
    purge.join()
    assert done["result"].decisions == 3_000 and done["result"].actions == 3_000 and len(batches) >= 30
    assert during >= 1  # decisions were made while batches were being deleted
    assert slowest < 2.0  # never waits for more than a batch (a generous bound)
    with database.connection() as conn:
        logged = set(conn.execute(sa.select(_d.c.id)).scalars())
    assert logged == set(made)


def test_the_purge_command_counts_removes_and_explains(shop, database):
    shop.decide(DecisionRequest("ANA", "app", {}, 1), now=midnight(100) + dt.timedelta(hours=1))
    url = database.engine.url.render_as_string(hide_password=False)
    dry = CliRunner().invoke(cli, ["--database-url", url, "decisions", "purge", "--days", "30", "--dry-run"])
    assert dry.exit_code == 0 and "would remove 1 decisions" in dry.output, dry.output
    assert counts_before(database, midnight(30))[0] == 1
    done = CliRunner().invoke(cli, ["--database-url", url, "decisions", "purge", "--days", "30", "--batch-size", "10"])
    assert done.exit_code == 0 and "removed 1 decisions" in done.output, done.output
    assert counts_before(database, midnight(30))[0] == 0
    bad = CliRunner().invoke(cli, ["--database-url", url, "decisions", "purge", "--days", "-1"])
    assert bad.exit_code == 2 and "--days" in bad.output


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_migration_moves_the_log_over_and_back(make_database_url, backend):
    database = Database(make_database_url(backend))
    try:
        migrate.upgrade(database.engine, "0013")
        days = [midnight(3) + dt.timedelta(hours=5), midnight(0) + dt.timedelta(minutes=1)]
        pg = backend == "postgresql"
        stamp = (lambda t: t) if pg else (lambda t: t.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f"))
        with database.engine.begin() as conn:
            for i, at in enumerate(days):
                conn.execute(
                    sa.text("INSERT INTO decisions VALUES (:id, 'C', NULL, true, 'app', :at, '{}', '{}', 'r', '{}', '[]', 5)"),
                    {"id": f"d{i}", "at": stamp(at)},
                )
                conn.execute(
                    sa.text("INSERT INTO decision_actions VALUES (:id, 1, 'C', 3, 'app', :at, 1.0, 0.2, 'low')"),
                    {"id": f"d{i}", "at": stamp(at)},
                )
                conn.execute(
                    sa.text(
                        "INSERT INTO decision_responses (decision_id, rank, external_id, offer_id, response, responded_at, recorded_at, "
                        "attributes) VALUES (:id, 1, 'C', 3, 'accepted', :at, :at, '{}')"
                    ),
                    {"id": f"d{i}", "at": stamp(at)},
                )
        migrate.upgrade(database.engine)
        migrate.check(database.engine)
        with database.connection() as conn:
            responses = conn.execute(sa.select(_r.c.decision_id, _r.c.decided_at).order_by(_r.c.decision_id)).all()
            assert responses == [("d0", days[0]), ("d1", days[1])]
            assert conn.execute(sa.select(sa.func.count()).select_from(_a)).scalar_one() == 2
            if pg:
                placed = dict(conn.exec_driver_sql("SELECT id, tableoid::regclass::text FROM decisions").all())
                assert placed == {"d0": f"decisions_p{days[0]:%Y%m%d}", "d1": f"decisions_p{days[1]:%Y%m%d}"}
                ahead = retention.partitions(conn)
                assert "decisions_default" in ahead and f"decisions_p{midnight(-7):%Y%m%d}" in ahead
        migrate.downgrade(database.engine, "0013")
        with database.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM decision_responses").scalar_one() == 2
            assert conn.exec_driver_sql("SELECT count(*) FROM decisions").scalar_one() == 2
        migrate.upgrade(database.engine)
        migrate.check(database.engine)
    finally:
        database.dispose()


def test_an_offer_made_only_in_removed_decisions_still_cannot_be_deleted(shop, client, auth, database):
    old = shop.decide(DecisionRequest("ANA", "app", {}, 1), now=midnight(200) + dt.timedelta(hours=1))
    offer_id = old["actions"][0]["offer"]["id"]
    assert retention.purge(database, days=90).decisions == 1
    refused = client.delete(f"/api/v1/offers/{offer_id}", headers=auth("editor"))
    assert refused.status_code == 409 and refused.get_json()["code"] == "offer_in_use"
    assert {s["offer_id"]: s["actions"] for s in statistics(client, auth)} == {offer_id: 1}
