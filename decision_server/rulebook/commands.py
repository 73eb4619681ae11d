"""The `decision-server rules …` commands: check, test, publish, roll back, diff and history."""

from __future__ import annotations

from pathlib import Path

import click

from decision_server.clicontext import Context, pass_context
from decision_server.clicontext import require_migrated as _require_migrated

_DIR = click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))


@click.group()
def rules():
    """Check, test, publish and roll back the rule files.

    \b
    A typical change:
      decision-server rules check        # every file parses, types and thresholds check out
      decision-server rules test         # every case passes on every backend
      decision-server rules diff         # what changes against the published revision
      decision-server rules publish -m "high value from 75"
    A running server also publishes a valid edit of its rules folder by itself within seconds.
    """


def _folder(ctx: Context, directory: Path | None) -> Path:
    return Path(directory) if directory else ctx.config.rules_dir


def _build(ctx: Context, directory: Path | None, *, run_cases: bool):
    from decision_server.rules.engine import build_revision
    from decision_server.rules.source import RulesInvalid, read_rules_dir

    folder = _folder(ctx, directory)
    try:
        files = read_rules_dir(folder, ctx.config.rule_limits)
        return build_revision(
            files, backend=ctx.config.rules_backend, durable_host=_host(ctx), run_cases=run_cases, limits=ctx.config.rule_limits
        )
    except RulesInvalid as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        errors = sum(p.severity == "error" for p in exc.problems)
        raise click.ClickException(f"{folder}: {errors} error(s); nothing was changed") from None


def _host(ctx: Context):
    if ctx.config.rules_backend != "durable":
        return None
    from decision_server.rules.durable_host import DurableHost

    return DurableHost()


@rules.command("add-missing")
@pass_context
def add_missing(ctx: Context):
    """Add the shipped rule files the rules folder does not have yet (after an upgrade); never overwrites.

    A running server publishes them from the folder within seconds; or run `rules publish`.
    """
    from decision_server.rulebook.runtime import add_missing_rules

    added = add_missing_rules(ctx.config.rules_dir)
    if added:
        click.echo(f"added to {ctx.config.rules_dir}: {', '.join(added)}")
    else:
        click.echo(f"{ctx.config.rules_dir} already has every shipped rule file")


@rules.command("check")
@_DIR
@pass_context
def check(ctx: Context, directory: Path | None):
    """Check every rule file of DIRECTORY (default: the rules folder) and run its cases."""
    revision = _build(ctx, directory, run_cases=True)
    for warning in revision.warnings:
        click.echo(str(warning), err=True)
    rules_count = sum(len(rs.rules) for rs in revision.rulesets.values())
    cases = sum(len(c) for c in revision.cases.values())
    click.echo(
        f"ok: revision {revision.short_id}: {len(revision.rulesets)} rule sets, {rules_count} rules, "
        f"{cases} cases pass, {len(revision.warnings)} warning(s)"
    )
    revision.close()


@rules.command("test")
@_DIR
@click.option("--ruleset", help="Only the cases of this rule set.")
@click.option("-v", "--verbose", is_flag=True, help="List every case, not only failures.")
@pass_context
def test(ctx: Context, directory: Path | None, ruleset: str | None, verbose: bool):
    """Run the cases beside the rule files on every backend (durable-rules, compiled, vectorized)."""
    from decision_server.rules.cases import run_cases

    revision = _build(ctx, directory, run_cases=False)
    try:
        results = run_cases(revision, ruleset=ruleset)
    finally:
        revision.close()
    for result in results:
        if verbose or not result.passed:
            mark = "pass" if result.passed else "FAIL"
            line = f"{mark} {result.case.file}:{result.case.line} {result.case.name} [{result.backend}]"
            click.echo(line + ("" if result.passed else f": {result.message}"))
    failed = sum(not r.passed for r in results)
    click.echo(f"{len(results) - failed} passed, {failed} failed ({len(results)} case runs, revision {revision.short_id})")
    if failed:
        raise SystemExit(1)


