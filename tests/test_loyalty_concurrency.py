"""Points are money: nothing lost, doubled or spent twice under concurrent load, on both databases.

Every test here runs real concurrent transactions (threads, each with its own connection; a
separate process for the kill test) through the loyalty service functions, on SQLite and on
PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from decision_server.customers.records import CustomerRecord
from decision_server.errors import Conflict
from decision_server.loyalty import rewards, service
from decision_server.loyalty.records import (
    LedgerEntryRecord,
    MemberRecord,
    RedemptionRecord,
    RewardRecord,
)
from decision_server.rules.engine import build_revision
from decision_server.rules.source import read_rules_dir
from decision_server.transactions.service import add_transactions

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_l, _m, _r, _x = (LedgerEntryRecord.__table__, MemberRecord.__table__, RewardRecord.__table__, RedemptionRecord.__table__)


@pytest.fixture(scope="module")
def revision():
    built = build_revision(read_rules_dir(os.path.join(REPO, "rules")), backend="python", run_cases=False)
    yield built
    built.close()


def _members(database, revision, count: int, points: int) -> list[int]:
    """Customers M-0.. enrolled, each with `points` points."""
    ids = []
    with database.connection(write=True) as conn:
        for i in range(count):
            cid = conn.execute(
                sa.insert(CustomerRecord.__table__).values(external_id=f"M-{i}").returning(CustomerRecord.__table__.c.id)
            ).scalar_one()
            service.enroll(conn, cid, via="api", revision=revision)
            if points:
                service.earn(conn, cid, points=points, key="setup", reason="setup", actor=None, revision=revision)
            ids.append(cid)
    return ids


def _reward(database, *, cost: int, stock: int | None) -> int:
    with database.connection(write=True) as conn:
        return rewards.create(conn, {"code": "R", "name": "R", "points_cost": cost, "stock": stock})["id"]


def _race(n: int, work):
    """Run work(i) for i in range(n) from n threads released together; return (results, errors)."""
    start = threading.Barrier(n)

    def run(i):
        start.wait()
        try:
            return work(i), None
        except Conflict as exc:
            return None, exc.code

    with ThreadPoolExecutor(n) as pool:
        outcomes = list(pool.map(run, range(n)))
    return [r for r, _ in outcomes if r is not None], [e for _, e in outcomes if e is not None]


def _books(database, cid: int) -> tuple[int, int, int]:
    """(balance, ledger sum, lowest balance_after) of a member."""
    with database.connection() as conn:
        balance = conn.execute(sa.select(_m.c.balance).where(_m.c.customer_id == cid)).scalar_one()
        total, lowest = conn.execute(
            sa.select(sa.func.sum(_l.c.points), sa.func.min(_l.c.balance_after)).where(_l.c.customer_id == cid)
        ).one()
    return balance, int(total or 0), int(lowest if lowest is not None else 0)


def test_50_concurrent_redemptions_against_a_balance_that_affords_exactly_10(database, revision):
    [cid] = _members(database, revision, 1, 1000)
    reward = _reward(database, cost=100, stock=None)

    def redeem(i):
        with database.connection(write=True) as conn:
            return rewards.redeem(conn, cid, reward, key=f"k-{i}")[0]

    done, errors = _race(50, redeem)
    assert len(done) == 10 and errors == ["insufficient_points"] * 40
    balance, total, lowest = _books(database, cid)
    assert balance == 0 == total and lowest >= 0
    with database.connection() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(_x)).scalar_one() == 10
        assert conn.execute(sa.select(sa.func.count()).select_from(_l).where(_l.c.kind == "redeem")).scalar_one() == 10


def test_the_same_earn_retried_20_times_concurrently_earns_once(database, revision):
    [cid] = _members(database, revision, 1, 0)

    def earn(i):
        with database.connection(write=True) as conn:
            return service.earn(conn, cid, points=250, key="partner-77", reason="hotel", actor=None, revision=revision)

    done, errors = _race(20, earn)
    assert errors == [] and len(done) == 20
    assert sum(1 for _, created in done if created) == 1
    assert len({entry["id"] for entry, _ in done}) == 1
    assert _books(database, cid)[:2] == (250, 250)


def test_the_same_purchase_posted_20_times_concurrently_earns_once(database, revision):
    with database.connection(write=True) as conn:
        conn.execute(sa.insert(CustomerRecord.__table__).values(external_id="P-1"))
    purchase = {
        "external_id": "POS-1",
        "customer_id": "P-1",
        "occurred_at": dt.datetime(2026, 11, 1, 10, tzinfo=dt.UTC),
        "amount_cents": 4000,
        "cost_cents": None,
        "product": None,
        "category": None,
        "channel": "store",
    }

    def post(i):
        with database.session(write=True) as session:
            return add_transactions(
                session,
                items=[dict(purchase)],
                batch=False,
                on_created=lambda s, rows: service.earn_for_purchases(s.connection(), rows, revision=revision, auto_enroll=True),
            )

    done, errors = _race(20, post)
    assert errors == [] and sorted(r[0]["status"] for r in done) == ["created"] + ["existing"] * 19
    with database.connection() as conn:
        cid = conn.execute(
            sa.select(CustomerRecord.__table__.c.id).where(CustomerRecord.__table__.c.external_id == "P-1")
        ).scalar_one()
        earned = conn.execute(sa.select(_l.c.points).where(_l.c.customer_id == cid)).scalars().all()
    assert earned == [140]  # 40.00 at bronze + the welcome bonus, once
    assert _books(database, cid)[:2] == (140, 140)


def test_stock_never_goes_below_zero_with_concurrent_redeemers_of_the_last_items(database, revision):
    ids = _members(database, revision, 20, 500)
    reward = _reward(database, cost=100, stock=3)

    def redeem(i):
        with database.connection(write=True) as conn:
            return rewards.redeem(conn, ids[i], reward, key="last")[0]

    done, errors = _race(20, redeem)
    assert len(done) == 3 and errors == ["reward_out_of_stock"] * 17
    with database.connection() as conn:
        assert conn.execute(sa.select(_r.c.stock).where(_r.c.id == reward)).scalar_one() == 0
    assert sorted(_books(database, cid)[0] for cid in ids) == [400] * 3 + [500] * 17


def test_cancel_and_redeem_racing_keep_the_books(database, revision):
    """Cancellations and new redemptions of one member interleave: every point is accounted for."""
    [cid] = _members(database, revision, 1, 1000)
    reward = _reward(database, cost=100, stock=5)
    with database.connection(write=True) as conn:
        first = [rewards.redeem(conn, cid, reward, key=f"a-{i}")[0]["id"] for i in range(5)]

    def work(i):
        with database.connection(write=True) as conn:
            if i < 5:
                return rewards.cancel(conn, first[i], reason="race", actor=None, revision=revision)[1]
            return rewards.redeem(conn, cid, reward, key=f"b-{i}")[1]

    done, errors = _race(15, work)
    assert set(errors) <= {"reward_out_of_stock"}
    redeemed_again = len(done) - 5
    balance, total, lowest = _books(database, cid)
    assert balance == total == 1000 - 100 * redeemed_again and lowest >= 0
    with database.connection() as conn:
        stock = conn.execute(sa.select(_r.c.stock).where(_r.c.id == reward)).scalar_one()
    assert stock == 5 - redeemed_again >= 0


CHILD = textwrap.dedent("""
    import sys, time
    import sqlalchemy as sa
    from sqlalchemy import event
    from decision_server.db import Database
    from decision_server.loyalty import rewards

    url, cid, reward, marker, pause_at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    database = Database(url)

    def pause(message):
        open(marker, "w").write(message)
        time.sleep(120)  # the test kills us here

    @event.listens_for(database.engine, "before_cursor_execute")
    def before(conn, cursor, statement, parameters, context, executemany):
        if pause_at != "commit" and statement.lstrip().upper().startswith(pause_at):
            pause(statement)

    @event.listens_for(database.engine, "commit")
    def before_commit(conn):
        if pause_at == "commit":
            pause("COMMIT")

    with database.connection(write=True) as conn:
        rewards.redeem(conn, cid, reward, key="killed")
    open(marker, "w").write("done")
