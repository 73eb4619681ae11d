"""What every command of the CLI shares: its context object, the migrated-database check, progress output.

The domain command modules import this, never `cli.py`, which imports them to build the command tree.
"""

from __future__ import annotations

import sys

import click

from decision_server.config import Config


class Context:
    """What every command needs: the configuration, and a database opened on first use."""

    def __init__(self, config: Config):
        self.config = config
        self._database = None

    @property
    def database(self):
        """Open the database (once) from the configuration."""
        if self._database is None:
            from decision_server.db import Database

            self._database = Database(self.config.database_url)
        return self._database


pass_context = click.make_pass_decorator(Context)


def require_migrated(ctx: Context) -> None:
    """Stop with a clear message unless the database is at the newest schema revision."""
    from decision_server import migrate

    engine = ctx.database.engine
    if migrate.current_revision(engine) != migrate.head_revision(engine):
        raise click.ClickException("the database is not migrated: run `decision-server init` first")


def progress(label: str, done: int, total: int | None) -> None:
    """Show progress on stderr: a bar on a terminal, a line every ~10% otherwise."""
    if total:
        pct = min(100, done * 100 // total)
        if sys.stderr.isatty():
            bar = "#" * (pct // 4)
            end = "\n" if done >= total else ""
            click.echo(f"\r{label:<14} [{bar:<25}] {pct:3d}% {done:,}/{total:,}", err=True, nl=False)
            if end:
                click.echo("", err=True)
        else:
            click.echo(f"{label}: {done:,}/{total:,} ({pct}%)", err=True)
    else:
        click.echo(f"{label}: {done:,}", err=True)
