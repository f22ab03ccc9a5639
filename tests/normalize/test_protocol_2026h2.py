"""kalshi-api.md §9 (July-October 2026) on the normalizer side: prices on the $0.0001 grid as
dollar strings with up to 6 decimals, new lifecycle messages, sharding fields."""

from __future__ import annotations

import pytest

from app.db.rows import (
    LifecycleEventRow,
    OrderbookDeltaRow,
    OrderbookSnapshotRow,
    TickerRow,
    TradeRow,
)
from app.normalize import rest_snapshot_row, rest_trade_row
from app.normalize.fields import FrameError
from tests.normalize.framing import NEWEST_NS, dead_reason, one_row

SNAPSHOT = (
    '{"type": "orderbook_snapshot", "sid": 2, "seq": 2, "msg": {"market_ticker": "KXMVE-1", '
    '"yes_dollars_fp": [["0.1234", "1.00"], ["0.000100", "2.00"], ["0.999999", "3.00"]], '
    '"no_dollars_fp": [["0.876500", "4.00"]]}}'
)
DELTA = (
    '{"type": "orderbook_delta", "sid": 2, "seq": 3, "msg": {"market_ticker": "KXMVE-1", '
    '"price_dollars": "0.123456", "delta_fp": "1.50", "side": "yes", "ts_ms": 1790000000000}}'
)
TRADE = (
    '{"type": "trade", "sid": 11, "msg": {"trade_id": "t-1", "market_ticker": "KXMVE-1", '
    '"yes_price_dollars": "0.1234", "no_price_dollars": "0.876600", "count_fp": "2.00", '
    '"taker_outcome_side": "yes", "ts_ms": 1790000000000}}'
)
TICKER = (
    '{"type": "ticker", "sid": 1, "msg": {"market_ticker": "KXMVE-1", "price_dollars": '
    '"0.123400", "yes_bid_dollars": "0.1233", "yes_ask_dollars": "0.123500", '
    '"ts_ms": 1790000000000}}'
)


def test_six_decimal_prices_are_exact_in_every_frame_type() -> None:
    snapshot = one_row(SNAPSHOT)
    assert isinstance(snapshot, OrderbookSnapshotRow)
    assert snapshot.yes_prices == (100, 123_400, 999_999)
    assert snapshot.no_prices == (876_500,)
    delta = one_row(DELTA)
    assert isinstance(delta, OrderbookDeltaRow) and delta.price == 123_456
    trade = one_row(TRADE)
    assert isinstance(trade, TradeRow)
    assert (trade.yes_price, trade.no_price) == (123_400, 876_600)
    ticker = one_row(TICKER)
    assert isinstance(ticker, TickerRow)
    assert (ticker.price, ticker.yes_bid, ticker.yes_ask) == (123_400, 123_300, 123_500)


@pytest.mark.parametrize(
    "raw",
    [
        SNAPSHOT.replace('"0.1234"', '"0.1234567"'),
        SNAPSHOT.replace('"0.876500"', '"0.8765000"'),  # a 7th decimal, even a zero
        DELTA.replace('"0.123456"', '"0.1234561"'),
        DELTA.replace('"0.123456"', '"0.1234560"'),
        TRADE.replace('"0.1234"', '"0.12340000"'),
        TICKER.replace('"0.1233"', '"0.1233001"'),
    ],
)
def test_seven_decimals_are_dead_letters_never_rounded(raw: str) -> None:
    assert "has more than 6 decimals" in dead_reason(raw)


def test_rest_books_and_trades_read_six_decimals_and_refuse_seven() -> None:
    book = {
        "orderbook_fp": {"yes_dollars": [["0.000100", "1.00"]], "no_dollars": [["0.9999", "2.00"]]}
    }
    row = rest_snapshot_row("M", book, gatherer="g", received_ns=NEWEST_NS, batch_pos=0)
    assert (row.yes_prices, row.no_prices) == ((100,), (999_900,))
    trade = {"trade_id": "t", "ticker": "M", "yes_price_dollars": "0.123456", "count_fp": "1.00",
             "created_time": "2026-09-21T14:13:20.123456Z"}  # fmt: skip
    assert rest_trade_row(trade, gatherer="g", received_ns=NEWEST_NS, batch_pos=0).no_price == (
        876_544
    )
    with pytest.raises(FrameError, match="more than 6 decimals"):
        rest_trade_row({**trade, "yes_price_dollars": "0.1234567"}, gatherer="g",
                       received_ns=NEWEST_NS, batch_pos=0)  # fmt: skip
    with pytest.raises(FrameError, match="more than 6 decimals"):
        rest_snapshot_row("M", {"orderbook_fp": {"yes_dollars": [["0.0000001", "1.00"]]}},
                          gatherer="g", received_ns=NEWEST_NS, batch_pos=0)  # fmt: skip


def _lifecycle(event_type: str, extra: str = "") -> str:
    return (
        '{"type": "market_lifecycle_v2", "sid": 13, "msg": {"market_ticker": "KXMVE-1", '
        f'"event_type": "{event_type}"{extra}}}}}'
    )


@pytest.mark.parametrize(
    ("raw", "event_type", "kept"),
    [
        (
            _lifecycle(
                "price_level_structure_updated",
                ', "price_level_structure": "center_deci_edge_centi_cent", "price_ranges": '
                '[{"start": "0.0000", "end": "1.0000", "step": "0.0001"}]',
            ),
            "price_level_structure_updated",
            {"price_level_structure": "center_deci_edge_centi_cent"},
        ),
        (
            _lifecycle(
                "metadata_updated",
                ', "floor_strike": 67749.99, "strike_type": "greater", "yes_sub_title": "Up"',
            ),
            "metadata_updated",
            {"floor_strike": 67749.99, "yes_sub_title": "Up"},
        ),
        (
            _lifecycle("created", ', "exchange_index": 2, "open_ts": 1790000000'),
            "created",
            {"exchange_index": 2},
        ),
        (
            _lifecycle("some_future_event", ', "anything": {"nested": [1, "two"]}'),
            "some_future_event",
            {"anything": {"nested": [1, "two"]}},
        ),
        (
            '{"type": "event_fee_update", "sid": 13, "msg": {"event_ticker": "E-1", '
            '"fee_type_override": "quadratic_with_combo_maker_fees", '
            '"fee_multiplier_override": 0.5}}',
            "event_fee_update",
            {
                "fee_type_override": "quadratic_with_combo_maker_fees",
                "fee_multiplier_override": 0.5,
            },
        ),
        (
            '{"type": "event_lifecycle", "sid": 13, "msg": {"event_ticker": "E-1", '
            '"title": "T", "subtitle": "S", "exchange_index": 1, "series_ticker": "KX"}}',
            "event_lifecycle",
            {"subtitle": "S", "exchange_index": 1},
        ),
    ],
)
def test_lifecycle_messages_are_rows_with_their_fields_kept(
    raw: str, event_type: str, kept: dict[str, object]
) -> None:
    row = one_row(raw)
    assert isinstance(row, LifecycleEventRow)
    assert row.event_type == event_type
    assert kept.items() <= row.payload.items()
