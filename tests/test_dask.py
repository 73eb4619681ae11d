"""The bulk pass on a local Dask cluster of two workers (PostgreSQL): the same results as in process,
each shard read and evaluated by a worker with the rules and models the run sent it."""

from __future__ import annotations

import shutil
from decimal import Decimal

import numpy as np
import pytest
import sqlalchemy as sa

from decision_server.config import DEFAULT_CHANNELS
from decision_server.db import utcnow
from decision_server.demo import generator
from decision_server.jobs import bulk_pass, chunks, evaluation, offer_reach, reevaluation, shards
from decision_server.offers import service as offers_service
from decision_server.segments import service as segments

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as local:
        yield local.scheduler_address


def _comparable(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in ("seconds", "reader_peak_mb", "rfm")}


def _state(database) -> list[tuple]:
    with database.connection() as conn:
        return conn.exec_driver_sql(
            "SELECT customer_id, stage, rfm_r, rfm_f, rfm_m, rfm_segment, value_score, value_segment, "
            "journey_stage FROM customer_state ORDER BY customer_id"
        ).all()


def test_a_pass_on_two_dask_workers_equals_the_pass_in_process(database, database_url, revision, trained_models, cluster):
    if not database_url.startswith("postgresql"):
        pytest.skip("the cluster's workers read over the network: PostgreSQL")
    from decision_server.scoring.serving import ModelSet

    generator.load(database, generator.DemoSpec(customers=500, seed=12))
    with database.session(write=True) as session:
        offers_service.load_demo_catalog(session, channels=DEFAULT_CHANNELS, words=offers_service.vocabulary(None))
    models = ModelSet(trained_models)
    trial = offer_reach.trial(database, revision, channels=["app", "sms"])
    local = bulk_pass.run(database, revision, models, steps=(*bulk_pass.STEPS, "offers"), chunk=100, dry_run=True, offers=trial)
    on_dask = bulk_pass.run(
        database,
        revision,
        models,
        steps=(*bulk_pass.STEPS, "offers"),
        chunk=100,
        dry_run=True,
        offers=trial,
        dask_address=cluster,
    )
    assert _comparable(on_dask) == _comparable(local) and local["customers"] == 500 and local["written"] == 500
    assert sum(o["eligible_before"] for c in local["offers"]["channels"] for o in c["offers"]) > 0

    row = reevaluation.run(database, revision, models, steps=["rfm", "stages", "segments"], chunk=100, dask_address=cluster)
    assert row["status"] == "succeeded" and row["result"]["pass"]["written"] == 500
    assert row["result"]["pass"]["transitions"] == local["transitions"]
    written = _state(database)
    again = bulk_pass.run(database, revision, models, steps=("stages",), chunk=100)  # in process, on what Dask wrote
    assert again["written"] == 0 and _state(database) == written
    with database.connection() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM stage_transitions")).scalar() == 500


def test_a_worker_evaluates_with_what_the_run_sent_not_its_own_disk(database, revision, trained_models, tmp_path, client, auth):
    from decision_server.scoring.serving import ModelSet

    generator.load(database, generator.DemoSpec(customers=300, seed=13))
    made = client.post("/api/v1/segments", json={"name": "frequent", "condition": "frequency >= 12"}, headers=auth("admin"))
    assert made.status_code == 201, made.get_json()
    copied = tmp_path / "models"
    shutil.copytree(trained_models, copied)
    models = ModelSet(copied)
    with database.connection() as conn:
        active = segments.active_segments(conn)
        ids = np.array(conn.execute(sa.text("SELECT id FROM customers ORDER BY id")).scalars().all(), dtype=np.int64)
    moment = utcnow()
    compiled = {row.id: segments.COMPILED.get(row, revision) for row in active}
    common = {
        "steps": bulk_pass.STEPS,
        "moment": moment,
        "as_of": None,
        "cuts": {"recency": [], "frequency": [], "monetary": []},
        "run_id": None,
        "margin": Decimal("0.30"),
        "dry_run": True,
    }
    here = evaluation.evaluate(
        chunks.read_chunk(database, ids, moment, list(compiled)), revision, models, compiled=compiled, **common
    )
    spec = shards.work(revision, models, segments=active, **common)
    shutil.rmtree(copied)  # the worker has only what the run sent
    there = shards.evaluate_on_worker(chunks.read_chunk(database, ids, moment, list(compiled)), spec).evaluated
    assert there.tally == here.tally and here.tally.written == 300
    for name in here.new:
        assert list(there.new[name]) == list(here.new[name]), name
    assert there.wanted == here.wanted and len(here.wanted) == len(active) > 0
    assert len(shards.served(models)) == 5 and set(spec.model_versions) == set(shards.served(models))
