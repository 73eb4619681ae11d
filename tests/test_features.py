"""Features: the state-row path and the set-based SQL path agree; cut-offs never see the future."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import sqlalchemy as sa

from decision_server import migrate
from decision_server.customers.records import CustomerRecord
from decision_server.customers.state import refresh_state
from decision_server.db import UTC, Database, utcnow
from decision_server.demo import generator
from decision_server.features import bulk, online
from decision_server.features.definition import (
    FEATURE_NAMES,
    Windows,
    month_index,
    month_start,
)
from decision_server.ingest import bulk as ingest


def _online_matrix(database, ids, as_of):
    with database.connection() as conn:
        return np.vstack([online.read(conn, customer_id=int(cid), as_of=as_of).values for cid in ids])


def _bulk(database, as_of):
    with database.connection() as conn:
        chunks = list(bulk.all_features(conn, as_of, chunk=97))  # odd chunk: many chunk edges
    return np.concatenate([c.ids for c in chunks]), np.vstack([c.values for c in chunks])


def _assert_same(a, b, ids):
    if not np.array_equal(a, b):
        rows, cols = np.nonzero(a != b)
        where = [(int(ids[r]), FEATURE_NAMES[c], float(a[r, c]), float(b[r, c])) for r, c in zip(rows[:5], cols[:5], strict=True)]
        pytest.fail(f"state-row and SQL features differ at (customer, feature, state, sql): {where}")


def test_state_row_and_sql_give_the_same_features(database):
    generator.load(database, generator.DemoSpec(customers=400, seed=7))
    as_of = utcnow()
    ids, from_sql = _bulk(database, as_of)
    assert len(ids) == 400
    _assert_same(_online_matrix(database, ids, as_of), from_sql, ids)
    # Real signal, not zeros: windows and categories are populated for many customers.
    for name in ("purchases_3m", "spend_12m", "category_data_bundle_12m", "channel_app_3m", "kind_app_open_3m"):
        assert (from_sql[:, FEATURE_NAMES.index(name)] > 0).sum() > 50, name


def test_a_sparse_chunk_reads_its_customers_only_and_gets_the_same_features(database):
    generator.load(database, generator.DemoSpec(customers=400, seed=8))
    as_of = utcnow()
    ids, from_sql = _bulk(database, as_of)
    some = np.sort(np.random.default_rng(3).choice(ids, size=60, replace=False))  # spread over the whole range
    assert len(some) * 2 < some[-1] - some[0] + 1
    with database.connection() as conn:
        sparse = bulk.features(conn, some, as_of)
        dense = bulk.features(conn, ids, as_of)  # one chunk: the whole range
    at = np.searchsorted(ids, some)
    _assert_same(from_sql[at], sparse.values, some)
    assert sparse.aggregates.keys() == dense.aggregates.keys()
    for name, column in sparse.aggregates.items():  # the exact cents and the times too
        assert np.array_equal(column, dense.aggregates[name][at], equal_nan=True), name
    assert (sparse.aggregates["purchases"] > 0).sum() > 20


def test_event_path_keeps_the_state_row_features_exact(database):
    generator.load(database, generator.DemoSpec(customers=60, seed=3))
    now = utcnow()
    with database.connection(write=True) as conn:
        ids = dict(conn.execute(sa.text("SELECT external_id, id FROM customers")).all())
        target = ids["DEMO-000005"]
        # A purchase this month, one last month, one 13 months ago and a touchpoint: each window edge.
        this_month = month_start(month_index(now))
        when = [now - dt.timedelta(seconds=5), this_month - dt.timedelta(seconds=1), month_start(month_index(now) - 12)]
        ingest.insert_transactions(
            conn,
            [
                {
                    "external_id": f"X-{i}",
                    "customer_id": target,
                    "occurred_at": at,
                    "amount_cents": 1234 + i,
                    "cost_cents": None,
                    "product": "Earbuds",
                    "category": "accessory",
                    "channel": "app",
                    "ingested_at": now,
                }
                for i, at in enumerate(when)
            ]
            + [  # and a refund this month: spend goes down, purchases do not
                {
                    "external_id": "X-R",
                    "customer_id": target,
                    "occurred_at": now - dt.timedelta(seconds=4),
                    "amount_cents": -500,
                    "cost_cents": None,
                    "product": "Earbuds",
                    "category": "accessory",
                    "channel": "app",
                    "ingested_at": now,
                }
            ],
        )
        ingest.insert_touchpoints(
            conn,
            [
                {
                    "external_id": "XT-1",
                    "customer_id": target,
                    "occurred_at": now - dt.timedelta(seconds=3),
                    "channel": "app",
                    "kind": "offer_click",
                    "payload": {},
                    "ingested_at": now,
                },
            ],
        )
        refresh_state(conn, customer_ids=[target])
    as_of = utcnow()
    ids_sorted, from_sql = _bulk(database, as_of)
    _assert_same(_online_matrix(database, ids_sorted, as_of), from_sql, ids_sorted)
    row = from_sql[list(ids_sorted).index(target)]
    assert row[FEATURE_NAMES.index("kind_offer_click_3m")] >= 1
    assert row[FEATURE_NAMES.index("recency_days")] < 0.01


def test_features_as_of_a_cutoff_ignore_later_events(database):
    spec = generator.DemoSpec(customers=150, seed=11, as_of=dt.date(2026, 6, 30))
    generator.load(database, spec)
    cutoff = dt.datetime(2026, 1, 15, tzinfo=UTC)
    with database.connection() as conn:
        before = {int(c.ids[i]): c.values[i] for c in bulk.all_features(conn, cutoff) for i in range(len(c.ids))}
        labels_before = bulk.labels(conn, np.array(sorted(before)), cutoff)
    # Events after the cut-off, however many, change no feature as of the cut-off...
    with database.connection(write=True) as conn:
        first = min(before)
        ingest.insert_transactions(
            conn,
            [
                {
                    "external_id": f"LATE-{i}",
                    "customer_id": first,
                    "occurred_at": cutoff + dt.timedelta(days=1 + i),
                    "amount_cents": 10_000,
                    "cost_cents": None,
                    "product": "Phone A15",
                    "category": "device",
                    "channel": "store",
                    "ingested_at": utcnow(),
                }
                for i in range(3)
            ],
        )
    with database.connection() as conn:
        after = {int(c.ids[i]): c.values[i] for c in bulk.all_features(conn, cutoff) for i in range(len(c.ids))}
        labels_after = bulk.labels(conn, np.array(sorted(before)), cutoff)
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    # ...but they are exactly what the labels see.
    i = 0  # `first` is the smallest id, the first label row
    assert labels_after.purchases_30d[i] == labels_before.purchases_30d[i] + 3
    assert labels_after.spend_365d[i] == pytest.approx(labels_before.spend_365d[i] + 300.0)
    assert labels_after.next_category[i] == "device" or labels_before.purchases_90d[i] >= 3


def test_customers_who_joined_after_the_cutoff_are_left_out(database):
    generator.load(database, generator.DemoSpec(customers=100, seed=5))
    cutoff = utcnow() - dt.timedelta(days=200)
    with database.connection() as conn:
        ids = {int(i) for i in np.concatenate(list(bulk.customer_ids(conn, cutoff, chunk=30)))}
        created = dict(conn.execute(sa.select(CustomerRecord.id, CustomerRecord.created_at)).all())
        values = np.vstack([c.values for c in bulk.all_features(conn, cutoff)])
    assert ids == {cid for cid, at in created.items() if at <= cutoff}
    assert 0 < len(ids) < 100
    assert (values[:, FEATURE_NAMES.index("tenure_days")] >= 0).all()


def test_windows_are_calendar_months():
    w = Windows.at(dt.datetime(2026, 3, 10, 12, tzinfo=UTC))
    assert w.start_3m == dt.datetime(2026, 1, 1, tzinfo=UTC)
    assert w.start_prev_3m == dt.datetime(2025, 10, 1, tzinfo=UTC)
    assert w.start_12m == dt.datetime(2025, 4, 1, tzinfo=UTC)


def test_an_unknown_customer_gets_prospect_features():
    row = online.prospect(utcnow())[0]
    named = dict(zip(FEATURE_NAMES, row, strict=True))
    assert named["has_purchased"] == 0 and named["frequency"] == 0 and named["tenure_days"] == 0


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_upgrading_an_existing_database_builds_the_monthly_buckets(make_database_url, backend):
    database = Database(make_database_url(backend))
    migrate.upgrade(database.engine, "0002")
    recent = utcnow() - dt.timedelta(days=3)

    def stamp(moment):  # raw SQL on SQLite must spell times as the app stores them
        return ingest.sqlite_datetime(moment) if backend == "sqlite" else moment

    with database.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO customers (external_id, consent, attributes, created_at, updated_at) "
                "VALUES ('OLD-1', '{}', '{}', :at, :at)"
            ),
            {"at": stamp(recent - dt.timedelta(days=400))},
        )
        cid = conn.execute(sa.text("SELECT id FROM customers")).scalar()
        conn.execute(
            sa.text(
                "INSERT INTO transactions (external_id, customer_id, occurred_at, amount_cents, category, ingested_at) "
                "VALUES ('OLD-T1', :cid, :at, 2500, 'streaming', :at)"
            ),
            {"cid": cid, "at": stamp(recent)},
        )
    migrate.upgrade(database.engine)
    as_of = utcnow()
    with database.connection() as conn:
        features = online.read(conn, external_id="OLD-1", as_of=as_of)
        chunk = bulk.features(conn, np.array([cid]), as_of)
    named = dict(zip(FEATURE_NAMES, features.values[0], strict=True))
    assert named["purchases_3m"] == 1 and named["spend_12m"] == 25.0 and named["category_streaming_12m"] == 1
    assert np.array_equal(features.values, chunk.values)
    database.dispose()
