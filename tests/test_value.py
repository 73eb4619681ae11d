"""Customer value: the documented formula, segment boundaries, and one answer on every path."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import REPO

from decision_server.rules.engine import build_revision
from decision_server.rules.source import read_rules_dir
from decision_server.value import service as value


@pytest.fixture(scope="module")
def revision():
    rev = build_revision(read_rules_dir(REPO / "rules"), backend="python", run_cases=False)
    yield rev
    rev.close()


BOUNDARIES = [
    (39.99, "low"),
    (40.0, "medium"),
    (40.01, "medium"),
    (69.99, "medium"),
    (70.0, "high"),
    (70.01, "high"),
    (0.0, "low"),
    (100.0, "high"),
]


@pytest.mark.parametrize("score,segment", BOUNDARIES)
def test_segment_boundaries_one_at_a_time(revision, score, segment):
    assert revision.evaluate("value", {"value_score": score}, backend="python").outcome["value_segment"] == segment


def test_segment_boundaries_in_bulk(revision):
    scores = np.array([s for s, _ in BOUNDARIES])
    assert list(value.segments_of(revision, scores)) == [seg for _, seg in BOUNDARIES]


def test_the_formula_as_documented():
    w = {"clv_weight": 0.5, "rfm_weight": 0.3, "engagement_weight": 0.2, "ltv_scale": 500}
    # CLV part 1 - e^-1, RFM part (5+5+5-3)/12 = 1, engagement 0.5.
    expected = 100 * (0.5 * (1 - np.exp(-1)) + 0.3 * 1 + 0.2 * 0.5)
    assert value.score(w, 500, (5, 5, 5), 50) == round(expected, 2)
    assert value.score(w, 0, None, 0) == 0.0  # never bought, no engagement
    assert value.score(w, 10**9, (5, 5, 5), 100) == 100.0
    assert value.score(w, -5, (1, 1, 1), -3) == 0.0  # bad inputs are clipped, never negative


def test_rounding_decides_the_segment_as_shown(revision):
    # Engagement alone: a raw score of 69.995 shows as 70.0 and is high; 69.994 shows 69.99, medium.
    w = {"clv_weight": 0.0, "rfm_weight": 0.0, "engagement_weight": 1.0, "ltv_scale": 500}
    assert value.score(w, 0, None, 69.995) == 70.0 and value.score(w, 0, None, 69.994) == 69.99


def test_one_customer_and_many_give_the_same_answer(revision):
    rng = np.random.default_rng(5)
    n = 500
    count = rng.integers(0, 30, n).astype(float)
    ltv = rng.gamma(1.5, 300, n)
    bought = count > 0
    r, f, m = (np.where(bought, rng.integers(1, 6, n), np.nan).astype(float) for _ in range(3))
    engagement = rng.uniform(0, 100, n)
    scores, segments = value.for_columns(revision, transaction_count=count, ltv=ltv, r=r, f=f, m=m, engagement=engagement)
    for i in range(n):
        rfm = (int(r[i]), int(f[i]), int(m[i])) if bought[i] else None
        one = value.for_customer(
            revision, transaction_count=int(count[i]), ltv=float(ltv[i]), rfm=rfm, engagement=float(engagement[i])
        )
        assert one == (scores[i], segments[i]), i
    assert {"high", "medium", "low"} <= set(segments)
