"""Redis outage during capture, and the `kalshi-data listener` process."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import redis

from app.listener import Listener
from tests.conftest import KALSHI_DATA, REPO, clean_env, free_port, run_cli
from tests.listener.conftest import (
    EPOCH_MS,
    Running,
    assert_exactly_once,
    fast_listener,
    make_settings,
    read_published,
)
from tests.metrics.conftest import sample_total, scrape
from tests.streams.conftest import RedisServer


def test_redis_outage_spills_to_the_journal_and_loses_nothing(sim_factory, tmp_path: Path) -> None:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    sim = sim_factory(
        "--markets", "40", "--rate", "400", "--max-events", "2000", "--epoch-ms", str(EPOCH_MS)
    )
    settings = make_settings("outage", server.url, sim, tmp_path)
    try:

        async def scenario() -> Listener:
            run = Running(Listener(settings, fast_listener(markets_per_connection=20)))
            await run.until(lambda: run.subscribed(40))
            await asyncio.sleep(0.5)
            assert server.proc is not None
            server.proc.terminate()  # clean shutdown: AOF keeps what was written
            await asyncio.to_thread(server.proc.wait, 10)
            publisher = run.listener.publisher
            await run.until(lambda: publisher.stats.frames_spilled > 100)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(server.start)
            await asyncio.to_thread(sim.wait_finished, 30)
            await run.until(
                lambda: not publisher.stats.spilling and publisher.stats.journal_bytes == 0,
                timeout=20,
            )
            await run.finish()
            return run.listener

        listener = asyncio.run(scenario())
        stats = listener.publisher.stats
        assert stats.spill_events >= 1 and stats.frames_replayed > 0
        assert_exactly_once(sim, read_published(server.url, "outage"))
    finally:
        server.kill()


def test_cli_runs_and_stops_cleanly_on_sigterm(
    sim_factory, gatherer: str, redis_test_url: str, tmp_path: Path
) -> None:
    sim = sim_factory("--markets", "20", "--rate", "100", "--epoch-ms", str(EPOCH_MS))
    metrics_port = free_port()
    env = clean_env(
        KD_GATHERER=gatherer,
        KD_REDIS_URL=redis_test_url,
        KD_STREAMS__JOURNAL_DIR=str(tmp_path / "journal"),
        KD_METRICS__PORTS__LISTENER=str(metrics_port),
    )
    log = (tmp_path / "listener.log").open("w")
    process = subprocess.Popen(
        [KALSHI_DATA, "listener", "--ws-url", sim.ws_url, "--rest-url", sim.api],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    client = redis.Redis.from_url(redis_test_url)
    try:
        deadline = time.monotonic() + 20
        while client.xlen(f"kd:{gatherer}:control") == 0 or not client.exists(
            f"kd:{gatherer}:ticker"
        ):
            assert process.poll() is None, (tmp_path / "listener.log").read_text()
            assert time.monotonic() < deadline, "listener published nothing"
            time.sleep(0.1)
        # The process serves its metrics on the configured port (docs/metrics.md).
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        while not (sample_total(scrape(url), "kd_listener_frames_total") > 0):
            assert time.monotonic() < deadline, "no frames in the listener's /metrics"
            time.sleep(0.2)
        assert 'connection="ticker"' in scrape(url)
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0, (tmp_path / "listener.log").read_text()
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
        client.close()
    published = read_published(redis_test_url, gatherer)
    closed = [r for r in published.control() if r["event"] == "session_closed"]
    assert len(closed) == 4 and all(r["close_reason"] == "shutdown" for r in closed)
    assert "listener_stopped" in (tmp_path / "listener.log").read_text()


def test_cli_bad_configuration_is_one_error_line() -> None:
    result = run_cli("listener", KD_GATHERER="Not A Name")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: invalid configuration") and "gatherer" in lines[0]
    assert len(lines) == 2 and lines[1].startswith("hint:")
    result = run_cli("listener", "--ws-url", "http://example.invalid/ws")
    assert result.returncode == 2
    assert result.stderr.startswith("error: invalid WebSocket URL")
    result = run_cli("listener", "--markets-per-connection", "0")
    assert result.returncode == 2 and result.stderr.startswith("error: invalid listener option")
