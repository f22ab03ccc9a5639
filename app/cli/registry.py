"""`kalshi-data registry`: sync, reconcile and inspect the market registry (docs/registry.md).

`sync` migrates the database if needed, then walks series, events and markets from the
configured exchange (or `--rest-url`, e.g. a simulator) and prints counts. With `--publish`
it also updates the listener change feed in Redis. Failures end as one `error:` line.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
import orjson
import psycopg2
import redis

from app.cli.errors import UserFacingError
from app.cli.group import CliContext, cli, pass_cli_context
from app.config import RegistrySettings
from app.db import migrations
from app.db.engine import DatabaseUnavailable, connect, first_line
from app.kalshi.errors import ExchangeUnreachable, KalshiError, Unauthorized
from app.kalshi.rest import KalshiRest
from app.registry.feed import ChangeFeed
from app.registry.sync import SyncReport, full_sync, reconcile

_DB_HINT = "check database_url (or --database-url / KD_DATABASE_URL) and that PostgreSQL is running"


@cli.group("registry")
def registry() -> None:
    """Series, events and markets: sync from the exchange, reconcile, inspect."""


def _options(func: Any) -> Any:
    func = click.option("--rest-url", help="Kalshi REST base URL (default: kalshi.rest_url).")(func)
    func = click.option(
        "--database-url", metavar="URL", help="PostgreSQL URL (default: database_url)."
    )(func)
    func = click.option(
        "--page-size",
        type=click.IntRange(1, 1000),
        help="GET /markets page size (default 1000).",
    )(func)
    func = click.option(
        "--publish/--no-publish",
        default=False,
        show_default=True,
        help="Also update the listener change feed in Redis (redis_url).",
    )(func)
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")(func)


@contextmanager
def _session(
    ctx: CliContext, rest_url: str | None, database_url: str | None, publish: bool
) -> Iterator[tuple[Any, KalshiRest, ChangeFeed | None]]:
    url = database_url or ctx.settings.database_url
    try:
        migrations.upgrade(url)
        conn = connect(url)
    except DatabaseUnavailable as exc:
        raise UserFacingError(str(exc), _DB_HINT) from exc
    except migrations.MigrationError as exc:
        raise UserFacingError(str(exc), "run 'kalshi-data migrate' and read its error") from exc
    feed = None
    if publish:
        feed = ChangeFeed.from_url(ctx.settings.redis_url, ctx.settings.gatherer)
    client = KalshiRest.from_settings(ctx.settings.kalshi, rest_url=rest_url)
    try:
        with client:
            yield conn, client, feed
    except Unauthorized as exc:
        raise UserFacingError(str(exc), "check kalshi.key_id and kalshi.private_key_path") from exc
    except ExchangeUnreachable as exc:
        raise UserFacingError(
            str(exc),
            "is the exchange (or 'kalshi-data sim') running there? set kalshi.rest_url "
            "or pass --rest-url",
        ) from exc
    except KalshiError as exc:
        raise UserFacingError(
            f"exchange error: {exc}", "retry later; what was synced is kept"
        ) from exc
    except psycopg2.Error as exc:
        raise UserFacingError(f"database error: {first_line(exc)}", _DB_HINT) from exc
    except redis.RedisError as exc:
        raise UserFacingError(
            f"redis error: {exc}", "check redis_url (KD_REDIS_URL) or drop --publish"
        ) from exc
    finally:
        conn.close()


def _print(report: SyncReport, as_json: bool) -> None:
    summary = report.summary()
    if as_json:
        click.echo(orjson.dumps(summary).decode())
        return
    click.echo(
        f"markets: {summary['markets_seen']} seen, {summary['markets_inserted']} new, "
        f"{summary['markets_updated']} updated, {summary['markets_unchanged']} unchanged, "
        f"{summary['status_changes']} status changes"
    )
    click.echo(
        f"events:  {summary['events_seen']} seen, {summary['events_inserted']} new, "
        f"{summary['events_updated']} updated"
    )
    click.echo(
        f"series:  {summary['series_seen']} seen, {summary['series_inserted']} new, "
        f"{summary['series_updated']} updated"
    )
    if report.invalid:
        click.echo(f"skipped {report.invalid} malformed objects (see the log)")
    if report.drifted:
        click.echo(f"drifted: {', '.join(report.drifted)}")
    click.echo(f"{summary['pages']} pages in {summary['duration_s']:.1f} s")


def _settings(ctx: CliContext, page_size: int | None) -> RegistrySettings:
    """The configured registry settings, with `--page-size` applied when given."""
    configured = ctx.settings.registry
    return configured.model_copy(update={"page_size": page_size}) if page_size else configured


@registry.command("sync")
@_options
@pass_cli_context
def sync(
    ctx: CliContext,
    rest_url: str | None,
    database_url: str | None,
    page_size: int | None,
    publish: bool,
    as_json: bool,
) -> None:
    """Full sync of series, events and markets into the database."""
    with _session(ctx, rest_url, database_url, publish) as (conn, client, feed):
        report = full_sync(conn, client, _settings(ctx, page_size), feed=feed)
    _print(report, as_json)


@registry.command("reconcile")
@_options
@click.option("--full", is_flag=True, help="Walk every status instead of a watermark.")
@pass_cli_context
def reconcile_command(
    ctx: CliContext,
    rest_url: str | None,
    database_url: str | None,
    page_size: int | None,
    publish: bool,
    as_json: bool,
    full: bool,
) -> None:
    """Re-read markets changed since the newest one we hold and fix drift."""
    with _session(ctx, rest_url, database_url, publish) as (conn, client, feed):
        report = reconcile(conn, client, _settings(ctx, page_size), feed=feed, full=full)
    _print(report, as_json)


@registry.command("show")
@click.argument("ticker")
@click.option("--database-url", metavar="URL", help="PostgreSQL URL (default: database_url).")
@pass_cli_context
def show(ctx: CliContext, ticker: str, database_url: str | None) -> None:
    """Print one market's registry row and its status history."""
    url = database_url or ctx.settings.database_url
    try:
        conn = connect(url)
    except DatabaseUnavailable as exc:
        raise UserFacingError(str(exc), _DB_HINT) from exc
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT ticker, event_ticker, series_ticker, status, result, title, open_time, "
                "close_time, settlement_value, first_seen_at, updated_at FROM markets "
                "WHERE ticker = %s",
                (ticker,),
            )
            row = cur.fetchone()
            if row is None:
                raise UserFacingError(
                    f"market {ticker} is not in the registry",
                    "run 'kalshi-data registry sync' first, or check the ticker",
                )
            names = [d[0] for d in cur.description]
            cur.execute(
                "SELECT observed_at, previous_status, status, source, event_type "
                "FROM market_status_history WHERE market_ticker = %s ORDER BY observed_at",
                (ticker,),
            )
            history = cur.fetchall()
    except psycopg2.Error as exc:
        raise UserFacingError(f"database error: {first_line(exc)}", _DB_HINT) from exc
    finally:
        conn.close()
    for name, value in zip(names, row, strict=True):
        click.echo(f"{name + ':':17s} {'-' if value is None else value}")
    click.echo("status history:")
    for observed, previous, status, source, event_type in history:
        click.echo(
            f"  {observed.isoformat()}  {previous or '-'} -> {status}  ({source} {event_type})"
        )
