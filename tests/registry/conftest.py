"""Registry fixtures: a migrated scratch database, a Redis change feed on DB 13 under a unique
gatherer name (deleted afterwards), and simulators run as real `kalshi-data sim` processes."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import redis

from app.config import KalshiSettings
from app.db.migrations import upgrade
from app.kalshi.rest import KalshiRest
from app.registry import ChangeFeed, RegistrySettings
from tests.simulator.conftest import Sim

REDIS_URL = "redis://localhost:6379/13"


@pytest.fixture
def registry_db(scratch_database: str) -> str:
    upgrade(scratch_database, create=False)
    return scratch_database


@pytest.fixture
def conn(registry_db: str) -> Iterator[Any]:
    connection = psycopg2.connect(registry_db)
    yield connection
    connection.close()


@pytest.fixture
def feed() -> Iterator[ChangeFeed]:
    client = redis.Redis.from_url(REDIS_URL)
    change_feed = ChangeFeed(client, f"t{uuid.uuid4().hex[:10]}", RegistrySettings())
    yield change_feed
    change_feed.clear()
    client.close()


@pytest.fixture
def sim_factory(tmp_path: Path) -> Iterator[Callable[..., Sim]]:
    started: list[Sim] = []

    def start(*flags: str, truth: bool = False) -> Sim:
        label = f"sim{len(started)}"
        sim = Sim(
            list(flags), tmp_path / f"{label}-truth" if truth else None, tmp_path / f"{label}.log"
        )
        started.append(sim)
        return sim

    yield start
    for sim in started:
        assert sim.stop() == 0, sim.log_path.read_text()[-2000:]


def rest_client(sim: Sim) -> KalshiRest:
    return KalshiRest.from_settings(KalshiSettings(max_retries=2), rest_url=sim.api, signer=None)


def query(conn: Any, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall() if cur.description else []
    conn.commit()
    return rows
