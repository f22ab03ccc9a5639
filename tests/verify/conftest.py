"""A real capture of a real simulator run, stored like ingest stores it, for `verify` tests.

`capture` (module scope) runs `kalshi-data sim` with a seq-skip fault, records every frame two
`websockets` clients receive (one subscribed to ticker, trade, lifecycle and the order books of
every market; one to ticker only, so ticker frames arrive twice), resyncs the books with
`get_snapshot` after the gap, stops the simulator (truth flushed) and writes everything through
`normalize_frame` + `write_rows` into a migrated template database. `capture_db` gives each
test its own copy (`CREATE DATABASE ... TEMPLATE`), so tests can break it freely.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from app.db.copy import write_rows
from app.db.migrations import upgrade
from app.db.rows import RawBatchRow, Row, SequenceGapRow
from app.normalize import FrameEnvelope, datetime_from_ns, normalize_frame
from app.streams.envelope import Frame, encode_frames
from tests.simulator.conftest import EPOCH_MS, Sim, ws_connect

GATHERER = "g1"
BATCH_FRAMES = 200  # frames per stored raw batch
SIM_FLAGS = [
    "--markets", "6", "--seed", "11", "--rate", "2000", "--max-events", "5000",
    "--market-lifetime", "4", "--epoch-ms", str(EPOCH_MS), "--ping-interval", "1",
]  # fmt: skip


@dataclass
class Capture:
    truth: Path
    template: str  # database name
    base_url: str  # server URL without the database
    markets: list[str]

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"


@dataclass
class Received:
    sim_conn: int
    frames: list[tuple[int, str]]  # (receive ns, text)
    resync_after_ns: int | None = None
    opened_ns: int = 0  # when the client started to connect (its session's opened_at)


async def _reader(ws: Any, sink: list[tuple[int, str]]) -> None:
    try:
        async for text in ws:
            sink.append((time.time_ns(), text))
    except Exception:  # the simulator's shutdown close ends the stream
        return


async def _run_clients(sim: Sim, markets: list[str]) -> list[Received]:
    opened_ns = time.time_ns()
    async with ws_connect(sim.ws_url) as books_ws, ws_connect(sim.ws_url) as ticker_ws:
        books = Received(int(books_ws.response.headers["X-Simulator-Connection"]), [])
        tickers = Received(int(ticker_ws.response.headers["X-Simulator-Connection"]), [])
        books.opened_ns = tickers.opened_ns = opened_ns
        readers = [
            asyncio.create_task(_reader(books_ws, books.frames)),
            asyncio.create_task(_reader(ticker_ws, tickers.frames)),
        ]
        command = {"channels": ["ticker", "trade", "market_lifecycle_v2"]}
        await books_ws.send(json.dumps({"id": 1, "cmd": "subscribe", "params": command}))
        await books_ws.send(
            json.dumps(
                {
                    "id": 2,
                    "cmd": "subscribe",
                    "params": {"channels": ["orderbook_delta"], "market_tickers": markets},
                }
            )
        )
        await ticker_ws.send(
            json.dumps({"id": 1, "cmd": "subscribe", "params": {"channels": ["ticker"]}})
        )
        book_sid = await _sid_of(books.frames, "orderbook_delta")
        await asyncio.to_thread(
            sim.fault, type="skip_seq", conn=books.sim_conn, sid=book_sid, count=1
        )
        await asyncio.to_thread(sim.wait_finished, 30)
        await asyncio.sleep(0.3)
        books.resync_after_ns = time.time_ns()
        params = {"sid": book_sid, "action": "get_snapshot", "market_tickers": markets}
        await books_ws.send(json.dumps({"id": 3, "cmd": "update_subscription", "params": params}))
        await asyncio.sleep(0.5)
        await asyncio.to_thread(sim.stop)
        await asyncio.wait_for(asyncio.gather(*readers), 20)
    return [books, tickers]


async def _sid_of(frames: list[tuple[int, str]], channel: str) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for _, text in frames:
            message = json.loads(text)
            if message.get("type") == "subscribed" and message["msg"]["channel"] == channel:
                return int(message["msg"]["sid"])
        await asyncio.sleep(0.02)
    raise AssertionError(f"no subscribed reply for {channel}")


def _raw_batches(conn_id: str, frames: list[tuple[int, str]], first_seq: int) -> list[Row]:
    """The frames as `raw_batches` rows of BATCH_FRAMES frames, positions as in `_rows`."""
    batches: list[Row] = []
    for start in range(0, len(frames), BATCH_FRAMES):
        chunk = frames[start : start + BATCH_FRAMES]
        count, data = encode_frames(Frame(text.encode(), ns, conn_id) for ns, text in chunk)
        times = [ns for ns, _ in chunk]
        batches.append(
            RawBatchRow(
                GATHERER,
                "verify-tests",
                first_seq + start,
                datetime_from_ns(min(times)),
                min(times),
                max(times),
                count,
                None,
                None,
                tuple(range(start, start + count)),
                data,
            )
        )
    return batches


def _rows(received: list[Received]) -> list[Row]:
    rows: list[Row] = []
    for number, connection in enumerate(received):
        conn_id = f"{GATHERER}-c{number}"
        rows.extend(_raw_batches(conn_id, connection.frames, 1_000_000 * number))
        last: dict[int, int] = {}
        for pos, (ns, text) in enumerate(connection.frames):
            resync = connection.resync_after_ns is not None and ns > connection.resync_after_ns
            message = json.loads(text)
            envelope = FrameEnvelope(ns, conn_id, pos, GATHERER, resync=resync)
            rows.extend(normalize_frame(text, envelope).all_rows())
            sid, seq = message.get("sid"), message.get("seq")
            if message.get("type") in ("orderbook_snapshot", "orderbook_delta"):
                if sid in last and seq > last[sid] + 1:
                    rows.append(
                        SequenceGapRow(
                            GATHERER,
                            conn_id,
                            sid,
                            (),
                            last[sid] + 1,
                            seq,
                            datetime_from_ns(ns),
                            None,
                            None,
                        )
                    )
                last[sid] = seq
    return rows


def _sessions(received: list[Received]) -> list[tuple[Any, ...]]:
    return [
        (
            GATHERER,
            f"{GATHERER}-c{n}",
            "book" if n == 0 else "ticker",
            datetime_from_ns(r.opened_ns),
        )
        for n, r in enumerate(received)
    ]


def _holes(received: list[Received]) -> list[tuple[Any, ...]]:
    """What the listener records (docs/holes.md): each channel is missed from the connect
    until its `subscribed` reply; each book until its first snapshot."""
    holes = []
    for number, connection in enumerate(received):
        conn_id = f"{GATHERER}-c{number}"
        first_snapshot: dict[str, int] = {}
        for ns, text in connection.frames:
            message = json.loads(text)
            kind, body = message.get("type"), message.get("msg") or {}
            if kind == "subscribed" and body.get("channel") != "orderbook_delta":
                channel, markets, to_ns = body["channel"], None, ns
            elif kind == "orderbook_snapshot":
                first_snapshot.setdefault(body["market_ticker"], ns)
                continue
            else:
                continue
            holes.append((conn_id, channel, markets, connection.opened_ns, to_ns))
        if first_snapshot:
            holes.append((conn_id, "orderbook_delta", sorted(first_snapshot),
                          connection.opened_ns, max(first_snapshot.values())))  # fmt: skip
    return [
        (GATHERER, f"{conn}-{channel}", conn, channel, markets, "not_subscribed",
         datetime_from_ns(start), datetime_from_ns(end))
        for conn, channel, markets, start, end in holes
    ]  # fmt: skip


def create_database(admin_url: str, name: str, template: str | None = None) -> None:
    admin = psycopg2.connect(admin_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        suffix = f' TEMPLATE "{template}"' if template else ""
        cur.execute(f'CREATE DATABASE "{name}"{suffix}')
    admin.close()


def drop_database(admin_url: str, name: str) -> None:
    admin = psycopg2.connect(admin_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory, postgres_admin_url: str) -> Iterator[Capture]:
    folder = tmp_path_factory.mktemp("verify")
    sim = Sim(SIM_FLAGS, folder / "truth", folder / "sim.log")
    try:
        markets = [m["ticker"] for m in sim.get("/markets", limit=100).json()["markets"]]
        received = asyncio.run(_run_clients(sim, markets))
    finally:
        code = sim.stop()
    assert code == 0, (folder / "sim.log").read_text()[-2000:]
    base = postgres_admin_url.rsplit("/", 1)[0]
    template = f"kd_test_verify_{uuid.uuid4().hex[:10]}"
    create_database(postgres_admin_url, template)
    try:
        upgrade(f"{base}/{template}")
        conn = psycopg2.connect(f"{base}/{template}")
        with conn:
            write_rows(conn, _rows(received))
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO connection_sessions (gatherer, connection_id, role, opened_at)"
                    " VALUES (%s, %s, %s, %s)",
                    _sessions(received),
                )
                cur.executemany(
                    "INSERT INTO capture_holes (gatherer, hole_id, connection_id, channel,"
                    " market_tickers, cause, from_at, to_at) VALUES (%s, %s, %s, %s, %s, %s,"
                    " %s, %s)",
                    _holes(received),
                )
        conn.close()
        yield Capture(folder / "truth", template, base, markets)
    finally:
        drop_database(postgres_admin_url, template)


@pytest.fixture
def capture_db(capture: Capture, postgres_admin_url: str) -> Iterator[str]:
    """A private copy of the exact capture; returns its URL."""
    name = f"kd_test_verify_{uuid.uuid4().hex[:10]}"
    create_database(postgres_admin_url, name, template=capture.template)
    try:
        yield capture.url(name)
    finally:
        drop_database(postgres_admin_url, name)
