"""Multiprocess mode: a real Celery prefork worker (-c 2) and the exporter process summing its
children's files (design-facts §6), plus the stream gauges refreshed by the exporter loop."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from app.metrics import MetricsSettings, multiproc_environ, prepare_multiproc_dir
from tests.conftest import REPO, free_port
from tests.metrics.conftest import REDIS_URL, log_of, sample, scrape, stop, wait_for

CELERY = str(Path(sys.executable).with_name("celery"))
TASKS = 20
ROWS_PER_TASK = 100


@pytest.fixture
def broker() -> Iterator[tuple[str, str]]:
    """A key prefix and queue no other test uses on the test Redis; deleted afterwards."""
    prefix = f"kdmt{uuid.uuid4().hex[:8]}:"
    yield prefix, f"q{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def test_prepare_dir_wipes_previous_run(tmp_path: Path) -> None:
    settings = MetricsSettings(multiproc_dir=tmp_path / "metrics")
    first = prepare_multiproc_dir(settings, "ingest")
    (first / "counter_12345.db").write_bytes(b"stale")
    (first / "keep.txt").write_text("not ours")
    again = prepare_multiproc_dir(settings, "ingest")
    assert again == first == (tmp_path / "metrics" / "ingest").resolve()
    assert not (first / "counter_12345.db").exists()
    assert (first / "keep.txt").exists()  # only prometheus_client's files are removed


def test_exporter_sums_prefork_children(
    tmp_path: Path, broker: tuple[str, str], processes: list[subprocess.Popen[bytes]]
) -> None:
    prefix, queue = broker
    directory = prepare_multiproc_dir(MetricsSettings(multiproc_dir=tmp_path), "ingest")
    env = multiproc_environ(directory)
    env.update(
        KD_TEST_METRICS_BROKER=REDIS_URL,
        KD_TEST_METRICS_PREFIX=prefix,
        KD_TEST_METRICS_QUEUE=queue,
    )
    worker_log = tmp_path / "worker.log"
    with worker_log.open("wb") as out:
        worker = subprocess.Popen(
            [CELERY, "-A", "tests.metrics.celery_testapp", "worker", "-c", "2",
             "--pool", "prefork", "-Q", queue, "-l", "WARNING",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    processes.append(worker)

    # the stream the exporter loop watches: 3 entries, 1 delivered and not acked
    stream = f"{prefix}kd:g1:trade"
    client = redis.Redis.from_url(REDIS_URL)
    client.xgroup_create(stream, "writers", id="0", mkstream=True)
    for index in range(3):
        client.xadd(stream, {"n": str(index)})
    client.xreadgroup("writers", "c1", {stream: ">"}, count=1)

    port = free_port()
    exporter_log = tmp_path / "exporter.log"
    with exporter_log.open("wb") as out:
        exporter = subprocess.Popen(
            [sys.executable, "-m", "app.metrics", "serve", "ingest", "--port", str(port),
             "--redis-url", REDIS_URL, "--stream", stream, "--refresh", "0.2"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    processes.append(exporter)
    url = f"http://127.0.0.1:{port}/metrics"

    from tests.metrics.celery_testapp import app

    app.conf.broker_url = REDIS_URL
    app.conf.broker_transport_options = {"global_keyprefix": prefix}
    with app.connection_for_write() as conn:
        for _ in range(TASKS):
            app.send_task(
                "kd_test.write_rows", args=("trades", ROWS_PER_TASK), queue=queue, connection=conn
            )

    expected = float(TASKS * ROWS_PER_TASK)
    try:
        wait_for(
            lambda: sample(scrape(url), "kd_ingest_rows_total", table="trades") == expected,
            30,
            f"kd_ingest_rows_total == {expected}",
        )
    except AssertionError:
        raise AssertionError(
            f"worker log:\n{log_of(worker_log)}\nexporter log:\n{log_of(exporter_log)}"
        ) from None
    text = scrape(url)
    # both prefork children wrote counter files (the exporter summed two pids, not one)
    writers = {p.name for p in directory.glob("counter_*.db")}
    assert len(writers) >= 2, writers
    assert exporter.pid not in {int(p.split("_")[1].split(".")[0]) for p in writers}
    # the exporter's stream loop wrote mostrecent gauges into the same directory
    assert sample(text, "kd_stream_length_entries", stream=stream) == 3
    assert sample(text, "kd_stream_pending_entries", stream=stream, group="writers") == 1
    assert sample(text, "kd_stream_lag_entries", stream=stream, group="writers") == 2
    client.close()

    # graceful shutdown runs worker_process_shutdown -> mark_process_dead in each child:
    # their live gauge files go, their counter files stay (design-facts §6)
    assert list(directory.glob("gauge_livesum_*.db"))
    stop(worker, timeout=20)
    assert worker.returncode == 0, log_of(worker_log)
    assert not list(directory.glob("gauge_livesum_*.db")), os.listdir(directory)
    assert len(list(directory.glob("counter_*.db"))) >= 2
    assert sample(scrape(url), "kd_ingest_rows_total", table="trades") == expected
    stop(exporter)
    assert exporter.returncode == 0, log_of(exporter_log)


def test_serve_refuses_without_multiproc_env(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    done = subprocess.run(
        [sys.executable, "-m", "app.metrics", "serve", "ingest", "--port", "0"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "PROMETHEUS_MULTIPROC_DIR" in done.stderr


def test_prepare_dir_command_prints_path(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app.metrics", "prepare-dir", "jobs", "--base", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert Path(done.stdout.strip()) == (tmp_path / "jobs").resolve()
    assert (tmp_path / "jobs").is_dir()


def test_serve_on_a_busy_port(tmp_path: Path) -> None:
    """Plain `serve` exits 2; with --busy-port-ok (what `up` runs) it warns and idles until
    SIGTERM, so a supervisor does not restart it in a loop."""
    directory = prepare_multiproc_dir(MetricsSettings(multiproc_dir=tmp_path), "jobs")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        argv = [sys.executable, "-m", "app.metrics", "serve", "jobs", "--port", port]
        env = multiproc_environ(directory)
        done = subprocess.run(
            argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=30, check=False
        )
        assert done.returncode == 2 and "error:" in done.stderr
        tolerant = subprocess.Popen(
            [*argv, "--busy-port-ok"], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
        )
        try:
            assert tolerant.stdout is not None
            line = tolerant.stdout.readline()
            assert line.startswith("warning: not serving jobs metrics"), line
            assert tolerant.poll() is None
        finally:
            stop(tolerant)
        assert tolerant.returncode == 0
