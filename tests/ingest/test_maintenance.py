"""The jobs behind the jobs-queue tasks, on real Redis, PostgreSQL and a simulator process."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from app.config import KalshiSettings, Settings
from app.ingest import (
    maintain_partitions,
    reap_consumers,
    reconcile_registry,
    refresh_subscriptions,
    run_drain,
    stream_names,
    trim_streams,
)
from app.streams import Frame, stream_stats
from tests.ingest.conftest import publish, query
from tests.normalize import examples
from tests.simulator.conftest import Sim


def test_trim_reap_and_partitions(settings: Settings, client: redis.Redis, tmp_path: Path) -> None:
    names = stream_names(settings)
    now = time.time_ns()
    trades = [
        (names.trade, Frame(examples.TRADE.replace("d91bc706", f"{i:08x}").encode(), now + i, "c"))
        for i in range(30)
    ]
    tuned = settings.model_copy(
        update={
            "streams": settings.streams.model_copy(
                update={"batch_frames": 1, "trim_approximate": False, "janitor_idle_ms": 0}
            )
        }
    )
    publish(tuned, trades, tmp_path / "j")
    assert client.xlen(names.trade) == 30
    run = run_drain(tuned, names.trade)
    assert run.drain.handled == 30 and run.rows["trades"] == 30

    trimmed = {r.stream: r for r in trim_streams(tuned)}
    assert trimmed[names.trade].status == "ok"
    assert client.xlen(names.trade) <= 1  # MINID keeps the last-delivered entry itself
    assert trimmed[names.ticker].removed == 0  # never drained: no group, never trimmed

    reaped = reap_consumers(tuned)
    assert list(reaped) == [names.trade] and len(reaped[names.trade]) == 1
    assert stream_stats(client, names.trade).groups[0].consumers == 0

    created = maintain_partitions(tuned)
    assert any(name.startswith("trades_p") for name in created)
    assert maintain_partitions(tuned) == []  # idempotent


def test_registry_reconcile_and_refresh_against_simulator(
    settings: Settings, client: redis.Redis, tmp_path: Path
) -> None:
    sim = Sim(["--markets", "20", "--seed", "3", "--rate", "5"], None, tmp_path / "sim.log")
    try:
        configured = settings.model_copy(
            update={"kalshi": KalshiSettings(rest_url=sim.api, max_retries=2)}
        )
        assert reconcile_registry(configured)
        markets = query(settings.database_url, "SELECT count(*) FROM markets")[0][0]
        assert int(markets) >= 20  # type: ignore[call-overload]
        refreshed = refresh_subscriptions(configured)
        assert refreshed["added"] == 0  # the reconcile already published the set
        assert client.scard(f"kd:{settings.gatherer}:registry:tickers") > 0
    finally:
        assert sim.stop() == 0, sim.log_path.read_text()[-2000:]
