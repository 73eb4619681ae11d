"""The `decision-server loyalty …` commands: start the demo program, review tiers, expire points."""

from __future__ import annotations

import time

import click

from decision_server.clicontext import Context, pass_context
from decision_server.clicontext import require_migrated as _require_migrated


@click.group()
def loyalty():
    """The loyalty program over the whole base (single members are served by the API).

    \b
      decision-server loyalty demo                # demo rewards; enrol recent buyers and earn their purchases
      decision-server loyalty review --dry-run    # which tiers would change, without writing
      decision-server loyalty review              # upgrades, and downgrades as rules/loyalty_policy.yaml allows
      decision-server loyalty expire              # expire points past their date
    """


def _progress(label: str):
    from decision_server.clicontext import progress as show

    return lambda done, total: show(label, done, total)


def _revision(ctx: Context):
    from decision_server.rulebook.service import published_revision

    return published_revision(ctx.database, ctx.config.rules_dir, limits=ctx.config.rule_limits)


def _transitions(result: dict) -> str:
    moves = ", ".join(f"{t['from']} -> {t['to']} {t['count']:,}" for t in result["transitions"][:8])
    return f" ({moves})" if moves else ""


def start_demo(ctx: Context, days: int, *, unless_members: bool = False) -> None:
    """Add the demo rewards, enrol the buyers of the last `days` days with those purchases' points, review tiers.

    With `unless_members`, a program that already has members is left alone (what quickstart wants).
    """
    import sqlalchemy as sa

    from decision_server.loyalty import bulk
    from decision_server.loyalty.demo import load_demo_rewards, start_program
    from decision_server.loyalty.records import MemberRecord

    if unless_members:
        with ctx.database.connection() as conn:
            if conn.execute(sa.select(MemberRecord.customer_id).limit(1)).first() is not None:
                click.echo("loyalty program already has members; demo loyalty data not added")
                return
    added = load_demo_rewards(ctx.database)
    click.echo(f"demo rewards: {added} added" + ("" if added else " (all there already)"))
    revision = _revision(ctx)
    try:
        started = time.perf_counter()
        click.echo(f"enrolling the buyers of the last {days} days and earning those purchases' points...")
        done = start_program(ctx.database, revision, days=days, progress=_progress("enrolling"))
        click.echo(
            f"loyalty program: {done['members']:,} members enrolled, {done['entries']:,} ledger entries "
            f"in {time.perf_counter() - started:.1f} s"
        )
        result = bulk.review_tiers(ctx.database, revision)
        click.echo(f"tier review: {result['changed']:,} tier changes{_transitions(result)}")
    finally:
        revision.close()


@loyalty.command("demo")
@click.option("--days", default=90, show_default=True, help="Earn the purchases of this many past days.")
@pass_context
def demo(ctx: Context, days: int):
    """Add the demo rewards, enrol every customer who bought in the last DAYS days and earn those purchases."""
    _require_migrated(ctx)
    start_demo(ctx, days)


@loyalty.command("review")
@click.option("--dry-run", is_flag=True, help="Report what would change; write nothing.")
@pass_context
def review(ctx: Context, dry_run: bool):
    """Give every member the tier the rules say: up at once, down as rules/loyalty_policy.yaml allows."""
    from decision_server.loyalty import bulk

    _require_migrated(ctx)
    revision = _revision(ctx)
    try:
        result = bulk.review_tiers(ctx.database, revision, dry_run=dry_run, progress=_progress("reviewing"))
    finally:
        revision.close()
    verb = "would change" if dry_run else "changed"
    click.echo(
        f"tier review of {result['members']:,} members in {result['seconds']:.1f} s: "
        f"{result['changed']:,} {verb}{_transitions(result)}"
    )


@loyalty.command("expire")
@pass_context
def expire(ctx: Context):
    """Expire every member's points past their expiry date (oldest points are spent first)."""
    from decision_server.loyalty import bulk

    _require_migrated(ctx)
    result = bulk.expire_points(ctx.database, progress=_progress("expiring"))
    click.echo(
        f"points expiry: {result['points']:,} points of {result['changed']:,} members expired "
        f"({result['members']:,} looked at) in {result['seconds']:.1f} s"
    )
