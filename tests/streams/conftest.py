"""Fixtures for the streams tests: the shared Redis with a unique key prefix per test, and a
private redis-server (own port, own AOF directory) for tests that kill and restart Redis."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from app.streams import StreamNames, StreamSettings
from tests.conftest import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


@pytest.fixture
def names(redis_test_url: str) -> Iterator[StreamNames]:
    """Stream names under a prefix no other test uses; every key under it is deleted after."""
    gatherer = f"t{uuid.uuid4().hex[:12]}"
    yield StreamNames(gatherer, 4)
    client = redis.Redis.from_url(redis_test_url)
    keys = list(client.scan_iter(match=f"kd:{gatherer}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def client(redis_test_url: str) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_test_url)
    yield conn
    conn.close()


@pytest.fixture
def fast_settings(tmp_path: Path) -> StreamSettings:
    """Short timeouts so failure paths run in milliseconds."""
    return StreamSettings(
        batch_frames=50,
        batch_interval_ms=20,
        redis_timeout_s=1.0,
        recovery_probe_min_s=0.05,
        recovery_probe_max_s=0.2,
        high_water_memory_bytes=0,
        journal_dir=tmp_path / "journal",
        journal_fsync="interval",
        min_idle_ms=100,
    )


class RedisServer:
    """A redis-server child on a free port with AOF on, that a test may kill -9 and restart."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--dir",
                str(self.directory),
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        probe = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        while True:
            try:
                if probe.ping():
                    break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        probe.close()

    def kill(self) -> None:
        """SIGKILL, as a crash would: no shutdown save, clients see resets."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    yield server
    server.kill()
