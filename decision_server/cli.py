"""The `decision-server` command line: set up, serve, load data and manage keys."""

from __future__ import annotations

import atexit
import dataclasses
import os
import shutil
import sys
import tempfile
from pathlib import Path

import click

from decision_server.clicontext import Context, pass_context
from decision_server.clicontext import progress as _progress
from decision_server.clicontext import require_migrated as _require_migrated
from decision_server.config import Config
from decision_server.decisions.commands import decisions
from decision_server.jobs.commands import analytics, jobs, reevaluate_command, run_all, scheduler
from decision_server.loyalty.commands import loyalty, start_demo
from decision_server.offers.commands import offers as offers_group
from decision_server.rulebook.commands import rules
from decision_server.scoring.commands import models, train


class _Group(click.Group):
    """A command group that shows our errors as one clear line instead of a traceback."""

    def invoke(self, ctx):
        from decision_server.errors import DecisionServerError

        try:
            return super().invoke(ctx)
        except DecisionServerError as exc:
            detail = "".join(f"\n  {field}: {'; '.join(map(str, msgs))}" for field, msgs in exc.errors.items())
            raise click.ClickException(exc.message + detail) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--database-url", envvar="DATABASE_URL", help="Database URL [env DATABASE_URL; default sqlite:///./var/decision-server.db]."
)
@click.option(
    "--rules-dir", envvar="RULES_DIR", type=click.Path(path_type=Path), help="Rule files [env RULES_DIR; default ./rules]."
)
@click.option(
    "--models-dir",
    envvar="MODELS_DIR",
    type=click.Path(path_type=Path),
    help="ONNX models [env MODELS_DIR; default ./models_onnx].",
)
@click.option(
    "--log-level",
    envvar="LOG_LEVEL",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Log level [env LOG_LEVEL; default INFO].",
)
@click.version_option(package_name="decision-server")
@click.pass_context
def cli(ctx, database_url, rules_dir, models_dir, log_level):
    """decision-server: real-time next-best-action decisions for marketing and loyalty teams.

    \b
    First run on a laptop (SQLite under ./var/):
      decision-server quickstart         # init + demo data + models + analytics + loyalty + demo key + serve
    Step by step:
      decision-server init               # create or migrate the database
      decision-server demo-data          # 10k synthetic customers with purchases
      decision-server train              # train the five models (and `models --help`)
      decision-server analytics run      # RFM, stages, value, journeys, segments for everyone
      decision-server loyalty demo       # demo rewards; enrol recent buyers and earn their points
      decision-server keys create --name me --role admin
      decision-server serve              # http://127.0.0.1:8000/api/v1/docs
      decision-server rules check        # check the rule files (and `rules --help`)

    Settings come from the environment (DATABASE_URL, RULES_DIR, MODELS_DIR, LOG_LEVEL,
    RULES_BACKEND=durable|python, RULES_POLL_SECONDS, MODELS_POLL_SECONDS, MODEL_MAX_AGE_DAYS,
    LOYALTY_AUTO_ENROLL); the options above override it. PostgreSQL: --database-url postgresql://user@host:5432/db
    """
    from decision_server.logs import configure_logging

    config = Config.from_env(database_url=database_url, rules_dir=rules_dir, models_dir=models_dir, log_level=log_level)
    configure_logging("WARNING" if ctx.invoked_subcommand != "serve" else config.log_level)
    ctx.obj = Context(config)


@cli.command()
@pass_context
def init(ctx: Context):
    """Create or migrate the database, and write the default rules if the rules folder has none (safe to repeat)."""
    from decision_server import migrate

    before = migrate.current_revision(ctx.database.engine)
    migrate.upgrade(ctx.database.engine)
    after = migrate.current_revision(ctx.database.engine)
    where = ctx.database.engine.url.render_as_string(hide_password=True)
    if before == after:
        click.echo(f"database {where} is up to date (revision {after})")
    else:
        click.echo(f"database {where} migrated from {before or 'empty'} to {after}")
    from decision_server.rulebook.runtime import install_default_rules

    copied = install_default_rules(ctx.config.rules_dir)
    if copied:
        click.echo(f"wrote the default rules to {ctx.config.rules_dir} ({copied} files); edit them there")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for all).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers", default=2, show_default=True, type=click.IntRange(1, 64), help="Worker processes (one per core is a good start)."
)
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 256), help="Request threads per worker.")
@click.option(
    "--scheduler/--no-scheduler",
    default=True,
    show_default=True,
    help="Run the job scheduler in the server (one process of all runs the jobs); off when `decision-server scheduler start` runs elsewhere.",
)
@pass_context
def serve(ctx: Context, host: str, port: int, workers: int, threads: int, scheduler: bool):
    """Serve the API with granian (HTTP/1.1 keep-alive; chosen by bench/servers.py)."""
    share_metrics(ctx.config)
    _require_migrated(ctx)
    serve_forever(dataclasses.replace(ctx.config, scheduler=scheduler), host=host, port=port, workers=workers, threads=threads)


