"""Safe change of rules: edit on disk or publish over the API, refuse bad revisions, converge, roll back."""

from __future__ import annotations

import shutil
import time

import pytest

from decision_server import create_app

VALUE_70 = "value_score >= 70"


def value_score_segment(client, headers, score):
    response = client.post("/api/v1/rules/evaluate", json={"ruleset": "value", "inputs": {"value_score": score}}, headers=headers)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    return body["outcome"]["value_segment"], body["revision"]


def raise_high_to_75(text: str) -> str:
    return text.replace(">= 70", ">= 75").replace("< 70", "< 75")


def test_status_lists_the_serving_rule_sets(client, auth):
    body = client.get("/api/v1/rules", headers=auth("analyst")).get_json()
    assert {rs["name"] for rs in body["rulesets"]} == {
        "lifecycle",
        "value",
        "tiers",
        "offers",
        "contact_policy",
        "arbitration",
        "segments",
        "rfm",
        "value_weights",
        "journey",
        "stage_actions",
        "learning",
        "earning",
        "loyalty_policy",
    }
    assert body["backend"] == "durable"
    assert body["published"]["source"] == "startup" and body["published"]["revision"] == body["revision"]


def test_editing_the_threshold_on_disk(app, client, auth, rules_dir):
    """The issue's acceptance path: a typo is refused with its line; a correct edit serves next."""
    rulebook = app.extensions["rulebook"]
    headers = auth("analyst")
    before = rulebook.current.id
    assert value_score_segment(client, headers, 72) == ("high", before)

    path = rules_dir / "value.yaml"
    original = path.read_text()
    path.write_text(raise_high_to_75(original).replace("value_score >= 75", "value_scor >= 75"))
    rulebook.sync()
    status = client.get("/api/v1/rules", headers=headers).get_json()
    [problem] = status["folder"]["problems"]
    assert problem["file"] == "value.yaml" and problem["line"] == 17 and "did you mean 'value_score'" in problem["message"]
    assert status["revision"] == before  # the last good revision keeps serving
    ready = client.get("/ready").get_json()
    assert ready["status"] == "ready" and ready["rules"]["folder_problems"][0]["line"] == 17

    path.write_text(raise_high_to_75(original))
    rulebook.sync()
    segment, revision = value_score_segment(client, headers, 72)
    assert (segment, revision != before) == ("medium", True)
    history = client.get("/api/v1/rules/publications", headers=headers).get_json()["items"]
    assert [(p["source"], p["revision"]) for p in history[:2]] == [("file", revision), ("startup", before)]
    assert client.get("/api/v1/rules", headers=headers).get_json()["folder"]["problems"] == []


def test_a_bad_publish_is_refused_and_changes_nothing(app, client, auth, rules_dir):
    before = app.extensions["rulebook"].current.id
    disk_before = (rules_dir / "value.yaml").read_text()
    broken = disk_before.replace("then: {value_segment: low}", "then: {value_segment: lowest}")
    response = client.post(
        "/api/v1/rules/publish", json={"files": {"value.yaml": broken}, "message": "oops"}, headers=auth("editor")
    )
    assert response.status_code == 422
    body = response.get_json()
    assert body["code"] == "rule_file_invalid"
    assert body["errors"]["problems"][0]["file"] == "value.yaml"
    assert body["errors"]["problems"][0]["line"] == 26
    assert "'lowest' is not one of the values" in body["message"]
    assert app.extensions["rulebook"].current.id == before
    assert (rules_dir / "value.yaml").read_text() == disk_before
    assert len(client.get("/api/v1/rules/publications", headers=auth("editor")).get_json()["items"]) == 1


def test_a_draft_whose_cases_fail_is_refused(client, auth, rules_dir):
    text = (
        (rules_dir / "lifecycle.yaml")
        .read_text()
        .replace("days_since(last_purchase_at) >= 60", "days_since(last_purchase_at) >= 90")
    )
    response = client.post("/api/v1/rules/validate", json={"files": {"lifecycle.yaml": text}}, headers=auth("analyst"))
    body = response.get_json()
    assert response.status_code == 200 and body["valid"] is False
    assert any("silent for exactly 60 days" in p["message"] for p in body["problems"])
    assert "-    when: days_since(last_purchase_at) >= 60" in body["diff"]


