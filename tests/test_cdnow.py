"""RFM and historical CLV match an independent pandas computation on a real public data set (CDNOW).

CDNOW_master.txt (23,570 customers, 69,659 purchases of CDs, 1997-1998) ships inside the
`Lifetimes` wheel, installed with the test extra; it is read from site-packages, never
downloaded and never copied into the repository.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import ROUND_HALF_UP, Decimal
from importlib.metadata import distribution

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import REPO

from decision_server import migrate
from decision_server.clv import service as clv
from decision_server.db import UTC, Database
from decision_server.ingest import importer
from decision_server.jobs import passes
from decision_server.rfm import service as rfm
from decision_server.rules.engine import build_revision
from decision_server.rules.source import read_rules_dir


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    path = distribution("Lifetimes").locate_file("lifetimes/datasets/CDNOW_master.txt")
    frame = pd.read_csv(
        path, sep=r"\s+", skiprows=1, names=["customer", "date", "cds", "dollars"], dtype={"customer": str, "date": str}
    )
    frame["cents"] = (frame["dollars"] * 100).round().astype(np.int64)
    # Some purchases are stamped in New York time (UTC-5 in winter): the same instant either way.
    frame["at"] = pd.to_datetime(frame["date"], format="%Y%m%d", utc=True) + pd.Timedelta(hours=15)
    # Refunds: every 40th customer returns half of their first purchase 10 days later (a
    # negative amount: lowers spend and revenue, never counts as a purchase).
    first = frame.sort_values("at").groupby("customer").head(1)
    refunds = first[first["customer"].astype(int) % 40 == 0].copy()
    refunds["cents"] = -(refunds["cents"] // 2)
    refunds["at"] = refunds["at"] + pd.Timedelta(days=10)
    refunds = refunds[refunds["cents"] < 0]
    return pd.concat([frame, refunds], ignore_index=True)


@pytest.fixture(scope="module")
def revision():
    rev = build_revision(read_rules_dir(REPO / "rules"), backend="python", run_cases=False)
    yield rev
    rev.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def loaded(request, cdnow, make_database_url, tmp_path_factory):
    """A database of each backend holding the whole CDNOW log, loaded through the importer."""
    database = Database(make_database_url(request.param))
    migrate.upgrade(database.engine)
    _load(database, tmp_path_factory.mktemp("cdnow"), cdnow)
    yield database
    database.dispose()


def _load(database, tmp_path, frame: pd.DataFrame) -> None:
    customers = tmp_path / "customers.csv"
    first = frame.groupby("customer")["at"].min()
    customers.write_text(
        "external_id,created_at\n" + "".join(f"CD-{c},{at.strftime('%Y-%m-%dT%H:%M:%SZ')}\n" for c, at in first.items())
    )
    lines = ["external_id,customer_id,occurred_at,amount\n"]
    for i, row in enumerate(frame.itertuples()):
        if i % 2:  # half the rows with an offset: 15:00Z is 10:00-05:00
            stamp = (row.at - pd.Timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%S-05:00")
        else:
            stamp = row.at.strftime("%Y-%m-%dT%H:%M:%SZ")
        sign, cents = ("-", -row.cents) if row.cents < 0 else ("", row.cents)
        lines.append(f"T{i},CD-{row.customer},{stamp},{sign}{cents // 100}.{cents % 100:02d}\n")
    transactions = tmp_path / "transactions.csv"
    transactions.write_text("".join(lines))
    for kind, path in (("customers", customers), ("transactions", transactions)):
        report = importer.import_file(database, kind, path)
        assert report.bad_rows == 0, report.errors[:3]


def _pandas_scores(frame: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """The same definition written the way a data scientist would, with pandas ranks."""
    seen = frame[frame["at"] <= as_of]
    bought = seen[seen["cents"] >= 0]
    per = bought.groupby("customer").agg(last=("at", "max"), n=("at", "size"))
    per["spend"] = seen.groupby("customer")["cents"].sum().reindex(per.index)
    n = len(per)
    out = pd.DataFrame(index=per.index)
    for score, column in (("r", "last"), ("f", "n"), ("m", "spend")):
        below = per[column].rank(method="min") - 1  # buyers strictly worse; ties share a rank
        out[score] = (1 + np.floor(SCORES * below / n)).clip(upper=SCORES).astype(int)
    out["n"], out["spend"] = per["n"], per["spend"]
    return out


SCORES = 5


def test_rfm_scores_match_pandas_on_cdnow(loaded, cdnow, revision):
    database = loaded
    as_of = dt.datetime(1997, 9, 30, 23, 59, 59, tzinfo=UTC)  # mid-history: later buyers are not yet in
    run = passes.calculate_rfm(database, revision, as_of=as_of)
    expected = _pandas_scores(cdnow, pd.Timestamp(as_of))
    with database.connection() as conn:
        stored = (
            pd.DataFrame(
                conn.execute(
                    sa.text(
                        "SELECT substr(c.external_id, 4) AS customer, s.rfm_r AS r, s.rfm_f AS f, s.rfm_m AS m, s.rfm_segment AS segment "
                        "FROM customers c JOIN customer_state s ON s.customer_id = c.id WHERE s.rfm_r IS NOT NULL"
                    )
                ).all(),
                columns=["customer", "r", "f", "m", "segment"],
            )
            .set_index("customer")
            .sort_index()
        )
    assert run.buyers == len(expected) == len(stored) > 20_000
    joined = expected.join(stored.add_suffix("_ours"))
    for score in ("r", "f", "m"):
        wrong = joined[joined[score] != joined[f"{score}_ours"]]
        assert wrong.empty, f"{len(wrong)} {score} scores differ, e.g. {wrong.head(3).to_dict('index')}"
    assert (cdnow["cents"] < 0).sum() > 300  # refunds are in the data
    # Ties share a score: every buyer with one purchase has the same f.
    assert joined.loc[joined["n"] == 1, "f_ours"].nunique() == 1
    assert sum(run.segments.values()) == run.buyers and set(run.segments) <= set(
        revision.rulesets["rfm"].outputs["rfm_segment"].values
    )
    # Customers who had not bought by then have no scores.
    with database.connection() as conn:
        unscored = conn.execute(sa.text("SELECT count(*) FROM customer_state WHERE rfm_r IS NULL")).scalar()
    assert unscored == cdnow["customer"].nunique() - run.buyers


def test_cut_points_place_a_value_exactly_as_the_run_scored_it():
    rng = np.random.default_rng(3)
    values = rng.integers(1, 20, size=997).astype(float)  # many ties
    cuts = rfm.cut_points(values)
    below = pd.Series(values).rank(method="min").to_numpy() - 1
    expected = (1 + np.floor(5 * below / len(values))).clip(max=5)
    assert (rfm.place(values, cuts) == expected).all()
    assert all(rfm.place_one(v, cuts) == e for v, e in zip(values[:50], expected[:50], strict=True))


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 11])
def test_small_bases_still_score_one_to_five_by_rank(n):
    values = np.arange(n, dtype=float)
    scores = rfm.place(values, rfm.cut_points(values))
    assert scores[0] == 1 and scores[-1] == 1 + math.floor(5 * (n - 1) / n)
    assert (np.diff(scores) >= 0).all()


@pytest.mark.parametrize("margin", ["0.30", "0.125"])
def test_historical_clv_matches_pandas_on_cdnow(loaded, cdnow, margin):
    as_of = dt.datetime(1998, 3, 31, 12, 0, tzinfo=UTC)
    with loaded.connection() as conn:
        ours = {row.external_id[3:]: row for row in clv.historical(conn, as_of=as_of, margin=Decimal(margin))}
    # pandas, written independently: CDNOW has no costs, so every cost comes from the margin.
    seen = cdnow[cdnow["at"] <= pd.Timestamp(as_of)]
    bought = seen[seen["cents"] >= 0]
    per = bought.groupby("customer").agg(orders=("cents", "size"), first=("at", "min"), last=("at", "max"))
    per["revenue"] = seen.groupby("customer")["cents"].sum().reindex(per.index)
    since = cdnow.groupby("customer")["at"].min()
    existing = since[since <= pd.Timestamp(as_of)].index
    assert set(ours) == set(existing)
    keep = Decimal(1) - Decimal(margin)
    for customer, row in per.iterrows():
        got = ours[customer]
        revenue = int(row["revenue"])
        cost = int((Decimal(revenue) * keep).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        tenure = int((pd.Timestamp(as_of) - since[customer]).total_seconds() // 86_400)
        expected = (
            revenue,
            cost,
            revenue - cost,
            int(row["orders"]),
            int((Decimal(revenue) / int(row["orders"])).quantize(Decimal(1), rounding=ROUND_HALF_UP)),
            tenure,
            (row["last"] - row["first"]).days,
        )
        assert (
            got.revenue_cents,
            got.cost_cents,
            got.profit_cents,
            got.orders,
            got.average_order_cents,
            got.tenure_days,
            got.lifespan_days,
        ) == expected, customer
        assert got.purchase_frequency == pytest.approx(int(row["orders"]) * 30 / max(tenure, 1), rel=1e-12)
    # Customers who existed but had not bought: zeros, not missing rows.
    quiet = [ours[c] for c in existing if c not in per.index]
    assert all(q.orders == 0 and q.revenue_cents == 0 and q.average_order_cents == 0 for q in quiet)
