"""Stream gauges from a real Redis stream after XADD and XREADGROUP."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from prometheus_client import REGISTRY

from app.metrics import StreamGaugeLoop, refresh_stream_gauges
from tests.metrics.conftest import REDIS_URL


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(REDIS_URL)
    yield conn
    conn.close()


@pytest.fixture
def stream(client: redis.Redis) -> Iterator[str]:
    name = f"kd:t{uuid.uuid4().hex[:10]}:trade"
    yield name
    client.delete(name)


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_gauges_follow_length_pending_and_lag(client: redis.Redis, stream: str) -> None:
    client.xgroup_create(stream, "writers", id="0", mkstream=True)
    for index in range(5):
        client.xadd(stream, {"n": str(index)})
    assert refresh_stream_gauges(client, [stream]) == 1
    assert gauge("kd_stream_length_entries", stream=stream) == 5
    assert gauge("kd_stream_pending_entries", stream=stream, group="writers") == 0
    assert gauge("kd_stream_lag_entries", stream=stream, group="writers") == 5
    assert gauge("kd_stream_oldest_pending_age_seconds", stream=stream, group="writers") == 0

    client.xreadgroup("writers", "c1", {stream: ">"}, count=2)
    time.sleep(0.05)
    refresh_stream_gauges(client, [stream])
    assert gauge("kd_stream_pending_entries", stream=stream, group="writers") == 2
    assert gauge("kd_stream_lag_entries", stream=stream, group="writers") == 3
    assert gauge("kd_stream_consumers", stream=stream, group="writers") == 1
    age = gauge("kd_stream_oldest_pending_age_seconds", stream=stream, group="writers")
    assert age is not None and 0.04 <= age < 30
    refreshed = gauge("kd_stream_stats_refreshed_timestamp_seconds")
    assert refreshed is not None and abs(refreshed - time.time()) < 30


def test_unreachable_redis_is_counted_not_raised(stream: str) -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    before = gauge("kd_stream_stats_errors_total", stream=stream) or 0
    assert refresh_stream_gauges(dead, [stream]) == 0
    assert gauge("kd_stream_stats_errors_total", stream=stream) == before + 1


def test_loop_refreshes_periodically(client: redis.Redis, stream: str) -> None:
    client.xadd(stream, {"n": "1"})
    loop = StreamGaugeLoop(client, lambda: [stream], interval_s=0.05).start()
    try:
        deadline = time.monotonic() + 5
        while gauge("kd_stream_length_entries", stream=stream) != 1:
            assert time.monotonic() < deadline, "first refresh did not happen"
            time.sleep(0.02)
        client.xadd(stream, {"n": "2"})
        while gauge("kd_stream_length_entries", stream=stream) != 2:
            assert time.monotonic() < deadline, "second refresh did not happen"
            time.sleep(0.02)
    finally:
        loop.stop()
