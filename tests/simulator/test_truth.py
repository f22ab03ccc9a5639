"""Ground truth: determinism, completeness of the sent-frame log, and sane, consistent books."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.simulator.ticks import GRIDS
from app.simulator.truth import load_truth
from app.units import count_to_hundredths, dollars_to_micros
from tests.simulator.conftest import EPOCH_MS, WsClient, ws_connect

pytestmark = pytest.mark.timeout(90)


def _run(sim_factory, seed: int, name: str, poll: bool = False) -> Path:
    sim = sim_factory(
        "--markets", "30", "--rate", "5000", "--seed", str(seed), "--epoch-ms", str(EPOCH_MS),
        "--market-lifetime", "0.3", "--max-events", "4000", name=name,
    )  # fmt: skip
    while poll and not sim.state()["finished"]:
        # Reads must not perturb the exchange: they never touch its random stream.
        markets = sim.get("/markets", limit=50).json()["markets"]
        sim.get(f"/markets/{markets[-1]['ticker']}/orderbook")
        sim.get("/markets/trades", limit=5)
    sim.wait_finished()
    assert sim.stop() == 0
    assert sim.truth is not None
    return sim.truth


def _market_lines(folder: Path) -> list[bytes]:
    return (folder / "state.jsonl").read_bytes().splitlines()[1:]


def test_same_seed_and_epoch_give_identical_exchange_truth(sim_factory):
    first = _run(sim_factory, 7, "first")
    second = _run(sim_factory, 7, "second", poll=True)
    other = _run(sim_factory, 8, "other")
    exchange = (first / "exchange.jsonl").read_bytes()
    assert exchange.count(b"\n") > 4000 * 0.9
    assert exchange == (second / "exchange.jsonl").read_bytes()
    assert _market_lines(first) == _market_lines(second)
    assert exchange != (other / "exchange.jsonl").read_bytes()
    truth = load_truth(first)
    assert {e.event_type for e in truth.lifecycle} >= {
        "created",
        "activated",
        "determined",
        "settled",
    }


async def test_every_received_frame_is_in_the_truth_in_order(sim_factory):
    sim = sim_factory("--markets", "12", "--rate", "3000", "--seed", "21")
    markets = [m["ticker"] for m in sim.get("/markets", limit=12).json()["markets"]]
    async with (
        ws_connect(sim.ws_url) as ws1,
        ws_connect(sim.ws_url) as ws2,
    ):
        one, two = WsClient(ws1), WsClient(ws2)
        for client, command in (
            (one, {"channels": ["orderbook_delta"], "market_tickers": markets[2:5]}),
            (one, {"channels": ["ticker", "trade"]}),
            (one, {"channels": ["market_lifecycle_v2"]}),
            (two, {"channels": ["orderbook_delta", "trade"], "market_tickers": markets[5:8]}),
        ):
            await client.reply(await client.send({"cmd": "subscribe", "params": command}))
        await two.send(
            {
                "cmd": "update_subscription",
                "params": {"sid": 1, "action": "add_markets", "market_tickers": [markets[9]]},
            }
        )
        await two.send("garbage")
        await asyncio.gather(one.collect(1.0), two.collect(1.0))
        # Stop the simulator while both clients keep reading: every frame it sent arrives.
        stopped = asyncio.create_task(asyncio.to_thread(sim.stop))
        await asyncio.gather(one.drain_until_closed(20), two.drain_until_closed(20))
        assert await stopped == 0
        assert ws1.close_code == 1001
    truth = load_truth(sim.truth)
    for client in (one, two):
        assert len(client.texts) > 100
        assert truth.text_frames(client.conn_id) == client.texts
        assert truth.connections[client.conn_id].close_reason == "shutdown"
        for frame, message in zip(
            [f for f in truth.frames[client.conn_id] if f.kind == "text"],
            client.messages,
            strict=True,
        ):
            if isinstance(message, dict) and message.get("type") not in ("subscribed",):
                assert frame.sid == message.get("sid")
                assert frame.seq == message.get("seq")
    kinds = {f.kind for f in truth.frames[one.conn_id]}
    assert kinds >= {"text", "close"}


def _check_book(book: dict[str, dict[int, int]], grid_prices: dict[int, int]) -> None:
    for side in ("yes", "no"):
        for price, size in book[side].items():
            assert size > 0, "non-positive size"
            assert price in grid_prices, "price off the market's tick grid"
    if book["yes"] and book["no"]:
        assert max(book["yes"]) + max(book["no"]) < 1_000_000, "crossed book"


def test_books_stay_sane_and_rest_agrees_with_truth(sim_factory):
    sim = sim_factory(
        "--markets", "16", "--rate", "8000", "--seed", "3", "--epoch-ms", str(EPOCH_MS),
        "--market-lifetime", "0.8", "--max-events", "6000",
    )  # fmt: skip
    sim.wait_finished()
    dump = sim.dump()
    assert dump["step"] == 6000 and dump["state_file"].endswith("state.jsonl")
    truth = load_truth(sim.truth)
    assert truth.final is not None and truth.final.reason == "admin"
    # Replay every change from the initial books, checking sanity after each one.
    books: dict[str, dict[str, dict[int, int]]] = {}
    changes_by_step: dict[int, list] = {}
    for change in truth.book_changes:
        book = books.setdefault(change.ticker, truth.initial_book(change.ticker))
        side = book[change.side]
        before = side.get(change.price, 0)
        assert before + change.delta == change.size
        if change.cause == "trade":
            assert change.price == max(side), "a trade takes the best level"
        if change.size:
            side[change.price] = change.size
        else:
            side.pop(change.price)
        index = truth.catalog.market_index(change.ticker)
        assert index is not None
        _check_book(book, truth.catalog.grid(index).index)
        changes_by_step.setdefault(change.step, []).append(change)
    assert books == {t: truth.final.books[t] for t in books}
    # Every trade matches the book change it made on the maker side.
    assert truth.trades
    for trade in truth.trades:
        (change,) = [c for c in changes_by_step[trade.step] if c.cause == "trade"]
        maker = "no" if trade.taker_side == "yes" else "yes"
        maker_price = 1_000_000 - trade.yes_price if trade.taker_side == "yes" else trade.yes_price
        assert (change.ticker, change.side, change.price, change.delta) == (
            trade.ticker, maker, maker_price, -trade.count,
        )  # fmt: skip
    # REST serves the same books, statuses and trades the truth holds.
    for ticker in list(books)[:10]:
        book = sim.get(f"/markets/{ticker}/orderbook").json()["orderbook_fp"]
        rest = {
            side: {dollars_to_micros(p): count_to_hundredths(s) for p, s in book[f"{side}_dollars"]}
            for side in ("yes", "no")
        }
        assert rest == truth.final.books[ticker]
        market = sim.get(f"/markets/{ticker}").json()["market"]
        assert market["status"] == truth.final.statuses[ticker]
    trade_ids: list[str] = []
    cursor = ""
    while True:
        page = sim.get("/markets/trades", limit=250, cursor=cursor).json()
        trade_ids += [t["trade_id"] for t in page["trades"]]
        cursor = page["cursor"]
        if not cursor:
            break
    assert trade_ids == [t.trade_id for t in reversed(truth.trades)]
    structures = {m.price_level_structure for m in truth.markets.values()}
    assert structures <= {g.structure for g in GRIDS} and len(truth.markets) == truth.market_count