@rules.command("publish")
@_DIR
@click.option("-m", "--message", required=True, help="Why: shown in the history.")
@click.option("--author", default=lambda: f"cli:{__import__('getpass').getuser()}", show_default="cli:<user>")
@pass_context
def publish(ctx: Context, directory: Path | None, message: str, author: str):
    """Validate the rule files and make them the revision every server serves."""
    from decision_server.rulebook.runtime import Rulebook
    from decision_server.rules.source import read_rules_dir

    _require_migrated(ctx)
    _build(ctx, directory, run_cases=True).close()  # the same check as `rules check`, with its messages
    rulebook = Rulebook(
        ctx.database, _folder(ctx, directory), backend=ctx.config.rules_backend, poll_seconds=0, limits=ctx.config.rule_limits
    )
    try:
        files = read_rules_dir(_folder(ctx, directory), ctx.config.rule_limits)
        head, changed = rulebook.publish(files, author=author, message=message, source="cli")
    finally:
        rulebook.stop()
    if changed:
        click.echo(f"published revision {head.revision[:12]}; servers pick it up within seconds")
    else:
        click.echo(f"revision {head.revision[:12]} is already published; nothing changed")


@rules.command("rollback")
@click.argument("revision", required=False)
@click.option("-m", "--message", default="rollback", show_default=True)
@click.option("--author", default=lambda: f"cli:{__import__('getpass').getuser()}", show_default="cli:<user>")
@pass_context
def rollback(ctx: Context, revision: str | None, message: str, author: str):
    """Publish REVISION again (default: the one before the current) and write it to the rules folder."""
    from decision_server.rulebook import service
    from decision_server.rulebook.runtime import Rulebook

    _require_migrated(ctx)
    rulebook = Rulebook(
        ctx.database, ctx.config.rules_dir, backend=ctx.config.rules_backend, poll_seconds=0, limits=ctx.config.rule_limits
    )
    try:
        head, changed = service.rollback(rulebook, revision=revision, author=author, message=message, source="cli")
    finally:
        rulebook.stop()
    click.echo(f"{'rolled back to' if changed else 'already serving'} revision {head.revision[:12]}")


@rules.command("diff")
@click.argument("old", required=False)
@click.argument("new", required=False)
@pass_context
def diff(ctx: Context, old: str | None, new: str | None):
    """Show a unified diff: published → folder, OLD → folder, or OLD → NEW (stored revisions)."""
    from decision_server.rulebook import service
    from decision_server.rules.source import read_rules_dir

    _require_migrated(ctx)
    with ctx.database.session() as session:
        if old:
            old_record = service.find_revision(session, old)
            old_files, old_label = dict(old_record.files), old_record.revision[:12]
        else:
            head = service.head(session)
            old_files = dict(service.find_revision(session, head.revision).files) if head else {}
            old_label = head.revision[:12] if head else "nothing"
        if new:
            new_record = service.find_revision(session, new)
            new_files, new_label = dict(new_record.files), new_record.revision[:12]
        else:
            new_files, new_label = read_rules_dir(ctx.config.rules_dir, ctx.config.rule_limits), "folder"
    text = service.diff_files(old_files, new_files, old_label=old_label, new_label=new_label)
    click.echo(text.rstrip("\n") if text else f"no difference between {old_label} and {new_label}")


@rules.command("history")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 500))
@pass_context
def history(ctx: Context, limit: int):
    """List the latest publications and rollbacks, newest first."""
    from decision_server.rulebook import service

    _require_migrated(ctx)
    with ctx.database.session() as session:
        rows = service.list_publications(session, limit=limit)
    for row in rows:
        when = row.published_at.strftime("%Y-%m-%d %H:%M:%S")
        click.echo(f"{when}  {row.revision[:12]}  {row.action:<8} {row.source:<7} {row.author}: {row.message}")
    if not rows:
        click.echo("nothing published yet")
