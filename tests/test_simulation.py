"""The decision simulation (bench/decision_simulation.py), small: learning beats the baselines, every response is logged."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import decision_simulation  # noqa: E402


def test_adaptive_learning_beats_rules_only_and_random_and_logs_every_response():
    # 400 customers, 2,500 visits over 14 virtual days, own SQLite scratch database; about 10 s.
    result = decision_simulation.simulate(
        customers=400, decisions=2_500, days=14, seed=1, windows_count=4, echo=lambda *args: None
    )

    last = result["windows"][-1]
    assert last["acted"] > 200
    assert last["adaptive"] > 1.05 * last["rules_only"], last
    assert last["adaptive"] > 1.1 * last["random"], last
    assert last["adaptive"] <= last["oracle"], last

    for name, run in result["runs"].items():
        checks = run["checks"]
        made = sum(o.acted for o in run["outcomes"])
        assert checks["decisions"] == 2_500
        assert checks["actions"] == made > 1_000, name  # one action per decision that could make one
        # Every action got exactly one response row, retries (sent twice) included.
        assert checks["responses"] == checks["answered_decisions"] == checks["actions"], (name, checks)
        assert checks["retries"] > 0 and checks["retries_recorded_twice"] == 0, (name, checks)
        assert checks["by_response"]["accepted"] == sum(o.accepted for o in run["outcomes"]), name
    adaptive, rules = result["runs"]["adaptive"]["checks"], result["runs"]["rules_only"]["checks"]
    assert adaptive["acceptances_counted_by_learning"] == adaptive["by_response"]["accepted"]  # once each
    assert rules["acceptances_counted_by_learning"] == 0  # learning off: no counters
