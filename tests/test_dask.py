"""The bulk pass on a local Dask cluster of two workers (PostgreSQL): the same results as in process."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from decision_server.analytics import reevaluate
from decision_server.demo import generator
from decision_server.jobs import reevaluation

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as local:
        yield local.scheduler_address


def _comparable(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in ("seconds", "reader_peak_mb", "rfm")}


def _state(database) -> list[tuple]:
    with database.connection() as conn:
        return conn.exec_driver_sql("SELECT customer_id, stage, rfm_r, rfm_f, rfm_m, rfm_segment, value_score, value_segment, "
                                    "journey_stage FROM customer_state ORDER BY customer_id").all()


def test_a_pass_on_two_dask_workers_equals_the_pass_in_process(database, database_url, revision, trained_models, cluster):
    if not database_url.startswith("postgresql"):
        pytest.skip("the cluster's workers read over the network: PostgreSQL")
    from decision_server.scoring.serving import ModelSet

    generator.load(database, generator.DemoSpec(customers=500, seed=12))
    models = ModelSet(trained_models)
    local = reevaluate.run(database, revision, models, chunk=100, dry_run=True)
    on_dask = reevaluate.run(database, revision, models, chunk=100, dry_run=True, dask_address=cluster)
    assert _comparable(on_dask) == _comparable(local) and local["customers"] == 500 and local["written"] == 500

    row = reevaluation.run(database, revision, models, steps=["rfm", "stages", "segments"], chunk=100, dask_address=cluster)
    assert row["status"] == "succeeded" and row["result"]["pass"]["written"] == 500
    assert row["result"]["pass"]["transitions"] == local["transitions"]
    written = _state(database)
    again = reevaluate.run(database, revision, models, steps=("stages",), chunk=100)  # in process, on what Dask wrote
    assert again["written"] == 0 and _state(database) == written
    with database.connection() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM stage_transitions")).scalar() == 500
