"""The `decision-server train` and `decision-server models …` commands."""

from __future__ import annotations

import json

import click

from decision_server.clicontext import Context, pass_context
from decision_server.clicontext import require_migrated as _require_migrated
from decision_server.scoring.specs import BY_NAME, MODELS

_NAMES = click.Choice([spec.name for spec in MODELS])


def _models(ctx: Context):
    from decision_server.scoring.serving import ModelSet

    return ModelSet(ctx.config.models_dir, max_age_days=ctx.config.model_max_age_days)


@click.command()
@click.argument("names", nargs=-1, type=_NAMES, metavar="[MODEL]...")
@click.option("--seed", default=42, show_default=True, help="Same data and seed, same model file (same sha256).")
@click.option("--no-promote", is_flag=True, help="Write the new versions without making them serve.")
@pass_context
def train(ctx: Context, names: tuple[str, ...], seed: int, no_promote: bool):
    """Train models on the database's data, check them, and write them to the models folder.

    \b
    MODEL is one of: churn, propensity, ltv, engagement, nbo (default: all). Each is trained at a
    past cut-off, tested on later held-out customers, exported to ONNX, checked against
    scikit-learn, and written as models_onnx/<name>/<version>/ with its card. New versions serve
    at once (running servers pick them up within seconds) unless --no-promote is given.
    """
    from decision_server.scoring import training

    _require_migrated(ctx)
    click.echo(f"training {', '.join(names) or 'all models'} into {ctx.config.models_dir} (seed {seed})")
    results = training.train(
        ctx.database,
        ctx.config.models_dir,
        list(names) or None,
        seed=seed,
        promote=not no_promote,
        progress=lambda message: click.echo(f"  {message}"),
    )
    failed = [r for r in results if r.error]
    click.echo(f"trained {len(results) - len(failed)} of {len(results)} model(s)")
    if failed:
        raise click.ClickException("not trained: " + "; ".join(f"{r.name} ({r.error})" for r in failed))


@click.group()
def models():
    """Show, evaluate, promote and roll back the ML models.

    \b
      decision-server models list               # what serves, or which fallback and why
      decision-server models show churn         # the card: inputs, training window, metrics
      decision-server models evaluate           # fresh metrics on current data vs the card's
      decision-server models promote churn 20261121-231500
      decision-server models rollback churn
    """


@models.command("list")
@pass_context
def list_models(ctx: Context):
    """List every model: the active version and its headline metric, or the fallback and why."""
    from decision_server.scoring import store
    from decision_server.scoring.training import _headline

    current = _models(ctx)
    for spec in MODELS:
        status = current.statuses[spec.name]
        count = len(store.versions(ctx.config.models_dir, spec.name))
        if status.fallback:
            click.echo(f"{spec.name:<11} FALLBACK   {status.reason}")
            click.echo(f"{'':<11} rule: {spec.fallback_rule}")
        else:
            click.echo(f"{spec.name:<11} {status.version}  ({count} version(s))  {_headline(status.card)}")


