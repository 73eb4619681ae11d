"""DurableHost: each durable_rules workaround is exercised, crash- and hang-prone code in a subprocess."""

from __future__ import annotations

import inspect
import math
import random
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from decision_server.rules import durable_host
from decision_server.rules.durable_host import DurableHost

REPO = Path(__file__).resolve().parent.parent


def threshold_rules(count: int, seed: int) -> dict:
    """Return `count` rules "low <= fN < high" over the fields f0..f3."""
    rnd = random.Random(seed)
    rules = {}
    for i in range(count):
        field, low = f"f{i % 4}", rnd.randint(0, 80)
        rules[f"r{i}"] = {"$and": [{"$gte": {field: low}}, {"$lt": {field: low + rnd.randint(5, 40)}}]}
    return rules


def expected(rules: dict, fact: dict) -> frozenset:
    """Evaluate threshold_rules in plain Python; None and NaN count as absent."""
    fired = set()
    for rule_id, condition in rules.items():
        ((field, low),) = condition["$and"][0]["$gte"].items()
        ((_, high),) = condition["$and"][1]["$lt"].items()
        value = fact.get(field)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            if low <= value < high:
                fired.add(rule_id)
    return frozenset(fired)


def random_fact(rnd: random.Random) -> dict:
    """Return a fact over f0..f3 mixing ints, floats, None, NaN and absent fields."""
    fact = {}
    for i in range(4):
        pick = rnd.random()
        if pick < 0.1:
            fact[f"f{i}"] = None
        elif pick < 0.15:
            fact[f"f{i}"] = float("nan")
        elif pick < 0.55:
            fact[f"f{i}"] = rnd.randint(0, 120)
        elif pick < 0.95:
            fact[f"f{i}"] = rnd.random() * 120
    return fact


def run_isolated(code: str, timeout: float = 60) -> str:
    """Run `code` in a fresh interpreter so that a segfault or hang cannot take pytest down."""
    helpers = "".join(inspect.getsource(f) + "\n" for f in (threshold_rules, expected, random_fact))
    script = "import math, random\nfrom decision_server.rules.durable_host import DurableHost\n" + helpers + textwrap.dedent(code)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"exit code {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture
def host() -> Iterator[DurableHost]:
    host = DurableHost()
    yield host
    for name in host.names():
        host.release(name)


def test_fact_matching_no_rule_then_session_delete_does_not_crash():
    # Without the sentinel rule the engine reports the fact as not handled and deleting the
    # session segfaults (exit code -11), or the host raises RuntimeError instead of deleting.
    out = run_isolated(
        """
        host = DurableHost()
        host.register("never", {"big": {"$gt": {"f0": 1000}}, "text": {"f1": "growth"}})
        for i in range(300):
            assert host.evaluate("never", {"f0": i, "f1": "other"}) == frozenset()
        assert host.evaluate("never", {}) == frozenset()
        host.register("empty", {})
        assert host.evaluate("empty", {"f0": 1}) == frozenset()
        print("ok")
        """
    )
    assert out.strip() == "ok"


def test_more_evaluations_than_the_engine_session_limit(host):
    # The engine holds at most 1,024 sessions per ruleset; without the throw-away session
    # being deleted every time, evaluation 1,025 raises MemoryError.
    rules = threshold_rules(10, seed=1)
    host.register("many", rules)
    for i in range(2500):
        fact = {"f0": i % 120, "f1": (i * 7) % 120, "f2": i / 25, "f3": None}
        assert host.evaluate("many", fact) == expected(rules, fact)


def test_or_with_several_true_branches_reports_the_rule_once(host):
    # The engine fires a rule once per true $or branch, and each DNF term is its own engine
    # rule named "<id>~<n>"; without folding those back the result would hold r~1, r~2.
    host.register("or", {"r": {"$or": [{"$gt": {"f0": 1}}, {"$gt": {"f0": 2}}, {"$lt": {"f1": 9}}]}})
    assert host.evaluate("or", {"f0": 5, "f1": 3}) == {"r"}
    assert host.evaluate("or", {"f0": 0, "f1": 3}) == {"r"}
    assert host.evaluate("or", {"f0": 0, "f1": 30}) == frozenset()