def share_metrics(config: Config) -> Path:
    """Point PROMETHEUS_MULTIPROC_DIR at the directory the workers share their metrics in; return it.

    The configured one (PROMETHEUS_MULTIPROC_DIR), or a temporary one removed at exit. Call it
    before anything imports prometheus_client: the library picks its multiprocess mode at import.
    """
    if config.metrics_dir is not None:
        directory = Path(config.metrics_dir)
        directory.mkdir(parents=True, exist_ok=True)
    elif os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # made by an earlier call (quickstart, then serve_forever)
        directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    else:
        directory = Path(tempfile.mkdtemp(prefix="decision-server-metrics-"))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    return directory


# granian's own lines (start-up, workers, errors) as JSON on stderr like the app's. granian
# replaces each top-level section it is given, so both of its handlers are spelled out.
_GRANIAN_LOGGING = {
    "formatters": {"json": {"()": "decision_server.logs.JsonFormatter"}},
    "handlers": {
        name: {"formatter": "json", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
        for name in ("console", "access")
    },
}


def serve_forever(config: Config, *, host: str, port: int, workers: int, threads: int) -> None:
    """Run granian on the WSGI factory until interrupted; workers read config from the environment."""
    from granian.constants import Interfaces
    from granian.server import Server

    metrics_dir = share_metrics(config)
    values = sys.modules.get("prometheus_client.values")
    if values is not None and not getattr(values.ValueClass, "_multiprocess", False):
        raise RuntimeError("prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR was set: call share_metrics first")
    # A scrape adds up every file there: an earlier server's counts (or quickstart's own) must go.
    for stale in metrics_dir.glob("*.db"):
        stale.unlink()
    os.environ.update(
        DATABASE_URL=config.database_url,
        RULES_DIR=str(config.rules_dir),
        MODELS_DIR=str(config.models_dir),
        LOG_LEVEL=config.log_level,
        RULES_BACKEND=config.rules_backend,
        RULES_POLL_SECONDS=str(config.rules_poll_seconds),
        SCHEDULER="on" if config.scheduler else "off",
    )
    server = Server(
        "decision_server.wsgi:application",
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        factory=True,
        workers=workers,
        blocking_threads=threads,
        websockets=False,
        log_access=False,  # the app logs one JSON line per request itself
        log_dictconfig=_GRANIAN_LOGGING,
        respawn_failed_workers=True,
    )
    server.serve()


@cli.command("demo-data")
@click.option("--customers", default=10_000, show_default=True, type=click.IntRange(1, 10_000_000))
@click.option("--seed", default=42, show_default=True, help="Same seed, same data.")
@click.option("--as-of", type=click.DateTime(["%Y-%m-%d"]), help="Last day of the history [default: yesterday].")
@click.option("--months", default=24, show_default=True, type=click.IntRange(1, 120), help="Length of the history.")
@click.option(
    "--export",
    "export_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write CSV files here instead of loading the database.",
)
@pass_context
def demo_data(ctx: Context, customers: int, seed: int, as_of, months: int, export_dir: Path | None):
    """Generate a realistic synthetic customer base (purchases, touchpoints, churners, VIPs).

    Customer ids are DEMO-000001...; running it again with the same seed changes nothing.
    """
    from decision_server.demo import generator

    spec = generator.DemoSpec(customers=customers, seed=seed, as_of=as_of.date() if as_of else None, months=months)
    if export_dir:
        counts = generator.export_csv(spec, export_dir, progress=_progress)
        click.echo(f"wrote {counts} to {export_dir}")
        return
    _require_migrated(ctx)
    counts = generator.load(ctx.database, spec, progress=_progress)
    click.echo(f"demo data loaded: {counts}")


@cli.command("import")
@click.argument("kind", type=click.Choice(["customers", "transactions", "touchpoints"]))
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), help="Default: from the file extension.")
@click.option(
    "--batch-size", default=20_000, show_default=True, type=click.IntRange(100, 1_000_000), help="Rows per database transaction."
)
@click.option(
    "--errors",
    "errors_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write every bad row (line, field, reason) to this CSV.",
)
@pass_context
def import_(ctx: Context, kind: str, file: Path, fmt: str | None, batch_size: int, errors_file: Path | None):
    """Load customers, transactions or touchpoints from a CSV or Parquet FILE.

    \b
    Columns (header names; extra columns are ignored, except for customers, where they become
    attributes):
      customers     external_id, first_name, last_name, email, phone, created_at,
                    consent_<channel> (true/false), any other column -> attributes
      transactions  external_id, customer_id, occurred_at, amount, cost, product, category, channel
      touchpoints   external_id, customer_id, occurred_at, channel, kind, payload (JSON)

    Every row is validated; bad rows are reported with their line number and skipped, good rows
    are loaded. Re-running the same file changes nothing (rows are keyed by external_id;
    customers are updated in place). Exit status 1 when any row was bad.
    """
    from decision_server.ingest import importer

    _require_migrated(ctx)
    report = importer.import_file(ctx.database, kind, file, fmt=fmt, batch_size=batch_size, progress=_progress)
    for error in report.errors[:20]:
        click.echo(f"{file}:{error.line}: {error.field}: {error.reason}", err=True)
    if len(report.errors) > 20:
        click.echo(f"... and {len(report.errors) - 20} more errors", err=True)
    if errors_file and report.errors:
        report.write_errors(errors_file)
        click.echo(f"all bad rows written to {errors_file}", err=True)
    click.echo(report.summary())
    if report.errors:
        sys.exit(1)


