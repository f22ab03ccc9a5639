"""`kalshi-data up` serves metrics while it runs: the listener's own endpoint, and one exporter
per Celery worker kind summing its prefork children (docs/metrics.md). Ports are chosen free
and passed as KD_METRICS__PORTS__*, so parallel runs do not collide."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import KALSHI_DATA, REPO, clean_env, free_port
from tests.fleet.test_up import gatherer_env
from tests.metrics.conftest import sample, sample_total, scrape

__all__ = ["gatherer_env"]

pytestmark = pytest.mark.timeout(180)


def _scrape(url: str) -> str:
    try:
        return scrape(url, timeout=2.0)
    except OSError:
        return ""


def test_up_serves_listener_and_worker_metrics(tmp_path: Path, gatherer_env) -> None:
    ports = {kind: free_port() for kind in ("listener", "ingest", "jobs")}
    env = clean_env(
        **{**gatherer_env, "KD_METRICS__ENABLED": "true"},
        **{f"KD_METRICS__PORTS__{kind.upper()}": str(port) for kind, port in ports.items()},
        KD_METRICS__MULTIPROC_DIR=str(tmp_path / "metrics"),
        KD_METRICS__STREAM_REFRESH_S="1",
    )
    gatherer = gatherer_env["KD_GATHERER"]
    url = {kind: f"http://127.0.0.1:{port}/metrics" for kind, port in ports.items()}
    log = (tmp_path / "up.log").open("w")
    process = subprocess.Popen(
        [KALSHI_DATA, "up", "--duration", "15", "--sim-port", "0", "--sim-markets", "20",
         "--sim-rate", "200", "--run-dir", str(tmp_path / "run")],
        stdout=subprocess.DEVNULL, stderr=log, env=env, cwd=REPO,
    )  # fmt: skip
    seen: dict[str, str] = {}
    try:
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            listener, ingest = _scrape(url["listener"]), _scrape(url["ingest"])
            frames = sample_total(listener, "kd_listener_frames_total", gatherer=gatherer)
            rows = sample_total(ingest, "kd_ingest_rows_total", table="raw_frames")
            streams = sample_total(ingest, "kd_stream_length_entries")
            # the publisher totals are synced once a second, after the frame counters
            published = sample_total(listener, "kd_publisher_frames_published_total")
            if frames > 0 and rows > 0 and streams > 0 and published > 0:
                seen = {"listener": listener, "ingest": ingest, "jobs": _scrape(url["jobs"])}
                break
            time.sleep(0.5)
        code = process.wait(120)
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    output = (tmp_path / "up.log").read_text()[-4000:]
    assert seen, f"no frames and rows in the metrics while up ran\n{output}"
    assert code == 0, output
    assert sample(seen["listener"], "kd_listener_connected", gatherer=gatherer,
                  role="trade", connection="trade") == 1.0  # fmt: skip
    assert sample_total(seen["listener"], "kd_publisher_frames_published_total") > 0
    assert sample_total(seen["ingest"], "kd_ingest_drains_total") > 0
    assert sample(seen["ingest"], "kd_stream_length_entries", stream=f"kd:{gatherer}:trade")
    assert "kd_ingest_write_duration_seconds" in seen["jobs"]  # the jobs exporter serves too
    # each worker kind wrote into its own directory, wiped at start
    assert list((tmp_path / "metrics" / "ingest").glob("counter_*.db"))
    assert (tmp_path / "metrics" / "jobs").is_dir()
    for port in ports.values():  # every endpoint stopped with up
        assert _scrape(f"http://127.0.0.1:{port}/metrics") == ""
