"""REST order books in the newest and legacy shapes, parsed into exact integer levels."""

from __future__ import annotations

import pytest

from app.kalshi.errors import WireFormatError
from app.kalshi.orderbook import Level, parse_levels, parse_orderbook


def test_newest_fp_shape() -> None:
    body = {
        "orderbook_fp": {
            "yes_dollars": [["0.4600", "250.00"], ["0.4500", "100.00"]],
            "no_dollars": [["0.5200", "120.50"]],
        }
    }
    book = parse_orderbook(body, "KXBTCD-26FEB1217-T67749.99")
    assert book.ticker == "KXBTCD-26FEB1217-T67749.99"
    assert book.wire_format == "fp"
    # Sorted ascending whatever the wire order; best = last.
    assert book.yes == (Level(450_000, 10_000), Level(460_000, 25_000))
    assert book.no == (Level(520_000, 12_050),)
    assert book.best_yes_bid == Level(460_000, 25_000)
    assert book.best_yes_ask_micros == 480_000  # 1 - best NO bid 0.52
    assert book.best_no_ask_micros == 540_000  # 1 - best YES bid 0.46


def test_subpenny_and_three_decimal_prices() -> None:
    body = {"orderbook_fp": {"yes_dollars": [["0.0010", "1.00"], ["0.960", "0.01"]]}}
    book = parse_orderbook(body, "T")
    assert book.yes == (Level(1_000, 100), Level(960_000, 1))
    assert book.no == ()


def test_empty_and_null_sides() -> None:
    assert parse_orderbook({"orderbook_fp": {}}, "T").yes == ()
    book = parse_orderbook({"orderbook_fp": {"yes_dollars": None, "no_dollars": []}}, "T")
    assert (book.yes, book.no, book.best_yes_bid, book.best_yes_ask_micros) == ((), (), None, None)


def test_legacy_shape_prefers_dollar_levels() -> None:
    body = {
        "orderbook": {
            "yes": [[45, 100], [46, 250]],
            "no": [[52, 120]],
            "yes_dollars": [["0.45", 100], ["0.4650", 250]],
            "no_dollars": [["0.52", 120]],
        }
    }
    book = parse_orderbook(body, "T")
    assert book.wire_format == "legacy"
    assert book.yes == (Level(450_000, 10_000), Level(465_000, 25_000))  # sub-penny kept
    assert book.no == (Level(520_000, 12_000),)


def test_legacy_cents_only_and_null_sides() -> None:
    body = {"orderbook": {"yes": [[1, 5], [99, 7]], "no": None, "yes_dollars": None}}
    book = parse_orderbook(body, "T")
    assert book.yes == (Level(10_000, 500), Level(990_000, 700))
    assert book.no == ()


def test_newest_wins_when_both_shapes_present() -> None:
    body = {
        "orderbook": {"yes": [[10, 1]]},
        "orderbook_fp": {"yes_dollars": [["0.2000", "2.00"]]},
    }
    assert parse_orderbook(body, "T").yes == (Level(200_000, 200),)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "no 'orderbook_fp' or 'orderbook'"),
        ({"orderbook_fp": {"yes_dollars": "0.45"}}, "expected a list"),
        (
            {"orderbook_fp": {"yes_dollars": [["0.45"]]}},
            r"yes_dollars\[0\]: expected \[price, size\]",
        ),
        ({"orderbook_fp": {"no_dollars": [["abc", "1.00"]]}}, r"no_dollars\[0\] price"),
        ({"orderbook_fp": {"yes_dollars": [["0.45", "1.005"]]}}, "more precision"),
        ({"orderbook_fp": {"yes_dollars": [["1.5000", "1.00"]]}}, "outside 0..1"),
        ({"orderbook_fp": {"yes_dollars": [["0.45", "-1.00"]]}}, "negative resting size"),
        ({"orderbook_fp": {"yes_dollars": [["0.45", 0.5]]}}, "size"),
        (
            {"orderbook_fp": {"yes_dollars": [["0.45", "1.00"], ["0.4500", "2.00"]]}},
            "two levels at price 450000",
        ),
    ],
)
def test_garbage_books_are_refused_clearly(body: dict, message: str) -> None:
    with pytest.raises(WireFormatError, match=message):
        parse_orderbook(body, "T")


def test_parse_levels_is_reusable_for_ws_snapshots() -> None:
    levels = parse_levels([["0.0800", "300.00"], ["0.2200", "333.00"]], "yes_dollars_fp")
    assert levels == (Level(80_000, 30_000), Level(220_000, 33_300))
    assert all(type(value) is int for level in levels for value in level)