""")


@pytest.mark.parametrize(
    "pause_at",
    [
        "UPDATE LOYALTY_REWARDS",  # the item is taken
        "INSERT INTO LOYALTY_REDEMPTIONS",  # ... and the redemption written
        "INSERT INTO LOYALTY_LEDGER",  # ... and the ledger entry
        "UPDATE LOYALTY_MEMBERS",  # ... and the balance moved
        "commit",  # everything written, the commit not yet sent
    ],
)
def test_a_process_killed_in_the_middle_of_a_redemption_leaves_none_of_it(database, revision, tmp_path, pause_at):
    [cid] = _members(database, revision, 1, 300)
    reward = _reward(database, cost=100, stock=2)
    before = _books(database, cid)
    marker = tmp_path / "marker"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            str(database.engine.url.render_as_string(hide_password=False)),
            str(cid),
            str(reward),
            str(marker),
            pause_at,
        ],
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), f"the child never reached {pause_at} (exit {child.poll()})"
        assert marker.read_text() != "done"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
    # Nothing of the redemption is left, and the next one goes through whole.
    assert _books(database, cid) == before
    with database.connection() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(_x)).scalar_one() == 0
        assert conn.execute(sa.select(_r.c.stock).where(_r.c.id == reward)).scalar_one() == 2
    with database.connection(write=True) as conn:
        rewards.redeem(conn, cid, reward, key="killed")
    assert _books(database, cid)[:2] == (200, 200)


def test_a_redemption_that_is_not_killed_is_all_there(database, revision, tmp_path):
    """The same child with nothing to pause at: the whole redemption commits (the kill test's control)."""
    [cid] = _members(database, revision, 1, 300)
    reward = _reward(database, cost=100, stock=2)
    marker = tmp_path / "marker"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(database.engine.url.render_as_string(hide_password=False)),
            str(cid),
            str(reward),
            str(marker),
            "NOTHING",
        ],
        check=False,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 0 and marker.read_text() == "done"
    assert _books(database, cid)[:2] == (200, 200)
    with database.connection() as conn:
        assert conn.execute(sa.select(_r.c.stock).where(_r.c.id == reward)).scalar_one() == 1
        assert conn.execute(sa.select(sa.func.count()).select_from(_x)).scalar_one() == 1