def test_publish_diff_and_rollback_over_the_api(app, client, auth, rules_dir):
    headers = auth("editor")
    first = app.extensions["rulebook"].current.id
    text = raise_high_to_75((rules_dir / "value.yaml").read_text())

    validated = client.post("/api/v1/rules/validate", json={"files": {"value.yaml": text}}, headers=headers).get_json()
    assert validated["valid"] is True and validated["cases"]["failed"] == 0 and validated["cases"]["passed"] > 100
    assert app.extensions["rulebook"].current.id == first  # validating publishes nothing

    published = client.post(
        "/api/v1/rules/publish", json={"files": {"value.yaml": text}, "message": "high from 75"}, headers=headers
    )
    assert published.status_code == 200, published.get_json()
    second = published.get_json()["revision"]
    assert published.get_json()["changed"] is True and published.get_json()["author"] == "key:test-editor"
    assert value_score_segment(client, headers, 72) == ("medium", second)
    assert (rules_dir / "value.yaml").read_text() == text  # the folder follows the API

    again = client.post("/api/v1/rules/publish", json={"files": {"value.yaml": text}, "message": "again"}, headers=headers)
    assert again.get_json()["changed"] is False

    diff = client.get(
        f"/api/v1/rules/revisions/{second[:8]}/diff", query_string={"against": first[:8]}, headers=headers
    ).get_json()
    assert "-    when: value_score >= 70\n+    when: value_score >= 75\n" in diff["diff"]
    listed = client.get("/api/v1/rules/revisions", query_string={"limit": 1}, headers=headers).get_json()
    assert listed["items"][0]["revision"] == second and listed["next_cursor"]
    older = client.get("/api/v1/rules/revisions", query_string={"cursor": listed["next_cursor"]}, headers=headers).get_json()
    assert [r["revision"] for r in older["items"]] == [first]
    assert "value.yaml" in client.get(f"/api/v1/rules/revisions/{first}", headers=headers).get_json()["files"]

    rolled = client.post("/api/v1/rules/rollback", json={"message": "too strict"}, headers=headers)
    assert rolled.status_code == 200 and rolled.get_json()["revision"] == first and rolled.get_json()["action"] == "rollback"
    assert value_score_segment(client, headers, 72) == ("high", first)
    assert VALUE_70 in (rules_dir / "value.yaml").read_text()


def test_another_server_converges_on_a_publication(app, client, auth, config, tmp_path):
    other_dir = tmp_path / "other-machine-rules"
    shutil.copytree(config.rules_dir, other_dir)
    other = create_app({**vars(config), "rules_dir": other_dir})
    try:
        text = raise_high_to_75((config.rules_dir / "value.yaml").read_text())
        published = client.post(
            "/api/v1/rules/publish", json={"files": {"value.yaml": text}, "message": "75"}, headers=auth("editor")
        )
        new = published.get_json()["revision"]
        other.extensions["rulebook"].sync()
        assert other.extensions["rulebook"].current.id == new
        assert (other_dir / "value.yaml").read_text() == text
    finally:
        other.extensions["rulebook"].stop()
        other.extensions["database"].dispose()


def test_the_watcher_picks_up_an_edit_within_seconds(config, auth, rules_dir):
    app = create_app({**vars(config), "rules_poll_seconds": 0.2})
    try:
        rulebook = app.extensions["rulebook"]
        before = rulebook.current.id
        path = rules_dir / "value.yaml"
        path.write_text(raise_high_to_75(path.read_text()))
        deadline = time.monotonic() + 10
        while rulebook.current.id == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert rulebook.current.id != before
        assert rulebook.current.evaluate("value", {"value_score": 72}).outcome == {"value_segment": "medium"}
    finally:
        app.extensions["rulebook"].stop()
        app.extensions["database"].dispose()


