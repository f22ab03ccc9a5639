"""The coverage status of one market in one hour for one gatherer, from the holes touching it.

Pure: the caller (`app.coverage.market_hours`) chooses the *window* — the hour ∩ the market's
open interval ∩ the gatherer's capture period, clipped at now — and the candidate holes;
nothing here reads a clock or a database. The rules (docs/coverage.md):

- `complete`: no hole touches the window.
- `missing`: for some captured channel, what that channel lost covers the whole window. A
  channel loses the union of its holes; the trade channel gets back every stretch a trade hole
  with backfill `done` covers (REST returned those trades), so a fully backfilled hour is
  never `missing` — but it is not `complete` either: the WebSocket frames (raw bytes, receive
  times) of that stretch were never captured, and a book or ticker hole cannot be backfilled.
- `degraded`: any other window a hole touches.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from app.coverage.intervals import clip_intervals, covers, measure, subtract_intervals

Status = Literal["complete", "degraded", "missing"]
STATUSES: tuple[Status, ...] = ("complete", "degraded", "missing")

TRADE = "trade"
# The channels whose loss over a whole window makes it `missing` (the listener's per-market
# channels, DESIGN §2); a hole on any other channel only degrades.
CAPTURED_CHANNELS: tuple[str, ...] = ("orderbook_delta", TRADE, "ticker", "market_lifecycle_v2")

Window = tuple[datetime, datetime]


@dataclass(frozen=True, slots=True)
class Hole:
    """One `capture_holes` row, as coverage needs it."""

    hole_id: str
    channel: str
    cause: str
    from_at: datetime
    to_at: datetime | None  # None: still open, i.e. up to now
    backfill_status: str | None = None
    market_tickers: frozenset[str] | None = None  # None: every market of the channel

    def span(self, now: datetime) -> Window:
        return (self.from_at, self.to_at if self.to_at is not None else now)

    def touches(self, window: Window, now: datetime) -> bool:
        """Overlaps the window; a zero-length hole counts when its instant lies inside, since
        it still records that something was lost there."""
        start, end = self.span(now)
        low, high = window
        if start < end:
            return start < high and low < end
        return self.to_at is not None and low <= start < high

    def applies_to(self, ticker: str) -> bool:
        return self.market_tickers is None or ticker in self.market_tickers

    @property
    def backfilled(self) -> bool:
        return self.channel == TRADE and self.backfill_status == "done"


@dataclass(frozen=True, slots=True)
class Assessment:
    """What the holes mean for one window: the status and the counts behind it."""

    status: Status
    hole_ids: tuple[str, ...] = ()
    causes: tuple[str, ...] = ()
    trade_holes: int = 0
    trade_holes_backfilled: int = 0
    hole_seconds: tuple[tuple[str, float], ...] = ()  # (channel, seconds of window in holes)
    missing_channels: tuple[str, ...] = ()

    @property
    def holes(self) -> int:
        return len(self.hole_ids)


COMPLETE = Assessment("complete")


def lost_intervals(channel: str, holes: list[Hole], window: Window, now: datetime) -> list[Window]:
    """The stretches of `window` where `channel` has nothing, after trade backfills."""
    spans = [h.span(now) for h in holes if h.channel == channel]
    lost = clip_intervals(spans, window)
    if channel == TRADE:
        recovered = [h.span(now) for h in holes if h.channel == channel and h.backfilled]
        lost = subtract_intervals(lost, recovered)
    return lost


def _hole_seconds(channel: str, holes: list[Hole], window: Window, now: datetime) -> float:
    spans = [h.span(now) for h in holes if h.channel == channel]
    return round(measure(clip_intervals(spans, window)).total_seconds(), 6)


def assess(window: Window, holes: list[Hole], now: datetime) -> Assessment:
    """The status of `window` given candidate holes (those not touching it are ignored)."""
    touching = [h for h in holes if h.touches(window, now)]
    if not touching:
        return COMPLETE
    channels = sorted({h.channel for h in touching})
    seconds = tuple(
        (channel, _hole_seconds(channel, touching, window, now)) for channel in channels
    )
    missing = tuple(
        channel
        for channel in CAPTURED_CHANNELS
        if channel in channels and covers(lost_intervals(channel, touching, window, now), window)
    )
    trade = [h for h in touching if h.channel == TRADE]
    return Assessment(
        status="missing" if missing else "degraded",
        hole_ids=tuple(sorted(h.hole_id for h in touching)),
        causes=tuple(sorted({h.cause for h in touching})),
        trade_holes=len(trade),
        trade_holes_backfilled=sum(1 for h in trade if h.backfilled),
        hole_seconds=seconds,
        missing_channels=missing,
    )
