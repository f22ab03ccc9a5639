"""Fan-out of exchange changes to WebSocket subscriptions (kalshi-api.md §3.5, §3.6).

The hub indexes subscriptions by market so a change costs nothing when nobody listens, builds
each message body once, and hands it to every subscription that carries it. `orderbook_delta`
frames (and, in the legacy format, `trade` frames) take the subscription's next `seq`; one seq
counter per sid runs across all of that sid's markets.

An `orderbook_delta` subscription made with `use_yes_price` (kalshi-api.md §3.2) gets its NO-side
levels on the YES price scale: a NO bid at p is shown at 1 - p (exact in micro-dollars), still
as a NO level (`no_dollars_fp`, `side: "no"`). Such frames are built once per change as well.
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
from app.units import MICROS_PER_DOLLAR

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
        # The `nameless_16` fault: this many "market not found" errors omit the market's ticker
        # (any connection; real servers have sent a bare 16 for a many-market command).
        self.nameless_16 = 0

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
        self,
        sub: Subscription,
        index: int,
        yes: dict[int, int],
        no: dict[int, int],
        places: int = 4,
    ) -> None:
        head = b'"market_ticker":"%s","market_id":"%s"' % (
            self.catalog.market_ticker(index).encode(),
            self.catalog.market_id(index).encode(),
        )
        if sub.yes_price:
            no = {MICROS_PER_DOLLAR - price: size for price, size in no.items()}
        msg = self.wire.snapshot(head, yes, no, places)
        sub.conn.send_seq(sub, b"orderbook_snapshot", msg, False)

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
        yes_scale = None  # the NO-side delta on the YES scale, built when first needed
        for sub in subs:
            if sub.yes_price and not is_yes:
                if yes_scale is None:
                    flipped = MICROS_PER_DOLLAR - price
                    yes_scale = self.wire.delta(state, is_yes, flipped, delta, ts_ns)
                sub.conn.send_seq(sub, b"orderbook_delta", yes_scale, True)
            else:
                sub.conn.send_seq(sub, b"orderbook_delta", msg, True)

    def trade(self, state: MarketState, number: int, ts_ns: int) -> None:
        subs = self._trade.get(state.index)
        if not subs and not self._trade_all:
            return
        msg = self.wire.trade(self.trades, number, state.ticker.encode(), state.grid.places)
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
        fields: dict[str, Any] = {
            "event_ticker": spec.event_ticker,
            "title": spec.title,
            "subtitle": spec.sub_title,
            "collateral_return_type": "",
            "series_ticker": spec.series_ticker,
            "strike_date": to_seconds(ts_ns) + self.catalog.lifetime_ns // 1_000_000_000,
        }
        if not self.wire.legacy:
            fields["exchange_index"] = spec.exchange_index  # required here since §9
        msg = self.wire.event_lifecycle(fields)
        for sub in self._lifecycle:
            sub.conn.send(b'{"type":"event_lifecycle","sid":%d,"msg":%s}' % (sub.sid, msg), sub.sid)

    def event_fee_update(self, event_index: int, fields: dict[str, Any], ts_ns: int) -> None:
        if not self._lifecycle:
            return
        msg = self.wire.event_lifecycle(fields)
        for sub in self._lifecycle:
            sub.conn.send(
                b'{"type":"event_fee_update","sid":%d,"msg":%s}' % (sub.sid, msg), sub.sid
            )
