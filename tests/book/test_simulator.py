"""End to end: frames from the real simulator, stored as the ingest path stores them, rebuild the
exact final books the simulator's ground truth records."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import psycopg2
import pytest

from app.book import book_at
from app.db.copy import write_rows
from app.normalize import FrameEnvelope, Verdict, batch_rows, normalize_frame
from app.simulator.truth import load_truth
from tests.simulator.conftest import EPOCH_MS, WsClient, of_type, ws_connect

pytestmark = pytest.mark.timeout(90)


async def test_book_at_end_equals_simulator_final_books(sim_factory, migrated_database) -> None:
    sim = sim_factory(
        "--markets", "16", "--rate", "4000", "--seed", "11", "--epoch-ms", str(EPOCH_MS),
        "--max-events", "3000",
    )  # fmt: skip
    tickers = [m["ticker"] for m in sim.get("/markets", limit=16).json()["markets"]][:6]
    received: list[tuple[int, str]] = []
    async with ws_connect(sim.ws_url) as ws:
        client = WsClient(ws)
        # Two subscriptions (two sids) on one connection, markets interleaved within each.
        for chunk in (tickers[:4], tickers[4:]):
            command = {"channels": ["orderbook_delta"], "market_tickers": chunk}
            await client.reply(await client.send({"cmd": "subscribe", "params": command}))
        await client.until(of_type("orderbook_delta"), timeout=10)
        sim.wait_finished(timeout=30)
        await client.collect(0.5)  # whatever was still in flight
        last = 0
        for text in client.texts:
            last = max(last + 1, time.time_ns())
            received.append((last, text))
    assert sim.stop() == 0
    assert sim.truth is not None
    truth = load_truth(sim.truth)
    assert truth.final is not None

    results = [
        normalize_frame(text, FrameEnvelope(ns, "conn-1", pos, "g1"))
        for pos, (ns, text) in enumerate(received)
    ]
    assert all(r.verdict is not Verdict.DEAD for r in results), [r.reason for r in results]
    deltas = sum(1 for r in results if r.raw_frame.msg_type == "orderbook_delta")
    assert deltas > 100
    conn = psycopg2.connect(migrated_database)
    try:
        write_rows(conn, batch_rows(results))
        conn.commit()
    finally:
        conn.close()
    now = datetime.now(UTC)
    applied = 0
    for ticker in tickers:
        result = book_at(migrated_database, ticker, now)
        expected = truth.final.books[ticker]
        assert {"yes": result.book.yes, "no": result.book.no} == expected, ticker
        assert result.complete, result.warnings
        assert result.snapshot.source == "ws"
        applied += result.deltas_applied
    assert applied == deltas
