"""The status rules on one window, without a database (app/coverage/status.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.coverage.status import Hole, assess

H = datetime(2026, 1, 10, 3, tzinfo=UTC)  # the hour under test: 03:00-04:00
WINDOW = (H, H + timedelta(hours=1))
NOW = H + timedelta(hours=5)


def at(minutes: float) -> datetime:
    return H + timedelta(minutes=minutes)


def hole(
    hole_id: str,
    channel: str,
    start: float,
    end: float | None,
    *,
    backfill: str | None = None,
    cause: str = "disconnect",
) -> Hole:
    return Hole(
        hole_id=hole_id,
        channel=channel,
        cause=cause,
        from_at=at(start),
        to_at=None if end is None else at(end),
        backfill_status=backfill,
    )


def test_no_touching_hole_is_complete() -> None:
    before = hole("a", "ticker", -30, 0)  # ends exactly at the hour: does not touch
    after = hole("b", "ticker", 60, 70)  # starts exactly at the next hour
    result = assess(WINDOW, [before, after], NOW)
    assert result.status == "complete" and result.holes == 0


def test_partial_hole_degrades_with_seconds_per_channel() -> None:
    result = assess(WINDOW, [hole("a", "ticker", 50, 70, cause="seq_gap")], NOW)
    assert result.status == "degraded"
    assert result.hole_seconds == (("ticker", 600.0),)
    assert result.causes == ("seq_gap",) and result.hole_ids == ("a",)


def test_book_holes_whose_union_covers_the_window_make_it_missing() -> None:
    result = assess(
        WINDOW, [hole("a", "orderbook_delta", -5, 40), hole("b", "orderbook_delta", 40, 65)], NOW
    )
    assert result.status == "missing" and result.missing_channels == ("orderbook_delta",)
    assert result.hole_seconds == (("orderbook_delta", 3600.0),)
    gap = assess(
        WINDOW, [hole("a", "orderbook_delta", 0, 40), hole("b", "orderbook_delta", 41, 60)], NOW
    )
    assert gap.status == "degraded"


def test_holes_on_different_channels_do_not_add_up_to_missing() -> None:
    result = assess(WINDOW, [hole("a", "ticker", 0, 30), hole("b", "orderbook_delta", 30, 60)], NOW)
    assert result.status == "degraded" and result.missing_channels == ()


def test_whole_hour_trade_hole_missing_until_backfilled() -> None:
    pending = assess(WINDOW, [hole("t", "trade", 0, 60, backfill="pending")], NOW)
    assert pending.status == "missing" and pending.missing_channels == ("trade",)
    assert (pending.trade_holes, pending.trade_holes_backfilled) == (1, 0)
    failed = assess(WINDOW, [hole("t", "trade", 0, 60, backfill="failed")], NOW)
    assert failed.status == "missing"
    done = assess(WINDOW, [hole("t", "trade", 0, 60, backfill="done")], NOW)
    assert done.status == "degraded" and done.missing_channels == ()
    assert (done.trade_holes, done.trade_holes_backfilled) == (1, 1)


def test_backfill_recovers_its_stretch_even_under_an_overlapping_pending_hole() -> None:
    # A pending hole over the whole hour, but a done one gave back its first half: not missing.
    holes = [
        hole("p", "trade", 0, 60, backfill="pending"),
        hole("d", "trade", 0, 30, backfill="done"),
    ]
    result = assess(WINDOW, holes, NOW)
    assert result.status == "degraded" and (result.trade_holes, result.trade_holes_backfilled) == (
        2,
        1,
    )
    # Two halves, one backfilled: trades exist for half the hour, so degraded.
    halves = [hole("p", "trade", 0, 30), hole("d", "trade", 30, 60, backfill="done")]
    assert assess(WINDOW, halves, NOW).status == "degraded"


def test_backfill_never_helps_books_or_tickers() -> None:
    holes = [hole("d", "trade", 0, 60, backfill="done"), hole("k", "ticker", 0, 60)]
    result = assess(WINDOW, holes, NOW)
    assert result.status == "missing" and result.missing_channels == ("ticker",)


def test_open_hole_runs_to_now() -> None:
    open_hole = hole("o", "orderbook_delta", 30, None)
    assert assess(WINDOW, [open_hole], NOW).status == "degraded"
    # Now inside the hour: the window is clipped at now by the caller and the hole covers it.
    now = at(45)
    assert assess((H, now), [hole("o", "orderbook_delta", 0, None)], now).status == "missing"
    # A hole that opens after now means nothing yet.
    assert assess((H, now), [hole("f", "orderbook_delta", 50, None)], now).status == "complete"


def test_zero_length_hole_inside_the_window_degrades() -> None:
    point = hole("z", "orderbook_delta", 20, 20, cause="seq_gap")
    result = assess(WINDOW, [point], NOW)
    assert result.status == "degraded" and result.hole_seconds == (("orderbook_delta", 0.0),)
    assert assess(WINDOW, [hole("z", "orderbook_delta", 60, 60)], NOW).status == "complete"


def test_channel_not_captured_per_market_only_degrades() -> None:
    result = assess(WINDOW, [hole("m", "multivariate_market_lifecycle", 0, 60)], NOW)
    assert result.status == "degraded"
    lifecycle = assess(WINDOW, [hole("l", "market_lifecycle_v2", 0, 60)], NOW)
    assert lifecycle.status == "missing"
