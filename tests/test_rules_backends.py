"""The three backends (durable-rules, compiled Python, vectorized numpy) agree, on random rules and inputs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from decision_server.rules import vector
from decision_server.rules.cases import run_cases
from decision_server.rules.durable_host import DurableHost
from decision_server.rules.engine import build_revision
from decision_server.rules.model import to_epoch
from decision_server.rules.source import RulesInvalid, read_rules_dir

REPO = Path(__file__).resolve().parent.parent
NOW = to_epoch("2026-06-01T00:00:00Z")
HOST = DurableHost()

NUMBERS = ["a", "b", "c"]
STAGES = ["growth", "win_back", "retention"]
SCHEMA = """\
ruleset: random
hit: {hit}
inputs:
  a: number
  b: number
  c: number
  stage: {{type: string, values: [growth, win_back, retention]}}
  flag: boolean
  seen_at: timestamp
  tags: list
outputs:
  n: number
rules:
{rules}
"""

# -- random conditions, built as text so that the parser is part of what is tested ----------------

literals = st.one_of(
    st.integers(-20, 20).map(str),
    st.sampled_from(["0.5", "2.25", "5e-05", "1e3", "-3.5", "0"]),
)
number_refs = st.sampled_from(NUMBERS)


def numbers(depth: int):
    leaf = st.one_of(number_refs, literals, st.just("days_since(seen_at)"))
    if depth <= 0:
        return leaf
    sub = numbers(depth - 1)
    return st.one_of(
        leaf,
        st.tuples(sub, st.sampled_from(["+", "-", "*", "/"]), sub).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(st.sampled_from(["min", "max", "coalesce"]), sub, sub).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
        sub.map(lambda s: f"abs({s})"),
    )


def atoms():
    comparison = st.tuples(numbers(1), st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), numbers(1)).map(" ".join)
    return st.one_of(
        comparison,
        st.tuples(number_refs, literals, literals).map(lambda t: f"{t[0]} between {t[1]} and {t[2]}"),
        st.tuples(literals, number_refs, literals).map(lambda t: f"{t[0]} <= {t[1]} < {t[2]}"),
        st.tuples(st.sampled_from(["==", "!="]), st.sampled_from(STAGES)).map(lambda t: f'stage {t[0]} "{t[1]}"'),
        st.lists(st.sampled_from(STAGES), min_size=1, max_size=3, unique=True).map(
            lambda v: "stage in [" + ", ".join(f'"{s}"' for s in v) + "]"
        ),
        st.lists(literals, min_size=1, max_size=3).map(lambda v: f"a not in [{', '.join(v)}]"),
        st.sampled_from(['"x" in tags', '"y" not in tags', "stage in tags", "flag", "flag == false", "not flag"]),
        st.tuples(st.sampled_from(NUMBERS + ["seen_at", "stage", "flag", "tags", "days_since(seen_at)"]), st.booleans()).map(
            lambda t: f"{t[0]} is {'not ' if t[1] else ''}missing"
        ),
        st.sampled_from(['seen_at < date("2026-05-01")', "days_until(seen_at) > -40", "true", "false"]),
    )


conditions = st.recursive(
    atoms(),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        inner.map(lambda c: f"not ({c})"),
    ),
    max_leaves=6,
)

inputs = st.fixed_dictionaries(
    {},
    optional={
        "a": st.one_of(
            st.none(),
            st.integers(-20, 20),
            st.floats(-50, 50, allow_nan=False),
            st.sampled_from([5e-05, 0.5, 1000.0, 1e308, -1e308, float("inf"), float("nan")]),
        ),
        "b": st.one_of(st.none(), st.integers(-20, 20), st.floats(-50, 50, allow_nan=False)),
        "c": st.one_of(st.none(), st.integers(-5, 5)),
        "stage": st.one_of(st.none(), st.sampled_from(STAGES)),
        "flag": st.one_of(st.none(), st.booleans()),
        "seen_at": st.one_of(
            st.none(), st.datetimes(dt.datetime(2026, 3, 1), dt.datetime(2026, 8, 1)).map(lambda d: d.isoformat() + "Z")
        ),
        "tags": st.one_of(st.none(), st.lists(st.sampled_from(["x", "y", "growth", "retention"]), max_size=3)),
    },
)


# Validity windows around NOW: none, ended exactly at NOW (valid_to is exclusive), current, not yet begun.
WINDOWS = [
    "",
    "    valid_to: 2026-06-01\n",
    "    valid_from: 2026-05-01\n    valid_to: 2026-07-01\n",
    "    valid_from: 2026-06-02\n",
]


def _ruleset(hit: str, whens: list[tuple[str, int, int]]) -> dict[str, str]:
    rules = "".join(
        f"  - id: r{i}\n    when: '{w.replace(chr(39), chr(39) * 2)}'\n    then: {{n: {i}}}\n    priority: {p}\n{WINDOWS[v]}"
        for i, (w, p, v) in enumerate(whens)
    )
    return {"random.yaml": SCHEMA.format(hit=hit, rules=rules)}


def _all_backends(revision, name: str, rows: list[dict]) -> None:
    vector = revision.evaluate_columns(name, {k: [row.get(k) for row in rows] for k in revision.rulesets[name].inputs}, now=NOW)
    ids = [rule.id for rule in revision.rulesets[name].rules]
    for index, row in enumerate(rows):
        python = revision.evaluate(name, row, now=NOW, backend="python")
        durable = revision.evaluate(name, row, now=NOW, backend="durable")
        assert durable.backend == "durable"
        assert python.fired_ids == durable.fired_ids, (row, python.fired_ids, durable.fired_ids)
        assert python.outcome == durable.outcome
        assert python.fired_ids == vector.fired_ids(index, ids), (row, python.fired_ids)
    batched = revision.evaluate_many(name, rows, now=NOW, backend="durable")
    assert [r.fired_ids for r in batched] == [revision.evaluate(name, row, now=NOW, backend="python").fired_ids for row in rows]
    _constants_agree(revision, name, rows)


def _constants_agree(revision, name: str, rows: list[dict]) -> None:
    """Every input held constant (the first row's value on every row), one at a time and all but one
    at once, over columns normalized once and reused: the same rules fire as row by row."""
    inputs = list(revision.rulesets[name].inputs)
    ids = [rule.id for rule in revision.rulesets[name].rules]
    for held in [[k] for k in inputs if len(inputs) > 1] + [[k for k in inputs if k != free] for free in inputs[:2]]:
        same = [{**row, **{k: rows[0].get(k) for k in held}} for row in rows]
        normalized, _ = vector.to_columns(
            revision.rulesets[name], {k: [row.get(k) for row in same] for k in inputs if k not in held}
        )
        result = revision.evaluate_columns(name, normalized, now=NOW, constants={k: rows[0].get(k) for k in held})
        for index, row in enumerate(same):
            assert revision.evaluate(name, row, now=NOW, backend="python").fired_ids == result.fired_ids(index, ids), (held, row)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    hit=st.sampled_from(["first", "collect"]),
    whens=st.lists(st.tuples(conditions, st.integers(0, 2), st.integers(0, len(WINDOWS) - 1)), min_size=1, max_size=5),
    rows=st.lists(inputs, min_size=1, max_size=8),
)
def test_backends_agree_on_random_rules_and_inputs(hit, whens, rows):
    try:
        revision = build_revision(_ruleset(hit, whens), backend="durable", durable_host=HOST, run_cases=False)
    except RulesInvalid as exc:  # load-time analysis refuses rules that can never fire; not this test's subject
        assert all("can never fire" in p.message for p in exc.problems), exc.problems
        assume(False)
    try:
        _all_backends(revision, "random", rows)
    finally:
        revision.close()


@pytest.fixture(scope="module")
def shipped():
    revision = build_revision(read_rules_dir(REPO / "rules"), backend="durable", durable_host=HOST, run_cases=False)
    yield revision
    revision.close()


def test_shipped_cases_pass_on_every_backend(shipped):
    results = run_cases(shipped)
    assert {r.backend for r in results} == {"durable", "python", "vector"}
    assert [r.to_dict() for r in results if not r.passed] == []


def _value(spec, draw):
    kind = spec.type.value
    if kind == "number":
        return draw(
            st.one_of(st.none(), st.integers(0, 30), st.floats(0, 20000, allow_nan=False), st.sampled_from([0.6, 0.85, 70, 1000]))
        )
    if kind == "string":
        return draw(st.one_of(st.none(), st.sampled_from(list(spec.values) or ["cancel", "browse", "upgrade", "complaint"])))
    if kind == "boolean":
        return draw(st.one_of(st.none(), st.booleans()))
    if kind == "timestamp":
        return draw(
            st.one_of(
                st.none(), st.datetimes(dt.datetime(2023, 1, 1), dt.datetime(2026, 6, 30)).map(lambda d: d.isoformat() + "Z")
            )
        )
    return draw(
        st.one_of(
            st.none(), st.lists(st.sampled_from(["growth", "retention", "win_back", "high", "low", "churn_risk"]), max_size=3)
        )
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_backends_agree_on_the_shipped_rule_files(shipped, data):
    for name, ruleset in shipped.rulesets.items():
        rows = [{n: _value(spec, data.draw) for n, spec in ruleset.inputs.items()} for _ in range(4)]
        _all_backends(shipped, name, rows)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_rule_sets_evaluated_together_agree_with_each_alone(shipped, data):
    names = sorted(shipped.rulesets)
    groups = [names, ["offers", "contact_policy", "arbitration"], ["lifecycle", "value", "tiers", "segments"]]
    inputs = {n: spec for rs in shipped.rulesets.values() for n, spec in rs.inputs.items()}
    rows = [{n: _value(spec, data.draw) for n, spec in inputs.items()} for _ in range(data.draw(st.integers(1, 9)))]
    for group in groups:
        for backend in ("durable", "python"):
            together = shipped.evaluate_group_many(group, rows, now=NOW, backend=backend)
            single = shipped.evaluate_group(group, rows[0], now=NOW, backend=backend)
            assert {n: r.fired_ids for n, r in single.items()} == {n: r.fired_ids for n, r in together[0].items()}
            for row, results in zip(rows, together, strict=True):
                for name in group:
                    alone = shipped.evaluate(name, row, now=NOW, backend="python")
                    assert results[name].backend == backend
                    assert (results[name].fired_ids, results[name].outcome) == (alone.fired_ids, alone.outcome), (name, row)
