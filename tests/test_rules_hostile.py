"""Hostile rule files (aliases, deep nesting, huge, binary, wrong encodings) are refused fast, cheaply and with their place."""

from __future__ import annotations

import random
import resource
import threading
import time

import pytest

from decision_server import create_app
from decision_server.config import Config
from decision_server.web import bad_character

# The issue's one-second goal is measured in bench/rules_hostile_bench.py; this bound only catches a file
# parsed in earnest (an expansion bomb takes minutes). At 1.0 s it failed on a loaded 2-core box (a
# what-if refusal took 1.07 s beside the other xdist worker), a timing test the guide says not to write.
REFUSED_WITHIN = 5.0
VALUE_HEAD = "ruleset: value\nhit: first\ninputs: {value_score: number}\noutputs: {value_segment: string}\n"


def billion_laughs() -> str:
    """Nine levels of nine aliases: 489 bytes that expand to 9**9 strings (the issue's 4 GB worker)."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


def rules(count: int) -> str:
    return (
        VALUE_HEAD
        + "rules:\n"
        + "".join(f"- {{id: r{i}, when: value_score > {i}, then: {{value_segment: x}}}}\n" for i in range(count))
    )


def cases(count: int) -> str:
    return "ruleset: value\ncases:\n" + "".join(
        f"- {{given: {{value_score: {i}}}, expect: {{value_segment: low}}}}\n" for i in range(count)
    )


# name → (file name, content as text for the API and the folder, or bytes for the folder only, what the problem says)
TEXT = {
    "billion laughs": ("value.yaml", billion_laughs(), "anchors (&a0) are not allowed"),
    "alias": ("value.yaml", VALUE_HEAD + "rules: *r\n", "aliases (*r) are not allowed"),
    "merge key": ("value.yaml", VALUE_HEAD + "rules:\n- <<: {id: a}\n  when: true\n", "merge keys (<<) are not allowed"),
    "deep flow lists": ("value.yaml", "x: " + "[" * 10_000 + "]" * 10_000 + "\n", "nesting depth"),
    "deep flow mappings": ("value.yaml", "x: " + "{a: " * 10_000 + "1" + "}" * 10_000 + "\n", "nested more than 20 levels deep"),
    "deep block mappings": ("value.yaml", "".join(" " * i + "a:\n" for i in range(200)), "nested more than 20 levels deep"),
    "100k rules": ("value.yaml", rules(100_000), "a rule file may hold at most 1,048,576"),
    "2,001 rules": ("value.yaml", rules(2_001), "more than 2,000 rules in one file"),
    "2,001 cases": ("value.cases.yaml", cases(2_001), "more than 2,000 cases in one file"),
    "half a million values": ("value.yaml", "x: [" + ",".join(["1"] * 450_000) + "]\n", "more than 50,000 values"),
    "100k documents": ("value.yaml", "---\n" * 100_000, "one YAML document"),
    "NUL bytes": ("value.yaml", VALUE_HEAD + "description: a\x00b\n", "not valid YAML"),
    "binary as text": ("value.yaml", random.Random(1).randbytes(64 * 1024).decode("latin-1"), "not valid YAML"),
    "python tag": ("value.yaml", VALUE_HEAD + "rules: !!python/object/apply:os.system [echo hi]\n", "is not allowed"),
    "lone surrogate": ("value.yaml", VALUE_HEAD + "description: a\ud800b\n", "not valid text: a lone surrogate U+D800"),
    "2 MB scalar": ("value.yaml", VALUE_HEAD + "description: " + "a" * 2_000_000 + "\n", "a rule file may hold at most"),
}
BYTES = {
    "10 MB file": ("value.yaml", b"description: " + b"a" * 10_000_000 + b"\n", "a rule file may hold at most 1,048,576"),
    "random binary": ("value.yaml", random.Random(2).randbytes(256 * 1024), "not UTF-8 text"),
    "UTF-16 with BOM": ("value.yaml", "\ufeffruleset: value\nhit: first\n".encode("utf-16"), "UTF-16 text; save it as UTF-8"),
    "Latin-1": ("value.yaml", "ruleset: value\ndescription: caf\xe9 cr\xe8me\n".encode("latin-1"), "not UTF-8 text (byte 0xe9)"),
    **{
        name: (file, text.encode("utf-8")) + (says,)
        for name, (file, text, says) in TEXT.items()
        if name not in ("binary as text", "lone surrogate")
    },
}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def test_hostile_files_through_the_api_are_refused_within_a_second(app, client, auth):
    headers = auth("editor")
    serving = client.get("/api/v1/rules", headers=headers).get_json()["revision"]
    peak = peak_rss_mb()
    for name, (file, text, says) in TEXT.items():
        for path, extra in (("validate", {}), ("publish", {"message": "hostile"}), ("jobs/what-if", {"steps": ["stages"]})):
            url = f"/api/v1/{'rules/' if path != 'jobs/what-if' else ''}{path}"
            started = time.perf_counter()
            response = client.post(url, json={"files": {file: text}, **extra}, headers=headers)
            took = time.perf_counter() - started
            assert took < REFUSED_WITHIN, f"{name} via {path}: {took:.2f} s"
            body = response.get_json()
            if len(text) > 4 * 1024 * 1024:  # past the request body limit (MAX_REQUEST_BYTES)
                assert response.status_code == 413 and body["code"] == "payload_too_large", (name, path, body)
                continue
            if len(text) > 1024 * 1024:  # past the API's own cap on a file (RULES_MAX_FILE_BYTES is the same)
                assert response.status_code == 422 and body["code"] == "validation_error", (name, path, body)
                continue
            refused = bad_character({"files": {file: text}})
            if refused:  # the API's JSON parser refuses a NUL or a lone surrogate in any request, naming the file
                assert response.status_code == 422 and body["errors"] == {refused[0]: [refused[1]]}, (name, path, body)
                continue
            if path == "validate":
                assert response.status_code == 200 and body["valid"] is False, (name, body)
                problems = body["problems"]
            else:
                assert response.status_code == 422 and body["code"] == "rule_file_invalid", (name, path, body)
                problems = body["errors"]["problems"]
                assert body["message"].startswith(f"{file}:{problems[0]['line']}:{problems[0]['column']}: error: ")
            assert problems[0]["file"] == file and problems[0]["line"] >= 1 and problems[0]["column"] >= 1, (name, problems)
            assert says in problems[0]["message"], (name, problems[0])
    assert peak_rss_mb() - peak < 100, "refusing the hostile files took memory"
    assert client.get("/api/v1/rules", headers=headers).get_json()["revision"] == serving


def test_the_diff_of_a_draft_changing_thousands_of_scattered_lines_is_quick(client, auth, rules_dir):
    """difflib took 26 s for 10,000 lines with every other one changed; such a change is shown as one replaced block."""
    original = (rules_dir / "value.yaml").read_text()
    old = original + "".join(f"# note {i}\n" for i in range(10_000))
    new = original + "".join(f"# note {i}\n" if i % 2 else f"# changed {i}\n" for i in range(10_000))
    published = client.post(
        "/api/v1/rules/publish", json={"files": {"value.yaml": old}, "message": "notes"}, headers=auth("editor")
    )
    assert published.status_code == 200, published.get_json()
    started = time.perf_counter()
    validated = client.post("/api/v1/rules/validate", json={"files": {"value.yaml": new}}, headers=auth("editor")).get_json()
    assert time.perf_counter() - started < REFUSED_WITHIN + 2  # the draft is valid: its cases run on every backend too
    lines = validated["diff"].splitlines()
    first = len(original.splitlines()) + 1
    assert lines[:3] == [
        "--- " + published.get_json()["revision"][:12] + "/value.yaml",
        "+++ draft/value.yaml",
        f"@@ -{first - 3},{3 + 9_999 + 1} +{first - 3},{3 + 9_999 + 1} @@",
    ]
    assert [line[1:] for line in lines if line.startswith("-") and not line.startswith("---")] == old.splitlines()[first - 1 : -1]
    assert [line[1:] for line in lines if line.startswith("+") and not line.startswith("+++")] == new.splitlines()[first - 1 : -1]


def test_a_draft_past_the_values_of_a_revision_is_refused_before_anything_is_built(client, auth):
    """Six files of 2,000 rules (18,000 values each) are each within the limits; together they pass RULES_MAX_TOTAL_VALUES."""
    files = {f"extra_{k}.yaml": rules(2_000).replace("ruleset: value", f"ruleset: extra_{k}") for k in range(6)}
    started = time.perf_counter()
    response = client.post("/api/v1/rules/publish", json={"files": files, "message": "big"}, headers=auth("editor"))
    assert time.perf_counter() - started < REFUSED_WITHIN
    body = response.get_json()
    assert response.status_code == 422 and body["code"] == "rule_file_invalid"
    [problem] = body["errors"]["problems"]
    assert problem["file"] == "extra_5.yaml" and problem["line"] > 1
    assert problem["message"] == "the files of the revision hold more than 100,000 values in all (RULES_MAX_TOTAL_VALUES)"


def test_a_body_past_the_request_limit_is_413(client, auth):
    text = "description: " + "a" * 10_000_000
    response = client.post("/api/v1/rules/validate", json={"files": {"value.yaml": text}}, headers=auth("editor"))
    assert response.status_code == 413 and response.get_json()["code"] == "payload_too_large"


def test_a_draft_of_too_many_files_is_refused(client, auth):
    files = {f"extra_{i}.yaml": "ruleset: x\n" for i in range(201)}
    response = client.post("/api/v1/rules/publish", json={"files": files, "message": "many"}, headers=auth("editor"))
    body = response.get_json()
    assert response.status_code == 422 and body["code"] == "rule_file_invalid"
    assert "a revision may hold at most 200 (RULES_MAX_FILES)" in body["message"]


def test_hostile_files_in_the_folder_are_refused_and_the_last_good_revision_serves(app, client, auth, rules_dir):
    rulebook, headers = app.extensions["rulebook"], auth("analyst")
    serving = rulebook.current.id
    originals = {name: (rules_dir / name).read_bytes() for name in ("value.yaml", "value.cases.yaml")}
    peak = peak_rss_mb()
    for name, (file, data, says) in BYTES.items():
        (rules_dir / file).write_bytes(data)
        started = time.perf_counter()
        rulebook.sync()
        took = time.perf_counter() - started
        assert took < REFUSED_WITHIN, f"{name}: {took:.2f} s"
        status = client.get("/api/v1/rules", headers=headers).get_json()
        assert status["revision"] == serving, name
        assert status["folder"]["refused"], name
        [problem, *_] = [p for p in status["folder"]["problems"] if p["severity"] == "error"]
        assert problem["file"] == file and problem["line"] >= 1 and problem["column"] >= 1, (name, problem)
        assert says in problem["message"], (name, problem)
        (rules_dir / file).write_bytes(originals[file])
        rulebook.sync()
        assert client.get("/api/v1/rules", headers=headers).get_json()["folder"]["problems"] == [], name
    assert peak_rss_mb() - peak < 100, "refusing the hostile files took memory"
    assert client.get("/ready").get_json()["status"] == "ready"


def test_the_place_of_a_bad_byte_is_its_line_and_column(app, client, auth, rules_dir):
    lines = (rules_dir / "value.yaml").read_text().splitlines(keepends=True)
    lines[4] = lines[4].replace(":", ": caf\udce9", 1)  # a Latin-1 é inside UTF-8 text
    (rules_dir / "value.yaml").write_bytes("".join(lines).encode("utf-8", "surrogateescape"))
    app.extensions["rulebook"].sync()
    [problem] = client.get("/api/v1/rules", headers=auth("analyst")).get_json()["folder"]["problems"]
    assert (problem["line"], problem["column"]) == (5, lines[4].index("\udce9") + 1)
    assert problem["message"] == "not UTF-8 text (byte 0xe9): save the file as UTF-8"


def test_limits_are_settings(config, rules_dir):
    """RULES_MAX_RULES at 9 refuses the two shipped files of 10 rules at start-up, at their tenth rule, naming the setting."""
    from decision_server.rules.source import RulesInvalid

    with pytest.raises(RulesInvalid) as refused:
        create_app({**vars(config), "rules_max_rules": 9})
    assert {(p.file, p.message) for p in refused.value.problems} == {
        (name, "more than 9 rules in one file (RULES_MAX_RULES); split the rule set") for name in ("offers.yaml", "rfm.yaml")
    }
    tenth = [n for n, line in enumerate((rules_dir / "rfm.yaml").read_text().splitlines(), 1) if line.startswith("  - id:")][9]
    assert [p.line for p in refused.value.problems if p.file == "rfm.yaml"] == [tenth]
    from_env = Config.from_env({"RULES_MAX_DEPTH": "5", "RULES_MAX_TOTAL_VALUES": "1000", "EXPENSIVE_CONCURRENCY": "1"})
    assert (from_env.rule_limits.depth, from_env.rule_limits.total_values, from_env.expensive_concurrency) == (5, 1000, 1)


# -- expensive requests: at most EXPENSIVE_CONCURRENCY at once per process, then 429 -------------------------------


@pytest.fixture
def one_slot_app(config):
    application = create_app({**vars(config), "expensive_concurrency": 1})
    yield application
    for name in ("rulebook", "models", "catalog"):
        application.extensions[name].stop()
    application.extensions["decider"].learning.stop()
    application.extensions["database"].dispose()


EXPENSIVE = (
    ("/api/v1/rules/validate", {"files": {}}),
    ("/api/v1/rules/publish", {"message": "m"}),
    ("/api/v1/rules/test", None),
    ("/api/v1/rules/rollback", {"message": "m"}),
    ("/api/v1/jobs/what-if", {"steps": ["stages"]}),
    ("/api/v1/models/churn/promote", {"version": "v1", "reason": "r"}),
    ("/api/v1/models/churn/rollback", {"reason": "r"}),
    ("/api/v1/lifecycle/evaluate", None),
    ("/api/v1/rfm/calculate", {}),
    ("/api/v1/segments/recompute", None),
)


def assert_busy(response) -> None:
    assert response.status_code == 429, response.get_json()
    assert response.headers["Retry-After"] == "2"
    assert response.get_json() == {
        "code": "too_many_requests",
        "status": 429,
        "errors": {},
        "message": "1 expensive request(s) are running in this server; retry in 2 s",
    }


def test_past_the_concurrency_an_expensive_request_gets_429_with_retry_after(one_slot_app, auth):
    """While the process's one slot is taken, every expensive operation is told to retry; cheap ones run."""
    client, slots = one_slot_app.test_client(), one_slot_app.extensions["expensive_slots"]
    slots.acquire()  # what a request in flight holds
    try:
        for url, body in EXPENSIVE:
            assert_busy(client.post(url, json=body, headers=auth("admin")))
        assert client.get("/api/v1/rules", headers=auth("analyst")).status_code == 200
        evaluated = client.post(
            "/api/v1/rules/evaluate", json={"ruleset": "value", "inputs": {"value_score": 80}}, headers=auth("analyst")
        )
        assert evaluated.status_code == 200
    finally:
        slots.release()
    # The slot is given back after an error and after a success, so the next request runs.
    refused = client.post(
        "/api/v1/rules/publish", json={"files": {"value.yaml": "x: *a"}, "message": "m"}, headers=auth("editor")
    )
    assert refused.status_code == 422
    assert client.post("/api/v1/rules/test", headers=auth("analyst")).status_code == 200
    assert client.post("/api/v1/rules/test", headers=auth("analyst")).status_code == 200