def test_at_start_the_newer_of_folder_and_database_wins(app, client, auth, config, rules_dir):
    text = raise_high_to_75((rules_dir / "value.yaml").read_text())
    published = client.post(
        "/api/v1/rules/publish", json={"files": {"value.yaml": text}, "message": "75"}, headers=auth("editor")
    ).get_json()
    stale = config.rules_dir.parent / "stale"
    shutil.copytree(config.rules_dir, stale)
    (stale / "value.yaml").write_text(text.replace(">= 75", ">= 70").replace("< 75", "< 70"))
    old = time.time() - 3600
    import os

    os.utime(stale / "value.yaml", (old, old))  # edited before the publication: the database wins
    restarted = create_app({**vars(config), "rules_dir": stale})
    try:
        assert restarted.extensions["rulebook"].current.id == published["revision"]
        assert (stale / "value.yaml").read_text() == text
    finally:
        restarted.extensions["rulebook"].stop()
        restarted.extensions["database"].dispose()
    (stale / "value.yaml").write_text(text.replace(">= 75", ">= 80").replace("< 75", "< 80"))  # edited while down
    restarted = create_app({**vars(config), "rules_dir": stale})
    try:
        assert restarted.extensions["rulebook"].current.evaluate("value", {"value_score": 78}).outcome == {
            "value_segment": "medium"
        }
    finally:
        restarted.extensions["rulebook"].stop()
        restarted.extensions["database"].dispose()


@pytest.mark.parametrize(
    "body, status, field",
    [
        ({"ruleset": "value", "inputs": {"value_score": "high"}}, 422, "value_score"),
        ({"ruleset": "nope", "inputs": {}}, 404, None),
        ({"ruleset": "value", "inputs": {}, "backend": "java"}, 422, "backend"),
        ({"inputs": {}}, 422, "ruleset"),
    ],
)
def test_evaluate_validates_its_input(client, auth, body, status, field):
    response = client.post("/api/v1/rules/evaluate", json=body, headers=auth("analyst"))
    assert response.status_code == status
    if field:
        assert field in response.get_json()["errors"]


def test_evaluate_explains_with_the_values_read(client, auth):
    response = client.post(
        "/api/v1/rules/evaluate",
        headers=auth("analyst"),
        json={
            "ruleset": "lifecycle",
            "now": "2026-06-01T00:00:00Z",
            "inputs": {"stage": "growth", "transaction_count": 5, "last_purchase_at": "2026-04-01T00:00:00Z"},
        },
    )
    body = response.get_json()
    assert body["outcome"] == {"stage": "win_back"} and body["backend"] == "durable"
    assert body["fired"] == [
        {"rule": "silent", "reads": {"last_purchase_at": "2026-04-01T00:00:00Z"}, "then": {"stage": "win_back"}}
    ]


def test_cases_run_over_the_api(client, auth):
    body = client.post("/api/v1/rules/test", headers=auth("analyst")).get_json()
    assert body["failed"] == 0 and body["passed"] > 100
    assert {r["backend"] for r in body["results"]} == {"durable", "python", "vector"}


@pytest.mark.parametrize(
    "body, field",
    [
        ({"files": {"../etc/passwd": "x"}, "message": "m"}, "files"),
        ({"files": {}, "remove": ["nope.yaml"], "message": "m"}, "remove"),
        ({"files": {}}, "message"),
    ],
)
def test_publish_validates_its_request(client, auth, body, field):
    response = client.post("/api/v1/rules/publish", json=body, headers=auth("editor"))
    assert response.status_code == 422
    assert any(key.startswith(field) for key in response.get_json()["errors"])


def test_one_edit_seen_by_many_workers_is_published_once(app, database, rules_dir):
    """Every process polls the folder; the publication lock makes the same edit one row, not N."""
    import threading

    from decision_server.rulebook import service
    from decision_server.rules.source import read_rules_dir

    files = read_rules_dir(rules_dir)
    files["value.yaml"] = raise_high_to_75(files["value.yaml"])
    barrier = threading.Barrier(8)
    changed: list[bool] = []

    def worker():
        barrier.wait()
        with database.session(write=True) as session:
            changed.append(service.publish(session, files, author="w", message="m", source="file")[1])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(changed) == [False] * 7 + [True]
    with database.session() as session:
        assert len(service.list_publications(session, limit=50)) == 2  # start-up + this edit
