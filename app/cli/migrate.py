"""`kalshi-data migrate`: create the database if needed and bring its schema to a revision."""

from __future__ import annotations

import click

from app.cli.errors import UserFacingError
from app.cli.group import CliContext, cli, pass_cli_context
from app.db import migrations
from app.db.engine import DatabaseUnavailable


@cli.command("migrate")
@click.option(
    "--database-url",
    metavar="URL",
    help="PostgreSQL URL to migrate (default: database_url from the settings).",
)
@click.option(
    "--revision",
    default="head",
    show_default=True,
    metavar="REV",
    help="Upgrade to this revision.",
)
@click.option(
    "--downgrade",
    "downgrade_to",
    metavar="REV",
    help="Downgrade to this revision instead ('base' removes every table).",
)
@pass_cli_context
def migrate(
    ctx: CliContext, database_url: str | None, revision: str, downgrade_to: str | None
) -> None:
    """Create the database if it does not exist and migrate its schema (docs/schema.md)."""
    url = database_url or ctx.settings.database_url
    if downgrade_to is not None and revision != "head":
        raise click.UsageError("give either --revision or --downgrade, not both")
    try:
        if downgrade_to is not None:
            result = migrations.downgrade(url, downgrade_to)
        else:
            result = migrations.upgrade(url, revision)
    except DatabaseUnavailable as exc:
        raise UserFacingError(
            str(exc),
            hint="check database_url (or --database-url / KD_DATABASE_URL) and that "
            "PostgreSQL is running",
        ) from exc
    except migrations.MigrationError as exc:
        raise UserFacingError(
            str(exc), hint="revisions are listed in alembic/versions/ (or use 'head'/'base')"
        ) from exc
    if result.created_database:
        click.echo(f"created database {result.database}")
    before = result.before or "base"
    after = result.after or "base"
    if before == after:
        click.echo(f"{result.database} is already at revision {after}")
    else:
        click.echo(f"migrated {result.database}: {before} -> {after}")
