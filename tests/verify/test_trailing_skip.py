"""A skipped delta nobody can notice: every later seq of its subscription is skipped too, so no
gap is ever seen and every frame that was *sent* is stored. Only the exchange's own books can
show what is missing: the books at sampled instants must differ."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import psycopg2
import pytest

from app.db.copy import write_rows
from app.db.migrations import upgrade
from app.verify import verify_capture
from tests.simulator.conftest import EPOCH_MS, Sim, ws_connect
from tests.verify.conftest import (
    Received,
    _holes,
    _reader,
    _rows,
    _sessions,
    _sid_of,
    create_database,
    drop_database,
)


async def _capture(sim: Sim, markets: list[str]) -> list[Received]:
    opened_ns = time.time_ns()
    async with ws_connect(sim.ws_url) as ws:
        received = Received(int(ws.response.headers["X-Simulator-Connection"]), [], None, opened_ns)
        reader = asyncio.create_task(_reader(ws, received.frames))
        command = {"channels": ["ticker", "trade", "market_lifecycle_v2"]}
        await ws.send(json.dumps({"id": 1, "cmd": "subscribe", "params": command}))
        books = {"channels": ["orderbook_delta"], "market_tickers": markets}
        await ws.send(json.dumps({"id": 2, "cmd": "subscribe", "params": books}))
        sid = await _sid_of(received.frames, "orderbook_delta")
        await asyncio.sleep(1.5)
        # From here on no book delta reaches us, and no later seq ever shows the gap.
        await asyncio.to_thread(sim.fault, type="skip_seq", conn=received.sim_conn, sid=sid,
                                count=1_000_000)  # fmt: skip
        await asyncio.to_thread(sim.wait_finished, 30)
        await asyncio.sleep(0.3)
        await asyncio.to_thread(sim.stop)
        await asyncio.wait_for(reader, 20)
    return [received]


def test_trailing_skipped_deltas_fail_verify(tmp_path: Path, postgres_admin_url: str) -> None:
    flags = ["--markets", "3", "--seed", "5", "--rate", "200", "--max-events", "900",
             "--epoch-ms", str(EPOCH_MS)]  # fmt: skip
    sim = Sim(flags, tmp_path / "truth", tmp_path / "sim.log")
    try:
        markets = [m["ticker"] for m in sim.get("/markets", limit=100).json()["markets"]]
        received = asyncio.run(_capture(sim, markets))
    finally:
        sim.stop()
    skipped = [
        json.loads(line)
        for line in (tmp_path / "truth" / "faults.jsonl").read_text().splitlines()
        if json.loads(line)["fault"] == "skip_seq"
    ]
    if not skipped:
        pytest.fail("the fault skipped nothing: the order flow ended before it")
    base = postgres_admin_url.rsplit("/", 1)[0]
    name = f"kd_test_verify_{uuid.uuid4().hex[:10]}"
    create_database(postgres_admin_url, name)
    try:
        upgrade(f"{base}/{name}")
        conn = psycopg2.connect(f"{base}/{name}")
        with conn, conn.cursor() as cur:
            write_rows(conn, _rows(received))
            cur.executemany(
                "INSERT INTO connection_sessions (gatherer, connection_id, role, opened_at)"
                " VALUES (%s, %s, %s, %s)",
                _sessions(received),
            )
            cur.executemany(
                "INSERT INTO capture_holes (gatherer, hole_id, connection_id, channel,"
                " market_tickers, cause, from_at, to_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                _holes(received),
            )
        conn.close()
        report = verify_capture(tmp_path / "truth", f"{base}/{name}")
    finally:
        drop_database(postgres_admin_url, name)
    # Everything that was sent is stored, and no gap could be seen ...
    assert all(t.exact for t in report.tables), [t.as_dict() for t in report.tables]
    assert report.book_differences == []  # the final books compare what was sent
    # ... but the exchange's books moved on without us.
    sampled = report.sampled_books
    assert sampled is not None and sampled.differing > 0, sampled and sampled.as_dict()
    assert not report.exact
