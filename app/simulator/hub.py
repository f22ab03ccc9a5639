"""Fan-out of exchange changes to WebSocket subscriptions (kalshi-api.md §3.5, §3.6).

The hub indexes subscriptions by market so a change costs nothing when nobody listens, builds
each message body once, and hands it to every subscription that carries it. `orderbook_delta`
frames (and, in the legacy format, `trade` frames) take the subscription's next `seq`; one seq
counter per sid runs across all of that sid's markets.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from app.simulator.book import MarketState
from app.simulator.catalog import Catalog
from app.simulator.clock import to_seconds
from app.simulator.connection import Connection, Subscription
from app.simulator.trades import TradeLog
from app.simulator.wire import CurrentWire

ORDERBOOK = "orderbook_delta"
TICKER = "ticker"
TRADE = "trade"
LIFECYCLE = "market_lifecycle_v2"


class Hub:
    """Which subscription wants which market, and delivery of every change to them."""

    def __init__(self, wire: CurrentWire, catalog: Catalog, trades: TradeLog) -> None:
        self.wire = wire
        self.catalog = catalog
        self.trades = trades
        self.connections: dict[int, Connection] = {}
        self._book: dict[int, list[Subscription]] = {}
        self._ticker: dict[int, list[Subscription]] = {}
        self._trade: dict[int, list[Subscription]] = {}
        self._ticker_all: list[Subscription] = []
        self._trade_all: list[Subscription] = []
        self._lifecycle: list[Subscription] = []

    # ---- registry ----------------------------------------------------------------------

    def _index(self, channel: str) -> tuple[dict[int, list[Subscription]], list[Subscription]]:
        if channel == ORDERBOOK:
            return self._book, []
        if channel == TICKER:
            return self._ticker, self._ticker_all
        if channel == TRADE:
            return self._trade, self._trade_all
        return {}, self._lifecycle if channel == LIFECYCLE else []

    def attach(self, sub: Subscription, indexed: bool = True) -> None:
        """Register a subscription.

        With `indexed=False` its markets are indexed later, chunk by chunk as their snapshots
        go out (`index_markets`).
        """
        _, everyone = self._index(sub.channel)
        if sub.markets is None:
            everyone.append(sub)
        elif indexed:
            self.index_markets(sub, sub.markets)

    def index_markets(self, sub: Subscription, indexes: Iterable[int]) -> None:
        """Start delivering changes of these markets (already in `sub.markets`) to `sub`."""
        by_market, _ = self._index(sub.channel)
        for index in indexes:
            subs = by_market.setdefault(index, [])
            if sub not in subs:
                subs.append(sub)

    def detach(self, sub: Subscription) -> None:
        _, everyone = self._index(sub.channel)
        if sub.markets is None:
            if sub in everyone:
                everyone.remove(sub)
            return
        self.remove_markets(sub, list(sub.markets))

    def add_markets(self, sub: Subscription, indexes: list[int]) -> list[int]:
        """Add markets to a per-market subscription (not yet indexed); returns the new ones."""
        assert sub.markets is not None
        added = [index for index in indexes if index not in sub.markets]
        sub.markets.update(added)
        return added

    def remove_markets(self, sub: Subscription, indexes: list[int]) -> None:
        assert sub.markets is not None
        by_market, _ = self._index(sub.channel)
        for index in indexes:
            sub.markets.discard(index)
            subs = by_market.get(index)
            if subs is not None and sub in subs:
                subs.remove(sub)
                if not subs:
                    del by_market[index]

    def remove_connection(self, conn: Connection) -> None:
        for sub in list(conn.subs.values()):
            self.detach(sub)
        conn.subs.clear()
        self.connections.pop(conn.id, None)

    def flush_all(self) -> None:
        for conn in list(self.connections.values()):
            conn.flush()

    # ---- snapshots on request ----------------------------------------------------------

    def send_snapshot(
        self, sub: Subscription, index: int, yes: dict[int, int], no: dict[int, int]
    ) -> None:
        head = b'"market_ticker":"%s","market_id":"%s"' % (
            self.catalog.market_ticker(index).encode(),
            self.catalog.market_id(index).encode(),
        )
        sub.conn.send_seq(sub, b"orderbook_snapshot", self.wire.snapshot(head, yes, no), False)

    def send_ticker(self, sub: Subscription, state: MarketState, ts_ns: int) -> None:
        sub.conn.send(
            b'{"type":"ticker","sid":%d,"msg":%s}' % (sub.sid, self.wire.ticker(state, ts_ns)),
            sub.sid,
        )

    # ---- ExchangeListener --------------------------------------------------------------

    def book_delta(
        self, state: MarketState, is_yes: bool, price: int, delta: int, ts_ns: int
    ) -> None:
        subs = self._book.get(state.index)
        if not subs:
            return
        msg = self.wire.delta(state, is_yes, price, delta, ts_ns)
        for sub in subs:
            sub.conn.send_seq(sub, b"orderbook_delta", msg, True)

    def trade(self, state: MarketState, number: int, ts_ns: int) -> None:
        subs = self._trade.get(state.index)
        if not subs and not self._trade_all:
            return
        msg = self.wire.trade(self.trades, number, state.ticker.encode())
        sequenced = self.wire.trade_has_seq
        for group in (self._trade_all, subs or ()):
            for sub in group:
                if sequenced:
                    sub.conn.send_seq(sub, b"trade", msg, False)
                else:
                    sub.conn.send(b'{"type":"trade","sid":%d,"msg":%s}' % (sub.sid, msg), sub.sid)

    def ticker(self, state: MarketState, ts_ns: int) -> None:
        subs = self._ticker.get(state.index)
        if not subs and not self._ticker_all:
            return
        msg = self.wire.ticker(state, ts_ns)
        for group in (self._ticker_all, subs or ()):
            for sub in group:
                sub.conn.send(b'{"type":"ticker","sid":%d,"msg":%s}' % (sub.sid, msg), sub.sid)

    def lifecycle(self, index: int, event_type: str, fields: dict[str, Any], ts_ns: int) -> None:
        if not self._lifecycle:
            return
        msg = self.wire.lifecycle(self.catalog.market_ticker(index), event_type, fields)
        for sub in self._lifecycle:
            sub.conn.send(
                b'{"type":"market_lifecycle_v2","sid":%d,"msg":%s}' % (sub.sid, msg), sub.sid
            )

    def event_created(self, event_index: int, ts_ns: int) -> None:
        if not self._lifecycle:
            return
        spec = self.catalog.event(event_index)
        msg = self.wire.event_lifecycle(
            {
                "event_ticker": spec.event_ticker,
                "title": spec.title,
                "subtitle": spec.sub_title,
                "collateral_return_type": "",
                "series_ticker": spec.series_ticker,
                "strike_date": to_seconds(ts_ns) + self.catalog.lifetime_ns // 1_000_000_000,
            }
        )
        for sub in self._lifecycle:
            sub.conn.send(b'{"type":"event_lifecycle","sid":%d,"msg":%s}' % (sub.sid, msg), sub.sid)
