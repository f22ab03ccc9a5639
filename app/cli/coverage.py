"""`kalshi-data coverage`: per market and UTC hour, what one gatherer captured (docs/coverage.md).

Computed straight from `capture_holes`, the registry and the gatherer's sessions
(`app.coverage.compute_coverage`), so it works whether or not `refresh_coverage` ever ran.
Output streams: a million markets are never held in memory. Every expected failure (bad time,
empty range, unknown market, unreachable or unmigrated database) is one `error:` line, a
`hint:` line and exit 2.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import chain, islice
from typing import Any

import click
import psycopg2

from app.cli.book import parse_instant
from app.cli.errors import EXIT_USAGE, UserFacingError
from app.cli.group import CliContext, cli, pass_cli_context
from app.coverage import STATUSES, MarketHour, UnknownMarket, capture_start, compute_coverage
from app.db.engine import DatabaseUnavailable, connect, first_line

DEFAULT_SPAN = timedelta(hours=24)
_WIDTH_SAMPLE = 500  # rows read ahead to size the market column
_DB_HINT = "check --database-url (or KD_DATABASE_URL / database_url) and that PostgreSQL is running"
_TIME_HINT = (
    "give an ISO 8601 time (UTC unless an offset is given, e.g. 2026-02-02T02:00Z), "
    "'now', or a time ago such as 90m, 6h, 2d (also -6h, now-6h)"
)
_RELATIVE = re.compile(r"^(?:now\s*)?-?\s*(\d+)\s*([smhdw])$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str, option: str, now: datetime) -> datetime:
    """`now`, a time ago (`6h`, `-6h`, `now-6h`; s/m/h/d/w) or ISO 8601 via `book`'s parser."""
    value = text.strip()
    if value.lower() == "now":
        return now
    relative = _RELATIVE.match(value)
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2).lower()
        return now - timedelta(**{_UNITS[unit]: amount})
    try:
        return parse_instant(value).astimezone(UTC)
    except UserFacingError:
        raise UserFacingError(
            f"{option} {text!r} is not a time", _TIME_HINT, exit_code=EXIT_USAGE
        ) from None


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _hour(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def row_document(row: MarketHour) -> dict[str, Any]:
    """One market-hour in `--json`."""
    a = row.assessment
    return {
        "market": row.market_ticker,
        "hour": _stamp(row.hour),
        "window": [_stamp(row.window[0]), _stamp(row.window[1])],
        "status": a.status,
        "holes": a.holes,
        "trade_holes": a.trade_holes,
        "trade_holes_backfilled": a.trade_holes_backfilled,
        "causes": list(a.causes),
        "hole_seconds": dict(a.hole_seconds),
        "missing_channels": list(a.missing_channels),
        "hole_ids": list(a.hole_ids),
    }


def _backfilled(row: MarketHour) -> str:
    a = row.assessment
    return f"{a.trade_holes_backfilled}/{a.trade_holes}" if a.trade_holes else "-"


def row_text(row: MarketHour, width: int) -> str:
    a = row.assessment
    causes = ",".join(a.causes) or "-"
    return (
        f"{row.market_ticker:<{width}}  {_hour(row.hour):<17}  {a.status:<8}  "
        f"{a.holes:>5}  {_backfilled(row):>10}  {causes}"
    )


def summary_line(counts: Counter[str], shown: str | None) -> str:
    parts = ", ".join(f"{counts[status]} {status}" for status in STATUSES)
    return f"market-hours: {parts}" + (f" (showing {shown} only)" if shown else "")


def _echo_text(rows: Iterator[MarketHour]) -> None:
    ahead = list(islice(rows, _WIDTH_SAMPLE))
    if not ahead:
        return
    width = max(len("market"), *(len(row.market_ticker) for row in ahead))
    click.echo(
        f"{'market':<{width}}  {'hour (UTC)':<17}  {'status':<8}  {'holes':>5}  "
        f"{'backfilled':>10}  causes"
    )
    for row in chain(ahead, rows):
        click.echo(row_text(row, width))


def _echo_json(head: dict[str, Any], rows: Iterable[MarketHour], counts: Counter[str]) -> None:
    """One JSON document, written row by row so its size is not bounded by memory."""
    opening = json.dumps(head, indent=2)[:-2]  # drop the closing "\n}"
    click.echo(opening + ',\n  "rows": [', nl=False)
    shown = 0
    for row in rows:
        click.echo(("," if shown else "") + "\n    " + json.dumps(row_document(row)), nl=False)
        shown += 1
    summary = {status: counts[status] for status in STATUSES} | {"shown": shown}
    click.echo(("\n  " if shown else "") + '],\n  "summary": ' + json.dumps(summary) + "\n}")


@cli.command("coverage")
@click.option("--market", metavar="TICKER", help="Only this market (default: every open market).")
@click.option("--since", "since_text", metavar="TIME", help="Start (default: 24 h before --until).")
@click.option("--until", "until_text", metavar="TIME", help="End, exclusive (default: now).")
@click.option("--gatherer", metavar="G", help="Gatherer whose holes count (default: settings).")
@click.option("--database-url", metavar="URL", help="Database to read (default: settings).")
@click.option(
    "--status",
    "status_filter",
    type=click.Choice(STATUSES),
    help="Show only market-hours with this status (the summary still counts all).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@pass_cli_context
def coverage(
    ctx: CliContext,
    market: str | None,
    since_text: str | None,
    until_text: str | None,
    gatherer: str | None,
    database_url: str | None,
    status_filter: str | None,
    as_json: bool,
) -> None:
    """Per market and UTC hour: complete, degraded or missing, from the gatherer's holes.

    Times: ISO 8601 (UTC unless an offset is given), 'now', or a time ago (90m, 6h, 2d).
    Whole hours overlapping [--since, --until) are shown, oldest first; 'backfilled' is
    trade holes backfilled / trade holes.
    """
    now = datetime.now(UTC)
    until = parse_time(until_text, "--until", now) if until_text else now
    since = parse_time(since_text, "--since", now) if since_text else until - DEFAULT_SPAN
    if since >= until:
        raise UserFacingError(
            f"--since {_stamp(since)} is not before --until {_stamp(until)}",
            "give a --since earlier than --until (default --until: now)",
            exit_code=EXIT_USAGE,
        )
    name = gatherer or ctx.settings.gatherer
    url = database_url or ctx.settings.database_url
    try:
        conn = connect(url)
    except DatabaseUnavailable as exc:
        raise UserFacingError(str(exc), _DB_HINT, exit_code=EXIT_USAGE) from exc
    try:
        conn.set_session(readonly=True)
        _report(conn, name, since, until, now, market, status_filter, as_json)
    except UnknownMarket as exc:
        raise UserFacingError(
            str(exc),
            "check the ticker (kalshi-data registry show TICKER) or sync the registry",
            exit_code=EXIT_USAGE,
        ) from exc
    except psycopg2.errors.UndefinedTable as exc:
        raise UserFacingError(
            f"the database lacks the coverage inputs ({first_line(exc)})",
            "run 'kalshi-data migrate' on that database",
            exit_code=EXIT_USAGE,
        ) from exc
    except psycopg2.Error as exc:
        raise UserFacingError(
            f"database error: {first_line(exc)}", _DB_HINT, exit_code=EXIT_USAGE
        ) from exc
    finally:
        conn.close()


def _report(
    conn: Any,
    gatherer: str,
    since: datetime,
    until: datetime,
    now: datetime,
    market: str | None,
    status_filter: str | None,
    as_json: bool,
) -> None:
    start = capture_start(conn, gatherer)
    counts: Counter[str] = Counter()

    def shown(rows: Iterable[MarketHour]) -> Iterator[MarketHour]:
        for row in rows:
            counts[row.status] += 1
            if status_filter is None or row.status == status_filter:
                yield row

    # Started before printing anything, so an unknown market or table fails with no output.
    computed = compute_coverage(conn, gatherer, since, until, market=market, now=now)
    first = next(computed, None)
    rows = shown(chain([first], computed) if first is not None else [])
    if as_json:
        head = {
            "gatherer": gatherer,
            "market": market,
            "since": _stamp(since),
            "until": _stamp(until),
            "generated_at": _stamp(now),
            "capture_start": None if start is None else _stamp(start),
            "status_filter": status_filter,
        }
        _echo_json(head, rows, counts)
        return
    _echo_text(rows)
    if start is None:
        click.echo(f"no capture recorded for gatherer {gatherer}: no connection session or hole")
    elif first is None:
        click.echo(
            f"no market open while gatherer {gatherer} captured in this range "
            f"(capture since {_stamp(start)})"
        )
    click.echo(summary_line(counts, status_filter))
