"""The `decision-server analytics` commands: run RFM, stages/value/journeys and segments for everyone."""

from __future__ import annotations

import time

import click

from decision_server.cli import Context, _require_migrated, pass_context

STEPS = ("rfm", "stages", "segments")


def run_all(ctx: Context, steps: tuple[str, ...] = STEPS, echo=click.echo) -> None:
    """Run the bulk analytics in order (RFM first: stages and value read its scores)."""
    from decision_server.analytics import lifecycle, rfm, segments
    from decision_server.analytics.requirements import NEEDED, require
    from decision_server.rulebook.service import published_revision
    from decision_server.scoring.serving import ModelSet

    revision = published_revision(ctx.database, ctx.config.rules_dir)
    try:
        require(revision, *(name for step in steps for name in NEEDED[step]))
    except Exception:
        revision.close()
        raise
    models = ModelSet(ctx.config.models_dir, max_age_days=ctx.config.model_max_age_days)
    fallbacks = [name for name, m in models.models.items() if m["fallback"]]
    if fallbacks:
        echo(f"  models falling back to their rules: {', '.join(fallbacks)}")
    try:
        if "rfm" in steps:
            started = time.perf_counter()
            run = rfm.calculate(ctx.database, revision)
            top = ", ".join(f"{k} {v:,}" for k, v in list(run.segments.items())[:4])
            echo(f"  rfm: {run.buyers:,} buyers scored in {time.perf_counter() - started:.1f} s ({top}, ...)")
        if "stages" in steps:
            started = time.perf_counter()
            result = lifecycle.evaluate_all(ctx.database, revision, models)
            echo(f"  stages, value and journeys: {result['customers']:,} customers in {time.perf_counter() - started:.1f} s; "
                 f"{result['changed']:,} stage changes, {result['revalued']:,} values changed")
        if "segments" in steps:
            started = time.perf_counter()
            sizes = segments.recompute_all(ctx.database, revision, models)
            echo(f"  segments: {len(sizes)} recomputed in {time.perf_counter() - started:.1f} s"
                 + (f" ({', '.join(f'{k} {v:,}' for k, v in sizes.items())})" if sizes else ""))
    finally:
        revision.close()


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
