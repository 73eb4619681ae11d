"""`decision-server reevaluate`, `analytics`, `jobs` and `scheduler`: the bulk re-evaluation, now, and its runs."""

from __future__ import annotations

from pathlib import Path

import click

from decision_server.clicontext import Context, pass_context
from decision_server.clicontext import progress as _progress
from decision_server.clicontext import require_migrated as _require_migrated


@click.command("reevaluate")
@click.option(
    "--only",
    "only",
    multiple=True,
    metavar="STEP",
    help="Run only these steps (repeatable or comma-separated): rfm, stages, segments, tiers, expiry; "
    "with --dry-run also offers (who could have which offer).",
)
@click.option("--dry-run", is_flag=True, help="Compute what would change and write nothing (no expiry).")
@click.option(
    "--channel",
    "channels",
    multiple=True,
    metavar="CHANNEL",
    help="The offers step: try the offers on these channels (repeatable; default: every channel).",
)
@click.option("--intent", metavar="INTENT", help="The offers step: the customers' intent (browse, cancel, ...; default: none).")
@click.option("--restart", is_flag=True, help="Start a new run even if the last one stopped half-way (default: resume it).")
@click.option(
    "--chunk",
    default=50_000,
    show_default=True,
    type=click.IntRange(100, 1_000_000),
    help="Customers per chunk (one transaction each); memory grows with it, not with the base.",
)
@click.option(
    "--dask",
    "dask_address",
    metavar="ADDRESS",
    envvar="DASK_SCHEDULER_ADDRESS",
    help="Read and evaluate the chunks on this Dask cluster (tcp://host:8786); this process writes [env DASK_SCHEDULER_ADDRESS; default: two local reader processes].",
)
@click.option(
    "--customers",
    "customers_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Only the customers in this file: one customer id (yours, as in the API) per line.",
)
@click.option("--segment", metavar="NAME", help="Only the members of this segment.")
@pass_context
def reevaluate_command(
    ctx: Context,
    only: tuple[str, ...],
    dry_run: bool,
    channels: tuple[str, ...],
    intent: str | None,
    restart: bool,
    chunk: int,
    dask_address: str | None,
    customers_file: Path | None,
    segment: str | None,
):
    """Re-evaluate every customer now: RFM, CLV, model scores, value, stage, journey, segments,
    then loyalty tiers and points expiry.

    \b
      decision-server reevaluate                       # everything; resumes a run that stopped half-way
      decision-server reevaluate --only stages,segments
      decision-server reevaluate --dry-run             # what would change, written nowhere
      decision-server reevaluate --dry-run --only stages,offers --channel sms   # who has no offer by SMS
      decision-server reevaluate --segment growth_at_risk   # only some customers (RFM: the newest run's cut points)
    Only one run at a time, however many processes or machines: a second start is refused while
    the first is alive. Every run is recorded (`decision-server jobs runs`, GET /api/v1/jobs/runs).
    """
    from decision_server.jobs import reevaluation
    from decision_server.rulebook.service import published_revision
    from decision_server.scoring.serving import ModelSet

    _require_migrated(ctx)
    if customers_file and segment:
        raise click.UsageError("give --customers or --segment, not both")
    from decision_server.errors import ValidationError

    try:
        steps = reevaluation.check_steps([s.strip() for part in only for s in part.split(",") if s.strip()], dry_run=dry_run)
    except ValidationError as exc:
        raise click.UsageError(exc.message) from None
    unknown = [c for c in channels if c not in ctx.config.channels]
    if unknown:
        raise click.UsageError(f"unknown channel {', '.join(unknown)}; the channels are {', '.join(ctx.config.channels)}")
    customers = None
    if customers_file or segment:
        customers = _customers(ctx, customers_file) if customers_file else _members(ctx, segment)
        if not only:  # tiers and expiry run for every member only
            steps = tuple(s for s in steps if s in ("rfm", "stages", "segments"))
        click.echo(f"{len(customers):,} customers" + (f" of segment {segment}" if segment else f" from {customers_file}"))
    revision = published_revision(ctx.database, ctx.config.rules_dir, limits=ctx.config.rule_limits)
    models = ModelSet(ctx.config.models_dir, max_age_days=ctx.config.model_max_age_days)
    click.echo(f"re-evaluating every customer: {', '.join(steps)}" + (" (dry run: nothing is written)" if dry_run else ""))
    try:
        trial = None
        if "offers" in steps:
            from decision_server.jobs import offer_reach

            trial = offer_reach.trial(ctx.database, revision, channels=channels or list(ctx.config.channels), intent=intent)
        row = reevaluation.run(
            ctx.database,
            revision,
            models,
            steps=steps,
            dry_run=dry_run,
            source="cli",
            margin=ctx.config.default_margin,
            resume=not restart,
            chunk=chunk,
            dask_address=dask_address,
            customers=customers,
            offers=trial,
            progress=lambda s: _progress(s.phase, s.done, s.total),
        )
    finally:
        revision.close()
    click.echo(summary(row))


