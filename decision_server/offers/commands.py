"""The `decision-server offers …` commands: sync the catalog from a connector, list connectors."""

from __future__ import annotations

import getpass
import sys

import click

from decision_server.clicontext import Context, pass_context
from decision_server.clicontext import require_migrated as _require_migrated


@click.group()
def offers():
    """The offer catalog: add the demo offers, sync from external catalog APIs (connectors are set up over the API)."""


@offers.command("demo")
@pass_context
def demo(ctx: Context):
    """Add the demo catalog's eight offers (ids 0-7) that are missing, by code; running servers see them within seconds."""
    from decision_server.offers import service

    _require_migrated(ctx)
    with ctx.database.session(write=True) as session:
        added = service.load_demo_catalog(session, channels=ctx.config.channels, words=service.vocabulary(None))
    click.echo(f"demo catalog: {added} offer(s) added" + ("" if added else " (all eight are there already)"))


@offers.command("sync")
@click.argument("name")
@pass_context
def sync_(ctx: Context, name: str):
    """Sync the offers of connector NAME now and print what the run did (exit status 1 when it failed)."""
    from decision_server.offers import service, sync
    from decision_server.rulebook.service import published_revision

    _require_migrated(ctx)
    revision = published_revision(ctx.database, ctx.config.rules_dir, limits=ctx.config.rule_limits)
    try:
        words = service.vocabulary(revision)
    finally:
        revision.close()
    report = sync.run_sync(ctx.database, name, channels=ctx.config.channels, words=words, actor=f"cli:{getpass.getuser()}")
    click.echo(summary(report))
    for failure in report["failures"][:20]:
        click.echo(f"  {failure['external_id'] or '(no id)'}: {failure['reason']}", err=True)
    if report["failed"] > 20:
        click.echo(f"  ... and {report['failed'] - 20} more (GET /api/v1/catalog/sync-runs)", err=True)
    if report["status"] == "failed":
        sys.exit(1)


def summary(report: dict) -> str:
    """Describe a sync run in one or two lines."""
    seconds = (report["finished_at"] - report["started_at"]).total_seconds()
    line = (
        f"sync #{report['id']} of {report['connector']}: {report['status']} in {seconds:.1f} s, "
        f"{report['attempts']} HTTP request(s); created {report['created']}, updated {report['updated']}, "
        f"unchanged {report['unchanged']}, retired {report['retired']}, failed {report['failed']}"
    )
    return line + (f"\n  nothing was written: {report['error']}" if report["error"] else "")


@offers.command("connectors")
@pass_context
def connectors_(ctx: Context):
    """List the catalog connectors: name, state, URL, auth (the variable's name only), schedule."""
    from decision_server.offers import connectors

    _require_migrated(ctx)
    with ctx.database.session() as session:
        rows = connectors.listing(session)
    if not rows:
        click.echo("no connectors; add one with POST /api/v1/catalog/connectors")
    for c in rows:
        auth = f"{c['auth_header']} from ${c['auth_env']}" if c["auth_env"] else "no auth"
        state = "enabled " if c["enabled"] else "disabled"
        click.echo(f"{c['name']:<24} {state} {c['url']}  ({auth}; schedule {c['schedule'] or 'none'})")