def test_or_of_more_than_fourteen_conjunctions(host):
    # An $or of more than 14 $and lists is rejected by the engine (error 113); each DNF term
    # is registered as a rule of its own instead.
    branches = [{"$and": [{"$gte": {"f0": i}}, {"$lt": {"f0": i + 1}}]} for i in range(40)]
    host.register("bands", {"band": {"$or": branches}, "nested": {"$and": [{"$or": branches}, {"f1": "x"}]}})
    assert host.evaluate("bands", {"f0": 39.5, "f1": "x"}) == {"band", "nested"}
    assert host.evaluate("bands", {"f0": 40, "f1": "x"}) == frozenset()


def test_exponent_floats_in_rules_and_facts(host):
    # json.dumps writes 5e-05 and 1e+20, which the engine rejects (error 204); without the
    # fixed-point encoder both register and evaluate raise.
    host.register(
        "tiny",
        {
            "above": {"$gt": {"f0": 5e-05}},
            "equal": {"$eq": {"f0": 5e-05}},
            "huge": {"$gte": {"f1": 1e20}},
            "below": {"$lt": {"f1": -1.5e-300}},
        },
    )
    assert host.evaluate("tiny", {"f0": 6e-05}) == {"above"}
    assert host.evaluate("tiny", {"f0": 5e-05}) == {"equal"}
    assert host.evaluate("tiny", {"f0": 4.999999999999999e-05}) == frozenset()
    assert host.evaluate("tiny", {"f1": 1e20, "f0": 1e-7}) == {"huge"}
    assert host.evaluate("tiny", {"f1": 2**70}) == {"huge"}  # beyond int64: sent as a float
    assert host.evaluate("tiny", {"f1": -1e-299}) == {"below"}


def test_none_nan_and_infinity_are_absent(host):
    # The engine cannot parse NaN or Infinity; such values are dropped, so only $nex holds.
    host.register("absent", {"missing": {"$nex": {"f0": 1}}, "low": {"$lt": {"f0": 5}}, "ne": {"$neq": {"f0": 5}}})
    for value in (None, float("nan"), float("inf"), float("-inf")):
        assert host.evaluate("absent", {"f0": value}) == {"missing"}
    assert host.evaluate("absent", {"f0": 1}) == {"low", "ne"}


def test_session_state_fact_does_not_fire_rules(host):
    # Every session carries a state fact without our fields; without the marker test in each
    # rule, "missing" fires for that state fact even though f0 is present.
    host.register("state", {"missing": {"$nex": {"f0": 1}}})
    assert host.evaluate("state", {"f0": 3}) == frozenset()
    assert host.evaluate("state", {"f1": 3}) == {"missing"}


def test_field_reference_to_an_absent_field_does_not_match(host):
    # After the first test of a chain, a comparison with {"$m": field} holds whenever that
    # field is absent, for every operator; the host tests the field's presence first.
    reference = {"$m": "f1"}
    host.register(
        "refs",
        {
            "gt": {"$gt": {"f0": reference}},
            "lt": {"$lt": {"f0": reference}},
            "eq": {"f0": reference},
            "neq": {"$neq": {"f0": reference}},
            "sum": {"$lt": {"f0": {"$add": {"$l": reference, "$r": 5}}}},
        },
    )
    assert host.evaluate("refs", {"f0": 1}) == frozenset()
    assert host.evaluate("refs", {"f0": 1, "f1": None}) == frozenset()
    assert host.evaluate("refs", {"f0": 1, "f1": 0}) == {"gt", "neq", "sum"}
    assert host.evaluate("refs", {"f0": 1, "f1": 1.0}) == {"eq", "sum"}
    assert host.evaluate("refs", {"f0": 1, "f1": 3}) == {"lt", "neq", "sum"}


