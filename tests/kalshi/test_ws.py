"""WebSocket primitives against a real `websockets` server on loopback (kalshi-api.md §3)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from app.kalshi.auth import Signer, load_private_key
from app.kalshi.errors import (
    ExchangeUnreachable,
    InvalidUrl,
    WsClosed,
    WsHandshakeRejected,
    WsReplyTimeout,
)
from app.kalshi.ws import FrameHandler, KalshiWebSocket, RawFrame
from app.kalshi.ws_errors import (
    TERMINAL_CODES,
    WS_ERROR_CLASSES,
    WsBufferOverflow,
    WsChannelError,
    WsError,
    WsInternalError,
    WsMarketNotFound,
    WsUnknownChannel,
)
from app.kalshi.ws_replies import Subscribed, SubscriptionInfo
from tests.conftest import KeyPair, free_port
from tests.kalshi.peers import verify_kalshi_signature

ServerHandler = Callable[[ServerConnection], Awaitable[None]]


@asynccontextmanager
async def ws_server(
    handler: ServerHandler, *, public_key: rsa.RSAPublicKey | None = None
) -> AsyncIterator[tuple[str, list[Request]]]:
    """A server at ws://127.0.0.1:PORT/trade-api/ws/v2; with `public_key` it answers 401 to
    upgrades whose KALSHI-ACCESS-* headers do not verify (checked independently)."""
    upgrades: list[Request] = []

    def check(connection: ServerConnection, request: Request) -> Response | None:
        upgrades.append(request)
        headers = dict(request.headers.raw_items())
        if public_key and not verify_kalshi_signature(public_key, headers, "GET", request.path):
            return connection.respond(HTTPStatus.UNAUTHORIZED, "bad signature\n")
        return None

    async with serve(handler, "127.0.0.1", 0, process_request=check) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/trade-api/ws/v2", upgrades


@asynccontextmanager
async def connected(
    handler: ServerHandler, on_frame: FrameHandler | None = None, **options: Any
) -> AsyncIterator[KalshiWebSocket]:
    """An unsigned client connected to a fresh server running `handler`."""
    async with ws_server(handler) as (url, _):
        ws = await KalshiWebSocket.connect(
            url, signer=None, on_frame=on_frame or Collector(), **options
        )
        try:
            yield ws
        finally:
            await ws.close()


class Collector:
    """An `on_frame` consumer that keeps every frame it is handed."""

    def __init__(self) -> None:
        self.frames: list[RawFrame] = []
        self.arrived = asyncio.Event()

    async def __call__(self, frame: RawFrame) -> None:
        self.frames.append(frame)
        self.arrived.set()

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.frames) < count:
                self.arrived.clear()
                await self.arrived.wait()


async def commands(connection: ServerConnection) -> AsyncIterator[dict[str, Any]]:
    async for message in connection:
        yield json.loads(message)


async def idle(connection: ServerConnection) -> None:
    async for _ in connection:
        pass


def signer_for(keypair: KeyPair, clock: Callable[[], int] | None = None) -> Signer:
    key = load_private_key(keypair.pkcs8_path)
    return Signer(keypair.key_id, key, clock_ms=clock) if clock else Signer(keypair.key_id, key)


async def test_upgrade_is_signed_and_resigned_on_every_connect(rsa_keypair: KeyPair) -> None:
    ticks = iter([1_700_000_000_000, 1_700_000_005_000])
    signer = signer_for(rsa_keypair, lambda: next(ticks))
    public = rsa_keypair.private_key.public_key()
    async with ws_server(idle, public_key=public) as (url, upgrades):
        for _ in range(2):
            ws = await KalshiWebSocket.connect(url, signer=signer, on_frame=Collector())
            await ws.close()
    assert [r.path for r in upgrades] == ["/trade-api/ws/v2"] * 2
    assert [r.headers["KALSHI-ACCESS-TIMESTAMP"] for r in upgrades] == [
        "1700000000000",
        "1700000005000",
    ]
    assert {r.headers["KALSHI-ACCESS-KEY"] for r in upgrades} == {rsa_keypair.key_id}


async def test_rejected_signature_is_a_typed_handshake_error(
    rsa_keypair: KeyPair, tmp_path: Any
) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    async with ws_server(idle, public_key=rsa_keypair.private_key.public_key()) as (url, _):
        with pytest.raises(WsHandshakeRejected) as caught:
            await KalshiWebSocket.connect(url, signer=Signer("k", other), on_frame=Collector())
        assert caught.value.status == 401
        assert "credentials or signature rejected" in str(caught.value)
        with pytest.raises(WsHandshakeRejected):
            await KalshiWebSocket.connect(url, signer=None, on_frame=Collector())


async def test_unsigned_connect_sends_no_auth_headers() -> None:
    async with ws_server(idle) as (url, upgrades):
        ws = await KalshiWebSocket.connect(url, signer=None, on_frame=Collector())
        await ws.close()
    assert not [name for name in upgrades[0].headers if name.lower().startswith("kalshi-")]


async def test_connection_refused_is_exchange_unreachable() -> None:
    url = f"ws://127.0.0.1:{free_port()}/trade-api/ws/v2"
    with pytest.raises(ExchangeUnreachable, match=f"cannot reach {url}: connection refused"):
        await KalshiWebSocket.connect(url, signer=None, on_frame=Collector())


async def test_unusable_url_is_refused() -> None:
    with pytest.raises(InvalidUrl, match="invalid Kalshi WebSocket URL"):
        await KalshiWebSocket.connect("http://127.0.0.1:1/x", signer=None, on_frame=Collector())


async def test_ids_increase_and_out_of_order_replies_resolve_the_right_command() -> None:
    seen_ids: list[int] = []

    async def reply_backwards(connection: ServerConnection) -> None:
        batch: list[dict[str, Any]] = []
        async for command in commands(connection):
            seen_ids.append(command["id"])
            batch.append(command)
            if len(batch) == 3:
                for cmd in reversed(batch):
                    reply = {"id": cmd["id"], "type": "ok", "msg": {"echo": cmd["params"]["n"]}}
                    await connection.send(json.dumps(reply))
                batch.clear()

    async with connected(reply_backwards) as ws:
        futures = [await ws.send_command("probe", {"n": n}) for n in range(6)]
        replies = [await asyncio.wait_for(future, 5) for future in futures]
    assert seen_ids == [1, 2, 3, 4, 5, 6]
    assert [reply[0]["msg"]["echo"] for reply in replies] == list(range(6))
    assert [reply[0]["id"] for reply in replies] == [1, 2, 3, 4, 5, 6]


async def test_every_error_code_raises_its_typed_exception() -> None:
    async def fail_with_requested_code(connection: ServerConnection) -> None:
        async for command in commands(connection):
            code = command["params"]["code"]
            error: dict[str, Any] = {"code": code, "msg": f"message {code}"}
            if code == 16:
                error["market_ticker"] = "GONE-1"
            await connection.send(json.dumps({"id": command["id"], "type": "error", "msg": error}))

    codes = [*range(1, 30), 99]
    async with connected(fail_with_requested_code) as ws:
        futures = [await ws.send_command("subscribe", {"code": code}) for code in codes]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
    for code, outcome in zip(codes, outcomes, strict=True):
        assert isinstance(outcome, WsError), (code, outcome)
        assert outcome.error_code == code
        assert outcome.message == f"message {code}"
        expected = WS_ERROR_CLASSES.get(code, WsError)
        assert type(outcome) is expected
        assert outcome.terminal == (code in (10, 17, 25))
    assert {10, 17, 25} == TERMINAL_CODES
    assert set(WS_ERROR_CLASSES) == set(range(1, 30))
    by_code = dict(zip(codes, outcomes, strict=True))
    assert isinstance(by_code[10], WsChannelError)
    assert isinstance(by_code[17], WsInternalError)
    assert isinstance(by_code[25], WsBufferOverflow)
    assert isinstance(by_code[16], WsMarketNotFound)
    assert by_code[16].market_ticker == "GONE-1"
    assert "GONE-1" in str(by_code[16])
    assert type(by_code[99]) is WsError  # unknown future codes keep their number


async def test_data_frames_are_delivered_raw_and_unchanged() -> None:
    frames: list[str | bytes] = [
        '{"type":"orderbook_snapshot","sid":2,"seq":2,"msg":{"market_ticker":"FED-23DEC-T3.00",'
        '"yes_dollars_fp":[["0.0800","300.00"]]}}',
        '{ "seq": 3, "type" : "orderbook_delta",  "sid":2,"msg":{"price_dollars":"0.9600",'
        '"delta_fp":"-54.00","side":"yes","market_id":"9b0f"}}',
        '{"type":"ticker","msg":{"market_ticker":"\\u00e9t\\u00e9","price_dollars":"0.4800"}}',
        '{"type":"weird","msg":{"id":5}}',  # an "id" that is not top-level is data
        "{not json at all",
        b"\x00\x01binary",
    ]

    async def stream(connection: ServerConnection) -> None:
        async for command in commands(connection):
            await connection.send(frames[0])
            await connection.send(frames[1])
            # The reply sits between data frames and must not disturb them.
            await connection.send(json.dumps({"id": command["id"], "type": "ok", "msg": []}))
            for frame in frames[2:]:
                await connection.send(frame)

    collector = Collector()
    before = time.time_ns()
    async with connected(stream, collector) as ws:
        assert await ws.list_subscriptions() == []
        await collector.wait_for(len(frames))
    after = time.time_ns()
    assert [frame.data for frame in collector.frames] == frames
    stamps = [frame.received_ns for frame in collector.frames]
    assert stamps == sorted(stamps) and before <= stamps[0] and stamps[-1] <= after


async def test_replies_can_be_delivered_too_and_late_replies_always_are() -> None:
    async def slow_then_fast(connection: ServerConnection) -> None:
        async for command in commands(connection):
            if command["cmd"] == "slow":
                await asyncio.sleep(0.3)
            await connection.send(json.dumps({"id": command["id"], "type": "ok"}))

    async with ws_server(slow_then_fast) as (url, _):
        collector = Collector()
        async with await KalshiWebSocket.connect(url, signer=None, on_frame=collector) as ws:
            with pytest.raises(WsReplyTimeout, match=r"no reply to slow within 0\.05s"):
                await ws.request("slow", timeout_s=0.05)
            await collector.wait_for(1)  # the late reply is handed on, not dropped
            assert json.loads(collector.frames[0].data) == {"id": 1, "type": "ok"}
            await ws.request("fast")
            await asyncio.sleep(0.05)
            assert len(collector.frames) == 1  # a matched reply is not delivered by default

        archive = Collector()
        async with await KalshiWebSocket.connect(
            url, signer=None, on_frame=archive, deliver_replies=True
        ) as ws:
            await ws.request("fast")
            await archive.wait_for(1)
            assert json.loads(archive.frames[0].data) == {"id": 1, "type": "ok"}


async def test_subscribe_collects_one_reply_per_channel() -> None:
    received: list[dict[str, Any]] = []

    async def subscribe(connection: ServerConnection) -> None:
        async for command in commands(connection):
            received.append(command)
            for sid, channel in enumerate(command["params"]["channels"], start=1):
                if channel == "ticker_v2":
                    error = {"code": 8, "msg": "Unknown channel name"}
                    await connection.send(
                        json.dumps({"id": command["id"], "type": "error", "msg": error})
                    )
                    continue
                reply = {
                    "id": command["id"],
                    "type": "subscribed",
                    "msg": {"channel": channel, "sid": sid},
                }
                await connection.send(json.dumps(reply))

    async with connected(subscribe) as ws:
        result = await ws.subscribe(
            ["orderbook_delta", "trade"], market_tickers=["A", "B"], use_yes_price=False
        )
        assert result == [Subscribed("orderbook_delta", 1), Subscribed("trade", 2)]
        with pytest.raises(WsUnknownChannel) as caught:
            await ws.subscribe(["ticker", "ticker_v2"])
        assert caught.value.command_id == 2
        assert [r["msg"]["channel"] for r in caught.value.partial_replies] == ["ticker"]
    assert received[0] == {
        "id": 1,
        "cmd": "subscribe",
        "params": {
            "channels": ["orderbook_delta", "trade"],
            "use_yes_price": False,
            "market_tickers": ["A", "B"],
        },
    }


@pytest.mark.parametrize("one_reply_per_sid", [True, False])
async def test_unsubscribe_accepts_both_reply_styles(one_reply_per_sid: bool) -> None:
    async def unsubscribe(connection: ServerConnection) -> None:
        async for command in commands(connection):
            sids = command["params"]["sids"]
            if one_reply_per_sid:
                for seq, sid in enumerate(sids, start=7):
                    reply = {"id": command["id"], "type": "unsubscribed", "sid": sid, "seq": seq}
                    await connection.send(json.dumps(reply))
            else:
                reply = {"id": command["id"], "type": "unsubscribed", "msg": {"sids": sids}}
                await connection.send(json.dumps(reply))

    async with connected(unsubscribe) as ws:
        result = await ws.unsubscribe([3, 4])
    assert result.sids == (3, 4)
    assert result.seq == (8 if one_reply_per_sid else None)


async def test_update_subscription_helpers_send_the_documented_params() -> None:
    received: list[dict[str, Any]] = []
    markets: list[str] = ["M-1"]

    async def update(connection: ServerConnection) -> None:
        async for command in commands(connection):
            received.append(command)
            params = command["params"]
            if params["action"] == "add_markets":
                markets.extend(params["market_tickers"])
            elif params["action"] == "delete_markets":
                markets[:] = [m for m in markets if m not in params["market_tickers"]]
            reply = {
                "id": command["id"],
                "type": "ok",
                "sid": params["sids"][0],
                "seq": 222,
                "msg": {"market_tickers": markets},
            }
            await connection.send(json.dumps(reply))

    async with connected(update) as ws:
        added = await ws.add_markets(456, ["M-2", "M-3"])
        deleted = await ws.delete_markets(456, ["M-1"])
        snap = await ws.get_snapshot(456, ["M-2"])
    assert added.market_tickers == ("M-1", "M-2", "M-3")
    assert (deleted.sid, deleted.seq, deleted.market_tickers) == (456, 222, ("M-2", "M-3"))
    assert snap.sid == 456
    assert [c["params"] for c in received] == [
        {"sids": [456], "market_tickers": ["M-2", "M-3"], "action": "add_markets"},
        {"sids": [456], "market_tickers": ["M-1"], "action": "delete_markets"},
        {"sids": [456], "market_tickers": ["M-2"], "action": "get_snapshot"},
    ]
    assert all(c["cmd"] == "update_subscription" for c in received)


async def test_list_subscriptions_parses_entries() -> None:
    async def listing(connection: ServerConnection) -> None:
        async for command in commands(connection):
            assert "params" not in command
            entries = [
                {"channel": "orderbook_delta", "sid": 1},
                {"channel": "ticker", "sid": 2, "x": 1},
            ]
            await connection.send(json.dumps({"id": command["id"], "type": "ok", "msg": entries}))

    async with connected(listing) as ws:
        subs = await ws.list_subscriptions()
    assert subs == [SubscriptionInfo("orderbook_delta", 1, {}), SubscriptionInfo("ticker", 2, {})]
    assert subs[1].raw["x"] == 1


async def test_server_close_fails_pending_commands_and_reports_the_code() -> None:
    async def close_on_command(connection: ServerConnection) -> None:
        async for _ in connection:
            await connection.close(4000, "maintenance")

    async with ws_server(close_on_command) as (url, _):
        ws = await KalshiWebSocket.connect(url, signer=None, on_frame=Collector())
        with pytest.raises(WsClosed, match="code 4000: maintenance"):
            await ws.request("list_subscriptions")
        info = await ws.wait_closed()
        assert (info.code, info.reason, info.error) == (4000, "maintenance", None)
        assert ws.closed
        with pytest.raises(WsClosed):
            await ws.send_command("list_subscriptions")


async def test_a_failing_consumer_closes_the_connection_and_says_why() -> None:
    async def two_frames(connection: ServerConnection) -> None:
        await connection.send('{"type":"ticker","sid":1}')
        await connection.send('{"type":"ticker","sid":1,"n":2}')
        await idle(connection)

    seen: list[RawFrame] = []

    def explode(frame: RawFrame) -> None:  # a plain (non-async) consumer works too
        seen.append(frame)
        raise RuntimeError("disk full")

    async with ws_server(two_frames) as (url, _):
        ws = await KalshiWebSocket.connect(url, signer=None, on_frame=explode)
        info = await asyncio.wait_for(ws.wait_closed(), 5)
    assert isinstance(info.error, RuntimeError) and str(info.error) == "disk full"
    assert info.code == 1011
    assert len(seen) == 1  # nothing is read past a failed consumer


async def test_server_heartbeat_pings_are_answered() -> None:
    answered = asyncio.Event()

    async def ping(connection: ServerConnection) -> None:
        waiter = await connection.ping(b"heartbeat")
        await asyncio.wait_for(waiter, 2)
        answered.set()
        await idle(connection)

    async with connected(ping):
        await asyncio.wait_for(answered.wait(), 3)
