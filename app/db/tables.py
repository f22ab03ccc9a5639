"""The table catalogue: names, partition columns, idempotency keys and retention defaults.

The DDL itself lives in the alembic revisions (raw SQL, frozen once released); this module is
the code-side description that partition maintenance, the TimescaleDB branch and the COPY
writer work from. `tests/db/test_schema.py` checks that both agree with the migrated database.
docs/schema.md gives the reasoning behind every key and partition column.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from app.db.rows import (
    DeadLetterRow,
    LifecycleEventRow,
    MarketStatusRow,
    OrderbookDeltaRow,
    OrderbookSnapshotRow,
    RawBatchRow,
    RawFrameRow,
    SequenceGapRow,
    TickerRow,
    TradeRow,
)


@dataclass(frozen=True)
class TableSpec:
    """What code needs to know about one table.

    `time_column` is the range-partition (or hypertable) column; None means a plain relational
    table. `key` is the idempotency key: the unique constraint `ON CONFLICT DO NOTHING` relies
    on (for partitioned tables it always contains `time_column`). `row_type` is the NamedTuple
    the COPY writer accepts, when the table is written append-only.
    """

    name: str
    key: tuple[str, ...]
    time_column: str | None = None
    row_type: type[tuple[object, ...]] | None = None
    segment_by: str | None = None
    compress: bool = False

    @property
    def partitioned(self) -> bool:
        return self.time_column is not None

    @property
    def columns(self) -> tuple[str, ...]:
        if self.row_type is None:
            raise TypeError(f"table {self.name} has no row type for bulk writes")
        return tuple(self.row_type._fields)  # type: ignore[attr-defined]


_FRAME_KEY = ("gatherer", "connection_id", "received_ns", "batch_pos")

# The per-frame raw table of revision 0001 (a view over RAW_BATCHES since 0003); the spec stays
# for that frozen revision only.
RAW_FRAMES_0001 = TableSpec(
    "raw_frames",
    key=(*_FRAME_KEY, "received_at"),
    time_column="received_at",
    row_type=RawFrameRow,
    segment_by="connection_id",
    compress=True,
)
RAW_BATCHES = TableSpec(
    "raw_batches",
    key=("gatherer", "publisher", "batch_seq", "received_at"),
    time_column="received_at",
    row_type=RawBatchRow,
    segment_by="gatherer",
    compress=True,
)
DEAD_LETTERS = TableSpec(
    "dead_letters",
    key=(*_FRAME_KEY, "received_at"),
    time_column="received_at",
    row_type=DeadLetterRow,
)
ORDERBOOK_SNAPSHOTS = TableSpec(
    "orderbook_snapshots",
    key=("gatherer", "connection_id", "sid", "seq", "market_ticker", "received_at"),
    time_column="received_at",
    row_type=OrderbookSnapshotRow,
    segment_by="market_ticker",
    compress=True,
)
ORDERBOOK_DELTAS = TableSpec(
    "orderbook_deltas",
    key=("gatherer", "connection_id", "sid", "seq", "received_at"),
    time_column="received_at",
    row_type=OrderbookDeltaRow,
    segment_by="market_ticker",
    compress=True,
)
TRADES = TableSpec(
    "trades",
    key=("trade_id", "exchange_ts"),
    time_column="exchange_ts",
    row_type=TradeRow,
    segment_by="market_ticker",
    compress=True,
)
TICKERS = TableSpec(
    "tickers",
    key=(*_FRAME_KEY, "exchange_ts"),
    time_column="exchange_ts",
    row_type=TickerRow,
    segment_by="market_ticker",
    compress=True,
)
LIFECYCLE_EVENTS = TableSpec(
    "lifecycle_events",
    key=(*_FRAME_KEY, "received_at"),
    time_column="received_at",
    row_type=LifecycleEventRow,
    segment_by="market_ticker",
    compress=True,
)
COVERAGE = TableSpec("coverage", key=("market_ticker", "hour"), time_column="hour")

SERIES = TableSpec("series", key=("ticker",))
EVENTS = TableSpec("events", key=("event_ticker",))
MARKETS = TableSpec("markets", key=("ticker",))
MARKET_STATUS_HISTORY = TableSpec(
    "market_status_history",
    key=("market_ticker", "observed_at", "status"),
    row_type=MarketStatusRow,
)
SEQUENCE_GAPS = TableSpec(
    "sequence_gaps",
    key=("gatherer", "connection_id", "sid", "expected_seq"),
    row_type=SequenceGapRow,
)
CONNECTION_SESSIONS = TableSpec("connection_sessions", key=("gatherer", "connection_id"))
DEDUP_CURSORS = TableSpec("dedup_cursors", key=("gatherer", "table_name"))
CAPTURE_HOLES = TableSpec("capture_holes", key=("gatherer", "hole_id"))

TIME_SERIES_TABLES: tuple[TableSpec, ...] = (
    RAW_BATCHES,
    DEAD_LETTERS,
    ORDERBOOK_SNAPSHOTS,
    ORDERBOOK_DELTAS,
    TRADES,
    TICKERS,
    LIFECYCLE_EVENTS,
    COVERAGE,
)
RELATIONAL_TABLES: tuple[TableSpec, ...] = (
    SERIES,
    EVENTS,
    MARKETS,
    MARKET_STATUS_HISTORY,
    SEQUENCE_GAPS,
    CONNECTION_SESSIONS,
    DEDUP_CURSORS,
    CAPTURE_HOLES,
)
ALL_TABLES: tuple[TableSpec, ...] = TIME_SERIES_TABLES + RELATIONAL_TABLES

TABLES: Mapping[str, TableSpec] = MappingProxyType({t.name: t for t in ALL_TABLES})
TABLE_FOR_ROW: Mapping[type, TableSpec] = MappingProxyType(
    {t.row_type: t for t in ALL_TABLES if t.row_type is not None}
)

VIEWS = (
    "trades_dollars",
    "orderbook_deltas_dollars",
    "orderbook_snapshots_dollars",
    "orderbook_snapshot_levels",
    "tickers_dollars",
)

# Retention defaults in days (None = keep forever); the maintenance task passes its configured
# values to `app.db.partitions.drop_expired_partitions`. The gatherer is a buffer the
# deduplicator drains (STO-2..STO-5, values settled in docs/schema.md); production keeps trades,
# snapshots and lifecycle forever and exports everything to S3 first (STO-14, S3-9).
GATHERER_RETENTION_DAYS: Mapping[str, int | None] = MappingProxyType(
    {
        "raw_batches": 7,
        "dead_letters": 30,
        "orderbook_deltas": 7,
        "orderbook_snapshots": 30,
        "tickers": 7,
        "trades": 30,
        "lifecycle_events": 30,
        "coverage": None,
    }
)
PRODUCTION_RETENTION_DAYS: Mapping[str, int | None] = MappingProxyType(
    {
        "raw_batches": 30,
        "dead_letters": 90,
        "orderbook_deltas": 90,
        "orderbook_snapshots": None,
        "tickers": 30,
        "trades": None,
        "lifecycle_events": None,
        "coverage": None,
    }
)


def table_spec(table: str | TableSpec) -> TableSpec:
    """Look a table up by name (or pass a spec through)."""
    if isinstance(table, TableSpec):
        return table
    try:
        return TABLES[table]
    except KeyError:
        raise KeyError(f"unknown table {table!r}; known: {', '.join(sorted(TABLES))}") from None