def test_more_than_64_simultaneously_true_rules_and_branches():
    # With every term in one engine ruleset, 100 true rules fail with error 303 (deleting that
    # session segfaults) and 600 rules hang assert_fact; sharding keeps each under 32 terms.
    out = run_isolated(
        """
        host = DurableHost()
        host.register("wide", {"r%d" % i: {"$gt": {"f0": -i}} for i in range(100)})
        assert host.evaluate("wide", {"f0": 1}) == {"r%d" % i for i in range(100)}
        assert host.evaluate("wide", {"f0": -50}) == {"r%d" % i for i in range(51, 100)}
        host.register("branches", {"one": {"$or": [{"$gt": {"f0": -i}} for i in range(100)]}})
        assert host.evaluate("branches", {"f0": 1}) == {"one"}
        host.register("huge", {"r%d" % i: {"f0": i} for i in range(600)})
        assert host.evaluate("huge", {"f0": 599}) == {"r599"}
        host.register("same", {"r%d" % i: {"$gt": {"f0": 0}} for i in range(300)})
        assert len(host.evaluate("same", {"f0": 1})) == 300
        print("ok")
        """,
        timeout=60,
    )
    assert out.strip() == "ok"


def test_release_waits_for_an_in_flight_evaluation(host, monkeypatch):
    # Freeing an engine ruleset under a running evaluation breaks it (error 111, or a reused
    # handle); release must leave the free to the last evaluation.
    host.register("old", {"hit": {"$gt": {"f0": 0}}})
    entered, resume = threading.Event(), threading.Event()
    run_session = durable_host._run_session

    def paused(handle, tail, fired):
        entered.set()
        assert resume.wait(10)
        run_session(handle, tail, fired)

    monkeypatch.setattr(durable_host, "_run_session", paused)
    handles = host._rulesets["old"].handles
    results = []
    worker = threading.Thread(target=lambda: results.append(host.evaluate("old", {"f0": 1})))
    worker.start()
    assert entered.wait(10)
    monkeypatch.setattr(durable_host, "_run_session", run_session)
    host.release("old")
    assert host.names() == []
    with pytest.raises(KeyError):
        host.evaluate("old", {"f0": 1})
    assert handles  # still allocated: the paused evaluation uses them
    resume.set()
    worker.join(10)
    assert results == [frozenset({"hit"})]
    assert handles == []  # freed by that evaluation on its way out


def test_new_revision_under_new_name_while_another_thread_evaluates(host):
    # A registered engine ruleset is never replaced: each revision gets a new name and the
    # old one is released under a running evaluator, which must never see an engine error.
    current = ["rev0"]
    want = {"rev0": {"hit0"}}
    host.register("rev0", {"hit0": {"$gt": {"f0": 10}}})
    stop = threading.Event()
    failures: list[str] = []
    done = [0]

    def evaluate_current():
        while not stop.is_set():
            name = current[0]
            try:
                got = host.evaluate(name, {"f0": 50})
            except KeyError:
                continue  # released between reading the name and evaluating it
            except Exception as exc:
                failures.append(repr(exc))
                return
            done[0] += 1
            if got != want[name]:
                failures.append(f"{name}: {sorted(got)}")

    thread = threading.Thread(target=evaluate_current)
    thread.start()
    try:
        for revision in range(1, 60):
            name = f"rev{revision}"
            host.register(name, {f"hit{revision}": {"$gt": {"f0": 10}}, "shared": {"$lt": {"f0": 99}}})
            want[name] = {f"hit{revision}", "shared"}
            previous, current[0] = current[0], name
            # Let the evaluator run on the old revision a while so releases hit it in flight.
            deadline = time.monotonic() + 5
            while done[0] < revision * 20 and not failures and time.monotonic() < deadline:
                time.sleep(0.0002)
            host.release(previous)
            assert host.names() == [name]
    finally:
        stop.set()
        thread.join(10)
    assert failures == []
    assert done[0] > 0
    with pytest.raises(KeyError):
        host.evaluate("rev0", {"f0": 50})


