"""Conformance with a client we did not write: the official SDK `kalshi_python_sync` 3.2.0.

Its pydantic models are strict (required fields, enums, StrictInt/StrictStr), so every call
below also validates the legacy field format. The SDK signs its own requests, which the
simulator verifies with `--rest-auth strict`.
"""

from __future__ import annotations

import pytest
from kalshi_python_sync import Configuration, EventsApi, ExchangeApi, KalshiClient, MarketApi

from app.simulator.truth import load_truth
from app.units import count_to_hundredths, dollars_to_micros
from tests.simulator.conftest import EPOCH_MS, WsClient, of_type, ws_connect

pytestmark = pytest.mark.timeout(90)

LEGACY_STATUS = {
    "initialized": "initialized",
    "active": "active",
    "inactive": "closed",
    "closed": "closed",
    "determined": "determined",
    "finalized": "settled",
}


def _levels(levels: list[list[str]]) -> dict[int, int]:
    return {dollars_to_micros(p): count_to_hundredths(s) for p, s in levels}


def _sdk(sim, keypair) -> KalshiClient:
    config = Configuration(host=sim.api)
    config.api_key_id = keypair.key_id
    config.private_key_pem = keypair.pkcs8_path.read_text()
    return KalshiClient(config)


def test_sdk_reads_markets_books_trades_events_series(sim_factory, rsa_keypair):
    sim = sim_factory(
        "--format", "legacy", "--markets", "230", "--rate", "6000", "--seed", "13",
        "--epoch-ms", str(EPOCH_MS), "--max-events", "3000", "--market-lifetime", "0.4",
        "--auth-public-key", str(rsa_keypair.public_path), "--rest-auth", "strict",
    )  # fmt: skip
    sim.wait_finished()
    sim.dump()
    truth = load_truth(sim.truth)
    assert truth.final is not None
    client = _sdk(sim, rsa_keypair)
    markets = MarketApi(client)

    listed = []
    cursor = None
    pages = 0
    while True:
        page = markets.get_markets(limit=100, cursor=cursor)
        pages += 1
        listed.extend(page.markets)
        cursor = page.cursor
        if not cursor:
            break
    assert pages >= 3
    by_index = sorted(truth.markets.values(), key=lambda m: m.index)
    assert [m.ticker for m in listed] == [m.ticker for m in by_index]
    statuses = {m.status for m in listed}
    assert {"active", "settled", "initialized"} <= statuses
    for market in listed:
        assert market.status == LEGACY_STATUS[truth.final.statuses[market.ticker]]
        book = truth.final.books[market.ticker]
        assert market.yes_bid == (max(book["yes"]) // 10_000 if book["yes"] else 0)
        assert market.no_bid == (max(book["no"]) // 10_000 if book["no"] else 0)
        assert market.yes_bid_dollars == f"{market.yes_bid / 100:.4f}"
        assert market.price_level_structure == "linear_cent"
        if market.status == "settled":
            assert market.result in ("yes", "no")
            assert market.result == truth.final.results[market.ticker]

    picked = [m.ticker for m in listed if truth.final.books[m.ticker]["yes"]][:5]
    filtered = markets.get_markets(tickers=",".join(picked[:3]))
    assert [m.ticker for m in filtered.markets] == picked[:3]
    for ticker in picked:
        book = markets.get_market_orderbook(ticker=ticker).orderbook
        expected = truth.final.books[ticker]
        assert _levels(book.yes_dollars) == expected["yes"]
        assert _levels(book.no_dollars) == expected["no"]
        top = markets.get_market_orderbook(ticker=ticker, depth=1).orderbook
        assert len(top.yes_dollars) == 1
        assert markets.get_market(ticker=ticker).market.ticker == ticker

    trades = []
    cursor = None
    while True:
        page = markets.get_trades(limit=200, cursor=cursor)
        trades.extend(page.trades)
        cursor = page.cursor
        if not cursor:
            break
    assert len(trades) == len(truth.trades) > 100
    for got, want in zip(trades, reversed(truth.trades), strict=True):
        assert got.trade_id == want.trade_id
        assert got.ticker == want.ticker
        assert got.yes_price == want.yes_price // 10_000
        assert got.count * 100 == want.count
        assert got.taker_side == want.taker_side
    one = trades[0].ticker
    only = markets.get_trades(ticker=one, limit=1000).trades
    assert only and {t.ticker for t in only} == {one}
    assert len(only) == sum(t.ticker == one for t in truth.trades)

    events = EventsApi(client)
    page = events.get_events(limit=20, with_nested_markets=True)
    assert len(page.events) == 20 and page.cursor
    first = page.events[0]
    assert first.markets and all(m.event_ticker == first.event_ticker for m in first.markets)
    detail = events.get_event(event_ticker=first.event_ticker)
    assert detail.event.series_ticker == first.series_ticker
    assert [m.ticker for m in detail.markets] == [m.ticker for m in first.markets]
    settled = events.get_events(status="settled", limit=200).events
    assert settled

    series = markets.get_series_list().series
    assert len(series) == truth.catalog.series_count
    assert markets.get_series(series_ticker=series[0].ticker).series.ticker == series[0].ticker
    status = ExchangeApi(client).get_exchange_status()
    assert status.exchange_active is True


async def test_legacy_websocket_frames_carry_integers_and_dollars(sim_factory):
    sim = sim_factory("--format", "legacy", "--markets", "10", "--rate", "3000", "--seed", "2")
    tickers = [m["ticker"] for m in sim.get("/markets", limit=6).json()["markets"][2:6]]
    async with ws_connect(sim.ws_url) as ws:
        client = WsClient(ws)
        command = await client.send(
            {
                "cmd": "subscribe",
                "params": {"channels": ["orderbook_delta", "trade"], "market_tickers": tickers},
            }
        )
        await client.reply(command)
        snapshot = await client.until(of_type("orderbook_snapshot"))
        delta = await client.until(of_type("orderbook_delta"))
        trade = await client.until(of_type("trade"))
    body = snapshot["msg"]
    side = "yes" if "yes" in body else "no"
    cents, dollars = body[side][0], body[f"{side}_dollars"][0]
    assert isinstance(cents[0], int) and isinstance(cents[1], int)
    assert dollars == [f"{cents[0] / 100:.4f}", cents[1]]
    assert "yes_dollars_fp" not in body
    change = delta["msg"]
    assert isinstance(change["price"], int) and isinstance(change["delta"], int)
    assert change["price_dollars"] == f"{change['price'] / 100:.4f}"
    assert change["delta_fp"] == f"{change['delta']}.00"
    assert "ts_ms" not in change
    assert isinstance(trade["seq"], int)  # legacy trade frames were sequenced per sid
    assert isinstance(trade["msg"]["count"], int) and isinstance(trade["msg"]["yes_price"], int)
