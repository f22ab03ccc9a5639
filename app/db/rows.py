"""Typed rows for the append-only tables: what the normalizers produce and storage writes.

One `NamedTuple` per table; the field order is the table's COPY column order, so a row *is*
the tuple `app.db.copy` writes (no conversion step). Units are DESIGN §4's: prices are integer
micro-dollars, quantities integer hundredths of a contract, times tz-aware UTC `datetime`s plus
the exact receive time in nanoseconds. docs/schema.md explains every column and key.

Nothing here talks to a database; `tests/db` checks these fields against the migrated tables.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple


class RawBatchRow(NamedTuple):
    """One stream entry's frames, byte for byte: the source of truth (STYLE §2, docs/schema.md).

    `data` is the entry's `d` field exactly as the listener sealed it (checksum, connection ids,
    per frame receive ns, sid, seq, gap flag and the raw bytes; `app.streams.envelope`).
    (`publisher`, `batch_seq`) is the batch's identity from the listener, stable across
    redeliveries and journal replays. `positions` is None for a batch stored as received
    (frame i has batch position i); batches repacked from the old per-frame table carry each
    frame's original position.
    """

    gatherer: str
    publisher: str
    batch_seq: int
    received_at: datetime
    first_received_ns: int
    last_received_ns: int
    frame_count: int
    stream: str | None
    entry_id: str | None
    positions: tuple[int, ...] | None
    data: bytes


class RawFrameRow(NamedTuple):
    """What we know of one received frame: its identity, sequence facts and exact bytes.

    Stored inside `raw_batches` (the `raw_frames` view unpacks it); normalizers and `verify`
    use this per-frame form.
    """

    gatherer: str
    connection_id: str
    received_ns: int
    received_at: datetime
    batch_pos: int
    sid: int | None
    seq: int | None
    gap: bool
    msg_type: str | None
    market_ticker: str | None
    raw: bytes


class DeadLetterRow(NamedTuple):
    """A frame that could not be normalized, with why and where it came from."""

    gatherer: str
    connection_id: str
    received_ns: int
    received_at: datetime
    batch_pos: int
    sid: int | None
    seq: int | None
    msg_type: str | None
    stage: str
    reason: str
    stream: str | None
    entry_id: str | None
    raw: bytes


class OrderbookSnapshotRow(NamedTuple):
    """A full book: every level of both sides (bids only, as Kalshi sends them).

    Levels are parallel arrays sorted by ascending price. `source` is `ws` (subscribe
    snapshot), `resync` (a snapshot the listener requested after a gap) or `rest` (poller);
    REST rows use `connection_id` of the poller, `sid` 0 and `seq` 0.
    """

    gatherer: str
    source: str
    market_ticker: str
    market_id: str | None
    connection_id: str
    sid: int
    seq: int
    received_ns: int
    received_at: datetime
    batch_pos: int
    exchange_ts: datetime | None
    yes_prices: tuple[int, ...]
    yes_sizes: tuple[int, ...]
    no_prices: tuple[int, ...]
    no_sizes: tuple[int, ...]
    best_yes_bid: int | None
    best_no_bid: int | None


class OrderbookDeltaRow(NamedTuple):
    """A signed size change at one price level of one side."""

    gatherer: str
    market_ticker: str
    market_id: str | None
    connection_id: str
    sid: int
    seq: int
    received_ns: int
    received_at: datetime
    batch_pos: int
    exchange_ts: datetime | None
    side: str
    price: int
    delta: int


class TradeRow(NamedTuple):
    """One public trade. `exchange_ts` is whole seconds (the dedup key, see docs/schema.md);
    `exchange_ms` is the exact Unix millisecond when the source carries it."""

    trade_id: str
    exchange_ts: datetime
    exchange_ms: int | None
    market_ticker: str
    yes_price: int
    no_price: int
    size: int
    taker_side: str | None
    taker_book_side: str | None
    is_block_trade: bool | None
    source: str
    gatherer: str
    connection_id: str
    sid: int | None
    seq: int | None
    received_ns: int
    received_at: datetime
    batch_pos: int


class TickerRow(NamedTuple):
    """A ticker update: top of book, last trade, volume and open interest of one market."""

    gatherer: str
    connection_id: str
    sid: int | None
    received_ns: int
    received_at: datetime
    batch_pos: int
    market_ticker: str
    market_id: str | None
    exchange_ts: datetime
    price: int | None
    yes_bid: int | None
    yes_ask: int | None
    yes_bid_size: int | None
    yes_ask_size: int | None
    last_trade_size: int | None
    volume: int | None
    open_interest: int | None
    dollar_volume: int | None
    dollar_open_interest: int | None
    clock: int | None


class LifecycleEventRow(NamedTuple):
    """A market or event lifecycle message; the whole `msg` is kept in `payload`."""

    gatherer: str
    connection_id: str
    sid: int | None
    received_ns: int
    received_at: datetime
    batch_pos: int
    msg_type: str
    event_type: str
    market_ticker: str | None
    event_ticker: str | None
    exchange_ts: datetime | None
    result: str | None
    settlement_value: int | None
    is_deactivated: bool | None
    open_ts: datetime | None
    close_ts: datetime | None
    determination_ts: datetime | None
    settled_ts: datetime | None
    payload: dict[str, Any]
    payload_hash: bytes


class MarketStatusRow(NamedTuple):
    """One observed market status change (registry reconcile or lifecycle channel)."""

    market_ticker: str
    status: str
    previous_status: str | None
    observed_at: datetime
    source: str
    event_type: str | None


class SequenceGapRow(NamedTuple):
    """A per-sid sequence gap the listener detected (recovered_at is set when repaired)."""

    gatherer: str
    connection_id: str
    sid: int
    market_tickers: tuple[str, ...]
    expected_seq: int
    got_seq: int
    detected_at: datetime
    recovered_at: datetime | None
    recovery: str | None


Row = (
    RawBatchRow
    | RawFrameRow
    | DeadLetterRow
    | OrderbookSnapshotRow
    | OrderbookDeltaRow
    | TradeRow
    | TickerRow
    | LifecycleEventRow
    | MarketStatusRow
    | SequenceGapRow
)
