"""Trade mappers: WebSocket `trade` frames and REST `GET /markets/trades` objects.

A REST trade carries no capture-time version to select a mapper by (a backfill fetches old
trades now), so `rest_trade_row` reads either format from the object itself: the newest
fixed-point strings when present, else the legacy integer cents and contracts (§1.8).

The trade key is (`trade_id`, `exchange_ts`) with `exchange_ts` the exchange time *floored to
the whole second*: every source of the same trade agrees on that second (newest WS `ts_ms`,
legacy WS `ts` in seconds, REST `created_time` in microseconds), so a trade seen by several
gatherers, connections or a REST backfill is stored once. The exact millisecond, when the
source has it, goes to `exchange_ms`. docs/schema.md has the full argument.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from app.db.rows import TradeRow
from app.kalshi.trade import trade_values
from app.normalize import fields
from app.normalize.envelope import EPOCH, ParsedFrame, datetime_from_ns
from app.normalize.fields import FrameError
from app.normalize.versions import FormatVersion
from app.units import MICROS_PER_DOLLAR

_OUTCOME_TO_BOOK = {"yes": "bid", "no": "ask"}


def _trade_time(msg: Mapping[str, Any]) -> tuple[datetime, int | None]:
    """(exchange second, exact Unix ms or None) from `ts_ms`, else the deprecated `ts`."""
    ms = msg.get("ts_ms")
    if ms is not None:
        exact = fields.exchange_ms(ms, "'ts_ms'")
        return exact.replace(microsecond=0), int(ms)
    seconds = msg.get("ts")
    if seconds is not None:
        return fields.exchange_s(seconds, "'ts'"), None
    raise FrameError("missing 'ts_ms' (or deprecated 'ts')")


def _sides(msg: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """Taker outcome side (canonical `taker_outcome_side`, else deprecated `taker_side`) and
    book side (`taker_book_side`, else derived: yes = bid, no = ask)."""
    outcome = fields.side(msg, "taker_outcome_side", required=False)
    if outcome is None:
        outcome = fields.side(msg, "taker_side", required=False)
    book = fields.book_side(msg, "taker_book_side")
    if book is None and outcome is not None:
        book = _OUTCOME_TO_BOOK[outcome]
    return outcome, book


def _row(
    msg: Mapping[str, Any],
    *,
    yes_price: int,
    no_price: int | None,
    size: int,
    exchange_ts: datetime,
    exchange_ms: int | None,
    source: str,
    gatherer: str,
    connection_id: str,
    sid: int | None,
    seq: int | None,
    received_ns: int,
    batch_pos: int,
) -> TradeRow:
    if not 0 <= yes_price <= MICROS_PER_DOLLAR:
        raise FrameError(f"yes price {yes_price} micro-dollars outside 0..1 dollar")
    if size < 0:
        raise FrameError(f"negative trade size {size}")
    outcome, book = _sides(msg)
    return TradeRow(
        trade_id=fields.required_text(msg, "trade_id"),
        exchange_ts=exchange_ts,
        exchange_ms=exchange_ms,
        market_ticker=fields.required_text(msg, "market_ticker")
        if "market_ticker" in msg
        else fields.required_text(msg, "ticker"),
        yes_price=yes_price,
        no_price=MICROS_PER_DOLLAR - yes_price if no_price is None else no_price,
        size=size,
        taker_side=outcome,
        taker_book_side=book,
        is_block_trade=fields.boolean(msg, "is_block_trade"),
        source=source,
        gatherer=gatherer,
        connection_id=connection_id,
        sid=sid,
        seq=seq,
        received_ns=received_ns,
        received_at=datetime_from_ns(received_ns),
        batch_pos=batch_pos,
    )


def _ws_row(frame: ParsedFrame, yes_price: int, no_price: int | None, size: int) -> TradeRow:
    env = frame.envelope
    exchange_ts, exchange_ms = _trade_time(frame.msg)
    return _row(
        frame.msg,
        yes_price=yes_price,
        no_price=no_price,
        size=size,
        exchange_ts=exchange_ts,
        exchange_ms=exchange_ms,
        source="ws",
        gatherer=env.gatherer,
        connection_id=env.connection_id,
        sid=frame.sid,
        seq=frame.seq,
        received_ns=env.received_ns,
        batch_pos=env.batch_pos,
    )


def trade_fixed_point(frame: ParsedFrame) -> TradeRow:
    """Newest: `yes_price_dollars`, `count_fp`, `ts_ms`; `taker_side` and `ts` deprecated."""
    msg = frame.msg
    fields.refuse_legacy_fields(msg, {"yes_price": "yes_price_dollars", "count": "count_fp"})
    yes_price = fields.dollars(msg, "yes_price_dollars", required=True)
    count = fields.count(msg, "count_fp", required=True)
    assert yes_price is not None and count is not None
    return _ws_row(frame, yes_price, fields.dollars(msg, "no_price_dollars"), count)


def _either_format(msg: Mapping[str, Any]) -> tuple[int, int | None, int]:
    """(yes price, no price or None, count) of a trade in either format, read by the client's
    `trade_values` (one reader for REST and WebSocket trades)."""
    values = trade_values(msg)
    if values.yes_price is None:
        raise FrameError("missing 'yes_price_dollars' (or legacy 'yes_price')")
    if values.size is None:
        raise FrameError("missing 'count_fp' (or legacy 'count')")
    return values.yes_price, values.no_price, values.size


def trade_legacy(frame: ParsedFrame) -> TradeRow:
    """Legacy: dollar strings when present, else integer cents; `count_fp` else `count`."""
    yes_price, no_price, count = _either_format(frame.msg)
    return _ws_row(frame, yes_price, no_price, count)


TRADE = {FormatVersion.LEGACY: trade_legacy, FormatVersion.FIXED_POINT: trade_fixed_point}


def rest_trade_row(
    trade: Mapping[str, Any],
    *,
    gatherer: str,
    received_ns: int,
    batch_pos: int,
    connection_id: str = "rest",
) -> TradeRow:
    """A REST trade object (kalshi-api.md §1.8) as a row with the same key a WS copy gets.

    Newest format: `yes_price_dollars`/`no_price_dollars` and `count_fp`; the legacy format
    (before 2026-03-12, and the simulator's `--format legacy`) has `yes_price`/`no_price` in
    integer cents and `count` in whole contracts, optionally next to the dollar strings. The
    exact strings win when present; every value goes through the integer parsers of
    `app.units`, never float. `created_time` (RFC 3339, microseconds) is floored to the second
    for `exchange_ts` and to the millisecond for `exchange_ms`. Raises `FrameError` with a
    reason for malformed input.
    """
    created = fields.exchange_rfc3339(trade.get("created_time"), "'created_time'")
    exchange_ms = (created - EPOCH) // timedelta(milliseconds=1)
    yes_price, no_price, count = _either_format(trade)
    return _row(
        trade,
        yes_price=yes_price,
        no_price=no_price,
        size=count,
        exchange_ts=created.replace(microsecond=0),
        exchange_ms=exchange_ms,
        source="rest",
        gatherer=gatherer,
        connection_id=connection_id,
        sid=None,
        seq=None,
        received_ns=received_ns,
        batch_pos=batch_pos,
    )