def _customers(ctx: Context, path: Path) -> list[int]:
    """The internal ids of the customer ids listed in a file (one per line; blank lines and # comments skipped)."""
    import sqlalchemy as sa

    from decision_server.customers.records import CustomerRecord

    wanted = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    found: dict[str, int] = {}
    with ctx.database.connection() as conn:
        for start in range(0, len(wanted), 900):
            part = wanted[start : start + 900]
            found.update(
                conn.execute(
                    sa.select(CustomerRecord.external_id, CustomerRecord.id).where(CustomerRecord.external_id.in_(part))
                ).all()
            )
    unknown = [w for w in wanted if w not in found]
    if unknown:
        raise click.ClickException(f"{path}: {len(unknown):,} unknown customer ids, e.g. {', '.join(unknown[:5])}")
    return sorted(set(found.values()))


def _members(ctx: Context, name: str) -> list[int]:
    """The customer ids in a segment now."""
    import sqlalchemy as sa

    from decision_server.segments.records import SegmentMemberRecord, SegmentRecord

    with ctx.database.connection() as conn:
        segment_id = conn.execute(sa.select(SegmentRecord.id).where(SegmentRecord.name == name)).scalar()
        if segment_id is None:
            raise click.ClickException(f"no segment {name} (decision-server's segments are listed at GET /api/v1/segments)")
        return list(
            conn.execute(
                sa.select(SegmentMemberRecord.customer_id)
                .where(SegmentMemberRecord.segment_id == segment_id)
                .order_by(SegmentMemberRecord.customer_id)
            ).scalars()
        )


def summary(row: dict) -> str:
    """Say what a finished run did, in a few lines."""
    result = row["result"] or {}
    wall = (row["finished_at"] - row["started_at"]).total_seconds()
    lines = [
        f"run {row['id']} {row['status']} in {row['running_seconds']:.1f} s"
        + (f" of running (resumed {row['resumes']}x; {wall:.1f} s from start to end)" if row["resumes"] else "")
    ]
    if "pass" in result:
        p = result["pass"]
        verb = "would change" if row["dry_run"] else "changed"
        lines.append(
            f"  {p['customers']:,} customers ({row['rate']:,.0f}/s); {verb}: {p['written']:,} customers, "
            f"{p['changed']:,} stages" + "".join(f"; {t['from']} -> {t['to']} {t['count']:,}" for t in p["transitions"][:6])
        )
        for field, moves in (p.get("moves") or {}).items():
            if moves:
                lines.append(
                    f"  {field.replace('_', ' ')} moves: "
                    + "; ".join(f"{m['from']} -> {m['to']} {m['count']:,}" for m in moves[:6])
                    + (f"; {len(moves) - 6} more" if len(moves) > 6 else "")
                )
        if p.get("skipped_newer"):
            lines.append(f"  {p['skipped_newer']:,} customers left as events had just updated them")
        for channel in (p.get("offers") or {}).get("channels", []):
            none = channel["no_eligible_offer"]
            lines.append(
                f"  offers on {channel['channel']}: {none['before']:,} customers have no eligible offer now, "
                f"{none['after']:,} after"
            )
            for offer in channel["offers"]:
                moved = (
                    f" (+{offer['became_eligible']:,} -{offer['became_ineligible']:,})"
                    if offer["became_eligible"] or offer["became_ineligible"]
                    else ""
                )
                top = next(iter(offer["removed_by_after"].items()), None)
                lines.append(
                    f"    {offer['code']:<20} eligible for {offer['eligible_before']:>9,} -> {offer['eligible_after']:<9,}"
                    + moved
                    + (f"  most removed by {top[0]} ({top[1]:,})" if top else "")
                )
    if "tiers" in result:
        lines.append(f"  tiers: {result['tiers']['members']:,} members, {result['tiers']['changed']:,} changes")
    if "expiry" in result:
        lines.append(f"  expiry: {result['expiry']['changed']:,} members, {result['expiry']['points']:,} points expired")
    return "\n".join(lines)