@cli.group()
def keys():
    """Create, list and revoke API keys (roles: channel, analyst, editor, ingest, admin)."""


@keys.command("create")
@click.option("--name", required=True, help="Who or what uses the key, e.g. mobile-app.")
@click.option(
    "--role", required=True, type=click.Choice(["channel", "analyst", "editor", "ingest", "admin"]), help="What the key may do."
)
@pass_context
def keys_create(ctx: Context, name: str, role: str):
    """Create a key; the key itself is the last line of the output and is not shown again."""
    from decision_server.auth import service

    _require_migrated(ctx)
    with ctx.database.session(write=True) as session:
        new = service.create_key(session, name=name, role=role)
    click.echo(f"created key #{new.record.id} {name!r} with role {role}; store it now:")
    click.echo(new.secret)


@keys.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
@pass_context
def keys_list(ctx: Context, include_revoked: bool):
    """List keys (id, name, role, prefix, created, revoked); secrets are never stored."""
    from decision_server.auth import service

    _require_migrated(ctx)
    with ctx.database.session() as session:
        rows = service.list_keys(session, include_revoked=include_revoked)
    for r in rows:
        revoked = f" revoked {r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else ""
        click.echo(f"{r.id:>5}  {r.name:<24} {r.role:<8} ds_{r.prefix}_…  {r.created_at:%Y-%m-%d %H:%M}{revoked}")


