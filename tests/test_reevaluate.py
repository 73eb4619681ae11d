"""The bulk pass (jobs/bulk_pass.py): one read of every customer gives RFM, CLV, value, stage,
journey and segments, equal to what the one-customer paths and independent computations give;
bases of several chunks are read by worker processes; a second pass writes nothing."""

from __future__ import annotations

import datetime as dt
import logging
import time
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from decision_server.clv import service as clv
from decision_server.customers.records import CustomerStateRecord
from decision_server.demo import generator
from decision_server.features import bulk
from decision_server.jobs import bulk_pass
from decision_server.lifecycle import service as lifecycle
from decision_server.lifecycle.records import StageTransitionRecord
from decision_server.rfm import service as rfm
from decision_server.scoring.serving import ModelSet

_st = CustomerStateRecord.__table__


@pytest.fixture
def demo(database):
    generator.load(database, generator.DemoSpec(customers=300, seed=5))
    return database


@pytest.fixture
def models(trained_models):
    return ModelSet(trained_models)


def _state(database) -> pd.DataFrame:
    with database.connection() as conn:
        rows = conn.execute(
            sa.select(
                _st.c.customer_id,
                _st.c.rfm_r,
                _st.c.rfm_f,
                _st.c.rfm_m,
                _st.c.rfm_segment,
                _st.c.stage,
                _st.c.value_score,
                _st.c.value_segment,
                _st.c.journey_stage,
            )
        ).all()
    return (
        pd.DataFrame(
            rows, columns=["customer_id", "r", "f", "m", "segment", "stage", "value_score", "value_segment", "journey_stage"]
        )
        .set_index("customer_id")
        .sort_index()
    )


def test_one_pass_in_worker_processes_equals_independent_computations(demo, revision, models):
    progress = []
    result = bulk_pass.run(demo, revision, models, chunk=64, progress=progress.append)  # 5 chunks: worker processes
    assert result["customers"] == 300 and [p.done for p in progress] == [64, 128, 192, 256, 300]
    assert progress[-1].total == 300 and progress[-1].eta_seconds == 0
    assert result["state_drift"] == 0 and result["skipped_newer"] == 0 and result["written"] == 300
    state = _state(demo)

    # RFM: 1 + floor(5 L / N) over every buyer's values read straight from the transactions.
    with demo.connection() as conn:
        buyers = rfm.read_buyers(conn, dt.datetime.now(dt.UTC))
    frame = pd.DataFrame({"last": buyers.last_purchase_at, "n": buyers.purchases, "spend": buyers.spend_cents}, index=buyers.ids)
    for score, column in (("r", "last"), ("f", "n"), ("m", "spend")):
        expected = (1 + np.floor(5 * (frame[column].rank(method="min") - 1) / len(frame))).astype(int)
        assert (state.loc[frame.index, score].astype(int) == expected).all(), score
    assert state.loc[~state.index.isin(frame.index), "r"].isna().all()  # never bought: no score
    assert result["rfm"]["buyers"] == len(frame) and sum(result["rfm"]["segments"].values()) == len(frame)

    # CLV totals: the one-customer computation summed.
    with demo.connection() as conn:
        history = clv.historical(conn, as_of=dt.datetime.now(dt.UTC), margin=Decimal("0.30"))
    assert result["clv"] == {
        "revenue_cents": sum(h.revenue_cents for h in history),
        "cost_cents": sum(h.cost_cents for h in history),
        "profit_cents": sum(h.profit_cents for h in history),
    }

    # Stage, value and journey: the event path (one customer at a time) finds nothing to change.
    with demo.connection(write=True) as conn:
        assert lifecycle.refresh_customers(conn, state.index.tolist(), revision=revision, models=models) == []
    after = _state(demo)
    for column in ("stage", "value_segment", "journey_stage", "segment"):
        assert (after[column].fillna("-") == state[column].fillna("-")).all(), column
    for column in ("r", "f", "m"):
        assert (after[column].fillna(0) == state[column].fillna(0)).all(), column
    assert np.allclose(after["value_score"], state["value_score"], atol=0.005)
    assert {t["to"] for t in result["transitions"]} <= set(lifecycle.stages(revision))


