"""Points expiry (oldest points first), pending points, the tier review's downgrade policies, and the CLI."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from decision_server.cli import cli
from decision_server.customers.records import CustomerRecord
from decision_server.loyalty import bulk, ledger, rewards, service
from decision_server.loyalty.records import LedgerEntryRecord, MemberRecord
from decision_server.rules.engine import build_revision
from decision_server.rules.source import read_rules_dir

T0 = dt.datetime(2025, 1, 10, 12, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
_l, _m = LedgerEntryRecord.__table__, MemberRecord.__table__


def _revision(rules_dir, policy_default: str | None = None):
    """The rules, with loyalty_policy.yaml's default outcome replaced when given."""
    if policy_default is not None:
        path = rules_dir / "loyalty_policy.yaml"
        text = path.read_text()
        start = text.index("default: ")
        path.write_text(text[:start] + f"default: {policy_default}" + text[text.index("\n", start) :])
    return build_revision(read_rules_dir(rules_dir), backend="python", run_cases=False)


def _member(database, revision, external_id="B-1", *, created=T0 - 400 * DAY) -> int:
    with database.connection(write=True) as conn:
        cid = conn.execute(
            sa.insert(CustomerRecord.__table__)
            .values(external_id=external_id, created_at=created)
            .returning(CustomerRecord.__table__.c.id)
        ).scalar_one()
        service.enroll(conn, cid, via="api", revision=revision, now=created)
    return cid


def _earn(database, revision, cid, points, at, key):
    with database.connection(write=True) as conn:
        service.earn(conn, cid, points=points, key=key, reason="test", actor=None, revision=revision, now=at)


def _balance(database, cid) -> tuple[int, int]:
    with database.connection() as conn:
        balance = conn.execute(sa.select(_m.c.balance).where(_m.c.customer_id == cid)).scalar_one()
        total = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(_l.c.points), 0)).where(_l.c.customer_id == cid)).scalar_one()
    return balance, int(total)


def test_points_expire_oldest_first_and_only_what_is_left_of_them(database, rules_dir):
    revision = _revision(rules_dir)
    cid = _member(database, revision)
    _earn(database, revision, cid, 100, T0, "a")  # expires T0 + 730 days
    _earn(database, revision, cid, 50, T0 + 100 * DAY, "b")  # expires T0 + 830 days
    reward = None
    with database.connection(write=True) as conn:
        reward = rewards.create(conn, {"code": "R", "name": "R", "points_cost": 120})["id"]
        rewards.redeem(conn, cid, reward, key="r", now=T0 + 200 * DAY)  # spends all of a and 20 of b
    with database.connection() as conn:
        soon = ledger.figures(conn, cid, 30, now=T0 + 810 * DAY)
    assert soon["expiring"] == 30 and soon["expiring_by"] == T0 + 840 * DAY  # what is left of b

    # At a's date nothing is left of a: nothing expires, and the member is not looked at again until b's date.
    first = bulk.expire_points(database, now=T0 + 731 * DAY)
    assert (first["members"], first["changed"], first["points"]) == (1, 0, 0)
    assert bulk.expire_points(database, now=T0 + 732 * DAY)["members"] == 0
    second = bulk.expire_points(database, now=T0 + 831 * DAY)
    assert (second["changed"], second["points"]) == (1, 30)
    assert _balance(database, cid) == (0, 0)
    again = bulk.expire_points(database, now=T0 + 900 * DAY)  # a repeated run expires nothing twice
    assert again["members"] == 0 and _balance(database, cid) == (0, 0)
    revision.close()


def test_points_past_their_date_cannot_be_spent_even_before_the_bulk_run(database, rules_dir):
    revision = _revision(rules_dir)
    cid = _member(database, revision)
    _earn(database, revision, cid, 500, T0, "a")
    with database.connection(write=True) as conn:
        reward = rewards.create(conn, {"code": "R", "name": "R", "points_cost": 100})["id"]
    with pytest.raises(ledger.InsufficientPoints), database.connection(write=True) as conn:
        rewards.redeem(conn, cid, reward, key="late", now=T0 + 731 * DAY)
    # The refusal rolled back, expiry included; the bulk run then expires the 500 once.
    assert _balance(database, cid) == (500, 500)
    assert bulk.expire_points(database, now=T0 + 731 * DAY)["points"] == 500
    revision.close()


def test_pending_points_count_in_the_balance_but_cannot_be_spent_until_their_day(database, rules_dir):
    revision = _revision(rules_dir, "{pending_days: 14, points_expire_days: 0, downgrade: never, grace_days: 0}")
    cid = _member(database, revision)
    _earn(database, revision, cid, 300, T0, "a")
    with database.connection(write=True) as conn:
        reward = rewards.create(conn, {"code": "R", "name": "R", "points_cost": 100})["id"]
        figures = ledger.figures(conn, cid, 300, now=T0 + 13 * DAY)
    assert (figures["balance"], figures["pending"], figures["available"]) == (300, 300, 0)
    with pytest.raises(ledger.InsufficientPoints), database.connection(write=True) as conn:
        rewards.redeem(conn, cid, reward, key="early", now=T0 + 13 * DAY)
    with database.connection(write=True) as conn:
        rewards.redeem(conn, cid, reward, key="on-time", now=T0 + 14 * DAY)
    assert _balance(database, cid) == (200, 200)
    with database.connection() as conn:  # points_expire_days 0: never expire
        assert conn.execute(sa.select(_l.c.expires_at).where(_l.c.kind == "earn")).scalar_one() is None
    revision.close()


