"""The capture holes a gatherer recorded, as verify reads them (docs/holes.md).

A sent frame or an exchange event that is not in the database is *explained* when it lies in a
hole of its channel and market: the gatherer knew it might miss it. Times are wall-clock ns on
both sides (the listener's receive clock, the simulator's send clock and `clock.tsv`). Read-only.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.coverage import capture_start as coverage_capture_start

# The subscription channel each exchange message type arrives on (kalshi-api.md §3.5).
CHANNEL_OF_TYPE = {
    "orderbook_snapshot": "orderbook_delta",
    "orderbook_delta": "orderbook_delta",
    "trade": "trade",
    "ticker": "ticker",
    "market_lifecycle_v2": "market_lifecycle_v2",
    "event_lifecycle": "market_lifecycle_v2",
    "event_fee_update": "market_lifecycle_v2",
    "multivariate_market_lifecycle": "multivariate_market_lifecycle",
}


@dataclass(frozen=True)
class Hole:
    channel: str
    markets: frozenset[str] | None  # None: every market
    from_ns: int
    to_ns: int | None  # None: still open
    backfilled: bool

    def covers(self, ticker: str | None, wall_ns: int) -> bool:
        if self.markets is not None and (ticker is None or ticker not in self.markets):
            return False
        return self.from_ns <= wall_ns and (self.to_ns is None or wall_ns <= self.to_ns)


def ns_of(value: datetime | None) -> int | None:
    if value is None:
        return None
    return round(value.timestamp() * 1_000_000) * 1000


def _where(gatherer: str | None) -> tuple[str, tuple[Any, ...]]:
    return (" WHERE gatherer = %s", (gatherer,)) if gatherer else ("", ())


def read_holes(conn: Any, gatherer: str | None) -> list[Hole]:
    where, params = _where(gatherer)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT channel, market_tickers, from_at, to_at, backfill_status FROM capture_holes"
            + where,
            params,
        )
        return [
            Hole(
                channel,
                frozenset(markets) if markets is not None else None,
                ns_of(from_at) or 0,
                ns_of(to_at),
                status == "done",
            )
            for channel, markets, from_at, to_at, status in cur.fetchall()
        ]


def capture_start(conn: Any, gatherer: str | None) -> int | None:
    """The first listener start (`app.coverage.capture_start`), in ns."""
    return ns_of(coverage_capture_start(conn, gatherer))


class HoleIndex:
    """Holes by channel, sorted by start, for many point queries."""

    def __init__(self, holes: Iterable[Hole]) -> None:
        self._by_channel: dict[str | None, list[Hole]] = {}
        everything = sorted(holes, key=lambda h: h.from_ns)
        for hole in everything:
            self._by_channel.setdefault(hole.channel, []).append(hole)
        self._by_channel[None] = everything
        self._starts = {c: [h.from_ns for h in hs] for c, hs in self._by_channel.items()}

    def find(self, channel: str | None, ticker: str | None, wall_ns: int) -> Hole | None:
        """A hole of `channel` and `ticker` covering `wall_ns`; with channel None, any hole
        at all (a frame that belongs to no channel: replies, malformed frames)."""
        holes = self._by_channel.get(channel)
        if not holes:
            return None
        for hole in reversed(holes[: bisect_right(self._starts[channel], wall_ns)]):
            if hole.to_ns is not None and wall_ns > hole.to_ns:
                continue
            if channel is None or hole.markets is None or ticker in hole.markets:
                return hole
        return None

    def overlapping(
        self, channel: str, ticker: str | None, low_ns: int, high_ns: int
    ) -> Hole | None:
        """A hole of `channel` for `ticker` touching [low_ns, high_ns], if any."""
        holes = self._by_channel.get(channel)
        if not holes:
            return None
        for hole in holes[: bisect_right(self._starts[channel], high_ns)]:
            if hole.to_ns is not None and hole.to_ns < low_ns:
                continue
            if hole.markets is None or ticker in hole.markets:
                return hole
        return None

    def overlaps(self, channel: str, ticker: str | None, low_ns: int, high_ns: int) -> bool:
        return self.overlapping(channel, ticker, low_ns, high_ns) is not None

    def __bool__(self) -> bool:
        return bool(self._by_channel.get(None))
