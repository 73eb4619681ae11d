"""Demo data: reproducible from a seed, realistic in shape, loadable twice without duplicates."""

from __future__ import annotations

import datetime as dt

import numpy as np
from click.testing import CliRunner

from decision_server.cli import cli
from decision_server.demo.generator import DemoSpec, generate, load

SPEC = DemoSpec(customers=400, seed=7, as_of=dt.date(2026, 6, 30))


def test_same_seed_same_data_other_seed_other_data():
    a, b = generate(SPEC), generate(SPEC)
    assert a.transactions == b.transactions and a.customers == b.customers
    c = generate(DemoSpec(customers=400, seed=8, as_of=SPEC.as_of))
    assert c.transactions != a.transactions


def test_shape_is_realistic():
    data = generate(DemoSpec(customers=2000, seed=1, as_of=dt.date(2026, 6, 30)))
    per_customer = {}
    last = {}
    for t in data.transactions:
        per_customer[t["customer_id"]] = per_customer.get(t["customer_id"], 0) + t["amount_cents"]
        last[t["customer_id"]] = max(last.get(t["customer_id"], t["occurred_at"]), t["occurred_at"])
    end = SPEC.end()
    assert 15 <= len(data.transactions) / 2000 <= 25  # ~20 purchases each
    # Some customers never bought (prospects), some stopped long ago (churners), some spend a lot.
    assert 0.02 < 1 - len(per_customer) / 2000 < 0.15
    silent = sum(1 for when in last.values() if (end - when).days >= 90)
    assert silent / len(last) > 0.10
    spend = np.array(sorted(per_customer.values()))
    assert spend[-len(spend) // 10 :].sum() / spend.sum() > 0.3  # the top decile is a big share
    # Seasonality: December sells more than January; all three touchpoint channels appear.
    months = np.bincount([t["occurred_at"].month for t in data.transactions], minlength=13)
    assert months[12] > months[1]
    assert {p["channel"] for p in data.touchpoints} == {"app", "call_centre", "sms"}
    assert all(t["occurred_at"] <= end for t in data.transactions)


def test_loading_twice_changes_nothing(database):
    first = load(database, SPEC)
    load(database, SPEC)
    with database.connection() as conn:
        counts = [
            conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar() for t in ("customers", "transactions", "touchpoints")
        ]
        state_total = conn.exec_driver_sql("SELECT sum(transaction_count) FROM customer_state").scalar()
    assert counts == [first["customers"], first["transactions"], first["touchpoints"]]
    assert state_total == first["transactions"]


def test_cli_demo_data_loads_and_reports(database_url, database):
    result = CliRunner().invoke(cli, ["--database-url", database_url, "demo-data", "--customers", "50", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "customers': 50" in result.output


def test_cli_export_writes_importable_csv(tmp_path):
    result = CliRunner().invoke(cli, ["demo-data", "--customers", "20", "--export", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    header = (tmp_path / "out" / "transactions.csv").read_text().splitlines()[0]
    assert header == "external_id,customer_id,occurred_at,amount,cost,product,category,channel"


def test_default_history_ends_before_now():
    # Events still ahead would count in the state row but not in features as of now.
    data = generate(DemoSpec(customers=300, seed=2))
    now = dt.datetime.now(dt.UTC)
    assert max(t["occurred_at"] for t in data.transactions) < now
    assert max(t["occurred_at"] for t in data.touchpoints) < now
