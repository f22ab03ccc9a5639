"""Trades and tickers in the newest and legacy formats; the trade key across sources."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.db.rows import TickerRow, TradeRow
from app.normalize import FormatVersion, FrameError, rest_trade_row
from tests.normalize import examples
from tests.normalize.framing import LEGACY_NS, NEWEST_NS, dead_reason, one_row


def test_newest_trade() -> None:
    row = one_row(examples.TRADE)
    assert isinstance(row, TradeRow)
    assert row.trade_id == "d91bc706-ee49-470d-82d8-11418bda6fed"
    assert row.market_ticker == "HIGHNY-22DEC23-B53.5"
    assert (row.yes_price, row.no_price, row.size) == (360_000, 640_000, 13_600)
    assert (row.taker_side, row.taker_book_side, row.is_block_trade) == ("no", "ask", False)
    assert row.exchange_ts == datetime(2022, 11, 22, 20, 44, 1, tzinfo=UTC)
    assert row.exchange_ms == 1669149841000
    assert (row.source, row.sid, row.seq) == ("ws", 11, None)


def test_trade_second_is_floored_and_exact_ms_kept() -> None:
    raw = examples.TRADE.replace('"ts_ms": 1669149841000', '"ts_ms": 1669149841999')
    row = one_row(raw)
    assert isinstance(row, TradeRow)
    assert row.exchange_ts == datetime(2022, 11, 22, 20, 44, 1, tzinfo=UTC)
    assert row.exchange_ms == 1669149841999


def test_real_feb_2026_trade() -> None:
    row = one_row(examples.REAL_TRADE_2026_02, LEGACY_NS)
    assert isinstance(row, TradeRow)
    assert (row.yes_price, row.no_price, row.size) == (770_000, 230_000, 7_500)
    assert (row.taker_side, row.taker_book_side) == ("yes", "bid")  # derived from taker_side
    assert row.exchange_ts == datetime(2026, 2, 12, 12, 6, 21, tzinfo=UTC)
    assert row.exchange_ms is None  # legacy frames only had whole seconds
    assert (row.sid, row.seq) == (2, 10)


def test_cents_only_trade_needs_the_legacy_mapper() -> None:
    row = one_row(examples.TRADE_LEGACY_CENTS_ONLY, LEGACY_NS)
    assert isinstance(row, TradeRow)
    assert (row.yes_price, row.no_price, row.size) == (360_000, 640_000, 13_600)
    reason = dead_reason(examples.TRADE_LEGACY_CENTS_ONLY, NEWEST_NS)
    assert "legacy field 'yes_price' without 'yes_price_dollars'" in reason


def test_no_price_derived_when_absent() -> None:
    raw = examples.TRADE.replace('"no_price_dollars": "0.6400", ', "")
    row = one_row(raw)
    assert isinstance(row, TradeRow)
    assert row.no_price == 640_000


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (('"trade_id": "d91bc706-ee49-470d-82d8-11418bda6fed",', ""), "missing 'trade_id'"),
        (('"yes_price_dollars": "0.3600"', '"yes_price_dollars": 0.36'), "dollar string"),
        (('"count_fp": "136.00"', '"count_fp": 136.0'), "count string"),
        (('"count_fp": "136.00"', '"count_fp": "-1.00"'), "negative trade size"),
        (('"yes_price_dollars": "0.3600"', '"yes_price_dollars": "1.3600"'), "outside 0..1"),
        (('"ts": 1669149841, "ts_ms": 1669149841000', '"x": 1'), "missing 'ts_ms'"),
        (('"taker_book_side": "ask"', '"taker_book_side": "sideways"'), "'bid' or 'ask'"),
        (('"is_block_trade": false', '"is_block_trade": "no"'), "true or false"),
    ],
)
def test_malformed_trades(change: tuple[str, str], reason: str) -> None:
    old, new = change
    assert old in examples.TRADE
    assert reason in dead_reason(examples.TRADE.replace(old, new))


def test_rest_trade_gets_the_same_key_as_the_ws_copy() -> None:
    ws = one_row(examples.TRADE)
    assert isinstance(ws, TradeRow)
    rest = rest_trade_row(
        {
            "trade_id": "d91bc706-ee49-470d-82d8-11418bda6fed",
            "ticker": "HIGHNY-22DEC23-B53.5",
            "count_fp": "136.00",
            "yes_price_dollars": "0.3600",
            "no_price_dollars": "0.6400",
            "taker_side": "no",
            "taker_outcome_side": "no",
            "taker_book_side": "ask",
            "created_time": "2022-11-22T20:44:01.000917Z",
            "is_block_trade": False,
        },
        gatherer="g2",
        received_ns=NEWEST_NS,
        batch_pos=7,
    )
    assert (rest.trade_id, rest.exchange_ts) == (ws.trade_id, ws.exchange_ts)
    assert rest.exchange_ms == 1669149841000
    assert rest.source == "rest" and rest.market_ticker == ws.market_ticker
    with pytest.raises(FrameError, match="created_time"):
        rest_trade_row({"trade_id": "x"}, gatherer="g", received_ns=0, batch_pos=0)


REST_NEWEST = {
    "trade_id": "d91bc706-ee49-470d-82d8-11418bda6fed",
    "ticker": "HIGHNY-22DEC23-B53.5",
    "count_fp": "136.00",
    "yes_price_dollars": "0.3600",
    "no_price_dollars": "0.6400",
    "taker_side": "no",
    "taker_outcome_side": "no",
    "taker_book_side": "ask",
    "created_time": "2022-11-22T20:44:01.000917Z",
    "is_block_trade": False,
}
# What REST trades looked like before 2026-03-12 (and `kalshi-data sim --format legacy`):
# integer cents and whole contracts, with the dollar strings next to them in the dual era.
REST_LEGACY_DUAL = {
    "trade_id": "d91bc706-ee49-470d-82d8-11418bda6fed",
    "ticker": "HIGHNY-22DEC23-B53.5",
    "price": 36,
    "count": 136,
    "yes_price": 36,
    "no_price": 64,
    "yes_price_dollars": "0.3600",
    "no_price_dollars": "0.6400",
    "taker_side": "no",
    "created_time": "2022-11-22T20:44:01.000917Z",
}
REST_LEGACY_CENTS = {
    key: value for key, value in REST_LEGACY_DUAL.items() if not key.endswith("_dollars")
}


def _rest(trade: dict[str, object]) -> TradeRow:
    return rest_trade_row(trade, gatherer="g2", received_ns=NEWEST_NS, batch_pos=7)


@pytest.mark.parametrize("trade", [REST_NEWEST, REST_LEGACY_DUAL, REST_LEGACY_CENTS])
def test_rest_trades_of_both_formats_give_the_same_exact_row(trade: dict[str, object]) -> None:
    row = _rest(trade)
    assert (row.yes_price, row.no_price, row.size) == (360_000, 640_000, 13_600)
    assert (row.taker_side, row.taker_book_side) == ("no", "ask")
    assert row.exchange_ts == datetime(2022, 11, 22, 20, 44, 1, tzinfo=UTC)
    assert (row.exchange_ms, row.source) == (1669149841000, "rest")
    assert row.is_block_trade is (False if trade is REST_NEWEST else None)


def test_rest_trade_prefers_the_exact_strings_over_legacy_integers() -> None:
    # a subpenny price and a fractional count cannot be told in cents and whole contracts
    row = _rest({**REST_LEGACY_DUAL, "yes_price_dollars": "0.3650", "count_fp": "136.25"})
    assert (row.yes_price, row.size) == (365_000, 13_625)
    cents_only = _rest({**REST_LEGACY_CENTS, "yes_price": 99, "no_price": None, "count": 1})
    assert (cents_only.yes_price, cents_only.no_price, cents_only.size) == (990_000, 10_000, 100)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"count": 136.0}, "'count' must be an integer count"),
        ({"count": True}, "'count' must be an integer count"),
        ({"yes_price": 36.0}, "'yes_price' must be integer cents"),
        ({"yes_price": "36"}, "'yes_price' must be integer cents"),
        ({"no_price": 64.5}, "'no_price' must be integer cents"),
        ({"yes_price": 136}, "outside 0..1"),
        ({"count": -1}, "negative trade size"),
        ({"count": None}, "missing 'count_fp' (or legacy 'count')"),
        ({"yes_price": None}, "missing 'yes_price_dollars' (or legacy 'yes_price')"),
    ],
)
def test_malformed_legacy_rest_trades(change: dict[str, object], reason: str) -> None:
    trade = {
        key: value for key, value in {**REST_LEGACY_CENTS, **change}.items() if value is not None
    }
    with pytest.raises(FrameError) as caught:
        _rest(trade)
    assert reason in str(caught.value)


def test_newest_ticker() -> None:
    row = one_row(examples.TICKER)
    assert isinstance(row, TickerRow)
    assert row.market_ticker == "FED-23DEC-T3.00"
    assert (row.price, row.yes_bid, row.yes_ask) == (480_000, 450_000, 530_000)
    assert (row.yes_bid_size, row.yes_ask_size, row.last_trade_size) == (30_000, 15_000, 2_500)
    assert (row.volume, row.open_interest) == (3_389_600, 2_042_200)
    assert (row.dollar_volume, row.dollar_open_interest) == (16948, 10211)
    assert row.exchange_ts == datetime(2022, 11, 22, 20, 44, 1, tzinfo=UTC)
    assert row.sid == 11 and row.clock is None


def test_ticker_without_deprecated_fields_and_never_traded() -> None:
    raw = (
        '{"type":"ticker","sid":11,"msg":{"market_ticker":"M","price_dollars":"",'
        '"yes_bid_dollars":"0.0100","ts_ms":1669149841250,"new_field_2027":[1,2]}}'
    )
    row = one_row(raw)
    assert isinstance(row, TickerRow)
    assert row.price is None and row.yes_bid == 10_000 and row.yes_ask is None
    assert row.volume is None
    assert row.exchange_ts == datetime(2022, 11, 22, 20, 44, 1, 250000, tzinfo=UTC)


def test_ticker_time_falls_back_to_rfc3339_then_seconds() -> None:
    base = '{"type":"ticker","sid":1,"msg":{"market_ticker":"M",%s}}'
    row = one_row(base % '"time":"2026-02-12T12:06:16.123456Z","ts":1770897976')
    assert isinstance(row, TickerRow)
    assert row.exchange_ts == datetime(2026, 2, 12, 12, 6, 16, 123456, tzinfo=UTC)
    row = one_row(base % '"ts":1770897976')
    assert isinstance(row, TickerRow)
    assert row.exchange_ts == datetime(2026, 2, 12, 12, 6, 16, tzinfo=UTC)
    assert "without a time" in dead_reason(base % '"price_dollars":"0.1"')


def test_real_feb_2026_ticker() -> None:
    row = one_row(examples.REAL_TICKER_2026_02, LEGACY_NS)
    assert isinstance(row, TickerRow)
    assert (row.price, row.yes_bid, row.yes_ask) == (140_000, 40_000, 950_000)
    assert (row.volume, row.open_interest) == (1_344_600, 89_200)
    assert (row.yes_bid_size, row.yes_ask_size, row.last_trade_size) == (1_400, 8_400, 0)
    assert row.clock == 13281241747
    assert row.exchange_ts == datetime(2026, 2, 12, 12, 6, 16, tzinfo=UTC)


def test_legacy_integer_ticker() -> None:
    row = one_row(examples.TICKER_LEGACY_INTS, LEGACY_NS)
    assert isinstance(row, TickerRow)
    assert (row.volume, row.open_interest) == (3_389_600, 2_042_200)
    assert (row.price, row.yes_bid, row.yes_ask) == (480_000, 450_000, 530_000)
    # The fixed-point mapper would have lost volume and open interest: it refuses instead.
    reason = dead_reason(examples.TICKER_LEGACY_INTS, NEWEST_NS)
    assert "legacy field 'volume' without 'volume_fp'" in reason
    declared = one_row(examples.TICKER_LEGACY_INTS, NEWEST_NS, FormatVersion.LEGACY)
    assert declared == row._replace(received_ns=NEWEST_NS, received_at=declared.received_at)


def test_ticker_with_float_volume_is_refused() -> None:
    raw = '{"type":"ticker","sid":1,"msg":{"market_ticker":"M","ts":1,"volume_fp":33896.0}}'
    assert "count string" in dead_reason(raw)
