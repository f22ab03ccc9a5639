"""WebSocket protocol against a real simulator process (kalshi-api.md §3)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from app.simulator.truth import load_truth
from app.units import count_to_hundredths, dollars_to_micros
from tests.simulator.conftest import EPOCH_MS, WsClient, of_type, ws_connect

pytestmark = pytest.mark.timeout(60)


def _tickers(sim: Any, count: int, skip: int = 0) -> list[str]:
    markets = sim.get("/markets", limit=count + skip).json()["markets"]
    return [m["ticker"] for m in markets[skip:]]


def _levels(msg: dict[str, Any], key: str) -> dict[int, int]:
    return {dollars_to_micros(p): count_to_hundredths(s) for p, s in msg.get(key, [])}


def _apply(books: dict[str, dict[str, dict[int, int]]], msg: dict[str, Any]) -> None:
    side = books[msg["market_ticker"]][msg["side"]]
    price = dollars_to_micros(msg["price_dollars"])
    size = side.get(price, 0) + count_to_hundredths(msg["delta_fp"])
    assert size >= 0, f"delta made a negative size: {msg}"
    if size:
        side[price] = size
    else:
        side.pop(price, None)


async def test_snapshots_then_contiguous_seq_and_books_stay_consistent(sim_factory):
    sim = sim_factory("--markets", "20", "--rate", "4000", "--seed", "5")
    tickers = _tickers(sim, 5, skip=2)
    async with ws_connect(sim.ws_url) as ws:
        client = WsClient(ws)
        command = await client.send(
            {
                "cmd": "subscribe",
                "params": {"channels": ["orderbook_delta"], "market_tickers": tickers},
            }
        )
        subscribed = await client.reply(command)
        assert subscribed["type"] == "subscribed"
        assert subscribed["msg"]["channel"] == "orderbook_delta"
        sid = subscribed["msg"]["sid"]
        sequenced: list[dict[str, Any]] = []
        books: dict[str, dict[str, dict[int, int]]] = {}
        while sum(m["type"] == "orderbook_delta" for m in sequenced) < 300:
            message = await client.recv()
            assert message.get("sid") == sid
            sequenced.append(message)
            body = message["msg"]
            if message["type"] == "orderbook_snapshot":
                books[body["market_ticker"]] = {
                    "yes": _levels(body, "yes_dollars_fp"),
                    "no": _levels(body, "no_dollars_fp"),
                }
            else:
                assert message["type"] == "orderbook_delta"
                assert set(body) >= {"price_dollars", "delta_fp", "side", "ts_ms", "market_id"}
                assert "price" not in body and "delta" not in body  # current format
                _apply(books, body)
        # One snapshot per market first, in request order, then deltas; one seq run per sid.
        assert [m["type"] for m in sequenced[:5]] == ["orderbook_snapshot"] * 5
        assert [m["msg"]["market_ticker"] for m in sequenced[:5]] == tickers
        assert [m["seq"] for m in sequenced] == list(range(1, len(sequenced) + 1))
        delta_markets = {m["msg"]["market_ticker"] for m in sequenced[5:]}
        assert delta_markets <= set(tickers)
        assert len(delta_markets) >= 3, "deltas should come from several markets"
        for book in books.values():
            if book["yes"] and book["no"]:
                assert max(book["yes"]) + max(book["no"]) < 1_000_000, "crossed book"
        # A fresh snapshot must equal the book rebuilt from the first snapshot plus deltas.
        command = await client.send(
            {
                "cmd": "update_subscription",
                "params": {"sid": sid, "action": "get_snapshot", "market_tickers": tickers},
            }
        )
        checked = 0
        last_seq = sequenced[-1]["seq"]
        while checked < len(tickers):
            message = await client.recv()
            if message.get("id") == command:
                assert message["type"] == "ok" and message["seq"] == last_seq
                continue
            assert message["seq"] == last_seq + 1
            last_seq = message["seq"]
            body = message["msg"]
            if message["type"] == "orderbook_delta":
                _apply(books, body)
                continue
            fresh = {"yes": _levels(body, "yes_dollars_fp"), "no": _levels(body, "no_dollars_fp")}
            assert fresh == books[body["market_ticker"]]
            checked += 1


async def test_update_subscription_add_delete_and_get_snapshot(sim_factory):
    sim = sim_factory("--markets", "12", "--rate", "3000", "--seed", "3")
    a, b, c = _tickers(sim, 3, skip=4)
    async with ws_connect(sim.ws_url) as ws:
        client = WsClient(ws)
        command = await client.send(
            {
                "cmd": "subscribe",
                "params": {"channels": ["orderbook_delta"], "market_tickers": [a, b]},
            }
        )
        sid = (await client.reply(command))["msg"]["sid"]
        command = await client.send(
            {
                "cmd": "update_subscription",
                "params": {"sids": [sid], "action": "add_markets", "market_tickers": [c]},
            }
        )
        ok = await client.reply(command)
        assert ok["type"] == "ok" and ok["sid"] == sid
        assert ok["msg"]["market_tickers"] == sorted([a, b, c])
        snapshot = await client.until(of_type("orderbook_snapshot"))
        assert snapshot["msg"]["market_ticker"] == c
        assert snapshot["seq"] == ok["seq"] + 1
        command = await client.send(
            {
                "cmd": "update_subscription",
                "params": {"sid": sid, "action": "delete_markets", "market_tickers": [a]},
            }
        )
        ok = await client.reply(command)
        assert ok["msg"]["market_tickers"] == sorted([b, c])
        after_delete = len(client.messages)
        await client.collect(0.7)
        later = [m for m in client.messages[after_delete:] if m.get("type") == "orderbook_delta"]
        assert later, "deltas for the remaining markets keep coming"
        assert all(m["msg"]["market_ticker"] in (b, c) for m in later)
        command = await client.send(
            {
                "cmd": "update_subscription",
                "params": {"sids": [sid], "action": "get_snapshot", "market_tickers": [b]},
            }
        )
        ok = await client.reply(command)
        snapshot = await client.until(of_type("orderbook_snapshot"))
        assert snapshot["msg"]["market_ticker"] == b and snapshot["seq"] == ok["seq"] + 1
        seqs = [
            m["seq"]
            for m in client.messages
            if isinstance(m, dict) and "seq" in m and m.get("type") != "ok"
        ]
        assert seqs == list(range(1, len(seqs) + 1))


async def test_malformed_commands_get_documented_error_codes(sim_factory):
    sim = sim_factory("--markets", "8", "--rate", "200", "--seed", "2")
    a, b = _tickers(sim, 2)
    async with ws_connect(sim.ws_url) as ws:
        client = WsClient(ws)
        first = await client.send(
            {"cmd": "subscribe", "params": {"channels": ["orderbook_delta"], "market_tickers": [a]}}
        )
        sid1 = (await client.reply(first))["msg"]["sid"]
        second = await client.send({"cmd": "subscribe", "params": {"channels": ["ticker"]}})
        sid2 = (await client.reply(second))["msg"]["sid"]
        cases: list[tuple[dict[str, Any], int]] = [
            ({"id": 101, "cmd": "subscribe"}, 2),
            ({"id": 102, "cmd": "subscribe", "params": {"market_tickers": [a]}}, 3),
            ({"id": 103, "cmd": "unsubscribe", "params": {"market_tickers": [a]}}, 4),
            ({"id": 104, "cmd": "frobnicate", "params": {}}, 5),
            ({"id": 105, "cmd": "unsubscribe", "params": {"sids": [999]}}, 7),
            ({"id": 106, "cmd": "subscribe", "params": {"channels": ["ticker_v2"]}}, 8),
            (
                {
                    "id": 107,
                    "cmd": "update_subscription",
                    "params": {
                        "sids": [sid1, sid2],
                        "action": "add_markets",
                        "market_tickers": [b],
                    },
                },
                12,
            ),
            (
                {
                    "id": 108,
                    "cmd": "update_subscription",
                    "params": {"sids": [sid1], "action": "explode", "market_tickers": [b]},
                },
                13,
            ),
            ({"id": 109, "cmd": "subscribe", "params": {"channels": ["orderbook_delta"]}}, 14),
            (
                {
                    "id": 110,
                    "cmd": "update_subscription",
                    "params": {"sid": sid1, "market_tickers": [b]},
                },
                15,
            ),
            (
                {
                    "id": 111,
                    "cmd": "subscribe",
                    "params": {"channels": ["orderbook_delta"], "market_tickers": ["KXNOPE-E1-T1"]},
                },
                16,
            ),
            ({"id": 112, "cmd": "update_subscription", "params": {"sids": [sid1]}}, 15),
            (
                {
                    "id": 113,
                    "cmd": "update_subscription",
                    "params": {"sid": 777, "action": "add_markets", "market_tickers": [b]},
                },
                7,
            ),
        ]
        for command, code in cases:
            await client.send(command)
            reply = await client.reply(command["id"])
            assert reply["type"] == "error", (command, reply)
            assert reply["msg"]["code"] == code, (command, reply)
            assert isinstance(reply["msg"]["msg"], str) and reply["msg"]["msg"]
        await client.send("this is not json")
        error = await client.until(lambda m: isinstance(m, dict) and m.get("type") == "error")
        assert error["msg"]["code"] == 1 and "id" not in error
        not_found = next(m for m in client.messages if isinstance(m, dict) and m.get("id") == 111)
        assert not_found["msg"]["market_ticker"] == "KXNOPE-E1-T1"
        # Nothing above changed the subscriptions.
        listing = await client.send({"cmd": "list_subscriptions"})
        reply = await client.reply(listing)
        assert reply["type"] == "ok"
        assert reply["msg"] == [
            {"channel": "orderbook_delta", "sid": sid1},
            {"channel": "ticker", "sid": sid2},
        ]


async def test_ticker_trade_channels_with_and_without_markets(sim_factory):
    sim = sim_factory("--markets", "10", "--rate", "4000", "--seed", "9")
    a, b = _tickers(sim, 2, skip=3)
    async with ws_connect(sim.ws_url) as ws:
        client = WsClient(ws)
        command = await client.send(
            {
                "cmd": "subscribe",
                "params": {
                    "channels": ["ticker"],
                    "market_tickers": [a, b],
                    "send_initial_snapshot": True,
                },
            }
        )
        ticker_sid = (await client.reply(command))["msg"]["sid"]
        initial = [await client.until(of_type("ticker")) for _ in range(2)]
        assert {m["msg"]["market_ticker"] for m in initial} == {a, b}
        command = await client.send({"cmd": "subscribe", "params": {"channels": ["trade"]}})
        trade_sid = (await client.reply(command))["msg"]["sid"]
        command = await client.send(
            {"cmd": "subscribe", "params": {"channels": ["trade"], "market_ticker": a}}
        )
        trade_a_sid = (await client.reply(command))["msg"]["sid"]
        await client.collect(1.5)
        messages = [m for m in client.messages if isinstance(m, dict)]
        tickers_seen = {m["msg"]["market_ticker"] for m in messages if m.get("sid") == ticker_sid}
        assert tickers_seen == {a, b}
        all_trades = [m for m in messages if m.get("sid") == trade_sid]
        a_trades = [m for m in messages if m.get("sid") == trade_a_sid]
        assert len({m["msg"]["market_ticker"] for m in all_trades}) >= 3
        assert a_trades and all(m["msg"]["market_ticker"] == a for m in a_trades)
        assert {m["msg"]["trade_id"] for m in a_trades} <= {
            m["msg"]["trade_id"] for m in all_trades
        }
        trade = all_trades[0]
        assert "seq" not in trade  # current format: no seq on trades
        assert set(trade["msg"]) >= {
            "trade_id", "yes_price_dollars", "no_price_dollars", "count_fp",
            "taker_outcome_side", "taker_book_side", "ts_ms",
        }  # fmt: skip
        command = await client.send(
            {"cmd": "unsubscribe", "params": {"sids": [trade_sid, ticker_sid]}}
        )
        replies = [await client.reply(command) for _ in range(2)]
        assert {r["sid"] for r in replies} == {trade_sid, ticker_sid}
        assert all(r["type"] == "unsubscribed" for r in replies)
        mark = len(client.messages)
        await client.collect(0.5)
        assert not [m for m in client.messages[mark:] if m.get("sid") in (trade_sid, ticker_sid)]


async def test_ping_with_heartbeat_payload(sim_factory):
    sim = sim_factory("--markets", "4", "--rate", "50", "--ping-interval", "0.3")
    # aiohttp rather than websockets here: only it hands received pings to the caller.
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(sim.ws_url, autoping=False) as ws,
    ):
        pings = 0
        while pings < 2:
            message = await ws.receive(timeout=3)
            if message.type == aiohttp.WSMsgType.PING:
                assert message.data == b"heartbeat"
                await ws.pong(message.data)
                pings += 1


async def test_lifecycle_channel_markets_open_close_and_settle(sim_factory):
    sim = sim_factory(
        "--markets", "8", "--rate", "4000", "--seed", "11", "--market-lifetime", "1",
        "--epoch-ms", str(EPOCH_MS), "--max-events", "12000",
    )  # fmt: skip
    async with ws_connect(sim.ws_url) as ws:
        client = WsClient(ws)
        command = await client.send(
            {"cmd": "subscribe", "params": {"channels": ["market_lifecycle_v2"]}}
        )
        await client.reply(command)
        while not sim.state()["finished"]:
            await client.collect(0.3)
        await client.collect(0.3)
    received = [
        m["msg"]
        for m in client.messages
        if isinstance(m, dict) and m.get("type") == "market_lifecycle_v2"
    ]
    created = [m for m in received if m["event_type"] == "created"]
    assert created and all(
        set(c) >= {"open_ts", "close_ts", "price_ranges", "additional_metadata"} for c in created
    )
    determined = [m for m in received if m["event_type"] == "determined"]
    assert determined and all(d["result"] in ("yes", "no") for d in determined)
    assert any(isinstance(m, dict) and m.get("type") == "event_lifecycle" for m in client.messages)
    # New markets really exist in REST, with the status their lifecycle says.
    newest = created[-1]["market_ticker"]
    assert sim.get(f"/markets/{newest}").json()["market"]["ticker"] == newest
    settled = next(m["market_ticker"] for m in received if m["event_type"] == "settled")
    assert sim.get(f"/markets/{settled}").json()["market"]["status"] == "finalized"
    assert sim.get("/markets", status="settled", limit=1000).json()["markets"]
    assert sim.stop() == 0
    truth = load_truth(sim.truth)
    kinds = {event.event_type for event in truth.lifecycle}
    assert kinds >= {
        "created", "activated", "deactivated", "close_date_updated", "determined", "settled",
    }  # fmt: skip
    # What the client got is exactly the truth's lifecycle stream from its subscription on.
    expected = [(e.ticker, e.event_type) for e in truth.lifecycle]
    got = [(m["market_ticker"], m["event_type"]) for m in received]
    start = len(expected) - len(got)
    assert start >= 0 and expected[start:] == got
    # A closed market never changes again: no book change or trade after its close.
    closed_at = {c.ticker: c.step for c in truth.closes}
    late = [c for c in truth.book_changes if c.ticker in closed_at and c.step > closed_at[c.ticker]]
    assert not late
    assert not [t for t in truth.trades if t.ticker in closed_at and t.step > closed_at[t.ticker]]


async def test_large_subscription_snapshots_each_market_before_its_deltas(sim_factory):
    sim = sim_factory("--markets", "5000", "--rate", "3000", "--seed", "8", truth=False)
    tickers: list[str] = []
    cursor = ""
    while True:
        page = sim.get("/markets", limit=1000, cursor=cursor).json()
        tickers += [m["ticker"] for m in page["markets"]]
        cursor = page["cursor"]
        if not cursor:
            break
    async with ws_connect(sim.ws_url) as ws:
        client = WsClient(ws)
        command = await client.send(
            {
                "cmd": "subscribe",
                "params": {"channels": ["orderbook_delta"], "market_tickers": tickers},
            }
        )
        await client.reply(command)
        snapshotted: set[str] = set()
        deltas = 0
        expected_seq = 1
        # Snapshots go out in chunks, so deltas of early chunks may precede later snapshots.
        while deltas < 300 or len(snapshotted) < len(tickers):
            message = await client.recv(10)
            assert message["seq"] == expected_seq
            expected_seq += 1
            ticker = message["msg"]["market_ticker"]
            if message["type"] == "orderbook_snapshot":
                assert ticker not in snapshotted
                snapshotted.add(ticker)
            else:
                assert ticker in snapshotted, "a delta arrived before its market's snapshot"
                deltas += 1
    assert len(snapshotted) == len(tickers) >= 5000
