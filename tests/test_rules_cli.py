"""`decision-server rules check|test|publish|rollback|diff|history`, as an operator uses them."""

from __future__ import annotations

from click.testing import CliRunner

from decision_server.cli import cli


def run(database, rules_dir, *args):
    url = database.engine.url.render_as_string(hide_password=False)
    return CliRunner().invoke(cli, ["--database-url", url, "--rules-dir", str(rules_dir), "rules", *args])


def test_check_and_test_pass_on_the_shipped_rules(database, rules_dir):
    checked = run(database, rules_dir, "check")
    assert checked.exit_code == 0, checked.stderr
    assert "ok: revision" in checked.stdout and "14 rule sets" in checked.stdout
    tested = run(database, rules_dir, "test", "--ruleset", "value", "-v")
    assert tested.exit_code == 0
    assert "pass value.cases.yaml" in tested.stdout and "[durable]" in tested.stdout and "[vector]" in tested.stdout
    assert " 0 failed" in tested.stdout


def test_check_names_file_line_and_column_of_a_typo(database, rules_dir):
    path = rules_dir / "value.yaml"
    path.write_text(path.read_text().replace("value_score >= 70", "value_score >= seventy"))
    result = run(database, rules_dir, "check")
    assert result.exit_code == 1
    assert "value.yaml:17:26: error: unknown name 'seventy'" in result.stderr
    assert "nothing was changed" in result.stderr


def test_test_reports_a_failing_case_and_exits_1(database, rules_dir):
    path = rules_dir / "lifecycle.yaml"
    path.write_text(path.read_text().replace("days_since(last_purchase_at) >= 60", "days_since(last_purchase_at) >= 61"))
    result = run(database, rules_dir, "test")
    assert result.exit_code == 1
    assert "FAIL lifecycle.cases.yaml" in result.stdout and "silent for exactly 60 days" in result.stdout
    assert "expected outcome {'stage': 'win_back'}, got {'stage': 'growth'}" in result.stdout


def test_publish_diff_history_and_rollback(database, rules_dir):
    first = run(database, rules_dir, "publish", "-m", "first")
    assert first.exit_code == 0 and "published revision" in first.stdout
    again = run(database, rules_dir, "publish", "-m", "again")
    assert "already published" in again.stdout

    path = rules_dir / "value.yaml"
    original = path.read_text()
    path.write_text(original.replace(">= 70", ">= 75").replace("< 70", "< 75"))
    diff = run(database, rules_dir, "diff")
    assert "-    when: value_score >= 70\n+    when: value_score >= 75" in diff.stdout
    assert run(database, rules_dir, "publish", "-m", "high from 75").exit_code == 0
    assert "no difference" in run(database, rules_dir, "diff").stdout

    history = run(database, rules_dir, "history").stdout.splitlines()
    assert "high from 75" in history[0] and "cli" in history[0] and "first" in history[1]

    rolled = run(database, rules_dir, "rollback", "-m", "too strict")
    assert rolled.exit_code == 0 and "rolled back to" in rolled.stdout
    assert path.read_text() == original  # the folder follows the rollback
    assert "rollback" in run(database, rules_dir, "history").stdout.splitlines()[0]


def test_publish_refuses_a_bad_folder_and_changes_nothing(database, rules_dir):
    assert run(database, rules_dir, "publish", "-m", "first").exit_code == 0
    path = rules_dir / "value.yaml"
    path.write_text(path.read_text().replace("40 <= value_score < 70", "40 <= value_score < 60"))
    result = run(database, rules_dir, "publish", "-m", "gap")
    assert result.exit_code == 1
    assert "a value_score in [60, 70) falls in no rule" in result.stderr
    assert len(run(database, rules_dir, "history").stdout.splitlines()) == 1


def test_rollback_with_nothing_before_is_a_clear_error(database, rules_dir):
    run(database, rules_dir, "publish", "-m", "first")
    result = run(database, rules_dir, "rollback")
    assert result.exit_code == 1 and "no earlier revision to roll back to" in result.stderr
