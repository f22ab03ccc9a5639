"""`kalshi-data dedup run`: merge every gatherer's new rows into production (docs/dedup.md).

The same `run_dedup` the `kd.dedup.run` beat job calls, run once in the foreground. Gatherers
and production come from the `dedup` settings; `--gatherer NAME=URL` and `--production-url`
override them for one run. Every expected failure is one `error:` line, a `hint:` line and a
non-zero exit; an unreachable gatherer is reported and skipped (the others are merged).
"""

from __future__ import annotations

import json

import click
import psycopg2

from app.cli.errors import EXIT_USAGE, UserFacingError
from app.cli.group import CliContext, cli, pass_cli_context
from app.config import DedupSettings, GathererDatabase
from app.db.engine import DatabaseUnavailable, first_line
from app.dedup import run_dedup

_CONFIG_HINT = (
    "set dedup.production_url and dedup.gatherers in the config file (or "
    "KD_DEDUP__PRODUCTION_URL), or pass --production-url and --gatherer NAME=URL"
)


@cli.group()
def dedup() -> None:
    """The deduplicator: gatherer databases merged into production (docs/dedup.md)."""


def _gatherer(text: str) -> GathererDatabase:
    name, sep, url = text.partition("=")
    if not sep or not name or not url:
        raise UserFacingError(
            f"--gatherer {text!r} is not NAME=URL",
            "e.g. --gatherer g1=postgresql://dedup_reader@gatherer-1/kalshi_data",
            exit_code=EXIT_USAGE,
        )
    try:
        return GathererDatabase(name=name, database_url=url)
    except ValueError as exc:
        raise UserFacingError(
            f"--gatherer {text!r}: {first_line(exc)}",
            "a gatherer name is lower-case letters, digits, '-' and '_'",
            exit_code=EXIT_USAGE,
        ) from None


@dedup.command("run")
@click.option("--production-url", help="production database (default: dedup.production_url)")
@click.option(
    "--gatherer",
    "gatherers",
    multiple=True,
    metavar="NAME=URL",
    help="a gatherer database to merge (repeatable; default: dedup.gatherers)",
)
@click.option("--batch-rows", type=click.IntRange(min=1), help="rows per batch")
@click.option("--json", "as_json", is_flag=True, help="print the run's report as JSON")
@pass_cli_context
def dedup_run(
    ctx: CliContext,
    production_url: str | None,
    gatherers: tuple[str, ...],
    batch_rows: int | None,
    as_json: bool,
) -> None:
    """Merge what every gatherer stored since the last run into production, once."""
    configured = ctx.settings.dedup
    updates: dict[str, object] = {}
    if gatherers:
        updates["gatherers"] = tuple(_gatherer(g) for g in gatherers)
    if batch_rows is not None:
        updates["batch_rows"] = batch_rows
    try:
        settings = DedupSettings.model_validate({**configured.model_dump(), **updates})
    except ValueError as exc:
        raise UserFacingError(f"bad dedup settings: {first_line(exc)}", _CONFIG_HINT, 2) from None
    target = production_url or settings.production_url
    if not target:
        raise UserFacingError("no production database is configured", _CONFIG_HINT, EXIT_USAGE)
    if not settings.gatherers:
        raise UserFacingError("no gatherer databases are configured", _CONFIG_HINT, EXIT_USAGE)
    try:
        report = run_dedup(settings, target)
    except DatabaseUnavailable as exc:
        raise UserFacingError(
            str(exc), "check the production URL and that PostgreSQL is running", EXIT_USAGE
        ) from None
    except (psycopg2.errors.UndefinedTable, psycopg2.errors.UndefinedColumn) as exc:
        raise UserFacingError(
            f"production is not migrated: {first_line(exc)}",
            "run `KD_DATABASE_URL=<production url> kalshi-data migrate` first",
            EXIT_USAGE,
        ) from None
    if as_json:
        click.echo(json.dumps(report.as_dict(), sort_keys=True))
        return
    for table in sorted(set(report.read) | set(report.inserted)):
        click.echo(
            f"{table:<18} read {report.read[table]:>9}  new in production "
            f"{report.inserted[table]:>9}"
        )
    for name in report.unreachable:
        click.echo(f"gatherer {name}: unreachable, skipped (its cursors are unchanged)")
    state = "caught up" if report.complete else "stopped at dedup.max_run_s (run again)"
    click.echo(f"{report.batches} batches; {state}")
