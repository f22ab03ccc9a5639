"""Content identities of stored rows: what makes two rows "the same" whatever captured them.

The simulator's truth names frames by its own connection ids; a gatherer database names them by
the listener's connection id and receive time. Neither side's ids mean anything to the other,
so every row is reduced to a `Record` = (identity, values) built only from what the exchange
sent (docs/verify.md, "Identities"). Rows from the truth (normalized here) and rows read back
from the database go through the same functions, so a difference is a capture difference,
never a formatting one.

Pure: no I/O. Never include provenance columns (gatherer, connection_id, received_ns,
received_at, batch_pos, snapshot `source`) in a record: the truth cannot know them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from app.db.rows import (
    DeadLetterRow,
    LifecycleEventRow,
    OrderbookDeltaRow,
    OrderbookSnapshotRow,
    RawFrameRow,
    TickerRow,
    TradeRow,
)

# (identity, values): rows with equal identities are "the same message"; equal values too means
# the stored copy is exact. Both are canonical JSON strings (hashable, printable, sortable).
Record = tuple[str, str]


def canonical(value: Any) -> Any:
    """A JSON-able form equal for the Python row and the same row read back from PostgreSQL."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items()}
    return value


def dump_values(values: tuple[Any, ...]) -> str:
    return orjson.dumps([canonical(v) for v in values], option=orjson.OPT_SORT_KEYS).decode()


PREVIEW_BYTES = 80


def frame_identity_of(md5_hex: str, preview: bytes) -> str:
    """The identity of a frame from its MD5 and its first `PREVIEW_BYTES` bytes."""
    return f"{md5_hex} {bytes(preview).decode('utf-8', 'replace')}"


def frame_identity(raw: bytes) -> str:
    """A frame's exact bytes as an identity: MD5 (PostgreSQL computes the same with `md5()`,
    so stored frames are never shipped whole) plus a readable preview."""
    digest = hashlib.md5(raw).hexdigest()
    return frame_identity_of(digest, raw[:PREVIEW_BYTES])


@dataclass(frozen=True)
class TableRule:
    """How one table's rows are identified and compared.

    `collapse_expected`: the table's key merges copies of one exchange message received on
    several connections (trades by `trade_id`), so each distinct expected record counts once.
    `per_subscription`: sequenced rows; a (connection, sid, seq) repeated on one connection is
    one exchange message (a repeat-seq fault, a redelivered batch) and counts once per side.
    """

    table: str
    record: Callable[[Any], Record]
    collapse_expected: bool = False
    per_subscription: bool = False


def raw_frame_record(row: RawFrameRow) -> Record:
    return frame_identity(bytes(row.raw)), dump_values(
        (row.sid, row.seq, row.msg_type, row.market_ticker)
    )


def dead_letter_record(row: DeadLetterRow) -> Record:
    return frame_identity(bytes(row.raw)), dump_values((row.msg_type, row.stage, row.reason))


def snapshot_record(row: OrderbookSnapshotRow) -> Record:
    identity = dump_values((row.market_ticker, row.sid, row.seq))
    values = (
        row.market_id,
        row.exchange_ts,
        row.yes_prices,
        row.yes_sizes,
        row.no_prices,
        row.no_sizes,
        row.best_yes_bid,
        row.best_no_bid,
    )
    return identity, dump_values(values)


def delta_record(row: OrderbookDeltaRow) -> Record:
    identity = dump_values((row.market_ticker, row.sid, row.seq))
    return identity, dump_values((row.market_id, row.exchange_ts, row.side, row.price, row.delta))


def trade_record(row: TradeRow) -> Record:
    # sid/seq are per connection; the trades key keeps one copy whichever connection it came on.
    values = (
        row.exchange_ts,
        row.exchange_ms,
        row.market_ticker,
        row.yes_price,
        row.no_price,
        row.size,
        row.taker_side,
        row.taker_book_side,
        row.is_block_trade,
    )
    # No `source`: a trade sent on a socket may have been stored first by the REST backfill.
    return dump_values((row.trade_id,)), dump_values(values)


def ticker_record(row: TickerRow) -> Record:
    identity = dump_values((row.market_ticker, row.exchange_ts))
    values = (
        row.sid,
        row.market_id,
        row.price,
        row.yes_bid,
        row.yes_ask,
        row.yes_bid_size,
        row.yes_ask_size,
        row.last_trade_size,
        row.volume,
        row.open_interest,
        row.dollar_volume,
        row.dollar_open_interest,
        row.clock,
    )
    return identity, dump_values(values)


def lifecycle_record(row: LifecycleEventRow) -> Record:
    identity = dump_values((row.msg_type, row.event_type, row.market_ticker, row.event_ticker))
    values = (
        row.sid,
        row.exchange_ts,
        row.result,
        row.settlement_value,
        row.is_deactivated,
        row.open_ts,
        row.close_ts,
        row.determination_ts,
        row.settled_ts,
        row.payload_hash,
    )
    return identity, dump_values(values)


def gap_record(sid: int, expected_seq: int, got_seq: int) -> Record:
    return dump_values((sid, expected_seq, got_seq)), "[]"


def session_record() -> Record:
    # Connection ids differ between the simulator and the listener: only the count can match.
    return "connection", "[]"


RULES: tuple[TableRule, ...] = (
    TableRule("raw_frames", raw_frame_record),
    TableRule("dead_letters", dead_letter_record),
    TableRule("orderbook_snapshots", snapshot_record, per_subscription=True),
    TableRule("orderbook_deltas", delta_record, per_subscription=True),
    TableRule("trades", trade_record, collapse_expected=True),
    TableRule("tickers", ticker_record),
    TableRule("lifecycle_events", lifecycle_record),
    TableRule("sequence_gaps", lambda row: gap_record(row.sid, row.expected_seq, row.got_seq)),
    TableRule("connection_sessions", lambda row: session_record()),
)
RULE_BY_TABLE: Mapping[str, TableRule] = {rule.table: rule for rule in RULES}
TABLES: tuple[str, ...] = tuple(rule.table for rule in RULES)

ROW_TABLES: Mapping[type, str] = {
    RawFrameRow: "raw_frames",
    DeadLetterRow: "dead_letters",
    OrderbookSnapshotRow: "orderbook_snapshots",
    OrderbookDeltaRow: "orderbook_deltas",
    TradeRow: "trades",
    TickerRow: "tickers",
    LifecycleEventRow: "lifecycle_events",
}


def record_for(row: Any) -> tuple[str, Record] | None:
    """(table, record) of a normalized row, or None for rows verify does not compare."""
    table = ROW_TABLES.get(type(row))
    if table is None:
        return None
    return table, RULE_BY_TABLE[table].record(row)
