"""Coverage fixtures: a migrated database of the test's own (cloned from the tests/db session
template) and helpers that insert registry markets, sessions and capture holes by SQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import psycopg2
import psycopg2.extensions
import pytest

from app.coverage import compute_coverage
from tests.db.conftest import migrated_database, migrated_template

__all__ = ["migrated_database", "migrated_template"]

GATHERER = "g1"


@pytest.fixture
def db(migrated_database: str) -> Iterator[psycopg2.extensions.connection]:
    """A connection to a database of this test's own; inserts are committed."""
    conn = psycopg2.connect(migrated_database)
    conn.autocommit = True
    try:
        yield conn
    finally:
        conn.close()


def add_market(
    conn: psycopg2.extensions.connection,
    ticker: str,
    open_time: datetime | None,
    close_time: datetime | None,
    status: str = "active",
) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO markets (ticker, event_ticker, status, open_time, close_time, metadata) "
            "VALUES (%s, 'EV-TEST', %s, %s, %s, '{}')",
            (ticker, status, open_time, close_time),
        )


def add_session(
    conn: psycopg2.extensions.connection,
    opened_at: datetime,
    *,
    connection_id: str = "c1",
    gatherer: str = GATHERER,
    role: str = "book",
) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO connection_sessions (gatherer, connection_id, role, opened_at) "
            "VALUES (%s, %s, %s, %s)",
            (gatherer, connection_id, role, opened_at),
        )


def add_hole(
    conn: psycopg2.extensions.connection,
    hole_id: str,
    channel: str,
    from_at: datetime,
    to_at: datetime | None,
    *,
    markets: list[str] | None = None,
    cause: str = "disconnect",
    backfill: str | None = None,
    gatherer: str = GATHERER,
) -> None:
    if backfill is None and channel == "trade":
        backfill = "pending"
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO capture_holes (gatherer, hole_id, connection_id, channel, market_tickers,"
            " cause, from_at, to_at, backfill_status, backfilled_at) "
            "VALUES (%s, %s, 'c1', %s, %s, %s, %s, %s, %s,"
            " CASE WHEN %s = 'done' THEN %s::timestamptz END)",
            (
                gatherer,
                hole_id,
                channel,
                markets,
                cause,
                from_at,
                to_at,
                backfill,
                backfill,
                to_at,
            ),
        )


def statuses(
    conn: psycopg2.extensions.connection,
    since: datetime,
    until: datetime,
    now: datetime,
    *,
    market: str | None = None,
    gatherer: str = GATHERER,
) -> dict[tuple[str, int], str]:
    """{(market, UTC hour of day): status} of every claimed market-hour."""
    return {
        (row.market_ticker, row.hour.hour): row.status
        for row in compute_coverage(conn, gatherer, since, until, market=market, now=now)
    }
