"""The `decision-server decisions …` commands: purge the decision log past its retention."""

from __future__ import annotations

import click

from decision_server.clicontext import Context, pass_context
from decision_server.clicontext import require_migrated as _require_migrated


@click.group()
def decisions():
    """The decision log: remove decisions older than the retention (DECISION_LOG_RETENTION_DAYS)."""


@decisions.command("purge")
@click.option(
    "--days",
    type=click.IntRange(min=0),
    default=None,
    help="Keep this many days (default: DECISION_LOG_RETENTION_DAYS, 90; 0 keeps everything).",
)
@click.option("--dry-run", is_flag=True, help="Count what would go; remove nothing.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1, max=50_000),
    default=5_000,
    show_default=True,
    help="At most this many decisions deleted per transaction (sized to take ~0.1 s; SQLite, and PostgreSQL's "
    "default partition).",
)
@pass_context
def purge(ctx: Context, days: int | None, dry_run: bool, batch_size: int):
    """Remove the decisions (actions, responses) older than the retention; offer statistics and learning stay as they were.

    On PostgreSQL whole days are dropped as partitions and the partitions of the week ahead are made.
    The scheduler runs this every night as schedule decision-log-retention.
    """
    from decision_server.decisions import retention

    _require_migrated(ctx)
    days = ctx.config.decision_log_retention_days if days is None else days
    if days == 0:
        click.echo("retention is 0 days: every decision is kept")
    result = retention.purge(
        ctx.database,
        days=days,
        dry_run=dry_run,
        batch_size=batch_size,
        progress=lambda r: click.echo(
            f"  {r.decisions:,} decisions removed ({len(r.days_dropped)} days dropped whole, {r.batches} batches)", err=True
        ),
    )
    if result.partitions_created:
        click.echo(f"partitions made for {', '.join(result.partitions_created)}")
    if days == 0:
        return
    verb = "would remove" if dry_run else "removed"
    click.echo(
        f"decisions before {result.cutoff:%Y-%m-%d}: {verb} {result.decisions:,} decisions, {result.actions:,} actions, "
        f"{result.responses:,} responses"
        + (f"; days dropped whole: {len(result.days_dropped)}" if result.days_dropped else "")
        + f" ({result.seconds:.1f} s)"
    )
