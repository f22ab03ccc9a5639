"""Trades in the newest and legacy field formats, with exact units."""

from __future__ import annotations

import pytest

from app.kalshi.errors import WireFormatError
from app.kalshi.trade import parse_trade

NEWEST = {
    "trade_id": "d6af7817-8764-6afb-f5b7-ced5fda2581c",
    "ticker": "KXBTCD-26FEB1217-T67749.99",
    "count_fp": "90.25",
    "yes_price_dollars": "0.5700",
    "no_price_dollars": "0.4300",
    "taker_side": "no",
    "taker_outcome_side": "no",
    "taker_book_side": "ask",
    "created_time": "2026-02-12T12:06:24.123456Z",
    "is_block_trade": False,
    "some_future_field": {"kept": True},
}


def test_newest_rest_trade() -> None:
    trade = parse_trade(NEWEST)
    assert trade.trade_id == NEWEST["trade_id"]
    assert trade.ticker == "KXBTCD-26FEB1217-T67749.99"
    assert (trade.yes_price_micros, trade.no_price_micros) == (570_000, 430_000)
    assert trade.count_hundredths == 9_025
    assert (trade.taker_outcome_side, trade.taker_book_side) == ("no", "ask")
    assert trade.created_ns == 1_770_897_984_123_456_000
    assert trade.is_block_trade is False
    assert trade.wire_format == "fp"
    assert trade.raw["some_future_field"] == {"kept": True}


def test_legacy_ws_trade_frame_body() -> None:
    # Real Feb-2026 frame body (kalshi-api.md §3.5): legacy ints next to the new strings.
    body = {
        "trade_id": "f851",
        "market_ticker": "KXSOLD-26FEB1217-T79.9999",
        "yes_price": 77,
        "no_price": 23,
        "yes_price_dollars": "0.7700",
        "no_price_dollars": "0.2300",
        "count": 75,
        "count_fp": "75.00",
        "taker_side": "yes",
        "ts": 1770897981,
    }
    trade = parse_trade(body)
    assert trade.ticker == "KXSOLD-26FEB1217-T79.9999"
    assert (trade.yes_price_micros, trade.no_price_micros, trade.count_hundredths) == (
        770_000,
        230_000,
        7_500,
    )
    assert (trade.taker_outcome_side, trade.taker_book_side) == ("yes", "bid")
    assert trade.created_ns == 1_770_897_981_000_000_000
    assert trade.wire_format == "fp"


def test_integer_only_legacy_trade() -> None:
    body = {"trade_id": "t1", "ticker": "M", "yes_price": 36, "count": 136, "taker_side": "no"}
    trade = parse_trade(body)
    assert (trade.yes_price_micros, trade.no_price_micros) == (360_000, 640_000)  # derived NO
    assert trade.count_hundredths == 13_600
    assert trade.taker_book_side == "ask"
    assert trade.created_ns is None
    assert trade.wire_format == "legacy"


def test_ts_ms_is_used_when_there_is_no_created_time() -> None:
    body = {**NEWEST, "ts_ms": 1669149841000, "ts": 1}
    del body["created_time"]
    assert parse_trade(body).created_ns == 1_669_149_841_000_000_000


def test_subpenny_trade_price() -> None:
    body = {**NEWEST, "yes_price_dollars": "0.0015", "no_price_dollars": "0.9985"}
    trade = parse_trade(body)
    assert (trade.yes_price_micros, trade.no_price_micros) == (1_500, 998_500)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"trade_id": None}, "missing trade_id"),
        ({"ticker": None}, "missing ticker"),
        ({"yes_price_dollars": "0.57.1"}, "yes_price_dollars"),
        ({"yes_price_dollars": 0.57}, "yes_price_dollars"),
        ({"yes_price_dollars": "1.2000"}, "outside 0..1"),
        ({"count_fp": "0.00"}, "must be positive"),
        ({"count_fp": "-3.00"}, "must be positive"),
        ({"count_fp": "3.001"}, "more precision"),
        ({"taker_outcome_side": "maybe"}, "taker_outcome_side"),
        ({"taker_book_side": "mid"}, "taker_book_side"),
        ({"created_time": "yesterday"}, "created_time"),
        ({"is_block_trade": "no"}, "is_block_trade"),
    ],
)
def test_garbage_trades_are_refused_clearly(changes: dict, message: str) -> None:
    body = {key: value for key, value in {**NEWEST, **changes}.items() if value is not None}
    with pytest.raises(WireFormatError, match=message):
        parse_trade(body)


def test_trade_without_any_price_or_count() -> None:
    with pytest.raises(WireFormatError, match="no yes_price_dollars or yes_price"):
        parse_trade({"trade_id": "t", "ticker": "M", "count_fp": "1.00"})
    with pytest.raises(WireFormatError, match="no count_fp or count"):
        parse_trade({"trade_id": "t", "ticker": "M", "yes_price": 5})
