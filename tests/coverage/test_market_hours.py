"""`compute_coverage` on a real migrated database: exact statuses per (market, hour)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.coverage import UnknownMarket, compute_coverage
from tests.coverage.conftest import add_hole, add_market, add_session, statuses

T0 = datetime(2026, 1, 10, tzinfo=UTC)  # range 00:00-06:00; capture from 01:00 unless said
NOW = T0 + timedelta(hours=6)
LONG_AGO = T0 - timedelta(days=1)
LATER = T0 + timedelta(days=30)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def expect(markets: list[str], hours: range, default: str = "complete", **overrides: str):
    """Every (market, hour) with `default`, except `overrides` given as M_H=status."""
    table = {(m, h): default for m in markets for h in hours}
    for key, status in overrides.items():
        market, hour = key.rsplit("_", 1)
        table[(market, int(hour))] = status
    return table


def test_no_holes_every_open_hour_after_capture_start_is_complete(db) -> None:
    add_market(db, "A", LONG_AGO, LATER)
    add_session(db, at(1))
    assert statuses(db, T0, NOW, NOW) == expect(["A"], range(1, 6))


def test_ticker_disconnect_on_all_markets_degrades_that_hour_only(db) -> None:
    for ticker in ("A", "B"):
        add_market(db, ticker, LONG_AGO, LATER)
    add_market(db, "C", LONG_AGO, at(1.5))  # closed before the hole
    add_session(db, at(1))
    add_hole(db, "k1", "ticker", at(2 + 10 / 60), at(2 + 20 / 60))
    got = statuses(db, T0, NOW, NOW)
    assert got == expect(["A", "B"], range(1, 6), A_2="degraded", B_2="degraded") | {
        ("C", 1): "complete"
    }
    row = next(
        r for r in compute_coverage(db, "g1", at(2), at(3), now=NOW) if r.market_ticker == "A"
    )
    assert row.assessment.hole_seconds == (("ticker", 600.0),)
    assert row.assessment.causes == ("disconnect",) and row.assessment.holes == 1


def test_orderbook_hole_over_a_full_hour_is_missing_for_that_market_and_hour_only(db) -> None:
    for ticker in ("A", "B"):
        add_market(db, ticker, LONG_AGO, LATER)
    add_session(db, at(1))
    add_hole(db, "b1", "orderbook_delta", at(3), at(4), markets=["B"], cause="seq_gap")
    assert statuses(db, T0, NOW, NOW) == expect(["A", "B"], range(1, 6), B_3="missing")


def test_trade_hole_backfilled_is_degraded_and_pending_is_missing(db) -> None:
    add_market(db, "A", LONG_AGO, LATER)
    add_session(db, at(1))
    add_hole(db, "t1", "trade", at(2), at(3), backfill="done")
    add_hole(db, "t2", "trade", at(3), at(4), backfill="pending")
    add_hole(db, "t3", "trade", at(4), at(5), backfill="failed")
    got = statuses(db, T0, NOW, NOW)
    assert got == expect(["A"], range(1, 6), A_2="degraded", A_3="missing", A_4="missing")
    rows = {r.hour.hour: r.assessment for r in compute_coverage(db, "g1", T0, NOW, now=NOW)}
    assert (rows[2].trade_holes_backfilled, rows[2].trade_holes) == (1, 1)
    assert (rows[3].trade_holes_backfilled, rows[3].trade_holes) == (0, 1)
    assert rows[3].missing_channels == ("trade",)


def test_open_hole_counts_up_to_now(db) -> None:
    for ticker in ("A", "B"):
        add_market(db, ticker, LONG_AGO, LATER)
    add_session(db, at(1))
    add_hole(db, "o1", "orderbook_delta", at(3.5), None, markets=["A"])
    now = at(5.5)  # inside hour 5: its window is 05:00-05:30, all inside the open hole
    got = statuses(db, T0, NOW, now)
    assert got == expect(["A", "B"], range(1, 6), A_3="degraded", A_4="missing", A_5="missing")
    last = [r for r in compute_coverage(db, "g1", T0, NOW, now=now) if r.hour == at(5)]
    assert {r.window for r in last} == {(at(5), now)}


def test_markets_not_yet_open_or_already_closed_are_excluded(db) -> None:
    add_market(db, "EARLY", LONG_AGO, at(0.5))  # closed before capture began
    add_market(db, "LATE", at(7), LATER)  # opens after now
    add_market(db, "OPENS", at(2.5), LATER)
    add_market(db, "CLOSES", LONG_AGO, at(3.25))
    add_market(db, "UNKNOWN", None, None)  # unknown times: assumed open, never hidden
    add_session(db, at(1))
    # A book hole over the whole open part of OPENS' first hour: missing, not degraded.
    add_hole(db, "b1", "orderbook_delta", at(2.5), at(3), markets=["OPENS", "CLOSES"])
    got = statuses(db, T0, NOW, NOW)
    assert got == (
        expect(["OPENS"], range(2, 6), OPENS_2="missing")
        | expect(["CLOSES"], range(1, 4), CLOSES_2="degraded")
        | expect(["UNKNOWN"], range(1, 6))
    )
    windows = {
        (r.market_ticker, r.hour.hour): r.window
        for r in compute_coverage(db, "g1", T0, NOW, now=NOW)
    }
    assert windows[("OPENS", 2)] == (at(2.5), at(3))
    assert windows[("CLOSES", 3)] == (at(3), at(3.25))


def test_hours_before_capture_start_are_excluded(db) -> None:
    add_market(db, "A", LONG_AGO, LATER)
    # No session: capture starts with the listener's first hole (not subscribed yet, 01:20).
    add_hole(db, "n1", "orderbook_delta", at(1 + 20 / 60), at(2), cause="not_subscribed")
    # Another gatherer's holes and sessions change nothing for g1.
    add_session(db, T0, gatherer="g2")
    add_hole(db, "x", "ticker", T0, at(6), gatherer="g2")
    got = statuses(db, T0, NOW, NOW)
    # The hole covers the whole captured part of hour 1 (01:20-02:00): missing.
    assert got == expect(["A"], range(1, 6), A_1="missing")
    assert statuses(db, T0, NOW, NOW, gatherer="g3") == {}
    assert statuses(db, T0, NOW, NOW, gatherer="g2") == expect(["A"], range(0, 6), "missing")


def test_holes_spanning_an_hour_boundary_count_in_both_hours(db) -> None:
    for ticker in ("A", "B"):
        add_market(db, ticker, LONG_AGO, LATER)
    add_session(db, at(1))
    add_hole(db, "k1", "ticker", at(2 + 50 / 60), at(3 + 10 / 60))
    add_hole(db, "b1", "orderbook_delta", at(1.5), at(4), markets=["A"])
    got = statuses(db, T0, NOW, NOW)
    assert got == expect(
        ["A", "B"],
        range(1, 6),
        A_1="degraded",
        A_2="missing",
        A_3="missing",
        B_2="degraded",
        B_3="degraded",
    )
    seconds = {
        (r.market_ticker, r.hour.hour): dict(r.assessment.hole_seconds)
        for r in compute_coverage(db, "g1", T0, NOW, now=NOW)
    }
    assert seconds[("B", 2)] == {"ticker": 600.0} and seconds[("B", 3)] == {"ticker": 600.0}
    assert seconds[("A", 3)] == {"orderbook_delta": 3600.0, "ticker": 600.0}


def test_one_market_reads_only_it_and_rows_come_oldest_hour_first(db) -> None:
    for ticker in ("B", "A", "C"):
        add_market(db, ticker, LONG_AGO, LATER)
    add_session(db, at(1))
    add_hole(db, "b1", "orderbook_delta", at(3), at(4), markets=["B", "C"])
    add_hole(db, "k1", "ticker", at(2), at(2.1))
    everything = list(compute_coverage(db, "g1", T0, NOW, now=NOW))
    assert [(r.hour.hour, r.market_ticker) for r in everything] == sorted(
        (h, m) for h in range(1, 6) for m in "ABC"
    )
    only_b = list(compute_coverage(db, "g1", T0, NOW, market="B", now=NOW))
    assert only_b == [r for r in everything if r.market_ticker == "B"]
    with pytest.raises(UnknownMarket, match="NOPE"):
        list(compute_coverage(db, "g1", T0, NOW, market="NOPE", now=NOW))


def test_partial_hours_of_the_range_are_whole_hours_and_bad_ranges_refused(db) -> None:
    add_market(db, "A", LONG_AGO, LATER)
    add_session(db, at(1))
    # 02:30-03:10 covers hours 2 and 3 entirely.
    assert statuses(db, at(2.5), at(3 + 1 / 6), NOW) == expect(["A"], range(2, 4))
    with pytest.raises(ValueError):
        list(compute_coverage(db, "g1", at(3), at(3), now=NOW))