@keys.command("revoke")
@click.argument("key_id", type=int)
@pass_context
def keys_revoke(ctx: Context, key_id: int):
    """Revoke the key with KEY_ID (see `keys list`); running servers refuse it within seconds."""
    from decision_server.auth import service
    from decision_server.errors import NotFound

    _require_migrated(ctx)
    try:
        with ctx.database.session(write=True) as session:
            record = service.revoke_key(session, key_id=key_id)
    except NotFound as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"revoked key #{record.id} {record.name!r}")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--customers",
    default=10_000,
    show_default=True,
    type=click.IntRange(1, 10_000_000),
    help="Demo customers to load into an empty database.",
)
@click.option("--no-serve", is_flag=True, help="Prepare everything but do not start the server.")
@pass_context
def quickstart(ctx: Context, host: str, port: int, customers: int, no_serve: bool):
    """Migrate, write the default rules if there are none, load demo data into an empty database, train the models that have no version, create a demo admin key, and serve."""
    if not no_serve:
        share_metrics(ctx.config)  # before the steps below import prometheus_client
    from decision_server import migrate
    from decision_server.auth import service
    from decision_server.demo import generator
    from decision_server.offers import service as offers
    from decision_server.rulebook.runtime import install_default_rules

    migrate.upgrade(ctx.database.engine)
    if install_default_rules(ctx.config.rules_dir):
        click.echo(f"wrote the default rules to {ctx.config.rules_dir}")
    if generator.is_empty(ctx.database):
        click.echo(f"loading {customers:,} demo customers...")
        counts = generator.load(ctx.database, generator.DemoSpec(customers=customers), progress=_progress)
        click.echo(f"demo data loaded: {counts}")
    else:
        click.echo("database already has customers; demo data not loaded again")
    _train_missing_models(ctx)
    click.echo("analysing the customer base (RFM, stages, value, journeys, segments)...")
    run_all(ctx)
    start_demo(ctx, 60, unless_members=True)  # the loyalty program on the demo base
    with ctx.database.session(write=True) as session:
        added = (
            offers.load_demo_catalog(session, channels=ctx.config.channels, words=offers.vocabulary(None))
            if offers.is_empty(session)
            else 0
        )
        new = service.create_key(session, name="quickstart-demo", role="admin")
    click.echo(
        f"demo offer catalog: {added} offers added" if added else "offer catalog already has offers; demo catalog not added"
    )
    _demo_traffic(ctx)
    base = f"http://{host}:{port}"
    click.echo("")
    click.echo(f"  Console:  {base}/console/  (sign in with the key below)")
    click.echo(f"  API:      {base}/api/v1/")
    click.echo(f"  Docs:     {base}/api/v1/docs")
    click.echo(f"  Try:      curl -H 'Authorization: Bearer {new.secret}' {base}/api/v1/customers/DEMO-000001")
    click.echo(f"            curl -H 'Authorization: Bearer {new.secret}' {base}/api/v1/customers/DEMO-000001/scores")
    click.echo(
        f"            curl -H 'Authorization: Bearer {new.secret}' -H 'Content-Type: application/json' "
        f'-d \'{{"customer_id": "DEMO-000001", "channel": "app"}}\' {base}/api/v1/decisions'
    )
    click.echo(f"            curl -H 'Authorization: Bearer {new.secret}' {base}/api/v1/loyalty/members/DEMO-000001")
    click.echo(f"  Demo admin API key (shown once): {new.secret}")
    click.echo("")
    if not no_serve:
        ctx.database.dispose()
        serve_forever(dataclasses.replace(ctx.config, scheduler=True), host=host, port=port, workers=2, threads=4)


def _demo_traffic(ctx: Context) -> None:
    """Make a fortnight of real decisions and responses into an empty log, so the console's decision charts have data."""
    from decision_server.demo import traffic

    if traffic.has_decisions(ctx.database):
        return
    click.echo("making two weeks of demo decisions and responses (the real pipeline, at past times)...")
    counts = traffic.simulate_with_app(ctx.config, progress=_progress)
    click.echo(f"demo decisions: {counts['decisions']:,} made, {counts['responses']:,} responses")


def _train_missing_models(ctx: Context) -> None:
    """Train the models that have no version yet (first start), so decisions use real models."""
    from decision_server.scoring import store, training
    from decision_server.scoring.specs import MODELS

    missing = [s.name for s in MODELS if store.active_version(ctx.config.models_dir, s.name) is None]
    if not missing:
        click.echo(f"models already trained in {ctx.config.models_dir}; `decision-server train` retrains them")
        return
    click.echo(f"training {', '.join(missing)} on the database's data into {ctx.config.models_dir}...")
    results = training.train(ctx.database, ctx.config.models_dir, missing, progress=lambda m: click.echo(f"  {m}"))
    for result in results:
        if result.error:
            click.echo(f"  {result.name} serves its fallback rule: {result.error}")


def main() -> None:
    """Run the command line."""
    cli(prog_name="decision-server")


# Command groups that live with their domain.
cli.add_command(rules)
cli.add_command(offers_group)
cli.add_command(train)
cli.add_command(models)
cli.add_command(analytics)
cli.add_command(loyalty)
cli.add_command(reevaluate_command)
cli.add_command(jobs)
cli.add_command(scheduler)
cli.add_command(decisions)
