"""Ground truth: determinism, completeness of the sent-frame log, sane and consistent books,
the step clock and the ticker records."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import shutil
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.db.rows import TickerRow
from app.normalize import FormatVersion, FrameEnvelope, normalize_frame
from app.simulator.recorder import GENERATOR_VERSION
from app.simulator.ticks import GRIDS
from app.simulator.truth import (
    TICKER_VALUE_FIELDS,
    Truth,
    TruthError,
    iter_tickers,
    load_truth,
    read_clock,
    read_meta,
)
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
        _check_book(book, truth.grid(change.ticker, change.step).index)
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


# ---- truth format 2: clock.tsv and ticker records ----------------------------------------


async def _capture(sim_factory, channels: list[str], *flags: str) -> tuple[Truth, int, int]:
    """Run a simulator with one client subscribed to `channels` (all markets) until shutdown.

    The client connects after the order flow has run a while and reads until the simulator
    closes it, so everything the exchange did from the subscription on was sent to it.
    Returns (truth, the client's connection id, the `subscribed` reply's send time).
    """
    sim = sim_factory("--markets", "20", "--rate", "3000", "--epoch-ms", str(EPOCH_MS), *flags)
    await asyncio.sleep(0.3)  # steps with nobody subscribed
    async with ws_connect(sim.ws_url) as ws:
        client = WsClient(ws)
        command = await client.send({"cmd": "subscribe", "params": {"channels": channels}})
        await client.reply(command)
        await client.collect(1.2)
        stopped = asyncio.create_task(asyncio.to_thread(sim.stop))
        await client.drain_until_closed(20)
        assert await stopped == 0
    assert sim.truth is not None
    truth = load_truth(sim.truth)
    subscribed = next(
        f for f in truth.frames[client.conn_id] if f.kind == "text" and f'"id":{command}' in f.text
    )
    return truth, client.conn_id, subscribed.send_ns


def _clock_lines(folder: Path) -> list[tuple[int, int]]:
    lines = (folder / "clock.tsv").read_text().splitlines()
    return [(int(wall), int(steps)) for wall, steps in (line.split("\t") for line in lines)]


async def test_clock_places_every_step_before_its_frames(sim_factory):
    truth, conn, _ = await _capture(sim_factory, ["trade"], "--seed", "11")
    assert truth.meta.truth_format == 2
    lines = _clock_lines(truth.directory)
    walls, steps = [w for w, _ in lines], [s for _, s in lines]
    assert walls == sorted(walls) and steps == sorted(steps)
    assert steps[0] == 0 and all(a < b for a, b in itertools.pairwise(steps))
    assert walls[0] >= truth.meta.raw["started_wall_ns"]
    assert truth.final is not None and steps[-1] == truth.final.step > 1000
    assert len(lines) <= steps[-1] // 2, "one line per pump batch, not per step"
    clock = truth.clock
    assert (clock.started_wall_ns, clock.last_wall_ns) == (walls[0], walls[-1])
    assert clock.steps_done == truth.final.step and len(clock) == len(lines)
    # Pair each sent trade frame with its exchange step through the trade id: the frame went
    # out after the clock line that covers its step, and before the next line.
    step_of = {trade.trade_id: trade.step for trade in truth.trades}
    checked = 0
    for frame in truth.frames[conn]:
        message = json.loads(frame.text) if frame.kind == "text" else None
        if not message or message.get("type") != "trade":
            continue
        step = step_of[message["msg"]["trade_id"]]
        executed_by = clock.wall_ns(step)
        assert executed_by is not None and executed_by <= frame.send_ns
        assert clock.steps_done_at(frame.send_ns) > step
        line = bisect.bisect_right(steps, step)
        assert walls[line] == executed_by
        if line + 1 < len(lines):
            assert frame.send_ns <= walls[line + 1]
        checked += 1
    assert checked > 50
    # The same run read as a format-1 truth: everything but the clock and tickers still reads.
    old = truth.directory.with_name("old-truth")
    shutil.copytree(truth.directory, old)
    (old / "clock.tsv").unlink()
    meta = json.loads((old / "meta.json").read_text())
    (old / "meta.json").write_text(json.dumps({**meta, "truth_format": 1}))
    records = (old / "exchange.jsonl").read_bytes().splitlines(keepends=True)
    (old / "exchange.jsonl").write_bytes(
        b"".join(r for r in records if b'"kind":"ticker"' not in r)
    )
    old_truth = load_truth(old)
    assert old_truth.meta.truth_format == 1 and not old_truth.tickers
    assert old_truth.trades == truth.trades and old_truth.books_at() == truth.books_at()
    with pytest.raises(TruthError, match="before truth format 2"):
        _ = old_truth.clock


def test_step_clock_answers_at_the_edges(tmp_path):
    (tmp_path / "clock.tsv").write_text("1000\t0\n2000\t5\n3000\t9\n4000\t1")  # last line torn
    clock = read_clock(tmp_path)
    assert (clock.started_wall_ns, clock.last_wall_ns, clock.steps_done, len(clock)) == (
        1000, 3000, 9, 3,
    )  # fmt: skip
    assert [clock.wall_ns(step) for step in (0, 4, 5, 8, 9, 100)] == [
        2000, 2000, 3000, 3000, None, None,
    ]  # fmt: skip
    assert [clock.steps_done_at(t) for t in (0, 999, 1000, 1999, 2000, 2999, 3000, 10**19)] == [
        0, 0, 0, 0, 5, 5, 9, 9,
    ]  # fmt: skip
    with pytest.raises(ValueError):
        clock.wall_ns(-1)
    (tmp_path / "clock.tsv").write_text("1000\t0\n900\t4\n")
    with pytest.raises(TruthError, match="backwards"):
        read_clock(tmp_path)
    (tmp_path / "clock.tsv").write_text("1000\t0\n2000 5\n")
    with pytest.raises(TruthError, match=":2: not"):
        read_clock(tmp_path)
    (tmp_path / "clock.tsv").write_text("")
    with pytest.raises(TruthError, match="empty"):
        read_clock(tmp_path)
    (tmp_path / "clock.tsv").unlink()
    with pytest.raises(TruthError, match=r"no clock\.tsv"):
        read_clock(tmp_path)


def test_meta_accepts_truth_formats_1_and_2_only(tmp_path):
    meta = {
        "generator": GENERATOR_VERSION, "seed": 1, "markets": 2, "rate": 10.0,
        "period_ns": 100_000_000, "epoch_ms": EPOCH_MS, "format": "current",
        "market_lifetime_ns": 10**12, "max_events": None,
    }  # fmt: skip
    for version, readable in ((1, True), (2, True), (3, False), (None, False)):
        (tmp_path / "meta.json").write_text(json.dumps({**meta, "truth_format": version}))
        if readable:
            assert read_meta(tmp_path).truth_format == version
        else:
            with pytest.raises(TruthError, match="formats 1, 2"):
                read_meta(tmp_path)


def _ns(stamp: datetime) -> int:
    return (stamp - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


@pytest.mark.parametrize("wire_format", ["current", "legacy"])
async def test_every_sent_ticker_is_a_recorded_ticker_change(sim_factory, wire_format):
    legacy = wire_format == "legacy"
    truth, conn, subscribed_ns = await _capture(
        sim_factory, ["ticker"], "--seed", "13", "--format", wire_format
    )
    assert set(TICKER_VALUE_FIELDS) <= set(TickerRow._fields)
    # Legacy ticker frames carry only whole-second `ts`; the current ones `ts_ms`.
    unit = 1_000_000_000 if legacy else 1_000_000
    sent: Counter[tuple[str, int, tuple[int | None, ...]]] = Counter()
    for frame in truth.frames[conn]:
        if frame.kind != "text" or not frame.text.startswith('{"type":"ticker"'):
            continue
        envelope = FrameEnvelope(
            received_ns=frame.send_ns, connection_id=f"sim-{conn}", batch_pos=0, gatherer="t"
        )
        result = normalize_frame(
            frame.text, envelope, version=FormatVersion.LEGACY if legacy else None
        )
        (row,) = result.rows
        assert isinstance(row, TickerRow)
        values = tuple(getattr(row, name) for name in TICKER_VALUE_FIELDS)
        sent[(row.market_ticker, _ns(row.exchange_ts) // unit, values)] += 1
    assert sum(sent.values()) > 50
    recorded: Counter[tuple[str, int, tuple[int | None, ...]]] = Counter(
        (r.ticker, r.ts_ns // unit, r.values) for r in truth.tickers
    )
    assert sent <= recorded
    # Every change from the subscription on reached the client (none before: nobody listened,
    # yet they were recorded); the clock says which step the subscription came at.
    subscribed_at = truth.clock.steps_done_at(subscribed_ns)
    assert any(r.step < subscribed_at for r in truth.tickers)
    after = Counter(
        (r.ticker, r.ts_ns // unit, r.values) for r in truth.tickers if r.step >= subscribed_at
    )
    assert sent == after
    assert truth.tickers == list(iter_tickers(truth.directory))
    for record in truth.tickers:
        sizes = (record.yes_bid_size, record.yes_ask_size, record.last_trade_size)
        assert all(size is None for size in sizes) if legacy else None not in sizes
        assert None not in (record.price, record.yes_bid, record.yes_ask, record.volume)
