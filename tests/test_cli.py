"""The command line: help that explains, init that is safe to repeat, refusals that say what to do."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from decision_server.cli import cli


def test_help_lists_and_explains_every_command():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("init", "serve", "demo-data", "import", "keys", "quickstart", "train", "models", "offers", "decisions"):
        assert command in result.output
    for command in (
        ["serve"],
        ["import"],
        ["keys", "create"],
        ["demo-data"],
        ["train"],
        ["models"],
        ["models", "evaluate"],
        ["decisions", "purge"],
    ):
        sub = CliRunner().invoke(cli, [*command, "--help"])
        assert sub.exit_code == 0 and len(sub.output.splitlines()) > 5


def test_init_migrates_then_reports_up_to_date(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    first = CliRunner().invoke(cli, ["--database-url", url, "init"])
    assert first.exit_code == 0 and "migrated from empty" in first.output
    second = CliRunner().invoke(cli, ["--database-url", url, "init"])
    assert second.exit_code == 0 and "up to date" in second.output


def test_init_writes_the_default_rules_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    rules = tmp_path / "my-rules"
    first = CliRunner().invoke(cli, ["--database-url", url, "--rules-dir", str(rules), "init"])
    assert first.exit_code == 0 and "wrote the default rules" in first.output
    assert (rules / "value.yaml").read_text() == (Path(__file__).parent.parent / "rules" / "value.yaml").read_text()
    (rules / "value.yaml").write_text((rules / "value.yaml").read_text().replace(">= 70", ">= 75"))
    second = CliRunner().invoke(cli, ["--database-url", url, "--rules-dir", str(rules), "init"])
    assert second.exit_code == 0 and "wrote the default rules" not in second.output
    assert ">= 75" in (rules / "value.yaml").read_text()  # an edited folder is never overwritten


def test_commands_on_an_unmigrated_database_say_to_run_init(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    result = CliRunner().invoke(cli, ["--database-url", url, "keys", "create", "--name", "x", "--role", "admin"])
    assert result.exit_code == 1
    assert "decision-server init" in result.output


def test_bad_database_url_is_a_clear_error():
    result = CliRunner().invoke(cli, ["--database-url", "mysql://x@y/z", "init"])
    assert result.exit_code == 1
    assert "Error: unsupported database 'mysql'" in result.output


def test_offers_demo_adds_the_demo_catalog_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert CliRunner().invoke(cli, ["--database-url", url, "init"]).exit_code == 0
    first = CliRunner().invoke(cli, ["--database-url", url, "offers", "demo"])
    assert first.exit_code == 0 and "8 offer(s) added" in first.output
    again = CliRunner().invoke(cli, ["--database-url", url, "offers", "demo"])
    assert again.exit_code == 0 and "0 offer(s) added" in again.output