@click.group()
def jobs():
    """Bulk job runs: list them, show one."""


@jobs.command("show")
@click.argument("run_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="The whole run as JSON (progress, result, error).")
@pass_context
def show(ctx: Context, run_id: int, as_json: bool):
    """Show one run: its summary, or with --json everything recorded (a what-if's before and after)."""
    import json

    from decision_server.errors import NotFound
    from decision_server.jobs import reevaluation

    _require_migrated(ctx)
    try:
        row = reevaluation.get(ctx.database, run_id)
    except NotFound:
        raise click.ClickException(f"no run {run_id} (decision-server jobs runs lists them)") from None
    if as_json:
        click.echo(json.dumps(row, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v), indent=2))
    elif row["status"] == "running":
        left = f", about {row['eta_seconds']:.0f} s left" if row["eta_seconds"] is not None else ""
        click.echo(
            f"run {run_id} running on {row['runner']}: {row['phase'] or 'start'} {row['done']:,} of {row['total']:,} "
            f"({row['rate']:,.0f}/s over {row['running_seconds']:.0f} s of running{left})"
        )
    else:
        click.echo(summary(row) + (f"\n  error: {row['error']}" if row["error"] else ""))


@jobs.command("runs")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@pass_context
def runs(ctx: Context, limit: int):
    """List the newest runs: id, status, steps, progress, start, end, error."""
    import sqlalchemy as sa

    from decision_server.jobs.records import BulkRunRecord

    _require_migrated(ctx)
    t = BulkRunRecord.__table__
    with ctx.database.connection() as conn:
        rows = conn.execute(sa.select(t).order_by(t.c.id.desc()).limit(limit)).all()
    if not rows:
        click.echo("no runs yet")
    for r in rows:
        end = r.finished_at.isoformat(timespec="seconds") if r.finished_at else "-"
        click.echo(
            f"{r.id:>5}  {r.status:<11} {','.join(r.steps):<34} {r.done:>10,}/{r.total:<10,} "
            f"{r.started_at.isoformat(timespec='seconds')}  {end}" + (f"  {r.error}" if r.error else "")
        )


@click.group()
def scheduler():
    """The job scheduler: nightly re-evaluation, hourly stage checks, points expiry, retraining, catalog syncs.

    \b
      decision-server scheduler start          # run it here until stopped (one process of all runs the jobs)
      decision-server scheduler list           # schedules, next run times, who leads
      decision-server scheduler run nightly    # run a schedule's job now, here
    `decision-server serve` runs a scheduler in the server unless --no-scheduler; however many
    run, one holds the lease and runs the jobs, the others take over if it stops.
    """


@scheduler.command("start")
@pass_context
def scheduler_start(ctx: Context):
    """Run the scheduler in this process until interrupted (Ctrl-C or SIGTERM)."""
    import signal

    from decision_server.jobs.scheduler import Scheduler

    _require_migrated(ctx)
    runner = Scheduler(ctx.database, ctx.config)
    signal.signal(signal.SIGTERM, lambda *_: runner.stop())
    click.echo(
        f"scheduler {runner.me}: waiting for the lease (held for {ctx.config.scheduler_lease_seconds:.0f} s, renewed every third)"
    )
    try:
        runner.run_forever(
            on_change=lambda leading: click.echo(
                f"scheduler {runner.me}: " + ("holds the lease; running the jobs" if leading else "lost the lease; standing by")
            )
        )
    except KeyboardInterrupt:
        pass
    click.echo(f"scheduler {runner.me}: stopped")


