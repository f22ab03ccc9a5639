"""The listener's /metrics against a real simulator: frames per channel, connection gauges by
role and shard (never a conn_id), publisher totals; and a busy port that must not stop it."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from app.config import MetricsSettings
from app.listener import Listener, ListenerStats
from app.listener.metrics import ListenerMetrics, connection_role, frame_channel, metric_role
from tests.conftest import free_port
from tests.listener.conftest import EPOCH_MS, Running, fast_listener, make_settings
from tests.metrics.conftest import sample, sample_total, scrape


def test_roles_and_channels_are_bounded() -> None:
    assert connection_role("orderbook", ("orderbook_delta",)) == "orderbook"
    assert connection_role("global", ("trade",)) == "trade"
    assert connection_role("global", ("ticker_v2",)) == "ticker"
    assert connection_role("global", ("market_lifecycle_v2", "event_lifecycle")) == "lifecycle"
    assert metric_role("something_new") == "other" and metric_role(None) == "other"
    assert frame_channel("subscribed") == "control"
    assert frame_channel("unparseable") == "unparseable"
    assert frame_channel("brand_new_type") == "other"


def test_sync_adds_only_increments() -> None:
    gatherer = "lmunit"
    stats = ListenerStats()
    metrics = ListenerMetrics(gatherer)
    stats.frames_by_type["trade"] += 3
    stats.bytes_by_type["trade"] += 300
    metrics.sync(stats)
    stats.frames_by_type["trade"] += 2
    stats.bytes_by_type["trade"] += 200
    metrics.sync(stats)
    metrics.sync(stats)

    labels = {"gatherer": gatherer, "channel": "trade"}
    assert REGISTRY.get_sample_value("kd_listener_frames_total", labels) == 5
    assert REGISTRY.get_sample_value("kd_listener_frame_bytes_total", labels) == 500


def test_metrics_endpoint_shows_the_capture(
    sim_factory, gatherer: str, redis_test_url: str, tmp_path: Path
) -> None:
    sim = sim_factory("--markets", "40", "--rate", "300", "--epoch-ms", str(EPOCH_MS))
    port = free_port()
    metrics = MetricsSettings(ports={"listener": port})
    settings = make_settings(gatherer, redis_test_url, sim, tmp_path, metrics=metrics)
    url = f"http://127.0.0.1:{port}/metrics"

    async def scenario() -> str:
        run = Running(Listener(settings, fast_listener(markets_per_connection=20)))
        await run.until(lambda: run.subscribed(40))
        await run.until(lambda: run.listener.stats.frames_by_type["orderbook_delta"] > 0)
        await asyncio.sleep(1.5)  # one metrics sync at least
        text = await asyncio.to_thread(scrape, url)
        await run.finish()
        return text

    text = asyncio.run(scenario())
    assert sample_total(text, "kd_listener_frames_total", gatherer=gatherer) > 0
    for channel in ("orderbook_snapshot", "orderbook_delta", "control"):
        assert sample_total(text, "kd_listener_frames_total", gatherer=gatherer, channel=channel)
    assert sample_total(text, "kd_listener_frame_bytes_total", gatherer=gatherer) > 0
    for role, shard in (("orderbook", "ob0"), ("orderbook", "ob1"), ("trade", "trade")):
        labels = {"gatherer": gatherer, "role": role, "connection": shard}
        assert sample(text, "kd_listener_connected", **labels) == 1.0
        assert sample(text, "kd_listener_idle_seconds", **labels) is not None
    assert sample(text, "kd_listener_subscribed_markets", gatherer=gatherer, role="orderbook",
                  connection="ob0") == 20  # fmt: skip
    assert sample_total(text, "kd_publisher_frames_published_total", gatherer=gatherer) > 0
    assert f"{gatherer}-ob0-" not in text  # conn ids are never labels
    with pytest.raises(OSError):
        scrape(url, timeout=1.0)  # the server stopped with the listener


def test_busy_port_does_not_stop_the_listener(
    sim_factory, gatherer: str, redis_test_url: str, tmp_path: Path, caplog
) -> None:
    sim = sim_factory("--markets", "10", "--rate", "100", "--epoch-ms", str(EPOCH_MS))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        metrics = MetricsSettings(ports={"listener": port})
        settings = make_settings(gatherer, redis_test_url, sim, tmp_path, metrics=metrics)

        async def scenario() -> Listener:
            run = Running(Listener(settings, fast_listener()))
            await run.until(lambda: run.subscribed(10))
            await run.until(lambda: run.listener.stats.frames > 20)
            await run.finish()
            return run.listener

        with caplog.at_level(logging.WARNING, logger="kalshi_data.listener"):
            listener = asyncio.run(scenario())
    assert listener.metrics_server is None
    warnings = [r for r in caplog.records if r.getMessage() == "listener_metrics_unavailable"]
    assert warnings and getattr(warnings[0], "port", None) == port


def test_sync_counts_holes_opened_and_sets_open_holes() -> None:
    gatherer = "lmholes"
    stats = ListenerStats()
    metrics = ListenerMetrics(gatherer)
    labels = {"gatherer": gatherer}
    metrics.sync(stats)  # the counter is exported at 0 before any hole; the gauge not yet
    assert REGISTRY.get_sample_value("kd_listener_holes_opened_total", labels) == 0
    assert REGISTRY.get_sample_value("kd_listener_open_holes", labels) is None
    stats.holes_opened = 3
    metrics.sync(stats, open_holes=2)
    stats.holes_opened = 5
    metrics.sync(stats)  # no count given: the gauge keeps its value
    assert REGISTRY.get_sample_value("kd_listener_holes_opened_total", labels) == 5
    assert REGISTRY.get_sample_value("kd_listener_open_holes", labels) == 2
    metrics.sync(stats, open_holes=0)
    assert REGISTRY.get_sample_value("kd_listener_holes_opened_total", labels) == 5
    assert REGISTRY.get_sample_value("kd_listener_open_holes", labels) == 0


def open_hole_count(listener: Listener) -> int:
    """What the listener's once-a-second sync passes as `open_holes`."""
    return sum(len(manager.holes.open_holes) for manager in listener.managers.values())


