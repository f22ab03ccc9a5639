"""Which `GET /markets/trades` (and `/historical/trades`) queries cover one capture hole.

Pure functions, no I/O: a hole's stretch widened by the margin becomes whole Unix seconds
(REST filters are seconds, kalshi-api.md §1.8, KAPI-9: the start floored, the end ceiled, so
rounding can only widen the window), split at the historical cutoff (§1.11: trades created
before `trades_created_ts` exist only under `/historical/trades`), and fanned out per market
when the hole names only a few; and, when the cutoff moved while a hole was fetched, which
seconds to ask again. Never narrows a window: a trade fetched twice is stored once (the trades
key), a trade never asked for is lost for good.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.normalize.envelope import EPOCH

NS_PER_S = 1_000_000_000
_SECOND = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class TradeQuery:
    """One cursor-followed trades query: `min_ts`..`max_ts` inclusive, in Unix seconds."""

    min_ts: int
    max_ts: int
    ticker: str | None = None  # None: every market
    historical: bool = False  # `/historical/trades` instead of `/markets/trades`


def query_window(from_at: datetime, to_at: datetime, margin_s: float) -> tuple[int, int]:
    """(min_ts, max_ts) in whole Unix seconds covering [from_at - margin, to_at + margin].

    Integer arithmetic on `timedelta`s (never float seconds): the start is floored and the end
    ceiled to the second, so the exchange's inclusive second filters cover the whole stretch.
    """
    if from_at.tzinfo is None or to_at.tzinfo is None:
        raise ValueError("hole times must be timezone-aware")
    if to_at < from_at:
        raise ValueError(f"hole ends ({to_at}) before it starts ({from_at})")
    margin = timedelta(seconds=margin_s)
    start = from_at - margin - EPOCH
    end = to_at + margin - EPOCH
    return start // _SECOND, -((-end) // _SECOND)


def split_at_cutoff(min_ts: int, max_ts: int, cutoff_ns: int | None) -> list[tuple[int, int, bool]]:
    """The parts of [min_ts, max_ts] to ask each partition for: (min_ts, max_ts, historical).

    Trades created before the cutoff are only in `/historical/trades`, the rest only in
    `/markets/trades`. A cutoff inside a second leaves trades of that second on both sides, so
    both parts include it: a second asked twice costs a request, never a duplicate row. A
    cutoff on a whole second splits cleanly.
    """
    if min_ts > max_ts:
        raise ValueError(f"empty window: min_ts {min_ts} > max_ts {max_ts}")
    if cutoff_ns is None:
        return [(min_ts, max_ts, False)]
    last_historical_s = (cutoff_ns - 1) // NS_PER_S  # the second of the last instant before
    first_live_s = cutoff_ns // NS_PER_S  # the second of the cutoff instant itself
    parts: list[tuple[int, int, bool]] = []
    if min_ts <= last_historical_s:
        parts.append((min_ts, min(max_ts, last_historical_s), True))
    if max_ts >= first_live_s:
        parts.append((max(min_ts, first_live_s), max_ts, False))
    return parts


def requery_parts(
    min_ts: int, max_ts: int, before_ns: int | None, after_ns: int | None
) -> list[tuple[int, int, bool]]:
    """The part of [min_ts, max_ts] to ask again when the cutoff moved during a fetch.

    The cutoff read before the fetch was `before_ns`, the one read after it `after_ns` (None:
    no historical partition). Trades between the two may have changed partition between our
    queries, so neither answer is proof for them. Kalshi's cutoff only moves forward: then
    they are all in `/historical/trades` now, and asking it once more for their seconds is
    enough (a trade answered twice is stored once). Should it ever move back, they are in
    `/markets/trades`. Empty when the cutoff did not move or the window misses the stretch.
    """
    if before_ns == after_ns:
        return []
    forward = after_ns is not None and (before_ns is None or after_ns > before_ns)
    low_ns, high_ns = (before_ns, after_ns) if forward else (after_ns, before_ns)
    assert high_ns is not None  # the two differ, so the later one of them is set
    low_s = min_ts if low_ns is None else max(min_ts, low_ns // NS_PER_S)
    high_s = min(max_ts, (high_ns - 1) // NS_PER_S)
    return [(low_s, high_s, forward)] if low_s <= high_s else []


def plan_queries(
    from_at: datetime,
    to_at: datetime,
    market_tickers: Sequence[str] | None,
    *,
    margin_s: float,
    ticker_query_max: int,
    cutoff_ns: int | None,
) -> list[TradeQuery]:
    """Every query needed for one hole, historical parts first.

    `market_tickers` None means every market of the channel: one unfiltered query per part.
    A list of at most `ticker_query_max` markets gets one `ticker=` query per market and part;
    a longer one an unfiltered query (the caller keeps only the hole's markets). An empty list
    needs nothing.
    """
    min_ts, max_ts = query_window(from_at, to_at, margin_s)
    return _fan_out(split_at_cutoff(min_ts, max_ts, cutoff_ns), market_tickers, ticker_query_max)


def plan_requeries(
    from_at: datetime,
    to_at: datetime,
    market_tickers: Sequence[str] | None,
    *,
    margin_s: float,
    ticker_query_max: int,
    before_ns: int | None,
    after_ns: int | None,
) -> list[TradeQuery]:
    """The extra queries for one hole whose fetch saw the cutoff move (`requery_parts`),
    fanned out over its markets exactly as `plan_queries` does."""
    min_ts, max_ts = query_window(from_at, to_at, margin_s)
    parts = requery_parts(min_ts, max_ts, before_ns, after_ns)
    return _fan_out(parts, market_tickers, ticker_query_max)


def _fan_out(
    parts: list[tuple[int, int, bool]],
    market_tickers: Sequence[str] | None,
    ticker_query_max: int,
) -> list[TradeQuery]:
    if market_tickers is not None and not market_tickers:
        return []
    per_market = market_tickers is not None and len(set(market_tickers)) <= ticker_query_max
    tickers: list[str | None] = (
        list(dict.fromkeys(market_tickers)) if per_market and market_tickers else [None]
    )
    return [
        TradeQuery(low, high, ticker, historical)
        for low, high, historical in parts
        for ticker in tickers
    ]
