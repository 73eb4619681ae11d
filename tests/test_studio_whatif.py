"""What-ifs as services: value segment and journey stage moves counted over every chunk (equal to a
direct count over the base), a run summed up for people, the latest run of a draft, two runs side by side."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from decision_server.cli import cli
from decision_server.db import utcnow
from decision_server.demo import generator
from decision_server.errors import NotFound, ValidationError
from decision_server.jobs import reevaluation, whatif
from decision_server.jobs.records import BulkRunRecord
from decision_server.rules.engine import build_revision
from decision_server.rules.source import RulesInvalid
from decision_server.studio import whatif as studio_whatif


@pytest.fixture
def analysed(database, models_dir, app):
    """600 demo customers after a real pass (stored value scores = the pass's), and the app serving trained models."""
    generator.load(database, generator.DemoSpec(customers=600, seed=7))
    rulebook, models = app.extensions["rulebook"], app.extensions["models"].current
    row = reevaluation.run(database, rulebook.current, models, steps=["rfm", "stages"])
    assert row["status"] == "succeeded"
    return app


def raised(files: dict[str, str], high: int) -> dict[str, str]:
    """The rule files with the high-value threshold moved from 70 to `high`."""
    value = files["value.yaml"]
    changed = value.replace("value_score >= 70", f"value_score >= {high}").replace("value_score < 70", f"value_score < {high}")
    assert changed != value
    return {**files, "value.yaml": changed}


def ended(database, run_id: int) -> dict:
    deadline = time.monotonic() + 120
    while (run := reevaluation.get(database, run_id))["status"] == "running":
        assert time.monotonic() < deadline, run
        time.sleep(0.05)
    return run


def start(app, files: dict[str, str], **options) -> dict:
    ext = app.extensions
    return whatif.start_what_if(
        ext["database"], ext["rulebook"], ext["models"].current, ext["config"], files=files, source="console", **options
    )


def _count(database, sql: str) -> int:
    with database.connection() as conn:
        return conn.exec_driver_sql(sql).scalar()


def test_value_moves_equal_a_direct_count_over_the_base_in_every_chunk(database, analysed):
    rulebook, models = analysed.extensions["rulebook"], analysed.extensions["models"].current
    high_to_medium = _count(
        database,
        "SELECT count(*) FROM customer_state WHERE value_segment = 'high' AND value_score >= 70 AND value_score < 75",
    )
    assert high_to_medium > 0
    draft = build_revision(raised(rulebook.current.files, 75), backend="python", run_cases=False)
    try:
        chunked = reevaluation.run(database, draft, models, steps=["stages", "segments"], dry_run=True, chunk=100)
        whole = reevaluation.run(database, draft, models, steps=["stages", "segments"], dry_run=True)
    finally:
        draft.close()
    result = chunked["result"]["pass"]
    assert result["moves"]["value_segment"] == [{"from": "high", "to": "medium", "count": high_to_medium}]
    assert whole["result"]["pass"]["moves"] == result["moves"]  # one chunk or six: the same sums
    # every move shows in the distributions: after − before = moves in − moves out, per value
    for field in ("value_segment", "journey_stage"):
        before, after = result["before"][field], result["after"][field]
        for value in {*before, *after}:
            inflow = sum(m["count"] for m in result["moves"][field] if m["to"] == value)
            outflow = sum(m["count"] for m in result["moves"][field] if m["from"] == value)
            assert after.get(value, 0) - before.get(value, 0) == inflow - outflow, (field, value)
    lowered = reevaluation.run(
        database,
        build_revision(raised(rulebook.current.files, 65), backend="python", run_cases=False),
        models,
        steps=["stages"],
        dry_run=True,
    )
    medium_to_high = _count(database, "SELECT count(*) FROM customer_state WHERE value_segment = 'medium' AND value_score >= 65")
    assert lowered["result"]["pass"]["moves"]["value_segment"] == [{"from": "medium", "to": "high", "count": medium_to_high}]


def test_a_started_what_if_is_summed_up_found_by_its_draft_and_compared(database, database_url, analysed):
    rulebook = analysed.extensions["rulebook"]
    files = raised(rulebook.current.files, 75)
    draft_id = build_revision(files, backend="python", run_cases=False)
    revision_id = draft_id.id
    draft_id.close()
    assert studio_whatif.latest_for(database, revision_id) is None
    first = start(analysed, files, steps=["stages", "segments", "tiers", "offers"], channels=["app"], started_by="key:ana")
    assert first["source"] == "console" and first["started_by"] == "key:ana" and first["rule_revision"] == revision_id
    run = ended(database, first["id"])
    assert run["status"] == "succeeded", run["error"]
    order = studio_whatif.orders(rulebook.current)
    assert order["value_segment"] == ["high", "medium", "low"]
    summed = studio_whatif.summary(run, order=order)
    moved = _count(
        database, "SELECT count(*) FROM customer_state WHERE value_segment = 'high' AND value_score >= 70 AND value_score < 75"
    )
    assert summed["value_segment_moves"] == [{"from": "high", "to": "medium", "count": moved}]
    assert summed["value_segment_changed"] == moved and summed["customers"] == 600 and summed["changed"] >= moved
    assert [r["value"] for r in summed["distributions"]["value_segment"]][:3] == ["high", "medium", "low"]
    high = next(r for r in summed["distributions"]["value_segment"] if r["value"] == "high")
    assert high["change"] == -moved and high["after"] == high["before"] - moved
    assert f"{moved:,} move high → medium" in summed["headline"]
    assert summed["headlines"][:2] == [
        f"{summed['changed']:,} of 600 customers would change",
        f"{moved:,} move value segment high → medium",
    ]
    assert summed["tiers"] is not None and summed["tiers"]["members"] >= 0
    app_offers = summed["offers"]["channels"][0]
    assert app_offers["channel"] == "app" and app_offers["customers"] == 600
    assert app_offers["gained"] == sum(o["gained"] for o in app_offers["offers"])
    assert app_offers["no_offer_change"] == app_offers["no_offer_after"] - app_offers["no_offer_before"]
    shown = CliRunner().invoke(cli, ["--database-url", database_url, "jobs", "show", str(run["id"])])
    assert f"value segment moves: high -> medium {moved:,}" in shown.output, shown.output
    assert studio_whatif.latest_for(database, revision_id)["id"] == run["id"]
    assert studio_whatif.latest_for(database, rulebook.current.id) is None
    assert studio_whatif.summary(None) is None

    second = ended(database, start(analysed, raised(rulebook.current.files, 80), steps=["stages"])["id"])
    assert studio_whatif.latest_for(database, revision_id)["id"] == run["id"]  # another draft's run is not this one's
    side = studio_whatif.compare(run, second, order=order)
    further = _count(
        database, "SELECT count(*) FROM customer_state WHERE value_segment = 'high' AND value_score >= 70 AND value_score < 80"
    )
    assert {"from": "high", "to": "medium", "a": moved, "b": further, "diff": further - moved} in side["value_segment_moves"]
    assert not side["same_revision"] and side["b"]["offers"] is None
    assert [r["measure"] for r in side["offers"]] == ["no_offer_after", "gained", "lost"]
    assert all(r["b"] == 0 for r in side["offers"])
    assert [r["id"] for r in studio_whatif.recent(database)] == [second["id"], run["id"]]
    with pytest.raises(NotFound):
        studio_whatif.get(database, 10_000)


def test_a_what_if_refuses_an_invalid_draft_an_unknown_channel_and_a_second_run(database, analysed):
    files = analysed.extensions["rulebook"].current.files
    broken = {**files, "value.yaml": files["value.yaml"].replace("when: value_score >= 70", "when: valeu_score >= 70")}
    with pytest.raises(RulesInvalid) as invalid:
        start(analysed, broken, steps=["stages"])
    assert any(p.file == "value.yaml" and p.line > 1 for p in invalid.value.problems)
    with pytest.raises(ValidationError) as channel:
        start(analysed, files, channels=["fax"])
    assert "fax" in channel.value.message
    assert studio_whatif.recent(database) == []  # nothing was started
    held(database)
    with pytest.raises(reevaluation.JobRunning) as busy:
        start(analysed, files, steps=["stages"])
    assert busy.value.errors["run"] == [str(studio_whatif.running(database)["id"])]


def held(database, runner: str = "other-host:7") -> None:
    """A what-if running on another server (its lease fresh), 10 of 600 customers done."""
    now = utcnow()
    with database.connection(write=True) as conn:
        conn.execute(
            sa.insert(BulkRunRecord.__table__).values(
                job="what-if",
                steps=["stages"],
                dry_run=True,
                source="console",
                started_by="key:bo",
                status="running",
                as_of=now,
                started_at=now,
                heartbeat_at=now,
                runner=runner,
                done=10,
                total=600,
                resumes=0,
            )
        )
