"""Our client against the real simulator (`kalshi-data sim`) run as a subprocess.

The simulator checks signatures with the public key of the test key pair (strict REST auth,
required WebSocket auth), pages with its own opaque cursors and injects faults through its
admin API. The order flow stops after a fixed number of events so the exchange holds still and
answers can be compared exactly.
"""

from __future__ import annotations

import asyncio
import json
import select
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests

from app.config import KalshiSettings
from app.kalshi.auth import Signer, load_private_key
from app.kalshi.errors import RateLimited, ServerError, Unauthorized, WsHandshakeRejected
from app.kalshi.rest import KalshiRest
from app.kalshi.ws import KalshiWebSocket, RawFrame
from app.kalshi.ws_errors import WsMarketTickerRequired, WsUnknownChannel
from tests.conftest import KALSHI_DATA, REPO, KeyPair, clean_env

MARKETS = 230  # not a multiple of the page size, so the last page is partial
EVENTS = 3000


@contextmanager
def simulator(*args: str) -> Iterator[str]:
    """Start `kalshi-data sim` on a free port; yield its origin (`http://127.0.0.1:PORT`)."""
    process = subprocess.Popen(
        [KALSHI_DATA, "sim", "--host", "127.0.0.1", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=clean_env(),
        cwd=REPO,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        line = process.stdout.readline() if ready else ""
        assert line.startswith("simulator listening on "), f"simulator did not start: {line!r}"
        yield line.rsplit(" ", 1)[1].strip()
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def admin_state(origin: str) -> dict[str, Any]:
    return requests.get(f"{origin}/admin/state", timeout=5).json()


def wait_until_finished(origin: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = admin_state(origin)
        if state["finished"]:
            return state
        time.sleep(0.05)
    raise AssertionError("the simulator's order flow did not finish")


def arm_faults(origin: str, *faults: dict[str, Any]) -> None:
    response = requests.post(f"{origin}/admin/faults", json=list(faults), timeout=5)
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def sim(rsa_keypair: KeyPair) -> Iterator[dict[str, Any]]:
    with simulator(
        "--markets",
        str(MARKETS),
        "--seed",
        "11",
        "--rate",
        "20000",
        "--max-events",
        str(EVENTS),
        "--auth-public-key",
        str(rsa_keypair.public_path),
        "--rest-auth",
        "strict",
        "--ws-auth",
        "required",
    ) as origin:
        yield {"origin": origin, "state": wait_until_finished(origin)}


def signed_client(keypair: KeyPair, origin: str, **kwargs: Any) -> KalshiRest:
    settings = KalshiSettings(
        rest_url=f"{origin}/trade-api/v2",
        ws_url=origin.replace("http", "ws") + "/trade-api/ws/v2",
        key_id=keypair.key_id,
        private_key_path=keypair.pkcs8_path,
        tier="prime",
        max_retries=kwargs.pop("max_retries", 3),
        backoff_base_s=0.01,
        backoff_max_s=0.05,
    )
    return KalshiRest.from_settings(settings, **kwargs)


def test_market_pagination_across_simulator_pages(sim: dict, rsa_keypair: KeyPair) -> None:
    with signed_client(rsa_keypair, sim["origin"]) as client:
        pages = list(client.market_pages(limit=100))
        tickers = [m["ticker"] for page in pages for m in page.items]
        count = sim["state"]["markets"]["count"]
        assert count >= MARKETS
        assert len(tickers) == len(set(tickers)) == count
        assert len(pages) == -(-count // 100)
        assert all(page.cursor for page in pages[:-1]) and pages[-1].cursor is None
        # Resuming from a page's cursor gives exactly the rest.
        rest = [m["ticker"] for m in client.iter_markets(limit=100, cursor=pages[0].cursor)]
        assert rest == tickers[100:]
        open_markets = list(client.iter_markets(status="open", limit=57))
        assert open_markets and {m["status"] for m in open_markets} == {"active"}
        market = client.get_market(tickers[-1])
        assert market["ticker"] == tickers[-1]
        event = client.get_event(market["event_ticker"], with_nested_markets=True)
        assert tickers[-1] in [m["ticker"] for m in event["event"]["markets"]]
        assert client.get_series(event["event"]["series_ticker"])["ticker"]
        events = list(client.iter_events(limit=7))
        assert len(events) == sim["state"]["events"]


def test_unsigned_requests_are_refused_by_strict_simulator(sim: dict) -> None:
    settings = KalshiSettings(rest_url=f"{sim['origin']}/trade-api/v2")
    with KalshiRest.from_settings(settings) as client, pytest.raises(Unauthorized) as caught:
        client.get_exchange_status()
    assert caught.value.status == 401


def test_orderbooks_single_and_batch_agree(sim: dict, rsa_keypair: KeyPair) -> None:
    with signed_client(rsa_keypair, sim["origin"]) as client:
        tickers = [m["ticker"] for m in client.iter_markets(status="open")]
        books = client.get_orderbooks(tickers)
        assert [book.ticker for book in books] == tickers
        assert sum(1 for book in books if book.yes or book.no) > len(books) // 2
        for book in books[:: max(1, len(books) // 10)]:
            single = client.get_orderbook(book.ticker)
            assert (single.yes, single.no) == (book.yes, book.no)
            for level in (*book.yes, *book.no):
                assert 0 < level.price_micros < 1_000_000 and level.size_hundredths > 0
            top = client.get_orderbook(book.ticker, depth=1)
            assert len(top.yes) <= 1 and len(top.no) <= 1
            if book.yes:
                assert top.best_yes_bid == book.best_yes_bid


def test_all_trades_across_pages_parse_exactly(sim: dict, rsa_keypair: KeyPair) -> None:
    with signed_client(rsa_keypair, sim["origin"]) as client:
        pages = list(client.trade_pages(limit=100))
        assert len(pages) == -(-sim["state"]["trades"] // 100) > 2  # really crossed pages
        trades = list(client.iter_trades(limit=1000))
        assert len(trades) == sim["state"]["trades"]
        assert len({t.trade_id for t in trades}) == len(trades)
        stamps = [t.created_ns for t in trades]
        assert stamps == sorted(stamps, reverse=True)  # newest first
        for trade in trades:
            assert trade.yes_price_micros + trade.no_price_micros == 1_000_000
            assert trade.count_hundredths > 0 and trade.wire_format == "fp"
        one = trades[0].ticker
        assert {t.ticker for t in client.iter_trades(ticker=one)} == {one}


def test_injected_429_and_5xx_are_retried(sim: dict, rsa_keypair: KeyPair) -> None:
    sleeps: list[float] = []
    with signed_client(rsa_keypair, sim["origin"], sleep=sleeps.append) as client:
        arm_faults(
            sim["origin"],
            {"type": "rest_429", "count": 2},
            {"type": "rest_5xx", "count": 1, "status": 502},
        )
        assert client.get_exchange_status().exchange_active is True
        assert len(sleeps) == 3
        arm_faults(sim["origin"], {"type": "rest_429", "count": 4})
        with pytest.raises(RateLimited) as caught:
            client.get_exchange_status()
        assert caught.value.attempts == 4
        arm_faults(sim["origin"], {"type": "rest_5xx", "count": 4, "status": 503})
        with pytest.raises(ServerError):
            client.get_historical_cutoff()
        assert client.get_historical_cutoff().trades_created_ns is not None


def test_client_bucket_keeps_a_basic_tier_simulator_happy(rsa_keypair: KeyPair) -> None:
    """80 reads on Basic: a 36-read burst (2 s of tokens since 2026-08-19, 10 % headroom), then
    20 reads/s; the simulator, which enforces Kalshi's Basic bucket, never answers 429."""
    with simulator("--markets", "20", "--rate", "1", "--rate-limit", "basic") as origin:
        settings = KalshiSettings(rest_url=f"{origin}/trade-api/v2", tier="basic", max_retries=0)
        started = time.monotonic()
        with KalshiRest.from_settings(settings) as client:
            for _ in range(80):
                client.get_exchange_status()
        elapsed = time.monotonic() - started
        assert admin_state(origin)["rest_rate_limited"] == 0
        assert 2.0 <= elapsed < 6.0  # (800 - 360) tokens / 200 per s = 2.2 s of pacing


def test_legacy_format_books_and_trades(rsa_keypair: KeyPair) -> None:
    with simulator(
        "--markets", "40", "--seed", "5", "--rate", "20000", "--max-events", "800",
        "--format", "legacy",
    ) as origin:  # fmt: skip
        state = wait_until_finished(origin)
        settings = KalshiSettings(rest_url=f"{origin}/trade-api/v2", tier="prime")
        with KalshiRest.from_settings(settings) as client:
            tickers = [m["ticker"] for m in client.iter_markets()]
            books = client.get_orderbooks(tickers)
            assert books and {b.wire_format for b in books} <= {"legacy", "fp"}
            single = client.get_orderbook(tickers[0])
            assert single.wire_format == "legacy"
            trades = list(client.iter_trades())
            assert len(trades) == state["trades"]
            assert all(t.yes_price_micros + t.no_price_micros == 1_000_000 for t in trades)


async def test_websocket_against_simulator(sim: dict, rsa_keypair: KeyPair) -> None:
    ws_url = sim["origin"].replace("http", "ws") + "/trade-api/ws/v2"
    signer = Signer(rsa_keypair.key_id, load_private_key(rsa_keypair.pkcs1_path))
    with pytest.raises(WsHandshakeRejected) as caught:
        await KalshiWebSocket.connect(ws_url, signer=None, on_frame=lambda frame: None)
    assert caught.value.status == 401

    with signed_client(rsa_keypair, sim["origin"]) as client:
        tickers = [m["ticker"] for m in client.iter_markets(status="open", limit=3)][:3]
    frames: list[RawFrame] = []
    got = asyncio.Event()

    def keep(frame: RawFrame) -> None:
        frames.append(frame)
        got.set()

    async with await KalshiWebSocket.connect(ws_url, signer=signer, on_frame=keep) as ws:
        (sub,) = await ws.subscribe(["orderbook_delta"], market_tickers=tickers[:2])
        assert sub.channel == "orderbook_delta"
        added = await ws.add_markets(sub.sid, [tickers[2]])
        assert added.market_tickers == tuple(sorted(tickers))
        snap = await ws.get_snapshot(sub.sid, [tickers[0]])
        assert snap.sid == sub.sid
        listing = await ws.list_subscriptions()
        assert [(s.channel, s.sid) for s in listing] == [("orderbook_delta", sub.sid)]
        with pytest.raises(WsUnknownChannel):
            await ws.subscribe(["ticker_v2"])
        with pytest.raises(WsMarketTickerRequired):
            await ws.subscribe(["orderbook_delta"])
        async with asyncio.timeout(5):
            while sum('"orderbook_snapshot"' in str(f.data) for f in frames) < 4:
                got.clear()
                await got.wait()
        done = await ws.unsubscribe([sub.sid])
        assert done.sids == (sub.sid,)
    snapshots = [json.loads(f.data) for f in frames if '"orderbook_snapshot"' in str(f.data)]
    assert {s["msg"]["market_ticker"] for s in snapshots} == set(tickers)
    seqs = [s["seq"] for s in snapshots]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # per-sid seq, one each
