"""`kalshi-data book TICKER --at TIME`: print one market's reconstructed order book (docs/book.md).

Prices are printed as exact dollar strings and sizes as exact contract counts (app/units.py);
every expected failure (bad time, unknown market, no snapshot, unreachable database) ends as one
`error:` line.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click
import psycopg2

from app.book import (
    NO,
    SIDES,
    YES,
    BookUnavailable,
    Level,
    ReconstructedBook,
    SnapshotRef,
    book_at,
)
from app.cli.errors import UserFacingError
from app.cli.group import CliContext, cli, pass_cli_context
from app.db.engine import DatabaseUnavailable, first_line
from app.units import hundredths_to_count, micros_to_dollars

_DB_HINT = "check database_url (or --database-url / KD_DATABASE_URL) and that PostgreSQL is running"


def parse_instant(text: str) -> datetime:
    """ISO 8601 time (`Z` or an offset; no offset means UTC), or `now`."""
    value = text.strip()
    if value.lower() == "now":
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UserFacingError(
            f"--at {text!r} is not an ISO 8601 time",
            "e.g. --at 2026-02-02T02:40:00Z, --at 2026-02-02T03:40:00.5+01:00 or --at now",
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _level(level: Level | None) -> dict[str, str] | None:
    if level is None:
        return None
    return {"price": micros_to_dollars(level[0]), "size": hundredths_to_count(level[1])}


def _levels(levels: list[Level], depth: int) -> list[dict[str, str]]:
    chosen = levels if depth == 0 else levels[:depth]
    return [{"price": micros_to_dollars(p), "size": hundredths_to_count(s)} for p, s in chosen]


def _ref(ref: SnapshotRef | None) -> dict[str, Any] | None:
    if ref is None:
        return None
    return {
        "source": ref.source,
        "gatherer": ref.gatherer,
        "connection_id": ref.connection_id,
        "sid": ref.sid,
        "seq": ref.seq,
        "received_at": ref.received_at.isoformat(),
        "received_ns": ref.received_ns,
        "exchange_ts": ref.exchange_ts.isoformat() if ref.exchange_ts else None,
    }


def book_document(result: ReconstructedBook, depth: int) -> dict[str, Any]:
    """The `--json` output: exact decimal strings, best first, with provenance."""
    book = result.book
    spread = book.spread(YES)
    return {
        "ticker": result.ticker,
        "at": result.at.isoformat(),
        "yes": {
            "bids": _levels(book.bids(YES), depth),
            "asks": _levels(book.asks(YES), depth),
            "best_bid": _level(book.best_bid(YES)),
            "best_ask": _level(book.best_ask(YES)),
        },
        "no": {
            "bids": _levels(book.bids(NO), depth),
            "asks": _levels(book.asks(NO), depth),
            "best_bid": _level(book.best_bid(NO)),
            "best_ask": _level(book.best_ask(NO)),
        },
        "levels": {"yes": len(book.yes), "no": len(book.no)},
        "spread": None if spread is None else micros_to_dollars(spread),
        "provenance": {
            "snapshot": _ref(result.snapshot),
            "stream": _ref(result.stream),
            "deltas_applied": result.deltas_applied,
            "last_seq": result.last_seq,
            "last_delta_at": result.last_delta_at.isoformat() if result.last_delta_at else None,
            "duplicate_deltas": result.duplicate_deltas,
            "inconsistencies": len(result.inconsistencies),
            "gaps": len(result.gaps),
            "stream_closed_at": (
                result.stream_closed_at.isoformat() if result.stream_closed_at else None
            ),
        },
        "complete": result.complete,
        "warnings": result.warnings,
        "notes": result.notes,
    }


def _cell(level: Level | None) -> str:
    if level is None:
        return f"{'':>10}  {'':>12}"
    return f"{micros_to_dollars(level[0]):>10}  {hundredths_to_count(level[1]):>12}"


def _best(level: Level | None) -> str:
    if level is None:
        return "none"
    return f"{micros_to_dollars(level[0])} x {hundredths_to_count(level[1])}"


def book_text(result: ReconstructedBook, depth: int) -> list[str]:
    book = result.book
    lines = [f"{result.ticker} order book at {result.at.isoformat()}"]
    for side in SIDES:
        bids, asks = book.bids(side), book.asks(side)
        if depth:
            bids, asks = bids[:depth], asks[:depth]
        other = NO if side == YES else YES
        lines.append("")
        lines.append(
            f"{side.upper():<4}{'bid':>8}  {'size':>12}  {'ask':>10}  {'size':>12}"
            f"   (asks = 1 - {other.upper()} bids)"
        )
        for row in range(max(len(bids), len(asks))):
            bid = bids[row] if row < len(bids) else None
            ask = asks[row] if row < len(asks) else None
            lines.append(f"{'':<2}{_cell(bid)}  {_cell(ask)}".rstrip())
        if not bids and not asks:
            lines.append("  (empty)")
    spread = book.spread(YES)
    lines.append("")
    for side in SIDES:
        lines.append(
            f"best {side:<3} bid {_best(book.best_bid(side))}, ask {_best(book.best_ask(side))}"
        )
    shown = "n/a" if spread is None else micros_to_dollars(spread)
    crossed = " (crossed)" if spread is not None and spread < 0 else ""
    lines.append(f"spread (yes ask - yes bid): {shown}{crossed}")
    lines.append(f"levels: yes {len(book.yes)}, no {len(book.no)}")
    snap = result.snapshot
    lines.append(
        f"snapshot: {snap.source} from gatherer {snap.gatherer}, connection {snap.connection_id}, "
        f"sid {snap.sid}, seq {snap.seq}, received {snap.received_at.isoformat()}"
    )
    stream = result.stream
    if stream is not None and stream is not snap and stream != snap:
        lines.append(
            f"stream: connection {stream.connection_id}, sid {stream.sid} (from seq {stream.seq})"
        )
    last = (
        f" (last seq {result.last_seq}, received {result.last_delta_at.isoformat()})"
        if result.last_delta_at is not None
        else ""
    )
    lines.append(f"deltas applied: {result.deltas_applied}{last}")
    lines.extend(f"note: {note}" for note in result.notes)
    lines.extend(f"warning: {warning}" for warning in result.warnings)
    return lines


@cli.command("book")
@click.argument("ticker")
@click.option(
    "--at",
    "at_text",
    required=True,
    metavar="ISO_TIME",
    help="Instant (UTC if no offset), or 'now'.",
)
@click.option("--gatherer", metavar="G", help="Use only this gatherer's rows.")
@click.option(
    "--depth",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Levels per side to print (0 = all).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--database-url", metavar="URL", help="Database to read (default: settings).")
@pass_cli_context
def book(
    ctx: CliContext,
    ticker: str,
    at_text: str,
    gatherer: str | None,
    depth: int,
    as_json: bool,
    database_url: str | None,
) -> None:
    """Reconstruct a market's order book at an instant from stored snapshots and deltas."""
    at = parse_instant(at_text)
    url = database_url or ctx.settings.database_url
    try:
        result = book_at(url, ticker, at, gatherer=gatherer)
    except BookUnavailable as exc:
        raise UserFacingError(
            str(exc), "check the ticker, --gatherer and --at (times are UTC unless given)"
        ) from exc
    except DatabaseUnavailable as exc:
        raise UserFacingError(str(exc), _DB_HINT) from exc
    except psycopg2.errors.UndefinedTable as exc:
        raise UserFacingError(
            f"the database has no order book tables ({first_line(exc)})",
            "run 'kalshi-data migrate' first",
        ) from exc
    except psycopg2.Error as exc:
        raise UserFacingError(f"database error: {first_line(exc)}", _DB_HINT) from exc
    if as_json:
        click.echo(json.dumps(book_document(result, depth), indent=2))
    else:
        click.echo("\n".join(book_text(result, depth)))
