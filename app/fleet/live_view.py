"""A live view of what an exchange serves: frame rates per message type, trades, gaps.

This is the demo's window onto the exchange (or the simulator). It subscribes to the global
`ticker`, `trade` and `market_lifecycle_v2` channels and to `orderbook_delta` for a handful of
open markets, counts what arrives and checks `seq` continuity per sid. It stores nothing: the
capture path (listener -> Redis Streams -> ingest) is what keeps data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson

from app.kalshi.auth import Signer
from app.kalshi.errors import KalshiError
from app.kalshi.ws import KalshiWebSocket, RawFrame
from app.logs import log_event

log = logging.getLogger("kalshi_data.live_view")

GLOBAL_CHANNELS = ("ticker", "trade", "market_lifecycle_v2")


@dataclass(frozen=True)
class ExchangeTarget:
    """Where the exchange is, and how to sign for it (no signer = unsigned requests)."""

    label: str
    rest_url: str
    ws_url: str
    signer: Signer | None = None


@dataclass
class WatchStats:
    """Counters the status line reads; only the watch task writes them."""

    frames: Counter[str] = field(default_factory=Counter)
    total: int = 0
    gaps: int = 0
    reconnects: int = 0
    errors: int = 0
    last_trade: str = ""
    connected: bool = False
    book_markets: int = 0


class LiveView:
    """Watches one exchange over one WebSocket connection, reconnecting with backoff."""

    def __init__(self, target: ExchangeTarget, book_tickers: list[str]) -> None:
        self.target = target
        self.book_tickers = book_tickers
        self.stats = WatchStats(book_markets=len(book_tickers))
        self._next_seq: dict[int, int] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until `stop` is set; connection failures are retried, never fatal."""
        attempt = 0
        while not stop.is_set():
            try:
                await self._session(stop)
                attempt = 0
            except KalshiError as exc:
                log_event(log, "watch_disconnected", logging.WARNING, reason=str(exc))
            self.stats.connected = False
            if stop.is_set():
                return
            self.stats.reconnects += 1
            delay = min(0.5 * 2**attempt, 30.0) * (1 + random.random() / 4)
            attempt += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    async def _session(self, stop: asyncio.Event) -> None:
        ws = await KalshiWebSocket.connect(
            self.target.ws_url, signer=self.target.signer, on_frame=self._count
        )
        async with ws:
            self.stats.connected = True
            self._next_seq.clear()
            await ws.subscribe(list(GLOBAL_CHANNELS))
            if self.book_tickers:
                await ws.subscribe(["orderbook_delta"], market_tickers=self.book_tickers)
            closed = asyncio.ensure_future(ws.wait_closed())
            stopped = asyncio.ensure_future(stop.wait())
            done, pending = await asyncio.wait(
                {closed, stopped}, return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()
            if closed in done:
                info = closed.result()
                log_event(log, "watch_closed", logging.WARNING, code=info.code, reason=info.reason)

    def _count(self, frame: RawFrame) -> None:
        stats = self.stats
        stats.total += 1
        try:
            decoded = orjson.loads(frame.data)
            kind = str(decoded.get("type", "?"))
        except (orjson.JSONDecodeError, AttributeError):
            stats.frames["malformed"] += 1
            return
        stats.frames[kind] += 1
        if kind == "error":
            stats.errors += 1
            log_event(log, "exchange_error_reply", logging.WARNING, reply=decoded.get("msg"))
        seq, sid = decoded.get("seq"), decoded.get("sid")
        if kind in ("orderbook_snapshot", "orderbook_delta") and isinstance(seq, int):
            expected = self._next_seq.get(sid)
            if expected is not None and seq != expected:
                stats.gaps += 1
            self._next_seq[sid] = seq + 1
        elif kind == "trade":
            msg = decoded.get("msg") or {}
            price = msg.get("yes_price_dollars", "?")
            stats.last_trade = f"{msg.get('market_ticker', '?')} {msg.get('count_fp', '?')}@{price}"


class StatusLine:
    """Renders `LiveView` counters once a second: in place on a terminal, as lines otherwise."""

    def __init__(self, view: LiveView, interactive: bool) -> None:
        self.view = view
        self.interactive = interactive
        self._last_total = 0
        self._last_time = time.monotonic()
        self._last_print = 0.0

    def render(self) -> str:
        now = time.monotonic()
        stats = self.view.stats
        rate = (stats.total - self._last_total) / max(now - self._last_time, 1e-6)
        self._last_total, self._last_time = stats.total, now
        book = stats.frames["orderbook_snapshot"] + stats.frames["orderbook_delta"]
        state = "connected" if stats.connected else "connecting"
        return (
            f"{self.view.target.label} {state} | {rate:7.0f} frames/s | total {stats.total}"
            f" | book {book} ({stats.book_markets} mkts) | trades {stats.frames['trade']}"
            f" | tickers {stats.frames['ticker']} | lifecycle {stats.frames['market_lifecycle_v2']}"
            f" | gaps {stats.gaps} | reconnects {stats.reconnects}"
            + (f" | last {stats.last_trade}" if stats.last_trade else "")
        )

    def summary(self, elapsed_s: float) -> str:
        """One closing line: totals and the average rate over the whole run."""
        stats = self.view.stats
        book = stats.frames["orderbook_snapshot"] + stats.frames["orderbook_delta"]
        return (
            f"{self.view.target.label} | {stats.total / max(elapsed_s, 1e-6):.0f} frames/s average"
            f" | total {stats.total} | book {book} ({stats.book_markets} mkts)"
            f" | trades {stats.frames['trade']} | tickers {stats.frames['ticker']}"
            f" | lifecycle {stats.frames['market_lifecycle_v2']} | gaps {stats.gaps}"
            f" | reconnects {stats.reconnects} | errors {stats.errors}"
        )

    def tick(self) -> str | None:
        """The line to show now, or None when a non-interactive output should stay quiet."""
        line = self.render()
        now = time.monotonic()
        if self.interactive or now - self._last_print >= 5:
            self._last_print = now
            return line
        return None
