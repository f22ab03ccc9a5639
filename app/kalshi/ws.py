"""Kalshi WebSocket transport: signed connect, commands with ids, replies matched to commands.

What it does (kalshi-api.md §3):
* `KalshiWebSocket.connect(url, signer=..., on_frame=...)` opens one connection, signing the
  upgrade `GET <url path>` afresh each time (a reconnect is a new `connect` and so a new
  timestamp). Server pings are answered by `websockets` itself (echoing `heartbeat`).
* Commands get ids 1, 2, 3... per connection, assigned and sent in order under one lock.
  `send_command` returns an awaitable that the reply (or replies) with that id resolve; an
  `error` reply raises the `WsError` subclass for its code (`app.kalshi.ws_errors`).
* Every other frame goes to `on_frame` unchanged - the exact text (or bytes) the socket
  delivered plus `time.time_ns()` read before any parsing - because the raw frame is the source
  of truth (STYLE §2). `on_frame` is awaited before the next frame is read: a slow consumer
  slows the socket (and Kalshi eventually answers with error 25) instead of growing memory.

What it never does: decide what a data frame means, reconnect, resubscribe, track seq, or
touch Redis/SQL. Those belong to the listener built on top of this.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)

from app.kalshi.auth import WS_PATH, Signer
from app.kalshi.errors import (
    ExchangeUnreachable,
    InvalidUrl,
    WsClosed,
    WsHandshakeRejected,
    WsReplyTimeout,
)
from app.kalshi.session import describe_connection_failure
from app.kalshi.ws_errors import WsError, ws_error_from_frame
from app.kalshi.ws_replies import (
    Subscribed,
    SubscriptionInfo,
    Unsubscribed,
    UpdateOk,
    parse_subscribed,
    parse_subscription_list,
    parse_unsubscribed,
    parse_update_ok,
    reply_sids,
)
from app.logs import log_event

log = logging.getLogger("kalshi_data.kalshi.ws")

DEFAULT_REPLY_TIMEOUT_S = 10.0
# Large books and list_subscriptions replies can exceed websockets' 1 MiB default.
DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024

Reply = dict[str, Any]
CompletionTest = Callable[[list[Reply]], bool]


@dataclass(frozen=True, slots=True)
class RawFrame:
    """One frame exactly as received, with the local wall-clock receive time in ns."""

    data: str | bytes
    received_ns: int


@dataclass(frozen=True, slots=True)
class CloseInfo:
    """Why a connection ended: the close code/reason, or the consumer's exception."""

    code: int | None
    reason: str
    error: BaseException | None = None
    ended_ns: int = 0  # wall time the read loop ended (0: unknown)


FrameHandler = Callable[[RawFrame], Awaitable[None] | None]


class _Pending:
    """A command waiting for its reply frames."""

    __slots__ = ("complete", "future", "replies")

    def __init__(self, future: asyncio.Future[list[Reply]], complete: CompletionTest) -> None:
        self.future = future
        self.complete = complete
        self.replies: list[Reply] = []


def _one_reply(replies: list[Reply]) -> bool:
    return len(replies) >= 1


def _maybe_reply(data: str | bytes) -> dict[str, Any] | None:
    """The decoded frame if it could be a command reply (top-level non-zero integer `id`).

    Data frames never carry a top-level `id`; the substring test keeps the hot path (tens of
    thousands of data frames per second) free of JSON decoding. `"market_id"` does not match
    because the quote must sit right before `id`.
    """
    if not isinstance(data, str) or '"id"' not in data:
        return None
    try:
        decoded = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(decoded, dict):
        return None
    command_id = decoded.get("id")
    if not isinstance(command_id, int) or isinstance(command_id, bool) or command_id == 0:
        return None
    return decoded


