"""In-process checks of the simulator's pure parts: tick grids, catalog, wire shapes."""

from __future__ import annotations

import orjson

from app.simulator.book import MarketState, initial_market
from app.simulator.catalog import Catalog
from app.simulator.ticks import GRIDS, LINEAR_CENT, TAPERED_DECI_CENT
from app.simulator.wire import CurrentWire, LegacyWire


def test_tick_grids_are_symmetric_and_match_their_ranges():
    assert len(LINEAR_CENT.prices) == 99 and LINEAR_CENT.prices[0] == 10_000
    assert 95_000 in TAPERED_DECI_CENT.index and 150_000 in TAPERED_DECI_CENT.index
    assert 155_000 not in TAPERED_DECI_CENT.index
    for grid in GRIDS:
        assert all(1_000_000 - p in grid.index for p in grid.prices)
        assert grid.highest_below(grid.prices[5]) == 4


def test_tickers_parse_back_to_their_index_and_reject_lookalikes():
    catalog = Catalog(seed=3, initial_markets=10_000, epoch_ns=0, lifetime_ns=10**12, legacy=False)
    for index in (0, 1, 3, 4, 9_999, 123_457):
        assert catalog.market_index(catalog.market_ticker(index)) == index
    ticker = catalog.market_ticker(42)
    for fake in (ticker.replace("-T", "-T0"), ticker + "0", ticker.lower(), "KXSIMA-E1", ""):
        assert catalog.market_index(fake) is None
    assert catalog.market(7) == catalog.market(7)
    assert catalog.scheduled_times(10_000)[0] > catalog.scheduled_times(9_999)[0]


def test_initial_books_are_sane_and_whole_in_legacy():
    for index in range(300):
        for grid in GRIDS:
            yes, no, _, _, _ = initial_market(9, index, grid, whole_only=grid is LINEAR_CENT)
            assert yes and no and max(yes) + max(no) < 1_000_000
            assert all(p in grid.index for p in (*yes, *no))
            if grid is LINEAR_CENT:
                assert all(s % 100 == 0 for s in (*yes.values(), *no.values()))


def test_current_snapshot_omits_empty_sides_and_legacy_has_integers():
    head = b'"market_ticker":"T","market_id":"id"'
    only_no = orjson.loads(CurrentWire().snapshot(head, {}, {420_000: 1234}))
    assert only_no == {
        "market_ticker": "T",
        "market_id": "id",
        "no_dollars_fp": [["0.4200", "12.34"]],
    }
    empty = orjson.loads(CurrentWire().snapshot(head, {}, {}))
    assert empty == {"market_ticker": "T", "market_id": "id"}
    legacy = orjson.loads(LegacyWire().snapshot(head, {560_000: 1200}, {}))
    assert legacy["yes"] == [[56, 12]] and legacy["yes_dollars"] == [["0.5600", 12]]
    state = MarketState(1, 0, "T", "id", LINEAR_CENT, True)
    delta = orjson.loads(
        CurrentWire().delta(state, False, 960_000, -5_400, 1_669_149_841_000_000_000)
    )
    assert delta["price_dollars"] == "0.9600" and delta["delta_fp"] == "-54.00"
    assert delta["side"] == "no" and delta["ts_ms"] == 1_669_149_841_000
    assert delta["ts"] == "2022-11-22T20:44:01.000000Z"
