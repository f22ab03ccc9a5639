"""The in-memory book: snapshots replace, deltas increment, levels vanish at 0, never negative."""

from __future__ import annotations

import pytest

from app.book import NO, YES, NegativeLevel, OrderBook


def _book() -> OrderBook:
    # kalshi-api.md §3.5 snapshot example, in micro-dollars / hundredths.
    return OrderBook.from_levels(
        yes=[(80_000, 30_000), (220_000, 33_300)], no=[(540_000, 2_000), (560_000, 14_600)]
    )


def test_snapshot_then_deltas_on_both_sides() -> None:
    book = _book()
    assert book.apply_delta(YES, 220_000, -3_300) == 30_000
    assert book.apply_delta(YES, 250_000, 1_000) == 1_000  # new level
    assert book.apply_delta(NO, 540_000, 5) == 2_005
    assert book.yes == {80_000: 30_000, 220_000: 30_000, 250_000: 1_000}
    assert book.no == {540_000: 2_005, 560_000: 14_600}


def test_snapshot_replaces_everything_and_drops_zero_levels() -> None:
    book = _book()
    book.apply_delta(YES, 990_000, 100)
    book.apply_snapshot(yes=[(100_000, 5), (200_000, 0)], no=[])
    assert book.yes == {100_000: 5}
    assert book.no == {}


def test_size_zero_removes_the_level() -> None:
    book = _book()
    assert book.apply_delta(NO, 560_000, -14_600) == 0
    assert 560_000 not in book.no
    assert book.best_bid(NO) == (540_000, 2_000)


def test_negative_result_raises_and_leaves_the_book_unchanged() -> None:
    book = _book()
    with pytest.raises(NegativeLevel) as caught:
        book.apply_delta(YES, 80_000, -30_001)
    assert (caught.value.side, caught.value.price, caught.value.size, caught.value.delta) == (
        YES,
        80_000,
        30_000,
        -30_001,
    )
    with pytest.raises(NegativeLevel):
        book.apply_delta(NO, 123_000, -1)  # no such level
    assert book == _book()


def test_best_first_ordering_and_implied_asks() -> None:
    book = _book()
    assert book.bids(YES) == [(220_000, 33_300), (80_000, 30_000)]
    assert book.bids(NO) == [(560_000, 14_600), (540_000, 2_000)]
    # YES asks = 1 - NO bids, lowest first; NO asks = 1 - YES bids.
    assert book.asks(YES) == [(440_000, 14_600), (460_000, 2_000)]
    assert book.asks(NO) == [(780_000, 33_300), (920_000, 30_000)]
    assert book.best_bid(YES) == (220_000, 33_300)
    assert book.best_ask(YES) == (440_000, 14_600)
    assert book.best_ask(NO) == (780_000, 33_300)
    assert book.spread(YES) == 220_000
    assert book.spread(NO) == 220_000


def test_empty_sides_have_no_best_and_no_spread() -> None:
    book = OrderBook.from_levels(yes=[(450_000, 100)])
    assert book.best_bid(NO) is None
    assert book.best_ask(YES) is None
    assert book.spread() is None
    assert book.asks(NO) == [(550_000, 100)]


def test_bad_side_is_refused() -> None:
    with pytest.raises(ValueError, match="side"):
        OrderBook().apply_delta("maybe", 1, 1)
