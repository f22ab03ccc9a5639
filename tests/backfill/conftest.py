"""Backfill fixtures: one finished simulator run per module (a real `kalshi-data sim` process
with ground truth; `finished_sim` starts more with other flags), a migrated scratch database
per test, and helpers to add capture holes and read trades back. Real PostgreSQL and real
sockets only."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest

from app.config import BackfillSettings, KalshiSettings
from app.db.migrations import upgrade
from app.ingest import close_all
from app.kalshi.rest import KalshiRest
from app.simulator.truth import TradeTruth, load_truth
from tests.simulator.conftest import EPOCH_MS, Sim

T0 = datetime.fromtimestamp(EPOCH_MS / 1000, UTC)  # a whole second: the run's first instant
T0_S = EPOCH_MS // 1000
RUN_S = 6  # 2,400 order-flow events at 400/s: virtual seconds T0 .. T0 + 6


@dataclass
class SimRun:
    """A simulator whose order flow has finished, and every trade it made (its truth)."""

    sim: Sim
    trades: list[TradeTruth]
    legacy: bool = False  # `--format legacy`: REST trades carry no `is_block_trade`

    def in_seconds(self, first: int, last: int, tickers: set[str] | None = None) -> list[Any]:
        """Expected `trades` rows of the trades made in Unix seconds first..last inclusive."""
        return sorted(
            expected_row(t, block_flag=not self.legacy)
            for t in self.trades
            if first <= t.ts_ns // 1_000_000_000 <= last
            and (tickers is None or t.ticker in tickers)
        )

    def busiest(self, n: int) -> list[str]:
        counts: dict[str, int] = {}
        for trade in self.trades:
            counts[trade.ticker] = counts.get(trade.ticker, 0) + 1
        return sorted(counts, key=lambda t: (-counts[t], t))[:n]


def expected_row(trade: TradeTruth, *, block_flag: bool = True) -> tuple[Any, ...]:
    """The row a REST backfill must store for a trade, from the truth alone (not our code).

    `block_flag`: the trade object carries `is_block_trade` (the legacy format has none)."""
    second = datetime.fromtimestamp(trade.ts_ns // 1_000_000_000, UTC)
    taker_yes = trade.taker_side == "yes"
    return (
        trade.trade_id,
        second,
        trade.ts_ns // 1_000_000,
        trade.ticker,
        trade.yes_price,
        1_000_000 - trade.yes_price,
        trade.count,
        trade.taker_side,
        "bid" if taker_yes else "ask",
        False if block_flag else None,
        "rest",
    )


SIM_FLAGS = ("--markets", "8", "--seed", "11", "--rate", "400", "--epoch-ms", str(EPOCH_MS))


@contextmanager
def finished_sim(
    folder: Path, *flags: str, max_events: int = 2400, legacy: bool = False
) -> Iterator[SimRun]:
    """A simulator run of `max_events` events at 400/s from T0 (virtual time stops at the
    last one), with `flags` on top of the usual ones; stopped cleanly afterwards."""
    command = [*SIM_FLAGS, "--max-events", str(max_events), *flags]
    if legacy:
        command += ["--format", "legacy"]
    sim = Sim(command, folder / "truth", folder / "sim.log")
    try:
        sim.wait_finished(timeout=60)
        sim.dump()
        trades = load_truth(folder / "truth").trades
        assert len(trades) > 100, len(trades)
        yield SimRun(sim, trades, legacy)
    finally:
        code = sim.stop()
        assert code == 0, sim.log_path.read_text()[-2000:]


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimRun]:
    with finished_sim(tmp_path_factory.mktemp("backfill-sim")) as run:
        assert len(run.trades) > 200, len(run.trades)
        yield run


@pytest.fixture
def database(scratch_database: str) -> Iterator[str]:
    upgrade(scratch_database, create=False)
    yield scratch_database
    close_all()  # the job wrapper's cached connection, before the database is dropped


@pytest.fixture
def conn(database: str) -> Iterator[psycopg2.extensions.connection]:
    connection = psycopg2.connect(database)
    yield connection
    connection.rollback()
    connection.close()


@pytest.fixture
def gatherer() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def fast_kalshi(rest_url: str, *, max_retries: int = 1) -> KalshiSettings:
    """Client settings for tests: the simulator's generous bucket, short backoff."""
    return KalshiSettings(
        rest_url=rest_url,
        tier="prestige",
        max_retries=max_retries,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        request_timeout_s=5,
    )


def client_for(rest_url: str, *, max_retries: int = 1) -> KalshiRest:
    return KalshiRest.from_settings(fast_kalshi(rest_url, max_retries=max_retries), signer=None)


def backfill_config(**overrides: Any) -> BackfillSettings:
    values: dict[str, Any] = {"margin_s": 0.5, "settle_s": 0, "page_limit": 5, **overrides}
    return BackfillSettings(**values)


def at(offset_s: float) -> datetime:
    """The instant `offset_s` seconds into the simulator run."""
    return T0 + timedelta(seconds=offset_s)


def add_hole(
    conn: Any,
    gatherer: str,
    hole_id: str,
    *,
    start: float,
    end: float | None,
    markets: list[str] | None = None,
    channel: str = "trade",
    status: str | None = "pending",
    cause: str = "disconnect",
) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO capture_holes (gatherer, hole_id, connection_id, channel, "
            "market_tickers, cause, from_at, to_at, backfill_status) "
            "VALUES (%s, %s, 'c-1', %s, %s, %s, %s, %s, %s)",
            (
                gatherer,
                hole_id,
                channel,
                markets,
                cause,
                at(start),
                None if end is None else at(end),
                status,
            ),
        )
    conn.commit()


def hole_state(conn: Any, gatherer: str, hole_id: str) -> dict[str, Any]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT backfill_status, backfilled_at, backfilled_trades, backfill_attempts, "
            "backfill_error, from_at, to_at FROM capture_holes "
            "WHERE gatherer = %s AND hole_id = %s",
            (gatherer, hole_id),
        )
        row = cur.fetchone()
    conn.commit()
    keys = ("status", "at", "trades", "attempts", "error", "from_at", "to_at")
    return dict(zip(keys, row, strict=True))


def stored_trades(conn: Any, where: str = "TRUE") -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT trade_id, exchange_ts, exchange_ms, market_ticker, yes_price, no_price, "
            "size, taker_side, taker_book_side, is_block_trade, source FROM trades "
            f"WHERE {where} ORDER BY trade_id"
        )
        rows = cur.fetchall()
    conn.commit()
    return sorted(rows)
