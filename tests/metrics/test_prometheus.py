"""The Prometheus configuration: promtool checks and rule unit tests, and a real Prometheus
server scraping our metrics endpoint. promtool and prometheus come from the Debian
`prometheus` package, installed by .ci/ensure-services; their absence is a failure."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import uuid
from pathlib import Path

import pytest

from app.metrics import MetricsSettings, record_frame, start_metrics_server
from tests.conftest import REPO, free_port
from tests.metrics.conftest import log_of, scrape, wait_for

CONFIGS = REPO / "configs" / "prometheus"
INSTALL_HINT = "install it with `apt-get install -y prometheus` (CI: .ci/ensure-services)"


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not on PATH: {INSTALL_HINT}")
    return path


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *args],
        cwd=CONFIGS, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_scrape_config_is_valid() -> None:
    done = promtool("check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_alert_rules_are_valid() -> None:
    done = promtool("check", "rules", "alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_alert_rule_unit_tests_pass() -> None:
    done = promtool("test", "rules", "tests.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_firing_and_a_silent_test() -> None:
    import yaml

    rules = yaml.safe_load((CONFIGS / "alerts.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    tests = yaml.safe_load((CONFIGS / "tests.yml").read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    fires = {case["alertname"] for case in cases if case["exp_alerts"]}
    silent = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert alerts == fires, alerts ^ fires
    assert alerts == silent, alerts ^ silent


def test_real_prometheus_scrapes_our_endpoint(tmp_path: Path) -> None:
    prometheus = binary("prometheus")
    gatherer = f"g{uuid.uuid4().hex[:8]}"
    record_frame(gatherer, "ticker")
    record_frame(gatherer, "ticker")
    server = start_metrics_server(MetricsSettings(), "listener", port=0)
    web_port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: kd-listener\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{server.port}']\n"
    )
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{web_port}"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    query = urllib.parse.urlencode(
        {"query": f'kd_listener_frames_total{{gatherer="{gatherer}",job="kd-listener"}}'}
    )
    url = f"http://127.0.0.1:{web_port}/api/v1/query?{query}"

    def scraped() -> bool:
        result = json.loads(scrape(url))["data"]["result"]
        return bool(result) and float(result[0]["value"][1]) == 2.0

    try:
        wait_for(scraped, 20, "Prometheus to scrape kd_listener_frames_total")
    except AssertionError:
        raise AssertionError(f"prometheus log:\n{log_of(log)}") from None
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        server.close()