@scheduler.command("list")
@pass_context
def scheduler_list(ctx: Context):
    """List the schedules with their next run times, and which process leads."""
    from decision_server.jobs import scheduler as jobs_scheduler

    _require_migrated(ctx)
    jobs_scheduler.seed(ctx.database, ctx.config.schedules_file)
    head = jobs_scheduler.leader(ctx.database)
    click.echo(f"leader: {head['holder']} (lease until {head['expires_at'][:19]})" if head else "leader: none running")
    for row in jobs_scheduler.listing(ctx.database):
        when = row["cron"] or f"every {row['interval_seconds']:g} s"
        nxt = row["next_run_at"].isoformat(timespec="seconds") if row["next_run_at"] else "-"
        click.echo(
            f"  {row['name']:<16} {row['job']:<11} {when:<14} {'on ' if row['enabled'] else 'off'} next {nxt}"
            + (f"  steps {','.join(row['steps'])}" if row["steps"] else "")
        )


@scheduler.command("run")
@click.argument("name")
@pass_context
def scheduler_run(ctx: Context, name: str):
    """Run schedule NAME's job now, in this process (recorded like a scheduled run)."""
    from decision_server.jobs import scheduler as jobs_scheduler

    _require_migrated(ctx)
    jobs_scheduler.seed(ctx.database, ctx.config.schedules_file)
    row = jobs_scheduler.run_now(ctx.database, ctx.config, name, source="cli", wait=True)
    click.echo(summary(row) if row["job"] == "reevaluate" else f"run {row['id']} {row['status']}: {row['result']}")


# --- decision-server analytics: the pass's analytics steps alone, unrecorded ---------------------

ANALYTICS_STEPS = ("rfm", "stages", "segments")


def run_all(ctx: Context, steps: tuple[str, ...] = ANALYTICS_STEPS, echo=click.echo) -> None:
    """Run the bulk analytics in one pass over the customers (jobs/bulk_pass.py)."""
    from decision_server.jobs import bulk_pass
    from decision_server.rulebook.service import published_revision
    from decision_server.scoring.serving import ModelSet

    def report(p: bulk_pass.Progress) -> None:
        eta = f", about {p.eta_seconds:.0f} s left" if p.eta_seconds else ""
        echo(f"  {p.done:,} of {p.total:,} customers ({p.rate:,.0f}/s{eta})")

    revision = published_revision(ctx.database, ctx.config.rules_dir, limits=ctx.config.rule_limits)
    try:
        models = ModelSet(ctx.config.models_dir, max_age_days=ctx.config.model_max_age_days)
        fallbacks = [name for name, m in models.models.items() if m["fallback"]]
        if fallbacks:
            echo(f"  models falling back to their rules: {', '.join(fallbacks)}")
        result = bulk_pass.run(ctx.database, revision, models, steps=steps, margin=ctx.config.default_margin, progress=report)
    finally:
        revision.close()
    echo(f"  {result['customers']:,} customers in {result['seconds']:.1f} s; {result['written']:,} state rows changed")
    if result["rfm"]:
        top = ", ".join(f"{k} {v:,}" for k, v in list(result["rfm"]["segments"].items())[:4])
        echo(f"  rfm: {result['buyers']:,} buyers scored ({top}, ...)")
    if "stages" in steps:
        echo(f"  stages, value and journeys: {result['changed']:,} stage changes, {result['revalued']:,} values changed")
    if "segments" in steps:
        sizes = result["segments"]
        echo(
            f"  segments: {len(sizes)} recomputed" + (f" ({', '.join(f'{k} {v:,}' for k, v in sizes.items())})" if sizes else "")
        )
    if result["skipped_newer"]:
        echo(f"  {result['skipped_newer']:,} customers left as events had just updated them")


@click.group()
def analytics():
    """Run the customer analytics over the whole base.

    \b
      decision-server analytics run                  # RFM, then stages + value + journeys, then segments
      decision-server analytics run --only rfm
    Single customers are kept up to date by the event path as their purchases and touchpoints arrive;
    these runs are for everyone at once (time alone moves a silent customer's stage).
    """


@analytics.command("run")
@click.option("--only", type=click.Choice(ANALYTICS_STEPS), multiple=True, help="Run only these steps (repeatable).")
@pass_context
def analytics_run(ctx: Context, only: tuple[str, ...]):
    """Score RFM for every buyer, re-evaluate every stage, value and journey, recompute segments."""
    _require_migrated(ctx)
    click.echo(f"analysing the customer base: {', '.join(only or ANALYTICS_STEPS)}")
    run_all(ctx, only or ANALYTICS_STEPS)
