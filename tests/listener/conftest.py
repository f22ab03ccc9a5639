"""Fixtures for the listener tests: a real simulator process (tests/simulator), the shared
Redis under a gatherer name no other test uses, and helpers to run a `Listener` in-process and
read back every frame it published."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from app.config import KalshiSettings, MetricsSettings, Settings, StreamSettings
from app.listener import Listener, ListenerSettings, parse_control
from app.registry.feed import ChangeFeed
from app.simulator.truth import load_truth
from app.streams import Frame, decode_entry
from tests.simulator.conftest import EPOCH_MS, Sim, sim_factory  # noqa: F401

__all__ = ["EPOCH_MS", "Sim"]


@pytest.fixture
def gatherer(redis_test_url: str) -> Iterator[str]:
    name = f"lt{uuid.uuid4().hex[:10]}"
    yield name
    client = redis.Redis.from_url(redis_test_url)
    keys = list(client.scan_iter(match=f"kd:{name}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def make_settings(
    gatherer: str,
    redis_url: str,
    sim: Sim,
    tmp_path: Path,
    metrics: MetricsSettings | None = None,
) -> Settings:
    """Settings of an in-process listener; no /metrics server unless `metrics` asks for one
    (tests run in parallel and the default port is shared)."""
    return Settings(
        gatherer=gatherer,
        redis_url=redis_url,
        kalshi=KalshiSettings(ws_url=sim.ws_url, rest_url=sim.api),
        streams=StreamSettings(
            batch_interval_ms=10,
            redis_timeout_s=1.0,
            recovery_probe_min_s=0.05,
            recovery_probe_max_s=0.3,
            high_water_memory_bytes=0,
            journal_dir=tmp_path / "journal",
        ),
        metrics=metrics or MetricsSettings(enabled=False),
    )


def fast_listener(**overrides: Any) -> ListenerSettings:
    values: dict[str, Any] = {
        "markets_per_connection": 30,
        "backoff_base_s": 0.1,
        "backoff_max_s": 0.5,
        "reply_timeout_s": 5.0,
        "staleness_timeout_s": 30.0,
        "registry_block_ms": 200,
        "shutdown_timeout_s": 10.0,
    }
    values.update(overrides)
    return ListenerSettings(**values)


class Running:
    """A Listener running as a task on the current loop."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(listener.run(self.stop))

    async def until(self, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.task.done():
                self.task.result()
                raise AssertionError("listener ended")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; stats: {self.listener.snapshot_stats()}")
            await asyncio.sleep(0.05)

    def subscribed(self, markets: int) -> bool:
        conns = self.listener.stats.connections.values()
        books = sum(c.subscribed_markets for c in conns if c.role == "orderbook")
        return books >= markets and all(c.connected for c in conns)

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)


@dataclass
class Published:
    """Everything a gatherer's streams hold, decoded."""

    by_stream: dict[str, list[Frame]]

    @property
    def data(self) -> list[Frame]:
        return [
            f for s, frames in self.by_stream.items() if not s.endswith(":control") for f in frames
        ]

    def control(self) -> list[dict[str, Any]]:
        return [
            parse_control(f.raw)
            for s, fr in self.by_stream.items()
            if s.endswith(":control")
            for f in fr
        ]

    def by_conn(self) -> dict[str, Counter[bytes]]:
        out: dict[str, Counter[bytes]] = defaultdict(Counter)
        for frame in self.data:
            out[frame.conn_id][frame.raw] += 1
        return out

    def messages(self, msg_type: str) -> list[tuple[Frame, dict[str, Any]]]:
        out = []
        for frame in self.data:
            try:
                message = orjson.loads(frame.raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(message, dict) and message.get("type") == msg_type:
                out.append((frame, message))
        return out


def read_published(redis_url: str, gatherer: str) -> Published:
    client = redis.Redis.from_url(redis_url)
    by_stream: dict[str, list[Frame]] = {}
    try:
        for key in client.scan_iter(match=f"kd:{gatherer}:*", count=1000):
            name = key.decode()
            if client.type(key) != b"stream" or name.endswith(":registry"):
                continue
            frames: list[Frame] = []
            for _, fields in client.xrange(key):
                frames.extend(decode_entry(fields))
            by_stream[name] = frames
    finally:
        client.close()
    return Published(by_stream)


def sim_counters(sim: Sim) -> dict[int, Counter[bytes]]:
    sim.dump()
    truth = load_truth(sim.truth)
    return {
        conn: Counter(text.encode() for text in truth.text_frames(conn)) for conn in truth.frames
    }


def assert_exactly_once(sim: Sim, published: Published) -> dict[str, int]:
    """Every text frame the simulator sent is in the streams exactly once, byte-exact, on the
    connection it was sent on; returns our conn id -> simulator conn id."""
    sent = sim_counters(sim)
    ours = published.by_conn()
    total_sent: Counter[bytes] = sum(sent.values(), Counter())
    total_ours: Counter[bytes] = sum(ours.values(), Counter())
    missing = total_sent - total_ours
    extra = total_ours - total_sent
    assert not missing and not extra, (
        f"{sum(missing.values())} missing, e.g. {list(missing)[:3]}; "
        f"{sum(extra.values())} extra, e.g. {list(extra)[:3]}"
    )
    mapping: dict[str, int] = {}
    for conn_id, frames in ours.items():
        matches = [sim_conn for sim_conn, theirs in sent.items() if theirs == frames]
        assert matches, f"no simulator connection sent exactly what {conn_id} holds"
        mapping[conn_id] = matches[0]
    return mapping


def feed_for(redis_url: str, gatherer: str) -> ChangeFeed:
    return ChangeFeed.from_url(redis_url, gatherer)