def test_sixteen_threads_agree_with_plain_python():
    # The stock durable.engine.Host runs timer threads that dispatch actions of other
    # threads' sessions and segfaulted under 16 request threads; this host has none and must
    # agree exactly with plain Python.  A subprocess, because a regression would crash.
    out = run_isolated(
        """
        import threading
        host = DurableHost()
        rules = {10: threshold_rules(10, seed=2), 40: threshold_rules(40, seed=3)}
        for size, ruleset in rules.items():
            host.register("t%d" % size, ruleset)
        rnd = random.Random(4)
        facts = [random_fact(rnd) for _ in range(500)]
        want = {size: [expected(ruleset, fact) for fact in facts] for size, ruleset in rules.items()}
        wrong, errors = [], []

        def worker(seed):
            rnd = random.Random(seed)
            try:
                for _ in range(2000):
                    size, index = rnd.choice((10, 40)), rnd.randrange(len(facts))
                    if host.evaluate("t%d" % size, facts[index]) != want[size][index]:
                        wrong.append((size, index))
            except Exception as exc:
                errors.append(repr(exc))

        threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        print(len(wrong), errors[:3])
        """,
        timeout=120,
    )
    assert out.strip() == "0 []"


def test_conditions_follow_engine_semantics(host):
    host.register(
        "ops",
        {
            "text": {"f0": "growth"},
            "flag": {"$eq": {"f1": True}},
            "pair": {"f2": 1, "f3": 2},  # all keys must hold; the engine would test only f2
            "gt-other": {"$gt": {"f2": {"$m": "f3"}}},
            "gt-sum": {"$gt": {"f2": {"$add": {"$l": {"$m": "f3"}, "$r": 5}}}},
            "regex": {"$mt": {"f0": "gr.*"}},
            "exists": {"$ex": {"f3": 1}},
        },
    )
    assert host.evaluate("ops", {"f0": "growth", "f1": True, "f2": 1, "f3": 2}) == {"text", "flag", "pair", "regex", "exists"}
    assert host.evaluate("ops", {"f0": "grow", "f1": False, "f2": 9, "f3": 3}) == {"gt-other", "gt-sum", "regex", "exists"}
    assert host.evaluate("ops", {"f2": 3.0, "f3": 3}) == {"exists"}
    assert host.evaluate("ops", {"f0": 'dé"cline', "f2": 1}) == frozenset()


@pytest.mark.parametrize(
    "condition",
    [
        {"$in": {"f0": [1, 2]}},
        {"$not": {"f0": 1}},
        {"$and": []},
        {"$gt": {"sid": 1}},
        {"$gt": {"_q": 1}},
        {"$gt": {"f0": float("nan")}},
        {"$eq": {"f0": None}},
        {"$lt": {"f0": [1]}},
        "f0 > 1",
    ],
)
def test_register_rejects_what_the_engine_cannot_run(host, condition):
    with pytest.raises(ValueError):
        host.register("bad", {"r": condition})
    assert host.names() == []


def test_names_duplicates_and_unknown(host):
    host.register("b", {"r": {"f0": 1}})
    host.register("a", {})
    assert host.names() == ["a", "b"]
    with pytest.raises(ValueError):
        host.register("a", {"r": {"f0": 1}})
    with pytest.raises(ValueError):
        host.register("c", {"Bad Id": {"f0": 1}})
    with pytest.raises(KeyError):
        host.evaluate("missing", {})
    with pytest.raises(KeyError):
        host.release("missing")
    with pytest.raises(ValueError):
        host.evaluate("b", {"sid": 1})
    host.release("a")
    host.register("a", {"r": {"f0": 1}})
    assert host.evaluate("a", {"f0": 1}) == {"r"}


def test_many_facts_in_one_session_are_told_apart(host):
    # evaluate_many tags each fact with its index; without it the fired rules of 300 facts in
    # one session could not be given back to the fact that fired them.
    host.register("many", {f"r{i}": {"$gte": {"x": i}} for i in range(10)} | {"same": {"$eq": {"s": 'a"_n":7'}}})
    facts = [{"x": n % 12, "s": 'a"_n":7' if n % 5 == 0 else "b"} for n in range(300)]
    batched = host.evaluate_many("many", facts)
    assert batched == [host.evaluate("many", fact) for fact in facts]
    assert batched[0] == {"r0", "same"} and batched[11] == {f"r{i}" for i in range(10)}
    assert host.evaluate_many("many", []) == []
    for _ in range(1100):  # beyond the engine's 1,024 live sessions: each batch's session is deleted
        host.evaluate_many("many", facts[:2])
