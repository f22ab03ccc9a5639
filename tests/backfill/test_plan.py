"""The window arithmetic of the backfill, as pure functions: whole seconds that only ever
widen a hole, the split at the historical cutoff, per-market versus unfiltered queries, and
what to ask again when the cutoff moved during a fetch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.backfill import (
    TradeQuery,
    plan_queries,
    plan_requeries,
    query_window,
    requery_parts,
    split_at_cutoff,
)

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


def test_a_cutoff_that_moved_during_the_fetch_asks_the_stretch_again() -> None:
    ns = 1_000_000_000
    # unchanged: nothing more to ask
    assert requery_parts(100, 110, 105 * ns, 105 * ns) == []
    assert requery_parts(100, 110, None, None) == []
    # forward (Kalshi's way): the seconds it passed, of the historical partition
    assert requery_parts(100, 110, 103 * ns + 5, 106 * ns + 5) == [(103, 106, True)]
    assert requery_parts(100, 110, 103 * ns, 106 * ns) == [(103, 105, True)]
    assert requery_parts(100, 110, 103 * ns + 5, 103 * ns + 9) == [(103, 103, True)]
    # clipped to the window, or entirely outside it
    assert requery_parts(100, 110, 90 * ns, 120 * ns) == [(100, 110, True)]
    assert requery_parts(100, 110, 111 * ns, 115 * ns) == []
    assert requery_parts(100, 110, 90 * ns, 100 * ns) == []
    # a partition that appeared: everything before it may have moved there
    assert requery_parts(100, 110, None, 104 * ns + 1) == [(100, 104, True)]
    # backwards (never seen), or the partition gone: the stretch is live again
    assert requery_parts(100, 110, 106 * ns + 5, 103 * ns + 5) == [(103, 106, False)]
    assert requery_parts(100, 110, 104 * ns + 1, None) == [(100, 104, False)]


def test_every_trade_the_moving_cutoff_passed_is_asked_of_its_new_partition() -> None:
    ns = 1_000_000_000
    moves = [(103 * ns + 7, 104 * ns), (100 * ns, 109 * ns + 1), (None, 102 * ns), (99 * ns, ns)]
    for before_ns, after_ns in moves:
        parts = requery_parts(100, 110, before_ns, after_ns)
        for second in range(100, 111):
            for trade_ns in (second * ns, second * ns + ns - 1):
                was_historical = before_ns is not None and trade_ns < before_ns
                is_historical = after_ns is not None and trade_ns < after_ns
                if was_historical == is_historical:
                    continue
                assert any(
                    low <= second <= high and hist == is_historical for low, high, hist in parts
                ), (before_ns, after_ns, trade_ns, parts)


def test_requeries_fan_out_like_the_plan() -> None:
    before = (BASE_S + 1) * 1_000_000_000 + 5
    after = (BASE_S + 2) * 1_000_000_000 + 5
    assert plan_requeries(
        us(200_000),
        us(1_800_000),
        ["A", "B"],
        margin_s=1,
        ticker_query_max=5,
        before_ns=before,
        after_ns=after,
    ) == [
        TradeQuery(BASE_S + 1, BASE_S + 2, "A", True),
        TradeQuery(BASE_S + 1, BASE_S + 2, "B", True),
    ]
    assert (
        plan_requeries(
            us(200_000),
            us(1_800_000),
            None,
            margin_s=1,
            ticker_query_max=5,
            before_ns=before,
            after_ns=before,
        )
        == []
    )
