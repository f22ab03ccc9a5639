"""Rows for every table, built the way production builds them (through the normalizers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from app.db.rows import (
    MarketStatusRow,
    RawBatchRow,
    Row,
    SequenceGapRow,
    TickerRow,
    TradeRow,
)
from app.db.tables import ALL_TABLES
from app.normalize import FrameEnvelope, batch_rows, normalize_frame
from app.normalize.envelope import EPOCH
from app.streams.envelope import Frame, encode_frames
from tests.normalize import examples

# One connection and sid carry each seq once: the empty-book snapshot gets its own seq.
FRAMES = tuple(
    raw.replace('"seq": 2,', '"seq": 1,') if raw == examples.EMPTY_SNAPSHOT else raw
    for raw in (*examples.NEWEST_DATA_FRAMES, *examples.CONTROL, "not json at all")
)


def to_ns(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1) * 1000


def frame_rows(
    moment: datetime, *, connection_id: str = "conn-1", gatherer: str = "g1", first_pos: int = 0
) -> list[Row]:
    """Every newest example frame (plus control and garbage) received at `moment`, and the
    raw batch holding them all (positions from 0, so `first_pos` must be 0 for their view).

    Trades and tickers are partitioned by exchange time, which in the examples is 2022; their
    exchange time is moved to `moment` so all rows land in `moment`'s partitions.
    """
    ns = to_ns(moment)
    count, data = encode_frames(
        Frame(raw.encode(), ns + pos, connection_id) for pos, raw in enumerate(FRAMES)
    )
    batch = RawBatchRow(
        gatherer, "samples", first_pos, moment, ns, ns + count - 1, count, "s", None, None, data
    )
    results = [
        normalize_frame(raw, FrameEnvelope(ns + pos, connection_id, first_pos + pos, gatherer))
        for pos, raw in enumerate(FRAMES)
    ]
    rows: list[Row] = [batch]
    for row in batch_rows(results):
        if isinstance(row, TradeRow):
            row = row._replace(exchange_ts=moment.replace(microsecond=0), exchange_ms=None)
        elif isinstance(row, TickerRow):
            row = row._replace(exchange_ts=moment)
        rows.append(row)
    rows.append(
        MarketStatusRow("FED-23DEC-T3.00", "active", "initialized", moment, "ws", "created")
    )
    rows.append(
        SequenceGapRow(gatherer, connection_id, 2, ("FED-23DEC-T3.00",), 4, 7, moment, None, None)
    )
    return rows


def insert_relational(cur: Any, moment: datetime) -> None:
    """One row in each table the bulk writer does not fill."""
    meta = orjson.dumps({"ticker": "FED-23DEC-T3.00", "floor_strike": 67749.99}).decode()
    cur.execute(
        "INSERT INTO series (ticker, title, category, tags, metadata) "
        "VALUES ('FED', 'Fed rate', 'Economics', '{rates}', '{}')"
    )
    cur.execute(
        "INSERT INTO events (event_ticker, series_ticker, title, metadata) "
        "VALUES ('FED-23DEC', 'FED', 'Fed in Dec', '{}')"
    )
    cur.execute(
        "INSERT INTO markets (ticker, event_ticker, series_ticker, status, settlement_value, "
        "floor_strike, metadata, close_time) "
        "VALUES ('FED-23DEC-T3.00', 'FED-23DEC', 'FED', 'active', NULL, 67749.99, %s, %s)",
        (meta, moment),
    )
    cur.execute(
        "INSERT INTO connection_sessions (gatherer, connection_id, role, opened_at) "
        "VALUES ('g1', 'conn-1', 'book', %s)",
        (moment,),
    )
    cur.execute(
        "INSERT INTO coverage (market_ticker, hour, status, gatherers, gap_count) "
        "VALUES ('FED-23DEC-T3.00', date_trunc('hour', %s::timestamptz, 'UTC'), 'complete', "
        "'{g1,g2}', 0)",
        (moment,),
    )
    cur.execute(
        "INSERT INTO dedup_cursors (gatherer, table_name, watermark) VALUES ('g1', 'trades', %s)",
        (moment,),
    )
    cur.execute(
        "INSERT INTO capture_holes (gatherer, hole_id, channel, cause, from_at, to_at, "
        "backfill_status) VALUES ('g1', 'h1', 'trade', 'disconnect', %s, %s, 'pending')",
        (moment, moment),
    )


def table_counts(cur: Any) -> dict[str, int]:
    counts = {}
    for table in ALL_TABLES:
        cur.execute(f"SELECT count(*) FROM {table.name}")
        counts[table.name] = cur.fetchone()[0]
    return counts


def now_utc() -> datetime:
    return datetime.now(UTC)
