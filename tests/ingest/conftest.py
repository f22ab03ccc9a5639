"""Fixtures for the ingest tests: a migrated scratch database, Redis DB 12 under a unique
gatherer prefix (every `kd:{gatherer}:*` key, Celery's included, is deleted after), and a
helper publishing real frames through the listener's `StreamPublisher`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import psycopg2
import pytest
import redis

from app.config import Settings, StreamSettings
from app.db.migrations import upgrade
from app.ingest import close_all
from app.streams import Frame, StreamNames, StreamPublisher, open_redis

REDIS_URL = "redis://127.0.0.1:6379/12"


@pytest.fixture
def gatherer() -> Iterator[str]:
    name = f"t{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"kd:{name}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(REDIS_URL)
    yield conn
    conn.close()


@pytest.fixture
def database(scratch_database: str) -> Iterator[str]:
    upgrade(scratch_database)
    yield scratch_database
    close_all()  # this process's cached ingest connections, before the database is dropped


@pytest.fixture
def settings(gatherer: str, database: str, tmp_path: Path) -> Settings:
    return Settings(
        gatherer=gatherer,
        database_url=database,
        redis_url=REDIS_URL,
        streams=StreamSettings(
            book_partitions=2,
            batch_frames=200,
            batch_interval_ms=20,
            high_water_memory_bytes=0,
            journal_dir=tmp_path / "journal",
            drain_budget_s=5,
        ),
    )


def publish(settings: Settings, items: Sequence[tuple[str, Frame]], journal_dir: Path) -> None:
    """XADD `items` (stream, frame) exactly as a listener would, and wait until all landed."""

    async def run() -> None:
        client = open_redis(settings.redis_url, settings.streams)
        names = StreamNames(settings.gatherer, settings.streams.book_partitions)
        publisher = StreamPublisher(client, names, journal_dir, settings.streams)
        await publisher.start()
        for stream, frame in items:
            publisher.add(stream, frame)
        assert await publisher.close()
        stats = publisher.stats
        assert stats.frames_published == len(items), stats
        await client.aclose()

    asyncio.run(run())


def query(url: str, sql: str, *args: object) -> list[tuple[object, ...]]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())
    finally:
        conn.close()