class KalshiWebSocket:
    """One open connection to the Kalshi WebSocket API (create with `connect`)."""

    def __init__(
        self,
        connection: ClientConnection,
        url: str,
        on_frame: FrameHandler,
        *,
        deliver_replies: bool,
        reply_timeout_s: float,
    ) -> None:
        self.url = url
        self.reply_timeout_s = reply_timeout_s
        self._connection = connection
        self._on_frame = on_frame
        self._deliver_replies = deliver_replies
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._send_lock = asyncio.Lock()
        self._close_info: CloseInfo | None = None
        self._reader = asyncio.create_task(self._read(), name=f"kalshi-ws-reader {url}")

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        signer: Signer | None,
        on_frame: FrameHandler,
        deliver_replies: bool = False,
        open_timeout_s: float = 10.0,
        reply_timeout_s: float = DEFAULT_REPLY_TIMEOUT_S,
        ping_interval_s: float | None = 20.0,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> KalshiWebSocket:
        """Open a connection, signing the upgrade when `signer` is given.

        `deliver_replies=True` also hands command replies to `on_frame` (for a raw archive
        that wants sid assignments too). Replies that match no waiting command (late replies
        after a timeout or an error) are always handed on, so nothing read is dropped.
        Raises `ExchangeUnreachable` (refused, DNS, timeout) or `WsHandshakeRejected` (HTTP
        answer instead of an upgrade, e.g. 401 for a bad signature).
        """
        path = urlsplit(url).path or WS_PATH
        headers = signer.headers("GET", path) if signer else {}
        try:
            connection = await connect(
                url,
                additional_headers=headers,
                open_timeout=open_timeout_s,
                ping_interval=ping_interval_s,
                max_size=max_frame_bytes,
                user_agent_header="kalshi-data/0.1",
            )
        except InvalidStatus as exc:
            body = exc.response.body.decode("utf-8", "replace")[:200] if exc.response.body else ""
            raise WsHandshakeRejected(url, exc.response.status_code, body) from exc
        except InvalidURI as exc:
            raise InvalidUrl(f"invalid Kalshi WebSocket URL {url!r}: {exc}") from exc
        except InvalidHandshake as exc:
            raise ExchangeUnreachable(url, f"not a WebSocket endpoint ({exc})") from exc
        except TimeoutError as exc:
            raise ExchangeUnreachable(url, f"timed out after {open_timeout_s:g}s") from exc
        except OSError as exc:
            raise ExchangeUnreachable(url, describe_connection_failure(exc)) from exc
        log_event(log, "kalshi_ws_connected", url=url, signed=signer is not None)
        return cls(
            connection,
            url,
            on_frame,
            deliver_replies=deliver_replies,
            reply_timeout_s=reply_timeout_s,
        )

    async def __aenter__(self) -> KalshiWebSocket:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._reader.done()

    async def close(self) -> CloseInfo:
        """Close the connection (normal closure) and wait for the reader to finish."""
        await self._connection.close()
        return await self.wait_closed()

    async def wait_closed(self) -> CloseInfo:
        """Wait until the connection ends; says why (close code, or the consumer's error)."""
        await asyncio.shield(self._reader)
        assert self._close_info is not None
        return self._close_info

    # -- commands -------------------------------------------------------------------------

    async def send_command(
        self,
        cmd: str,
        params: Mapping[str, Any] | None = None,
        *,
        complete: CompletionTest = _one_reply,
    ) -> asyncio.Future[list[Reply]]:
        """Send `{"id", "cmd", "params"}` and return a future of its decoded reply frames.

        The future resolves once `complete(replies_so_far)` is true (default: one reply), or
        raises the typed `WsError` of an `error` reply (with `partial_replies` set to what
        arrived before it), or `WsClosed` if the connection ends first.
        """
        future: asyncio.Future[list[Reply]] = asyncio.get_running_loop().create_future()
        async with self._send_lock:
            if self.closed:
                raise WsClosed(*self._close_code_reason())
            command_id = next(self._ids)
            message: dict[str, Any] = {"id": command_id, "cmd": cmd}
            if params is not None:
                message["params"] = params
            self._pending[command_id] = _Pending(future, complete)
            try:
                await self._connection.send(orjson.dumps(message).decode())
            except ConnectionClosed as exc:
                self._pending.pop(command_id, None)
                raise WsClosed(*self._close_code_reason()) from exc
        return future

    async def request(
        self,
        cmd: str,
        params: Mapping[str, Any] | None = None,
        *,
        complete: CompletionTest = _one_reply,
        timeout_s: float | None = None,
    ) -> list[Reply]:
        """Send a command and wait for its replies (`WsReplyTimeout` after `timeout_s`)."""
        future = await self.send_command(cmd, params, complete=complete)
        timeout = self.reply_timeout_s if timeout_s is None else timeout_s
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise WsReplyTimeout(f"no reply to {cmd} within {timeout:g}s on {self.url}") from None
        finally:
            # Timed out or cancelled: a reply arriving later is handed to on_frame instead.
            if not future.done() or future.cancelled():
                self._forget(future)

    async def subscribe(
        self,
        channels: Sequence[str],
        *,
        market_tickers: Sequence[str] | None = None,
        timeout_s: float | None = None,
        **options: Any,
    ) -> list[Subscribed]:
        """Subscribe to channels (one `subscribed` reply, one sid, per channel).

        `options` go into `params` unchanged: `market_ids`, `send_initial_snapshot`,
        `skip_ticker_ack`, `use_yes_price`, `shard_factor`, `shard_key`, `index_ids`.
        """
        if not channels or isinstance(channels, str):
            raise ValueError("channels must be a non-empty list of channel names")
        params: dict[str, Any] = {"channels": list(channels), **options}
        if market_tickers is not None:
            params["market_tickers"] = list(market_tickers)
        wanted = len(channels)
        replies = await self.request(
            "subscribe", params, complete=lambda got: len(got) >= wanted, timeout_s=timeout_s
        )
        return [parse_subscribed(reply) for reply in replies]

    async def unsubscribe(
        self, sids: Sequence[int], *, timeout_s: float | None = None
    ) -> Unsubscribed:
        """Drop subscriptions; waits until replies have named every sid (one reply per sid or one
        reply listing them all are both accepted)."""
        wanted = set(sids)
        if not wanted:
            raise ValueError("sids must not be empty")

        def all_named(replies: list[Reply]) -> bool:
            named = {sid for reply in replies for sid in reply_sids(reply)}
            # A reply naming no sid at all can only mean "done".
            return wanted <= named or any(not reply_sids(reply) for reply in replies)

        replies = await self.request(
            "unsubscribe", {"sids": list(sids)}, complete=all_named, timeout_s=timeout_s
        )
        parsed = [parse_unsubscribed(reply) for reply in replies]
        named = tuple(dict.fromkeys(sid for item in parsed for sid in item.sids))
        return Unsubscribed(named, parsed[-1].seq)

    async def update_subscription(
        self,
        sid: int,
        action: str,
        market_tickers: Sequence[str],
        *,
        timeout_s: float | None = None,
        **options: Any,
    ) -> UpdateOk:
        """`update_subscription` with exactly one sid (kalshi-api.md §3.2)."""
        params: dict[str, Any] = {
            "sids": [sid],
            "market_tickers": list(market_tickers),
            "action": action,
            **options,
        }
        replies = await self.request("update_subscription", params, timeout_s=timeout_s)
        return parse_update_ok(replies[0])

    async def add_markets(
        self, sid: int, market_tickers: Sequence[str], **options: Any
    ) -> UpdateOk:
        return await self.update_subscription(sid, "add_markets", market_tickers, **options)

    async def delete_markets(self, sid: int, market_tickers: Sequence[str]) -> UpdateOk:
        return await self.update_subscription(sid, "delete_markets", market_tickers)

    async def get_snapshot(self, sid: int, market_tickers: Sequence[str]) -> UpdateOk:
        """Ask for fresh `orderbook_snapshot`s of these markets (since 2026-04-20); the
        snapshots arrive as data frames on `sid`, the subscription itself is unchanged."""
        return await self.update_subscription(sid, "get_snapshot", market_tickers)

    async def list_subscriptions(self, *, timeout_s: float | None = None) -> list[SubscriptionInfo]:
        replies = await self.request("list_subscriptions", None, timeout_s=timeout_s)
        return parse_subscription_list(replies[0])

    # -- reading --------------------------------------------------------------------------

    def _close_code_reason(self) -> tuple[int | None, str]:
        return self._connection.close_code, self._connection.close_reason or ""

    def _forget(self, future: asyncio.Future[list[Reply]]) -> None:
        for command_id, pending in list(self._pending.items()):
            if pending.future is future:
                del self._pending[command_id]

    def _resolve(self, reply: dict[str, Any]) -> bool:
        """Feed a reply to its waiting command; False if no command waits for this id."""
        pending = self._pending.get(reply["id"])
        if pending is None:
            return False
        if reply.get("type") == "error":
            del self._pending[reply["id"]]
            error: WsError = ws_error_from_frame(reply)
            error.partial_replies = tuple(pending.replies)
            if not pending.future.done():
                pending.future.set_exception(error)
            return True
        pending.replies.append(reply)
        if pending.complete(pending.replies):
            del self._pending[reply["id"]]
            if not pending.future.done():
                pending.future.set_result(pending.replies)
        return True

    async def _deliver(self, frame: RawFrame) -> None:
        result = self._on_frame(frame)
        if inspect.isawaitable(result):
            await result

    async def _read(self) -> None:
        error: BaseException | None = None
        try:
            async for data in self._connection:
                frame = RawFrame(data, time.time_ns())
                reply = _maybe_reply(data)
                matched = reply is not None and self._resolve(reply)
                if not matched or self._deliver_replies:
                    await self._deliver(frame)
        except ConnectionClosed:
            pass  # abnormal closes end the loop the same way; the code says why
        except Exception as exc:
            # The consumer failed: stop reading and close, so the caller sees why and can
            # decide (the listener reconnects); frames are never read past a failed consumer.
            error = exc
            await self._connection.close(1011, "consumer error")
        finally:
            code, reason = self._close_code_reason()
            self._close_info = CloseInfo(code, reason, error, time.time_ns())
            failure = WsClosed(code, reason)
            for pending in self._pending.values():
                if not pending.future.done():
                    pending.future.set_exception(failure)
            self._pending.clear()
            log_event(
                log,
                "kalshi_ws_closed",
                url=self.url,
                code=code,
                reason=reason,
                error=repr(error) if error else None,
            )
