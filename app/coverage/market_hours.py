"""Coverage per (market, hour) for one gatherer, computed from `capture_holes` and `markets`.

Read only: nothing here writes (`app.coverage.table.refresh_coverage` stores the result). The
holes table is small (a few holes a minute per gatherer), so the range's holes are loaded once;
the markets table can hold a million rows, so markets are streamed hour by hour through a
server-side cursor, filtered in SQL to those open in the hour, and a single market asked for
is read alone. Rows come out oldest hour first, markets in ticker order within an hour.

What is claimed (docs/coverage.md): a (market, hour) is reported only where the market was open
(registry open/close times; an unknown time is taken as unbounded, so a gap is reported rather
than hidden) and the gatherer was capturing (from its first connection session or hole start,
up to now).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

from app.coverage.status import COMPLETE, Assessment, Hole, Status, Window, assess
from app.db.engine import dbapi_connection

HOUR = timedelta(hours=1)
_cursor_names = count(1)


class UnknownMarket(LookupError):
    """The market asked for is not in the registry (`markets`)."""


@dataclass(frozen=True, slots=True)
class MarketHour:
    """One market in one UTC hour: the claimed window and what the holes make of it."""

    market_ticker: str
    hour: datetime  # start of the UTC hour
    window: Window  # the part of the hour claimed: open, captured, before now
    assessment: Assessment

    @property
    def status(self) -> Status:
        return self.assessment.status


def floor_hour(at: datetime) -> datetime:
    """Start of the UTC hour holding `at` (an aware datetime)."""
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hours_between(since: datetime, until: datetime, now: datetime) -> list[datetime]:
    """The whole UTC hours overlapping [since, until) that started before `now`."""
    if since.tzinfo is None or until.tzinfo is None:
        raise ValueError("since and until must be timezone-aware")
    if not since < until:
        raise ValueError("since must be before until")
    hours = []
    hour = floor_hour(since)
    while hour < until and hour < now:
        hours.append(hour)
        hour += HOUR
    return hours


def capture_start(conn: Any, gatherer: str | None) -> datetime | None:
    """When capture began: the first listener start of the gatherer (of every gatherer with
    None), i.e. its first connection session or `not_subscribed` hole, if any.

    Before it there is no claim at all. Holes of other causes do not count: a disconnect hole
    starts a lead before the last delivery, and a successor may record holes of a predecessor
    whose sessions are not in this database; `least` ignores a NULL side."""
    scope = "" if gatherer is None else " AND gatherer = %(g)s"
    with dbapi_connection(conn).cursor() as cur:
        cur.execute(
            "SELECT least("
            f"(SELECT min(opened_at) FROM connection_sessions WHERE true{scope}), "
            "(SELECT min(from_at) FROM capture_holes WHERE cause = 'not_subscribed'"
            f"{scope}))",
            {"g": gatherer},
        )
        row = cur.fetchone()
    return None if row is None or row[0] is None else row[0].astimezone(UTC)


def load_holes(
    conn: Any, gatherer: str, low: datetime, high: datetime, *, market: str | None = None
) -> list[Hole]:
    """The gatherer's holes meeting [low, high) (zero-length ones at `low` included), for one
    market when given (its own holes and the every-market ones)."""
    query = (
        "SELECT hole_id, channel, cause, from_at, to_at, backfill_status, market_tickers "
        "FROM capture_holes WHERE gatherer = %(g)s AND from_at < %(high)s "
        "AND (to_at IS NULL OR to_at >= %(low)s)"
    )
    params: dict[str, Any] = {"g": gatherer, "low": low, "high": high}
    if market is not None:
        query += " AND (market_tickers IS NULL OR %(m)s = ANY(market_tickers))"
        params["m"] = market
    with dbapi_connection(conn).cursor() as cur:
        cur.execute(query + " ORDER BY from_at, hole_id", params)
        rows = cur.fetchall()
    return [
        Hole(
            hole_id=hole_id,
            channel=channel,
            cause=cause,
            from_at=from_at.astimezone(UTC),
            to_at=None if to_at is None else to_at.astimezone(UTC),
            backfill_status=backfill,
            market_tickers=None if tickers is None else frozenset(tickers),
        )
        for hole_id, channel, cause, from_at, to_at, backfill, tickers in rows
    ]


# Times only where they cut the hour: most markets are open all of it, and NULLs cost nothing
# to parse (a third of the time per row on 100k markets).
_OPEN_IN = (
    "SELECT ticker, CASE WHEN open_time > %(low)s THEN open_time END, "
    "CASE WHEN close_time < %(high)s THEN close_time END FROM markets "
    "WHERE (open_time IS NULL OR open_time < %(high)s) "
    "AND (close_time IS NULL OR close_time > %(low)s) ORDER BY ticker"
)


def _markets_open_in(
    conn: Any, window: Window, batch: int
) -> Iterator[tuple[str, datetime | None, datetime | None]]:
    raw = dbapi_connection(conn)
    # A named cursor streams `batch` rows at a time; WITH HOLD lets it live in autocommit mode.
    name = f"kd_coverage_markets_{next(_cursor_names)}"
    with raw.cursor(name=name, withhold=raw.autocommit) as cur:
        cur.itersize = batch
        cur.execute(_OPEN_IN, {"low": window[0], "high": window[1]})
        while rows := cur.fetchmany(batch):
            yield from rows


def _one_market(conn: Any, ticker: str) -> tuple[str, datetime | None, datetime | None]:
    with dbapi_connection(conn).cursor() as cur:
        cur.execute(
            "SELECT ticker, open_time, close_time FROM markets WHERE ticker = %s", (ticker,)
        )
        row = cur.fetchone()
    if row is None:
        raise UnknownMarket(f"unknown market {ticker}: it is not in the markets table")
    return row[0], row[1], row[2]


def _market_window(
    hour_window: Window, open_time: datetime | None, close_time: datetime | None
) -> Window | None:
    low, high = hour_window
    if open_time is not None and low < open_time:
        low = open_time.astimezone(UTC)
    if close_time is not None and close_time < high:
        high = close_time.astimezone(UTC)
    return (low, high) if low < high else None


def compute_coverage(
    conn: Any,
    gatherer: str,
    since: datetime,
    until: datetime,
    *,
    market: str | None = None,
    now: datetime | None = None,
    batch: int = 10_000,
) -> Iterator[MarketHour]:
    """Every claimed (market, hour) of the whole UTC hours overlapping [since, until).

    Streams; needs the caller's connection for as long as it is iterated. Raises
    `UnknownMarket` for a `market` not in the registry, `ValueError` for a bad range.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    hours = hours_between(since, until, now)
    start = capture_start(conn, gatherer)
    only = _one_market(conn, market) if market is not None else None
    if start is None:
        return
    hours = [h for h in hours if start < h + HOUR]
    if not hours:
        return
    holes = load_holes(conn, gatherer, max(hours[0], start), hours[-1] + HOUR, market=market)
    for hour in hours:
        hour_window = (max(hour, start), min(hour + HOUR, now))
        touching = [h for h in holes if h.touches(hour_window, now)]
        everywhere = [h for h in touching if h.market_tickers is None]
        by_market: dict[str, list[Hole]] = {}
        for hole in touching:
            for ticker in hole.market_tickers or ():
                by_market.setdefault(ticker, []).append(hole)
        # Markets open the whole hour with the same holes share one assessment.
        shared: dict[tuple[str, ...], Assessment] = {}
        markets = [only] if only is not None else _markets_open_in(conn, hour_window, batch)
        for ticker, open_time, close_time in markets:
            window = _market_window(hour_window, open_time, close_time)
            if window is None:
                continue
            own = by_market.get(ticker, [])
            if not touching:
                result = COMPLETE
            elif window == hour_window:
                key = tuple(h.hole_id for h in own)
                found = shared.get(key)
                if found is None:
                    found = shared[key] = assess(hour_window, everywhere + own, now)
                result = found
            else:
                result = assess(window, everywhere + own, now)
            yield MarketHour(ticker, hour, window, result)
