"""Capture holes: the stretches one connection manager knows it may have missed.

DESIGN §1 guarantee 2 (known gaps). A hole is opened when capture of a channel (or of some
markets' books) stops being continuous and closed when it is continuous again:

* global channels (`trade`, `ticker`, lifecycle): from the listener's start, a disconnect or a
  dropped subscription until the channel's `subscribed` reply of the next subscription;
* order books: per market, from its addition, a disconnect or a sequence gap until a fresh
  snapshot of that market arrives on the live subscription.

The tracker only decides; the manager publishes what it emits as `hole_opened` /
`hole_closed` control records (app/listener/control.py). It never reads a clock itself:
every time is passed in, so the rules are testable without sockets. docs/holes.md has the
rules and why a hole starts `lead_ns` before the last frame read.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from app.listener.control import HOLE_CLOSED, HOLE_OPENED

BOOK_CHANNEL = "orderbook_delta"

Emit = Callable[[str, dict[str, Any]], None]  # (event, record fields)


@dataclass
class OpenHole:
    """One open hole; `waiting` holds the book markets still without a fresh snapshot."""

    hole_id: str
    channel: str
    cause: str
    from_ns: int
    conn_id: str | None
    markets: tuple[str, ...] | None  # None: every market of the channel
    detail: str | None
    waiting: set[str] = field(default_factory=set)

    def fields(self, gatherer: str) -> dict[str, Any]:
        return {
            "gatherer": gatherer,
            "hole_id": self.hole_id,
            "conn_id": self.conn_id,
            "channel": self.channel,
            "market_tickers": list(self.markets) if self.markets is not None else None,
            "cause": self.cause,
            "from_ns": self.from_ns,
            "detail": self.detail,
        }


class HoleTracker:
    """Open holes of one shard, kept across its sessions."""

    def __init__(self, gatherer: str, emit: Emit, lead_ns: int = 0) -> None:
        self.gatherer = gatherer
        self.lead_ns = lead_ns
        self._emit = emit
        self._channels: dict[str, OpenHole] = {}  # global channel -> its open hole
        self._books: list[OpenHole] = []  # open book holes, oldest first
        self._waiting: dict[str, OpenHole] = {}  # book market -> the hole waiting for it
        self.opened = 0
        self.closed = 0

    # -- global channels ------------------------------------------------------------------

    def channel_missed(
        self,
        channel: str,
        cause: str,
        last_seen_ns: int,
        *,
        conn_id: str | None = None,
        detail: str | None = None,
        lead: bool = True,
    ) -> None:
        """Capture of `channel` stopped; what came after `last_seen_ns` may be lost."""
        if channel in self._channels:
            return  # an earlier hole is still open and already covers this stretch
        hole = self._new(channel, cause, last_seen_ns, conn_id, None, detail, lead)
        self._channels[channel] = hole

    def channel_resumed(self, channel: str, at_ns: int) -> None:
        """The channel's subscription is live again (its `subscribed` reply arrived)."""
        hole = self._channels.pop(channel, None)
        if hole is not None:
            self._close(hole, at_ns)

    def channel_blip(
        self, channel: str, cause: str, last_seen_ns: int, at_ns: int, *, conn_id: str, detail: str
    ) -> None:
        """A stretch already over when noticed (a seq gap on a channel with no resnapshot)."""
        hole = self._new(channel, cause, last_seen_ns, conn_id, None, detail, True)
        self._close(hole, at_ns)

    def channel_open(self, channel: str) -> bool:
        return channel in self._channels

    # -- order books ----------------------------------------------------------------------

    def books_missed(
        self,
        tickers: Iterable[str],
        cause: str,
        last_seen_ns: int,
        *,
        conn_id: str | None = None,
        detail: str | None = None,
        lead: bool = True,
    ) -> None:
        """These markets' books are no longer continuous until each gets a fresh snapshot.

        Markets already waiting in an open hole stay in it: that hole covers them until
        their snapshot, which is also when this one would end.
        """
        fresh = sorted(t for t in set(tickers) if t not in self._waiting)
        if not fresh:
            return
        hole = self._new(BOOK_CHANNEL, cause, last_seen_ns, conn_id, tuple(fresh), detail, lead)
        hole.waiting = set(fresh)
        self._books.append(hole)
        for ticker in fresh:
            self._waiting[ticker] = hole

    def book_resumed(self, ticker: str, at_ns: int) -> None:
        """A snapshot of `ticker` arrived on the live subscription."""
        hole = self._waiting.pop(ticker, None)
        if hole is None:
            return
        hole.waiting.discard(ticker)
        if not hole.waiting:
            self._books.remove(hole)
            self._close(hole, at_ns)

    def books_forgotten(self, tickers: Iterable[str], at_ns: int) -> None:
        """Markets no longer wanted (closed, rejected): their holes end when they leave."""
        for ticker in tickers:
            self.book_resumed(ticker, at_ns)

    def book_waiting(self, ticker: str) -> bool:
        return ticker in self._waiting

    # -- all ------------------------------------------------------------------------------

    @property
    def open_holes(self) -> list[OpenHole]:
        return [*self._channels.values(), *self._books]

    def _new(
        self,
        channel: str,
        cause: str,
        last_seen_ns: int,
        conn_id: str | None,
        markets: tuple[str, ...] | None,
        detail: str | None,
        lead: bool,
    ) -> OpenHole:
        start = last_seen_ns - self.lead_ns if lead else last_seen_ns
        hole = OpenHole(uuid.uuid4().hex, channel, cause, start, conn_id, markets, detail)
        self.opened += 1
        self._emit(HOLE_OPENED, hole.fields(self.gatherer))
        return hole

    def _close(self, hole: OpenHole, at_ns: int) -> None:
        self.closed += 1
        self._emit(HOLE_CLOSED, {**hole.fields(self.gatherer), "to_ns": max(at_ns, hole.from_ns)})


class MarketBirths:
    """When the lifecycle channel announced each new market (`created`), so the book hole of a
    market the registry adds later starts at its birth, not when the registry caught up.

    Shared by one listener's managers; bounded (oldest forgotten first): a market never added
    to a book shard must not be remembered for ever.
    """

    def __init__(self, limit: int = 100_000) -> None:
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._limit = limit

    def note(self, ticker: str, received_ns: int) -> None:
        if ticker not in self._seen:
            self._seen[ticker] = received_ns
            if len(self._seen) > self._limit:
                self._seen.popitem(last=False)

    def take(self, ticker: str) -> int | None:
        return self._seen.pop(ticker, None)

    def __len__(self) -> int:
        return len(self._seen)