def test_a_publish_in_flight_holds_the_slot(one_slot_app, auth, database, rules_dir):
    """A real publish waits on the publication lock (held here) inside its request; a validation meanwhile gets 429."""
    if database.dialect != "postgresql":
        pytest.skip("the publication lock that keeps a publish in flight is PostgreSQL's advisory lock")
    import sqlalchemy as sa

    from decision_server.rulebook.service import _PUBLISH_LOCK

    client, headers = one_slot_app.test_client(), auth("editor")
    text = (rules_dir / "value.yaml").read_text().replace(">= 70", ">= 75").replace("< 70", "< 75")
    done: dict = {}
    with database.engine.connect() as lock:
        lock.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": _PUBLISH_LOCK})
        publisher = threading.Thread(
            target=lambda: done.update(
                r=client.post("/api/v1/rules/publish", json={"files": {"value.yaml": text}, "message": "75"}, headers=headers)
            )
        )
        publisher.start()
        try:
            deadline = time.monotonic() + 60
            while not lock.execute(sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")).scalar():
                assert time.monotonic() < deadline and publisher.is_alive(), done
                time.sleep(0.05)
            assert_busy(client.post("/api/v1/rules/validate", json={"files": {"value.yaml": text}}, headers=headers))
        finally:
            lock.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": _PUBLISH_LOCK})
            publisher.join(60)
    assert done["r"].status_code == 200, done["r"].get_json()
    assert client.post("/api/v1/rules/validate", json={"files": {"value.yaml": text}}, headers=headers).status_code == 200


def test_unauthenticated_requests_never_take_a_slot(one_slot_app, auth):
    client = one_slot_app.test_client()
    for _ in range(3):
        assert client.post("/api/v1/rules/test").status_code == 401
    assert client.post("/api/v1/rules/test", headers=auth("analyst")).status_code == 200


def test_the_429_is_in_the_openapi_of_each_expensive_operation(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    expensive = {
        (path, method)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and "429" in op.get("responses", {})
    }
    assert expensive == {
        ("/api/v1/rules/validate", "post"),
        ("/api/v1/rules/publish", "post"),
        ("/api/v1/rules/rollback", "post"),
        ("/api/v1/rules/test", "post"),
        ("/api/v1/jobs/what-if", "post"),
        ("/api/v1/models/{name}/promote", "post"),
        ("/api/v1/models/{name}/rollback", "post"),
        ("/api/v1/lifecycle/evaluate", "post"),
        ("/api/v1/rfm/calculate", "post"),
        ("/api/v1/segments", "post"),
        ("/api/v1/segments/{name}", "patch"),
        ("/api/v1/segments/recompute", "post"),
    }
    assert "Retry-After" in spec["paths"]["/api/v1/rules/validate"]["post"]["responses"]["429"]["headers"]
