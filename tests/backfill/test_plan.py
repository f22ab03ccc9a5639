"""The window arithmetic of the backfill, as pure functions: whole seconds that only ever
widen a hole, the split at the historical cutoff, per-market versus unfiltered queries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.backfill import TradeQuery, plan_queries, query_window, split_at_cutoff

BASE = datetime(2026, 12, 3, 8, 0, 0, tzinfo=UTC)
BASE_S = int(BASE.timestamp())


def us(microseconds: int) -> datetime:
    return BASE + timedelta(microseconds=microseconds)


def test_window_floors_the_start_and_ceils_the_end_exactly() -> None:
    assert query_window(BASE, BASE, 0) == (BASE_S, BASE_S)
    # one microsecond past a second boundary is enough to take in the next second
    assert query_window(us(1), us(1_000_001), 0) == (BASE_S, BASE_S + 2)
    assert query_window(us(999_999), us(999_999), 0) == (BASE_S, BASE_S + 1)
    # the margin widens both sides before rounding: 0.6 s before 00:00.5 is 23:59:59.9
    assert query_window(us(500_000), us(2_000_000), 0.6) == (BASE_S - 1, BASE_S + 3)
    assert query_window(us(500_000), us(2_000_000), 5) == (BASE_S - 5, BASE_S + 7)
    # no float rounding: 0.1 s margin from a whole second lands in the previous second
    assert query_window(BASE, BASE, 0.1) == (BASE_S - 1, BASE_S + 1)


def test_window_refuses_naive_or_inverted_holes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        query_window(BASE.replace(tzinfo=None), BASE, 0)
    with pytest.raises(ValueError, match="before it starts"):
        query_window(us(2), us(1), 0)


def test_split_at_the_historical_cutoff() -> None:
    ns = 1_000_000_000
    # no cutoff, or a cutoff before the window: all live
    assert split_at_cutoff(100, 110, None) == [(100, 110, False)]
    assert split_at_cutoff(100, 110, 50 * ns) == [(100, 110, False)]
    # a cutoff after the window: all historical
    assert split_at_cutoff(100, 110, 200 * ns) == [(100, 110, True)]
    # inside: the cutoff's own second is asked on both sides (trades on either side of it)
    assert split_at_cutoff(100, 110, 105 * ns + 300_000_000) == [
        (100, 105, True),
        (105, 110, False),
    ]
    # a cutoff on a whole second splits cleanly: nothing before it in that second
    assert split_at_cutoff(100, 110, 105 * ns) == [(100, 104, True), (105, 110, False)]
    assert split_at_cutoff(100, 110, 100 * ns) == [(100, 110, False)]
    assert split_at_cutoff(100, 110, 111 * ns) == [(100, 110, True)]
    # on the window's edges, inside a second
    assert split_at_cutoff(100, 110, 100 * ns + 1) == [(100, 100, True), (100, 110, False)]
    assert split_at_cutoff(100, 110, 110 * ns + 1) == [(100, 110, True), (110, 110, False)]
    with pytest.raises(ValueError):
        split_at_cutoff(5, 4, None)


def test_every_second_is_asked_of_the_partition_that_holds_it() -> None:
    ns = 1_000_000_000
    for cutoff_ns in (
        99 * ns,
        100 * ns,
        100 * ns + 1,
        103 * ns + 1,
        104 * ns - 1,
        110 * ns,
        111 * ns,
    ):
        parts = split_at_cutoff(100, 110, cutoff_ns)
        for second in range(100, 111):
            # a trade at the start or the end of this second, on its side of the cutoff
            for trade_ns in (second * ns, second * ns + ns - 1):
                historical = trade_ns < cutoff_ns
                assert any(
                    low <= second <= high and hist == historical for low, high, hist in parts
                ), (cutoff_ns, trade_ns, parts)


def test_per_market_queries_only_for_short_lists() -> None:
    start, end = us(200_000), us(1_800_000)
    window = (BASE_S - 1, BASE_S + 3)
    assert plan_queries(start, end, None, margin_s=1, ticker_query_max=10, cutoff_ns=None) == [
        TradeQuery(*window)
    ]
    assert plan_queries(
        start, end, ["A", "B", "A"], margin_s=1, ticker_query_max=2, cutoff_ns=None
    ) == [TradeQuery(*window, ticker="A"), TradeQuery(*window, ticker="B")]
    # longer than the threshold: one unfiltered query (the caller keeps the hole's markets)
    assert plan_queries(
        start, end, ["A", "B", "C"], margin_s=1, ticker_query_max=2, cutoff_ns=None
    ) == [TradeQuery(*window)]
    assert plan_queries(start, end, ["A"], margin_s=1, ticker_query_max=0, cutoff_ns=None) == [
        TradeQuery(*window)
    ]
    assert plan_queries(start, end, [], margin_s=1, ticker_query_max=10, cutoff_ns=None) == []


def test_plan_splits_every_market_at_the_cutoff_historical_first() -> None:
    cutoff = (BASE_S + 1) * 1_000_000_000 + 5
    queries = plan_queries(
        us(200_000), us(1_800_000), ["A", "B"], margin_s=1, ticker_query_max=5, cutoff_ns=cutoff
    )
    assert queries == [
        TradeQuery(BASE_S - 1, BASE_S + 1, "A", True),
        TradeQuery(BASE_S - 1, BASE_S + 1, "B", True),
        TradeQuery(BASE_S + 1, BASE_S + 3, "A", False),
        TradeQuery(BASE_S + 1, BASE_S + 3, "B", False),
    ]