def test_hole_metrics_follow_a_real_capture_and_a_lost_exchange(
    sim_factory, gatherer: str, redis_test_url: str, tmp_path: Path
) -> None:
    """At start every channel and book market is in a `not_subscribed` hole until subscribed;
    when the exchange goes away, the disconnect holes stay open (docs/holes.md)."""
    sim = sim_factory("--markets", "20", "--rate", "200", "--epoch-ms", str(EPOCH_MS))
    settings = make_settings(gatherer, redis_test_url, sim, tmp_path)
    labels = {"gatherer": gatherer}

    def sync(listener: Listener) -> tuple[float | None, float | None]:
        listener.metrics.sync(listener.stats, open_holes=open_hole_count(listener))
        return (
            REGISTRY.get_sample_value("kd_listener_holes_opened_total", labels),
            REGISTRY.get_sample_value("kd_listener_open_holes", labels),
        )

    async def scenario() -> tuple[tuple[float | None, ...], tuple[float | None, ...], int]:
        run = Running(Listener(settings, fast_listener(markets_per_connection=10)))
        listener = run.listener
        await run.until(lambda: run.subscribed(20) and open_hole_count(listener) == 0)
        captured = sync(listener)
        opened_at_start = listener.stats.holes_opened
        await asyncio.to_thread(sim.stop)
        await run.until(lambda: open_hole_count(listener) >= 5)  # 3 channels, 2 book shards
        lost = sync(listener)
        await run.finish()
        return captured, lost, opened_at_start

    captured, lost, opened_at_start = asyncio.run(scenario())
    # 3 global channels + at least one book hole per shard, all closed once subscribed
    assert opened_at_start >= 5 and captured == (opened_at_start, 0)
    opened_total, open_now = lost
    assert opened_total is not None and opened_total >= opened_at_start + 5
    assert open_now is not None and open_now >= 5
