"""The `decision-server analytics` commands: run RFM, stages/value/journeys and segments for everyone."""

from __future__ import annotations

import click

from decision_server.clicontext import Context, pass_context
from decision_server.clicontext import require_migrated as _require_migrated

STEPS = ("rfm", "stages", "segments")


def run_all(ctx: Context, steps: tuple[str, ...] = STEPS, echo=click.echo) -> None:
    """Run the bulk analytics in one pass over the customers (analytics/reevaluate.py)."""
    from decision_server.analytics import reevaluate
    from decision_server.rulebook.service import published_revision
    from decision_server.scoring.serving import ModelSet

    def report(p: reevaluate.Progress) -> None:
        eta = f", about {p.eta_seconds:.0f} s left" if p.eta_seconds else ""
        echo(f"  {p.done:,} of {p.total:,} customers ({p.rate:,.0f}/s{eta})")

    revision = published_revision(ctx.database, ctx.config.rules_dir, limits=ctx.config.rule_limits)
    try:
        models = ModelSet(ctx.config.models_dir, max_age_days=ctx.config.model_max_age_days)
        fallbacks = [name for name, m in models.models.items() if m["fallback"]]
        if fallbacks:
            echo(f"  models falling back to their rules: {', '.join(fallbacks)}")
        result = reevaluate.run(ctx.database, revision, models, steps=steps, margin=ctx.config.default_margin, progress=report)
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
@click.option("--only", type=click.Choice(STEPS), multiple=True, help="Run only these steps (repeatable).")
@pass_context
def run(ctx: Context, only: tuple[str, ...]):
    """Score RFM for every buyer, re-evaluate every stage, value and journey, recompute segments."""
    _require_migrated(ctx)
    click.echo(f"analysing the customer base: {', '.join(only or STEPS)}")
    run_all(ctx, only or STEPS)
