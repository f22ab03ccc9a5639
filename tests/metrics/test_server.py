"""Single-process exposition: recorders move the metrics, a real HTTP scrape returns them."""

from __future__ import annotations

import uuid

import pytest

from app.metrics import (
    MetricsConfigError,
    MetricsSettings,
    PublisherMetrics,
    classify_dead_letter,
    record_dead_letters,
    record_drain,
    record_frame,
    record_reconnect,
    record_rows_by_table,
    set_connection_state,
    start_metrics_server,
    time_write,
)
from app.streams import DrainResult, PublisherStats
from tests.metrics.conftest import sample, scrape


def test_default_bind_is_loopback() -> None:
    settings = MetricsSettings()
    assert settings.host == "127.0.0.1"
    assert settings.port_for("listener") == 9311
    assert 9090 not in settings.ports.values()
    server = start_metrics_server(settings, "listener", port=0)
    try:
        assert server.server.server_address[0] == "127.0.0.1"
        assert server.port > 0
    finally:
        server.close()


def test_counters_scraped_over_http() -> None:
    gatherer = f"g{uuid.uuid4().hex[:8]}"
    server = start_metrics_server(MetricsSettings(), "listener", port=0)
    try:
        before = scrape(server.url)
        assert (
            sample(before, "kd_listener_frames_total", gatherer=gatherer, channel="trade") is None
        )
        for _ in range(3):
            record_frame(gatherer, "trade", 120)
        record_frame(gatherer, "brand_new_type")
        record_frame(gatherer, None)
        record_reconnect(gatherer, "orderbook")
        set_connection_state(
            gatherer, "orderbook", "book-3", subscribed_markets=250, idle_s=1.5, connected=True
        )
        text = scrape(server.url)
    finally:
        server.close()
    assert sample(text, "kd_listener_frames_total", gatherer=gatherer, channel="trade") == 3.0
    assert sample(text, "kd_listener_frame_bytes_total", gatherer=gatherer, channel="trade") == 360
    # unknown and unparseable message types land on bounded labels, never a new series per type
    assert sample(text, "kd_listener_frames_total", gatherer=gatherer, channel="other") == 1.0
    assert sample(text, "kd_listener_frames_total", gatherer=gatherer, channel="unparseable") == 1
    assert sample(text, "kd_listener_reconnects_total", gatherer=gatherer, role="orderbook") == 1
    labels = {"gatherer": gatherer, "role": "orderbook", "connection": "book-3"}
    assert sample(text, "kd_listener_subscribed_markets", **labels) == 250
    assert sample(text, "kd_listener_idle_seconds", **labels) == 1.5
    assert sample(text, "kd_listener_connected", **labels) == 1


def test_publisher_metrics_follow_totals_by_increments() -> None:
    from prometheus_client import REGISTRY

    gatherer = f"g{uuid.uuid4().hex[:8]}"
    mirror = PublisherMetrics(gatherer)
    stats = PublisherStats(batches_published=5, frames_published=900, batches_spilled=2)
    stats.spilling = True
    stats.journal_bytes = 4096
    mirror.update(stats)
    stats.batches_published = 8
    stats.batches_replayed = 2
    stats.spilling = False
    stats.journal_bytes = 0
    mirror.update(stats)
    mirror.update(PublisherStats(batches_published=1))  # publisher restarted: totals reset

    def value(name: str) -> float | None:
        return REGISTRY.get_sample_value(name, {"gatherer": gatherer})

    assert value("kd_publisher_batches_published_total") == 9
    assert value("kd_publisher_frames_published_total") == 900
    assert value("kd_journal_spilled_batches_total") == 2
    assert value("kd_journal_replayed_batches_total") == 2
    assert value("kd_publisher_spilling") == 0
    assert value("kd_journal_bytes") == 0


def test_ingest_recorders() -> None:
    from prometheus_client import REGISTRY

    stream = f"kd:t{uuid.uuid4().hex[:8]}:trade"
    table = f"t_{uuid.uuid4().hex[:6]}"
    record_rows_by_table({table: 40, "unused": 0})
    before = REGISTRY.get_sample_value("kd_ingest_write_duration_seconds_count") or 0
    with time_write():
        pass
    record_drain(DrainResult(stream, "c1", handled=3, frames=700, reclaimed=1, dead_lettered=1))
    record_drain(DrainResult(stream, "c1", error="OperationalError: gone"))
    record_dead_letters("corrupt envelope: bad schema version")

    def value(name: str, **labels: str) -> float | None:
        return REGISTRY.get_sample_value(name, labels)

    assert value("kd_ingest_rows_total", table=table) == 40
    assert value("kd_ingest_write_duration_seconds_count") == before + 1
    assert value("kd_ingest_drains_total", stream=stream) == 2
    assert value("kd_ingest_drains_failed_total", stream=stream) == 1
    assert value("kd_ingest_entries_total", stream=stream) == 3
    assert value("kd_ingest_frames_total", stream=stream) == 700
    assert value("kd_ingest_entries_reclaimed_total", stream=stream) == 1
    assert value("kd_ingest_entries_dead_lettered_total", stream=stream) == 1
    assert (value("kd_dead_letters_total", reason_class="corrupt_envelope") or 0) >= 1


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("corrupt envelope: missing field v", "corrupt_envelope"),
        ("delivered 6 times without an ack (handler failed)", "max_deliveries"),
        ("unparseable frame: not JSON", "unparseable_frame"),
        ("something new", "other"),
    ],
)
def test_dead_letter_reasons_are_classified(reason: str, expected: str) -> None:
    assert classify_dead_letter(reason) == expected


def test_single_process_server_refuses_multiprocess_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/nonexistent")
    with pytest.raises(MetricsConfigError):
        start_metrics_server(MetricsSettings(), "beat", port=0)
