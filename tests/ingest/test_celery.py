"""Real Celery: a prefork worker and beat as subprocesses drain a backlog into PostgreSQL; a
worker killed with SIGKILL mid-backlog is replaced and every frame still lands exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from app.config import Settings
from app.ingest import stream_names
from app.streams import Frame, stream_stats
from tests.conftest import REPO, clean_env
from tests.ingest.conftest import REDIS_URL, publish, query

CELERY = str(Path(sys.executable).with_name("celery"))
MIN_IDLE_MS = 1500


def delta(ticker: str, seq: int) -> bytes:
    price = 100 + seq % 9000
    return (
        f'{{"type": "orderbook_delta", "sid": 2, "seq": {seq}, "msg": {{"market_ticker": '
        f'"{ticker}", "price_dollars": "0.{price:04d}", "delta_fp": "-5.00", "side": "yes", '
        '"ts_ms": 1790000000000}}'
    ).encode()


def trade(n: int) -> bytes:
    return (
        f'{{"type": "trade", "sid": 11, "msg": {{"trade_id": "t-{n:08d}", "market_ticker": "M-1", '
        '"yes_price_dollars": "0.3600", "no_price_dollars": "0.6400", "count_fp": "1.00", '
        '"taker_outcome_side": "no", "taker_book_side": "ask", "ts_ms": 1790000000000}}'
    ).encode()


def backlog(settings: Settings, n_deltas: int, n_trades: int) -> list[tuple[str, Frame]]:
    names = stream_names(settings)
    now = time.time_ns()
    items: list[tuple[str, Frame]] = []
    for i in range(n_deltas):
        ticker = ("A-1", "B-2", "C-3", "D-4")[i % 4]
        items.append(
            (names.book_for(ticker), Frame(delta(ticker, i + 1), now + i, "c-book", 2, i + 1))
        )
    for i in range(n_trades):
        items.append((names.trade, Frame(trade(i), now + n_deltas + i, "c-trade", 11, None)))
    return items


class Fleet:
    """Celery subprocesses of one test, each in its own process group."""

    def __init__(self, settings: Settings, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.env = clean_env(
            KD_DATABASE_URL=settings.database_url,
            KD_REDIS_URL=REDIS_URL,
            KD_GATHERER=settings.gatherer,
            KD_STREAMS__BOOK_PARTITIONS=str(settings.streams.book_partitions),
            KD_STREAMS__MIN_IDLE_MS=str(MIN_IDLE_MS),
            KD_STREAMS__DRAIN_BUDGET_S="3",
        )
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, label: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.tmp_path / f"{label}.log").open("wb")
        proc = subprocess.Popen(
            [CELERY, "-A", "workers.celery_app", *args],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def worker(self, label: str, queues: str = "ingest") -> subprocess.Popen[bytes]:
        return self.start(
            label,
            "worker",
            "-Q",
            queues,
            "-c",
            "1",
            "--pool",
            "prefork",
            "-n",
            f"{label}-{uuid.uuid4().hex[:6]}@%h",
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
            "--loglevel",
            "INFO",
        )

    def beat(self) -> subprocess.Popen[bytes]:
        return self.start(
            "beat", "beat", "-s", str(self.tmp_path / "beat-schedule"), "--loglevel", "INFO"
        )

    def call(self, task: str) -> None:
        subprocess.run(
            [CELERY, "-A", "workers.celery_app", "call", task],
            cwd=REPO,
            env=self.env,
            check=True,
            capture_output=True,
            timeout=30,
        )

    @staticmethod
    def kill(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.tmp_path.glob("*.log"))
        )


@pytest.fixture
def fleet(settings: Settings, tmp_path: Path) -> Iterator[Fleet]:
    procs = Fleet(settings, tmp_path)
    yield procs
    procs.stop_all()


def wait_for(condition: Callable[[], bool], timeout: float, fleet: Fleet, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}\n{fleet.logs()}")


def count(url: str, table: str) -> int:
    return int(query(url, f"SELECT count(*) FROM {table}")[0][0])  # type: ignore[call-overload]


def frames_stored(url: str) -> int:
    """Frames in raw_batches (cheap: the `raw_frames` view unpacks every batch)."""
    return int(query(url, "SELECT coalesce(sum(frame_count), 0) FROM raw_batches")[0][0])  # type: ignore[call-overload]


def assert_exactly_once(settings: Settings, items: list[tuple[str, Frame]]) -> None:
    url = settings.database_url
    keys = query(url, "SELECT connection_id, received_ns, batch_pos FROM raw_frames")
    published = {(f.conn_id, f.recv_ns) for _, f in items}
    assert len(keys) == len(items)
    assert {(c, ns) for c, ns, _ in keys} == published
    n_deltas = sum(1 for _, f in items if f.conn_id == "c-book")
    assert count(url, "orderbook_deltas") == n_deltas
    assert count(url, "trades") == len(items) - n_deltas
    assert count(url, "dead_letters") == 0
    seqs = query(url, "SELECT seq FROM orderbook_deltas ORDER BY seq")
    assert [s for (s,) in seqs] == list(range(1, n_deltas + 1))


def drained(settings: Settings, client: redis.Redis, total: int) -> bool:
    if frames_stored(settings.database_url) < total:
        return False
    for stream in stream_names(settings).data_streams:
        stats = stream_stats(client, stream)
        if stats.length and (not stats.groups or stats.groups[0].pending or stats.groups[0].lag):
            return False
    return True


def test_beat_and_worker_drain_everything_once(
    settings: Settings, client: redis.Redis, fleet: Fleet, tmp_path: Path
) -> None:
    items = backlog(settings, 2000, 500)
    publish(settings, items, tmp_path / "journal")
    fleet.worker("w1")
    fleet.worker("jobs", queues="jobs")
    fleet.beat()
    wait_for(lambda: drained(settings, client, len(items)), 40, fleet, "the backlog to drain")
    assert_exactly_once(settings, items)

    # maintenance tasks are first due a full interval after beat starts; send them by hand,
    # as an operator would, and let the task routes put them on the jobs queue
    for task in ("kd.maintenance.ensure_partitions", "kd.maintenance.trim_streams"):
        fleet.call(task)
    week_ahead = (datetime.now(UTC) + timedelta(days=7)).strftime("%Y%m%d")
    wait_for(
        lambda: bool(
            query(settings.database_url, "SELECT to_regclass(%s)", f"trades_p{week_ahead}")[0][0]
        ),
        20,
        fleet,
        "the partitions task",
    )


def test_worker_killed_mid_backlog_loses_and_duplicates_nothing(
    settings: Settings, client: redis.Redis, fleet: Fleet, tmp_path: Path
) -> None:
    items = backlog(settings, 48_000, 12_000)
    publish(settings, items, tmp_path / "journal")
    url = settings.database_url
    first = fleet.worker("w1")
    fleet.beat()
    wait_for(lambda: frames_stored(url) > 0, 40, fleet, "the first commit")
    fleet.kill(first)  # SIGKILL the whole worker (main process and its prefork child)
    landed = frames_stored(url)
    assert 0 < landed < len(items), "the backlog drained before the kill; make it larger"
    names = stream_names(settings)
    pending = sum(g.pending for s in names.data_streams for g in stream_stats(client, s).groups)
    assert pending > 0  # the dead worker's claimed entries, left for a reclaim

    fleet.worker("w2")
    wait_for(lambda: drained(settings, client, len(items)), 60, fleet, "the replacement worker")
    assert_exactly_once(settings, items)