def test_a_second_pass_writes_nothing(demo, revision, models):
    first = bulk_pass.run(demo, revision, models)
    assert first["changed"] == 300 and all(t["from"] is None for t in first["transitions"])
    second = bulk_pass.run(demo, revision, models)
    assert (second["written"], second["changed"], second["revalued"]) == (0, 0, 0)
    with demo.connection() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(StageTransitionRecord.__table__)).scalar() == 300
        assert conn.execute(sa.select(sa.func.count(sa.distinct(_st.c.rfm_run_id)))).scalar() == 1  # unchanged rows keep theirs


def test_a_customer_an_event_updates_after_the_read_is_left_to_the_event(demo, revision, models):
    with demo.connection() as conn:
        ids = conn.execute(sa.select(_st.c.customer_id).order_by(_st.c.customer_id)).scalars().all()
    target = ids[150]  # in the second chunk, which the readers fetch while the first is evaluated

    def event_after_the_read(p: bulk_pass.Progress) -> None:
        if p.done == 100:
            time.sleep(1.0)  # the second chunk was handed to a reader at the start: it is read by now
            with demo.connection(write=True) as conn:
                lifecycle.refresh_customers(conn, [target], revision=revision, models=models)

    result = bulk_pass.run(demo, revision, models, chunk=100, progress=event_after_the_read)
    assert result["skipped_newer"] == 1 and result["written"] == len(ids) - 1
    with demo.connection() as conn:
        sources = (
            conn.execute(sa.select(StageTransitionRecord.source).where(StageTransitionRecord.customer_id == target))
            .scalars()
            .all()
        )
    assert sources == ["event"]  # the bulk pass did not write over what the event decided


def test_a_state_row_that_disagrees_with_its_events_is_reported(demo, revision, models, caplog):
    with demo.connection(write=True) as conn:
        cid = conn.execute(sa.select(_st.c.customer_id).where(_st.c.transaction_count > 2).limit(1)).scalar()
        conn.execute(sa.update(_st).where(_st.c.customer_id == cid).values(transaction_count=_st.c.transaction_count + 50))
    with caplog.at_level(logging.WARNING, logger="decision_server.jobs.bulk_pass"):
        result = bulk_pass.run(demo, revision, models, steps=("rfm",))
    assert result["state_drift"] == 1 and "1 state rows disagreed" in caplog.text
    assert result["rfm"]["cuts"]["frequency"][-1] < 50  # a single outlier does not move the top cut point


def test_as_of_a_past_moment_reads_everything_from_the_events(demo, revision, models):
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=200)
    result = bulk_pass.run(demo, revision, models, steps=("rfm",), as_of=past)
    with demo.connection() as conn:
        buyers = rfm.read_buyers(conn, past)
    assert result["rfm"]["buyers"] == len(buyers.ids) < 300
    assert result["rfm"]["cuts"] == {
        "recency": rfm.cut_points(buyers.last_purchase_at),
        "frequency": rfm.cut_points(buyers.purchases),
        "monetary": rfm.cut_points(buyers.spend_cents),
    }


def test_unknown_steps_are_refused(demo, revision, models):
    with pytest.raises(ValueError, match="stages"):
        bulk_pass.run(demo, revision, models, steps=("stage",))


@pytest.mark.parametrize("margin", [Decimal("0.30"), Decimal("0.275")])
def test_vectorized_clv_equals_the_one_customer_clv(demo, margin):
    as_of = dt.datetime.now(dt.UTC)
    with demo.connection(write=True) as conn:  # refunds, and purchases with no cost, for the rounding
        conn.execute(sa.text("UPDATE transactions SET cost_cents = NULL WHERE id % 3 = 0"))
        conn.execute(sa.text("UPDATE transactions SET amount_cents = -amount_cents WHERE id % 17 = 0"))
    with demo.connection() as conn:
        expected = {h.customer_id: h for h in clv.historical(conn, as_of=as_of, margin=margin)}
        compared = 0
        for ids in bulk.customer_ids(conn, as_of, chunk=100):
            figures = clv.columns(bulk.features(conn, ids, as_of).aggregates, as_of, margin)
            for i, cid in enumerate(ids):
                h = expected[int(cid)]
                got = {
                    k: figures[k][i]
                    for k in (
                        "revenue_cents",
                        "cost_cents",
                        "profit_cents",
                        "cost_estimated_cents",
                        "orders",
                        "average_order_cents",
                        "tenure_days",
                        "lifespan_days",
                    )
                }
                assert got == {k: getattr(h, k) for k in got}, cid
                assert figures["purchase_frequency"][i] == pytest.approx(h.purchase_frequency)
                compared += 1
    assert compared == 300