@models.command("show")
@click.argument("name", type=_NAMES)
@click.option("--version", help="A version other than the active one.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole card as JSON.")
@pass_context
def show(ctx: Context, name: str, version: str | None, as_json: bool):
    """Print a model's card: inputs, outputs, training window, label, metrics, libraries, sha256."""
    from decision_server.scoring import store

    version = version or store.active_version(ctx.config.models_dir, name)
    if version is None:
        raise click.ClickException(f"{name} has no trained version; run `decision-server train {name}`")
    try:
        card = store.read_card(ctx.config.models_dir, name, version)
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"{name} {version}: card unreadable: {exc}") from None
    if as_json:
        click.echo(json.dumps(card, indent=2))
        return
    problem = store.check_files(ctx.config.models_dir, name, version)
    click.echo(f"{card['name']} {card['version']}  ({card['task']}, score `{card['score']}`)")
    click.echo(f"  {card['description']}")
    click.echo(f"  label:     {card['label']}")
    click.echo(f"  training:  cut-off {card['training']['cutoff'][:10]}, {card['training']['rows']:,} rows, seed {card['seed']}")
    click.echo(
        f"  holdout:   cut-off {card['holdout']['cutoff'][:10]}, {card['metrics']['rows']:,} rows ({card['holdout']['customers']})"
    )
    click.echo("  metrics:")
    for against, values in card["metrics"].items():
        if isinstance(values, dict):
            click.echo(f"    {against:<20} " + "  ".join(f"{k} {_fmt(v)}" for k, v in values.items()))
    click.echo(f"  fallback:  {card['fallback']}")
    features = card["inputs"][0]["features"]
    click.echo(f"  inputs:    {card['inputs'][0]['name']} float32[{len(features)}]: " + ", ".join(f["name"] for f in features))
    click.echo("  outputs:   " + ", ".join(f"{o['name']} ({o['dtype']})" for o in card["outputs"]))
    if card.get("classes"):
        click.echo(f"  classes:   {', '.join(card['classes'])}")
    click.echo(
        f"  agreement: onnxruntime vs scikit-learn, max difference {card['agreement']['max_difference']:.2e} on {card['agreement']['rows']:,} rows"
    )
    click.echo("  libraries: " + ", ".join(f"{k} {v}" for k, v in card["libraries"].items()))
    click.echo(f"  sha256:    {card['sha256']}  ({'verified' if problem is None else problem})")


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


@models.command("evaluate")
@click.argument("names", nargs=-1, type=_NAMES, metavar="[MODEL]...")
@pass_context
def evaluate(ctx: Context, names: tuple[str, ...]):
    """Evaluate what serves now on the latest fully observed window, next to the card's figures."""
    from decision_server.scoring import training

    _require_migrated(ctx)
    current = _models(ctx)
    for name in names or [spec.name for spec in MODELS]:
        spec = BY_NAME[name]
        status = current.statuses[name]
        made_by = "fallback rule" if status.fallback else f"version {status.version}"
        try:
            result = training.evaluate_current(ctx.database, current, spec, progress=lambda m: click.echo(f"  {m}"))
        except training.TrainingError as exc:
            click.echo(f"{name}: cannot evaluate: {exc.message}")
            continue
        click.echo(f"{name} ({made_by}) as of {result['cutoff'][:10]}, {result['rows']:,} held-out rows:")
        card = status.card or {}
        for against, values in result.items():
            if isinstance(values, dict):
                then = (card.get("metrics") or {}).get(against) if against == "model" else None
                line = "  ".join(f"{k} {_fmt(v)}" for k, v in values.items())
                if then:
                    line += "   (card: " + "  ".join(f"{k} {_fmt(v)}" for k, v in then.items()) + ")"
                click.echo(f"    {('now' if against == 'model' else against):<20} {line}")


@models.command("promote")
@click.argument("name", type=_NAMES)
@click.argument("version")
@click.option("--reason", default="", help="Why, for the promotion history.")
@pass_context
def promote(ctx: Context, name: str, version: str, reason: str):
    """Make VERSION of NAME the one that serves (running servers follow within seconds)."""
    from decision_server.scoring import store

    entry = store.promote(ctx.config.models_dir, name, version, actor=_actor(), reason=reason)
    click.echo(f"{name}: {entry['previous'] or 'none'} -> {entry['version']}")


@models.command("rollback")
@click.argument("name", type=_NAMES)
@click.option("--reason", default="", help="Why, for the promotion history.")
@pass_context
def rollback(ctx: Context, name: str, reason: str):
    """Go back to the version of NAME that served before the current one."""
    from decision_server.scoring import store

    entry = store.rollback(ctx.config.models_dir, name, actor=_actor(), reason=reason)
    click.echo(f"{name}: rolled back {entry['previous']} -> {entry['version']}")


def _actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"