def _gold_member(database, revision, now):
    """A member who earned gold a year ago and earns nothing since: the rules now give bronze."""
    cid = _member(database, revision, created=now - 200 * DAY)
    _earn(database, revision, cid, 4000, now - 366 * DAY, "big")  # 4,000 points earned in 12 months then: gold at once
    assert _tier(database, cid) == ("gold", None)
    return cid


def _tier(database, cid):
    with database.connection() as conn:
        return conn.execute(sa.select(_m.c.tier, _m.c.below_since).where(_m.c.customer_id == cid)).one()


@pytest.mark.parametrize(
    "policy,after_first,after_grace",
    [
        ("review", "bronze", "bronze"),
        ("never", "gold", "gold"),
        ("grace", "gold", "bronze"),
    ],
)
def test_downgrades_follow_the_policy(database, rules_dir, policy, after_first, after_grace):
    revision = _revision(rules_dir, f"{{pending_days: 0, points_expire_days: 0, downgrade: {policy}, grace_days: 90}}")
    now = dt.datetime.now(dt.UTC)
    cid = _gold_member(database, revision, now)
    dry = bulk.review_tiers(database, revision, now=now, dry_run=True)
    assert _tier(database, cid)[0] == "gold"  # a dry run writes nothing
    first = bulk.review_tiers(database, revision, now=now)
    assert first["changed"] == dry["changed"] and first["transitions"] == dry["transitions"]
    tier, below = _tier(database, cid)
    assert tier == after_first
    if policy == "grace":
        assert below == now  # the grace period starts at this review
        assert bulk.review_tiers(database, revision, now=now + 89 * DAY)["changed"] == 0
    later = bulk.review_tiers(database, revision, now=now + 90 * DAY)
    assert _tier(database, cid)[0] == after_grace
    if after_grace != after_first:
        assert later["transitions"] == [{"from": "gold", "to": "bronze", "count": 1}]
        with database.connection() as conn:
            change = conn.execute(sa.text("SELECT source, rule_id FROM loyalty_tier_changes WHERE source = 'review'")).one()
        assert tuple(change) == ("review", "bronze")
    revision.close()


def test_qualifying_again_in_the_grace_period_cancels_the_downgrade(database, rules_dir):
    revision = _revision(rules_dir, "{pending_days: 0, points_expire_days: 0, downgrade: grace, grace_days: 90}")
    now = dt.datetime.now(dt.UTC)
    cid = _gold_member(database, revision, now)
    bulk.review_tiers(database, revision, now=now)
    assert _tier(database, cid)[1] is not None
    _earn(database, revision, cid, 4000, now + 10 * DAY, "back")  # gold again on the event: the clock stops
    assert _tier(database, cid) == ("gold", None)
    assert bulk.review_tiers(database, revision, now=now + 95 * DAY)["changed"] == 0
    assert _tier(database, cid)[0] == "gold"
    revision.close()


def test_the_review_upgrades_members_who_qualify_without_an_event(database, rules_dir):
    revision = _revision(rules_dir)
    now = dt.datetime.now(dt.UTC)
    # Tenure alone: spend 800 in 12 months qualifies silver once the member has 180 days (rules/tiers.yaml).
    cid = _member(database, revision, created=now - 179 * DAY)
    with database.connection(write=True) as conn:
        conn.execute(
            sa.text(
                "INSERT INTO transactions (external_id, customer_id, occurred_at, amount_cents, ingested_at) "
                "VALUES ('x1', :c, :t, 80000, :t)"
            ),
            {"c": cid, "t": (now - DAY).replace(tzinfo=None) if database.dialect == "sqlite" else now - DAY},
        )
    assert bulk.review_tiers(database, revision, now=now)["changed"] == 0
    result = bulk.review_tiers(database, revision, now=now + 2 * DAY)
    assert result["transitions"] == [{"from": "bronze", "to": "silver", "count": 1}]
    revision.close()


def test_the_cli_reviews_and_expires_with_progress(database, rules_dir, tmp_path):
    revision = _revision(rules_dir)
    cid = _member(database, revision)
    _earn(database, revision, cid, 70, T0 - 400 * DAY, "old")  # expired 730 days later, before today
    revision.close()
    env = {
        "DATABASE_URL": database.engine.url.render_as_string(hide_password=False),
        "RULES_DIR": str(rules_dir),
        "MODELS_DIR": str(tmp_path / "models"),
    }
    runner = CliRunner()
    dry = runner.invoke(cli, ["loyalty", "review", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "tier review of 1 members" in dry.output and "would change" in dry.output
    expired = runner.invoke(cli, ["loyalty", "expire"], env=env)
    assert expired.exit_code == 0, expired.output
    assert "70 points of 1 members expired" in expired.output
    assert _balance(database, cid) == (0, 0)
    demo = runner.invoke(cli, ["loyalty", "demo", "--days", "30"], env=env)
    assert demo.exit_code == 0 and "demo rewards: 5 added" in demo.output, demo.output
    assert "loyalty" in runner.invoke(cli, ["--help"]).output
