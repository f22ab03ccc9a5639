"""Ingest metrics through the real path: a Celery prefork worker (-c 2) with
PROMETHEUS_MULTIPROC_DIR drains published frames, and the exporter process
(`python -m app.metrics serve ingest`) shows the sum of its children plus the stream gauges."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis

from app.config import MetricsSettings, Settings
from app.ingest import stream_names
from app.metrics import MULTIPROC_ENV, prepare_multiproc_dir
from app.streams import Frame
from tests.conftest import REPO, free_port
from tests.ingest.conftest import REDIS_URL, publish
from tests.ingest.test_celery import Fleet, backlog, count, drained, fleet, wait_for
from tests.metrics.conftest import sample, sample_total, scrape

__all__ = ["fleet"]

NOT_JSON = b"\x01 not json"
NO_FIELDS = b'{"type": "trade", "sid": 11, "msg": {"market_ticker": "M-1"}}'


def test_exporter_shows_what_the_prefork_worker_wrote(
    settings: Settings, client: redis.Redis, fleet: Fleet, tmp_path: Path
) -> None:
    names = stream_names(settings)
    items = backlog(settings, 600, 200)
    now = time.time_ns()
    items += [
        (names.trade, Frame(NOT_JSON, now, "c-bad", None, None)),
        (names.trade, Frame(NO_FIELDS, now + 1, "c-bad", 11, None)),
    ]
    publish(settings, items, tmp_path / "journal")
    directory = prepare_multiproc_dir(MetricsSettings(multiproc_dir=tmp_path / "m"), "ingest")
    fleet.beat()  # beat records nothing; it stays out of the worker's directory
    fleet.env[MULTIPROC_ENV] = str(directory)
    fleet.start(
        "worker", "worker", "-Q", "ingest", "-c", "2", "--pool", "prefork",
        "-n", f"m-{uuid.uuid4().hex[:6]}@%h", "--without-mingle", "--without-gossip",
        "--without-heartbeat", "--loglevel", "INFO",
    )  # fmt: skip
    port = free_port()
    exporter_log = (tmp_path / "exporter.log").open("wb")
    exporter = subprocess.Popen(
        [
            sys.executable, "-m", "app.metrics", "serve", "ingest", "--port", str(port),
            "--redis-url", REDIS_URL, "--gatherer", settings.gatherer,
            "--book-partitions", str(settings.streams.book_partitions), "--refresh", "0.5",
        ],
        cwd=REPO, env=fleet.env, stdout=exporter_log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    fleet.procs.append(exporter)
    wait_for(lambda: drained(settings, client, len(items)), 40, fleet, "the backlog to drain")

    url = f"http://127.0.0.1:{port}/metrics"
    written = count(settings.database_url, "raw_frames")
    assert written == len(items)

    def rows_in_exporter() -> float:
        try:
            return sample_total(scrape(url), "kd_ingest_rows_total", table="raw_frames")
        except OSError:
            return -1.0

    wait_for(lambda: rows_in_exporter() == written, 10, fleet, "the exporter's row count")
    text = scrape(url)
    assert sample(text, "kd_ingest_rows_total", table="dead_letters") == 2
    assert sample(text, "kd_dead_letters_total", reason_class="unparseable_frame") == 1
    assert sample(text, "kd_dead_letters_total", reason_class="invalid_row") == 1
    assert sample_total(text, "kd_ingest_frames_total") == len(items)
    assert sample_total(text, "kd_ingest_drains_total", stream=names.trade) >= 1
    assert sample_total(text, "kd_ingest_drains_failed_total") == 0
    assert (sample(text, "kd_ingest_write_duration_seconds_count") or 0) > 0
    # more than one prefork child wrote (the files are per pid); the exporter summed them
    assert len(list(directory.glob("counter_*.db"))) >= 2
    # stream gauges of this gatherer's streams, from the exporter's refresh loop
    wait_for(
        lambda: sample(scrape(url), "kd_stream_length_entries", stream=names.trade) is not None,
        10,
        fleet,
        "the stream gauges",
    )
