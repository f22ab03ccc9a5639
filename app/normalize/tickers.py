"""Ticker mappers: `ticker` frames (kalshi-api.md §3.5).

Every value field is optional (Kalshi adds and deprecates them often); a field missing from the
frame is NULL in the row. The exchange time is required because it is the table's partition
column: `ts_ms` (newest), else `time` (RFC 3339, high precision since 2026-02-11), else the
deprecated `ts` in whole seconds. `price_dollars` is the last trade price; `""` (never traded)
is stored as NULL. `dollar_volume` / `dollar_open_interest` are whole dollars as sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from app.db.rows import TickerRow
from app.normalize import fields
from app.normalize.envelope import ParsedFrame
from app.normalize.fields import FrameError
from app.normalize.versions import FormatVersion

_PRICES = (
    ("price_dollars", "price"),
    ("yes_bid_dollars", "yes_bid"),
    ("yes_ask_dollars", "yes_ask"),
)
_COUNTS = (("volume_fp", "volume"), ("open_interest_fp", "open_interest"))
_SIZES = ("yes_bid_size_fp", "yes_ask_size_fp", "last_trade_size_fp")


def _ticker_time(msg: Mapping[str, Any]) -> datetime:
    if msg.get("ts_ms") is not None:
        return fields.exchange_ms(msg["ts_ms"], "'ts_ms'")
    if msg.get("time") is not None:
        return fields.exchange_rfc3339(msg["time"], "'time'")
    if msg.get("ts") is not None:
        return fields.exchange_s(msg["ts"], "'ts'")
    raise FrameError("ticker without a time ('ts_ms', 'time' or 'ts')")


def _nonnegative(values: list[int | None], names: tuple[str, ...]) -> None:
    for value, name in zip(values, names, strict=True):
        if value is not None and value < 0:
            raise FrameError(f"{name!r} must not be negative, got {value} hundredths")


def _row(frame: ParsedFrame, prices: list[int | None], counts: list[int | None]) -> TickerRow:
    msg, env = frame.msg, frame.envelope
    sizes = [fields.count(msg, key) for key in _SIZES]
    _nonnegative(sizes, _SIZES)
    _nonnegative(counts, tuple(new for new, _ in _COUNTS))
    return TickerRow(
        gatherer=env.gatherer,
        connection_id=env.connection_id,
        sid=frame.sid,
        received_ns=env.received_ns,
        received_at=env.received_at,
        batch_pos=env.batch_pos,
        market_ticker=fields.required_text(msg, "market_ticker"),
        market_id=fields.text(msg, "market_id", required=False),
        exchange_ts=_ticker_time(msg),
        price=prices[0],
        yes_bid=prices[1],
        yes_ask=prices[2],
        yes_bid_size=sizes[0],
        yes_ask_size=sizes[1],
        last_trade_size=sizes[2],
        volume=counts[0],
        open_interest=counts[1],
        dollar_volume=fields.integer(msg, "dollar_volume", nonnegative=True),
        dollar_open_interest=fields.integer(msg, "dollar_open_interest", nonnegative=True),
        clock=fields.integer(msg, "Clock"),
    )


def ticker_fixed_point(frame: ParsedFrame) -> TickerRow:
    msg = frame.msg
    fields.refuse_legacy_fields(msg, {legacy: new for new, legacy in _PRICES + _COUNTS})
    prices = [fields.dollars(msg, key, blank_is_none=True) for key, _ in _PRICES]
    counts = [fields.count(msg, key) for key, _ in _COUNTS]
    return _row(frame, prices, counts)


def ticker_legacy(frame: ParsedFrame) -> TickerRow:
    msg = frame.msg
    prices = [fields.price_either(msg, new, old, required=False) for new, old in _PRICES]
    counts = [fields.count_either(msg, new, old, required=False) for new, old in _COUNTS]
    return _row(frame, prices, counts)


TICKER = {FormatVersion.LEGACY: ticker_legacy, FormatVersion.FIXED_POINT: ticker_fixed_point}
