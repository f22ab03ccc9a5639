"""WebSocket commands: subscribe, unsubscribe, update_subscription, list_subscriptions.

kalshi-api.md §3.2-§3.4 and §9. Every malformed command is answered with the documented error
code and nothing else changes. Replies carry the command's `id` when it sent a non-zero integer
one. Every snapshot consumes a seq. `unsubscribed` and `ok` replies on a sequenced sid carry a
`seq` too (§3.6, an open question in §7.1, so both answers are simulated): by default the sid's
current position (the last seq sent; nothing consumed), with `ack_consumes_seq` the sid's next
seq, which the ack then consumes (the next data frame has seq + 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from app.simulator.connection import Connection, Subscription
from app.simulator.exchange import Exchange
from app.simulator.hub import LIFECYCLE, ORDERBOOK, TICKER, TRADE, Hub

ERROR_MESSAGES = {  # the official list 1-28 (kalshi-api.md §3.4, §9)
    1: "Unable to process message",
    2: "Params required",
    3: "Channels required",
    4: "Subscription IDs required",
    5: "Unknown command",
    6: "Already subscribed",  # retired: never emitted
    7: "Unknown subscription ID",
    8: "Unknown channel name",
    9: "Authentication required",
    10: "Channel error",
    11: "Invalid parameter",
    12: "Exactly one subscription ID is required",
    13: "Unsupported action",
    14: "Market Ticker required",
    15: "Action required",
    16: "Market not found",
    17: "Internal error",
    18: "Command timeout",
    19: "shard_factor must be > 0",
    20: "shard_factor is required when shard_key is set",
    21: "shard_key must be >= 0 and < shard_factor",
    22: "shard_factor must be <= 100",
    23: "Match IDs required",
    24: "Index IDs required",
    25: "Subscription buffer overflow",
    26: "Subscription market limit exceeded",
    27: "Too many requests",
    28: "Underlying tickers required",
}


@dataclass(frozen=True)
class ChannelRule:
    needs_auth: bool
    markets: str  # "required" | "optional" | "none"
    silent: bool  # accepted, but the simulator has nothing to publish on it
    # A list parameter the channel cannot do without, and the error code when it is missing.
    requires: tuple[str, int] | None = None


CHANNELS: dict[str, ChannelRule] = {
    ORDERBOOK: ChannelRule(True, "required", False),
    TICKER: ChannelRule(False, "optional", False),
    TRADE: ChannelRule(False, "optional", False),
    LIFECYCLE: ChannelRule(False, "none", False),
    "multivariate_market_lifecycle": ChannelRule(False, "none", True),
    "fill": ChannelRule(True, "optional", True),
    "market_positions": ChannelRule(True, "optional", True),
    "user_orders": ChannelRule(True, "optional", True),
    "order_group_updates": ChannelRule(True, "none", True),
    "communications": ChannelRule(True, "none", True),
    # Reference prices (§9): accepted and silent, parameters checked.
    "pyth_value": ChannelRule(False, "none", True, ("underlying_tickers", 28)),
    "cfbenchmarks_value": ChannelRule(True, "none", True, ("index_ids", 24)),
    "cfbenchmarks_value_5hz": ChannelRule(True, "none", True, ("index_ids", 24)),
}
# `multivariate` was removed on 2026-08-06 (§9: error 8 since); the legacy format predates that.
LEGACY_CHANNELS: dict[str, ChannelRule] = {
    **CHANNELS,
    "multivariate": ChannelRule(False, "none", True),
}
ACTIONS = ("add_markets", "delete_markets", "get_snapshot")
# Snapshots are built this many markets at a time, letting other connections and the order
# flow run in between; a market's deltas flow only once its snapshot has been queued.
SNAPSHOT_CHUNK = 2000


class CommandError(Exception):
    """A command rejected with a Kalshi WebSocket error code."""

    def __init__(self, code: int, detail: str | None = None, market_ticker: str | None = None):
        super().__init__(detail or ERROR_MESSAGES[code])
        self.code = code
        self.market_ticker = market_ticker


def error_message(code: int, command_id: int | None, **extra: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"code": code, "msg": ERROR_MESSAGES.get(code, "Error"), **extra}
    reply: dict[str, Any] = {"type": "error", "msg": msg}
    if command_id:
        reply = {"id": command_id, **reply}
    return reply


class CommandHandler:
    """Parses and executes client commands against the hub and the exchange."""

    def __init__(self, hub: Hub, exchange: Exchange, ack_consumes_seq: bool = False) -> None:
        self.hub = hub
        self.exchange = exchange
        self.ack_consumes_seq = ack_consumes_seq
        self.channels = LEGACY_CHANNELS if exchange.catalog.legacy else CHANNELS

    def handle_text(self, conn: Connection, text: str | bytes) -> None:
        try:
            command = orjson.loads(text)
        except orjson.JSONDecodeError:
            conn.send_json(error_message(1, None))
            return
        command_id = None
        if isinstance(command, dict):
            raw_id = command.get("id")
            if isinstance(raw_id, int) and not isinstance(raw_id, bool) and raw_id != 0:
                command_id = raw_id
        try:
            if not isinstance(command, dict):
                raise CommandError(1)
            self._dispatch(conn, command, command_id)
        except CommandError as exc:
            extra = {"market_ticker": exc.market_ticker} if exc.market_ticker else {}
            if exc.code == 16 and extra and self.hub.nameless_16 > 0:
                self.hub.nameless_16 -= 1
                extra = {}
                conn.recorder.fault(
                    {"fault": "nameless_16", "source": "admin", "conn": conn.id,
                     "market_ticker": exc.market_ticker}
                )  # fmt: skip
            conn.send_json(error_message(exc.code, command_id, **extra))

    def _dispatch(self, conn: Connection, command: dict[str, Any], command_id: int | None) -> None:
        cmd = command.get("cmd")
        if cmd == "list_subscriptions":
            self._list(conn, command_id)
            return
        if cmd not in ("subscribe", "unsubscribe", "update_subscription"):
            raise CommandError(5)
        params = command.get("params")
        if not isinstance(params, dict) or not params:
            raise CommandError(2)
        if cmd == "subscribe":
            self._subscribe(conn, params, command_id)
        elif cmd == "unsubscribe":
            self._unsubscribe(conn, params, command_id)
        else:
            self._update(conn, params, command_id)

    # ---- helpers -----------------------------------------------------------------------

    def _reply(self, conn: Connection, command_id: int | None, **body: Any) -> None:
        conn.send_json({"id": command_id, **body} if command_id else body)

    def _tickers(self, params: dict[str, Any]) -> list[str] | None:
        """The market tickers named by `market_ticker`/`market_tickers`, None when absent."""
        single, many = params.get("market_ticker"), params.get("market_tickers")
        if single is not None and many is not None:
            raise CommandError(11, "market_ticker and market_tickers are mutually exclusive")
        if single is not None:
            if not isinstance(single, str):
                raise CommandError(11, "market_ticker must be a string")
            return [single]
        if many is not None:
            if not isinstance(many, list) or not all(isinstance(t, str) for t in many):
                raise CommandError(11, "market_tickers must be a list of strings")
            return many
        return None

    def _indexes(self, tickers: list[str]) -> list[int]:
        indexes = []
        for ticker in tickers:
            index = self.exchange.catalog.market_index(ticker)
            if index is None or not self.exchange.exists(index):
                raise CommandError(16, market_ticker=ticker)
            indexes.append(index)
        return list(dict.fromkeys(indexes))

    def _snapshots(
        self, conn: Connection, sub: Subscription, indexes: list[int], index: bool
    ) -> None:
        """Snapshot these markets now, or the first chunk now and the rest via `pending`.

        With `index`, each market starts receiving deltas right after its snapshot, so no
        delta can precede the snapshot it applies to.
        """
        first, rest = indexes[:SNAPSHOT_CHUNK], indexes[SNAPSHOT_CHUNK:]
        self.snapshot_chunk(sub, first, index)
        if rest:
            conn.pending.append((sub, rest, index))

    def snapshot_chunk(self, sub: Subscription, indexes: list[int], index: bool) -> None:
        exchange = self.exchange
        for market in indexes:
            yes, no = exchange.book(market)
            self.hub.send_snapshot(sub, market, yes, no, exchange.grid(market).places)
        if index:
            self.hub.index_markets(sub, indexes)

    def run_pending(self, conn: Connection) -> bool:
        """Do one chunk of deferred snapshot work; False when there is none left."""
        if not conn.pending:
            return False
        sub, indexes, index = conn.pending[0]
        chunk, rest = indexes[:SNAPSHOT_CHUNK], indexes[SNAPSHOT_CHUNK:]
        if sub.sid in conn.subs:
            self.snapshot_chunk(sub, chunk, index)
        if rest:
            conn.pending[0] = (sub, rest, index)
        else:
            conn.pending.popleft()
        return True

    def _initial_tickers(self, sub: Subscription, indexes: list[int]) -> None:
        for index in indexes:
            self.hub.send_ticker(sub, self.exchange.peek_state(index), self.exchange.now_ns)

    # ---- commands ----------------------------------------------------------------------

    def _subscribe(self, conn: Connection, params: dict[str, Any], command_id: int | None) -> None:
        channels = params.get("channels")
        if not isinstance(channels, list) or not channels:
            raise CommandError(3)
        known = self.channels
        for channel in channels:
            if not isinstance(channel, str) or channel not in known:
                raise CommandError(8)
        if "market_id" in params or "market_ids" in params:
            raise CommandError(11, "market_id(s) are not supported by the simulator")
        yes_price = params.get("use_yes_price", False)
        if not isinstance(yes_price, bool):
            raise CommandError(11, "use_yes_price must be true or false")
        tickers = self._tickers(params)
        for channel in channels:
            rule = known[channel]
            if rule.needs_auth and not conn.authenticated:
                raise CommandError(9)
            if rule.markets == "required" and not tickers:
                raise CommandError(14)
            if rule.requires is not None:
                name, code = rule.requires
                value = params.get(name)
                if not value:
                    raise CommandError(code)
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise CommandError(11, f"{name} must be a list of strings")
        indexes = self._indexes(tickers) if tickers else []
        initial = params.get("send_initial_snapshot") is True
        skip_ack = params.get("skip_ticker_ack") is True
        for channel in dict.fromkeys(channels):
            rule = known[channel]
            markets = set(indexes) if rule.markets != "none" and tickers else None
            sid = conn.next_sid
            conn.next_sid += 1
            sequenced = channel == ORDERBOOK or (channel == TRADE and self.hub.wire.trade_has_seq)
            sub = Subscription(
                conn, sid, channel, markets, sequenced, skip_ack, yes_price and channel == ORDERBOOK
            )
            conn.subs[sid] = sub
            if sub.yes_price:  # truth readers must know which frames use the YES scale
                conn.recorder.connection(
                    {"conn": conn.id, "event": "subscribed", "sid": sid, "use_yes_price": True}
                )
            if not rule.silent:
                self.hub.attach(sub, indexed=channel != ORDERBOOK)
            self._reply(conn, command_id, type="subscribed", msg={"channel": channel, "sid": sid})
            if channel == ORDERBOOK:
                self._snapshots(conn, sub, indexes, index=True)
            elif channel == TICKER and initial and indexes:
                self._initial_tickers(sub, indexes)

    def _unsubscribe(
        self, conn: Connection, params: dict[str, Any], command_id: int | None
    ) -> None:
        sids = params.get("sids")
        if not isinstance(sids, list) or not sids:
            raise CommandError(4)
        for sid in sids:
            if not isinstance(sid, int) or isinstance(sid, bool) or sid not in conn.subs:
                raise CommandError(7)
        for sid in dict.fromkeys(sids):
            sub = conn.subs.pop(sid)
            self.hub.detach(sub)
            body: dict[str, Any] = {"type": "unsubscribed", "sid": sid}
            if sub.sequenced:
                body["seq"] = self._ack_seq(sub)
            self._reply(conn, command_id, **body)

    def _update(self, conn: Connection, params: dict[str, Any], command_id: int | None) -> None:
        if "sids" in params:
            sids = params["sids"]
            if not isinstance(sids, list) or len(sids) != 1 or "sid" in params:
                raise CommandError(12)
            sid = sids[0]
        elif "sid" in params:
            sid = params["sid"]
        else:
            raise CommandError(12)
        if not isinstance(sid, int) or isinstance(sid, bool) or sid not in conn.subs:
            raise CommandError(7)
        sub = conn.subs[sid]
        action = params.get("action")
        if action is None or action == "":
            raise CommandError(15)
        if action not in ACTIONS:
            raise CommandError(13)
        if sub.markets is None:
            raise CommandError(13, "this subscription has no market list to update")
        if action == "get_snapshot" and sub.channel != ORDERBOOK:
            raise CommandError(13, "get_snapshot is only supported on orderbook_delta")
        tickers = self._tickers(params)
        if not tickers:
            raise CommandError(14)
        indexes = self._indexes(tickers)
        if action == "get_snapshot":
            missing = [i for i in indexes if i not in sub.markets]
            if missing:
                raise CommandError(
                    11,
                    "market is not in this subscription",
                    self.exchange.catalog.market_ticker(missing[0]),
                )
            self._ok(conn, sub, command_id)
            if conn.faults.ignore_snapshots > 0:
                # The `ignore_snapshot` fault: acknowledged, never answered.
                conn.faults.ignore_snapshots -= 1
                conn.recorder.fault(
                    {"fault": "ignore_snapshot", "source": "admin", "conn": conn.id, "sid": sid}
                )
                return
            self._snapshots(conn, sub, indexes, index=False)
        elif action == "add_markets":
            added = self.hub.add_markets(sub, indexes)
            self._ok(conn, sub, command_id)
            if sub.channel == ORDERBOOK:
                self._snapshots(conn, sub, added, index=True)
            else:
                self.hub.index_markets(sub, added)
                if sub.channel == TICKER and params.get("send_initial_snapshot") is True:
                    self._initial_tickers(sub, added)
        else:
            self.hub.remove_markets(sub, indexes)
            self._ok(conn, sub, command_id)

    def _ok(self, conn: Connection, sub: Subscription, command_id: int | None) -> None:
        body: dict[str, Any] = {"type": "ok", "sid": sub.sid}
        if sub.sequenced:
            body["seq"] = self._ack_seq(sub)
        if not sub.skip_ack:
            tickers = sorted(self.exchange.catalog.market_ticker(i) for i in sub.markets or ())
            body["msg"] = {"market_tickers": tickers}
        self._reply(conn, command_id, **body)

    def _ack_seq(self, sub: Subscription) -> int:
        """The seq an ack on this sid carries: its next one (consumed) or its current one."""
        if self.ack_consumes_seq:
            sub.seq += 1
        return sub.seq

    def _list(self, conn: Connection, command_id: int | None) -> None:
        listing = [{"channel": sub.channel, "sid": sid} for sid, sub in conn.subs.items()]
        self._reply(conn, command_id, type="ok", msg=listing)
