"""The jobs behind the jobs-queue tasks, on real Redis, PostgreSQL and a simulator process:
what they do, the metrics every run records, and how beat schedules them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg2
import redis
from prometheus_client import REGISTRY

from app.config import KalshiSettings, PartitionSettings, Settings
from app.db.copy import write_rows
from app.db.partitions import ensure_partitions, list_partitions, partition_name
from app.db.tables import TIME_SERIES_TABLES
from app.ingest import (
    drop_expired,
    job_intervals,
    maintain_partitions,
    reap_consumers,
    reconcile_registry,
    refresh_subscriptions,
    run_drain,
    stream_names,
    trim_streams,
)
from app.metrics import multiprocess_registry
from app.metrics.definitions import JOBS
from app.streams import Frame, stream_stats
from tests.conftest import REPO, clean_env
from tests.db.samples import frame_rows
from tests.ingest.conftest import publish, query
from tests.normalize import examples
from tests.simulator.conftest import Sim


def test_trim_reap_and_partitions(settings: Settings, client: redis.Redis, tmp_path: Path) -> None:
    names = stream_names(settings)
    now = time.time_ns()
    trades = [
        (names.trade, Frame(examples.TRADE.replace("d91bc706", f"{i:08x}").encode(), now + i, "c"))
        for i in range(30)
    ]
    tuned = settings.model_copy(
        update={
            "streams": settings.streams.model_copy(
                update={"batch_frames": 1, "trim_approximate": False, "janitor_idle_ms": 0}
            )
        }
    )
    publish(tuned, trades, tmp_path / "j")
    assert client.xlen(names.trade) == 30
    run = run_drain(tuned, names.trade)
    assert run.drain.handled == 30 and run.rows["trades"] == 30

    trimmed = {r.stream: r for r in trim_streams(tuned)}
    assert trimmed[names.trade].status == "ok"
    assert client.xlen(names.trade) <= 1  # MINID keeps the last-delivered entry itself
    assert trimmed[names.ticker].removed == 0  # never drained: no group, never trimmed

    reaped = reap_consumers(tuned)
    assert list(reaped) == [names.trade] and len(reaped[names.trade]) == 1
    assert stream_stats(client, names.trade).groups[0].consumers == 0

    created = maintain_partitions(tuned)
    assert any(name.startswith("trades_p") for name in created)
    assert maintain_partitions(tuned) == []  # idempotent


def test_registry_reconcile_and_refresh_against_simulator(
    settings: Settings, client: redis.Redis, tmp_path: Path
) -> None:
    sim = Sim(["--markets", "20", "--seed", "3", "--rate", "5"], None, tmp_path / "sim.log")
    try:
        configured = settings.model_copy(
            update={"kalshi": KalshiSettings(rest_url=sim.api, max_retries=2)}
        )
        assert reconcile_registry(configured)
        markets = query(settings.database_url, "SELECT count(*) FROM markets")[0][0]
        assert int(markets) >= 20  # type: ignore[call-overload]
        refreshed = refresh_subscriptions(configured)
        assert refreshed["added"] == 0  # the reconcile already published the set
        assert client.scard(f"kd:{settings.gatherer}:registry:tickers") > 0
    finally:
        assert sim.stop() == 0, sim.log_path.read_text()[-2000:]


def _value(name: str, **labels: str) -> float:
    """A metric of this (single) test process, 0 when the series does not exist yet."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _partition_days(url: str) -> dict[str, set[date]]:
    conn = psycopg2.connect(url)
    try:
        return {spec.name: set(list_partitions(conn, spec)) for spec in TIME_SERIES_TABLES}
    finally:
        conn.close()


def test_drop_expired_follows_each_tables_retention(settings: Settings) -> None:
    now = datetime.now(UTC)
    old, mid = now - timedelta(days=40), now - timedelta(days=10)
    conn = psycopg2.connect(settings.database_url)
    try:
        for moment in (old, mid):
            ensure_partitions(conn, days_ahead=0, days_back=0, now=moment)
        rows = frame_rows(old) + frame_rows(mid, first_pos=100) + frame_rows(now, first_pos=200)
        write_rows(conn, rows)
        conn.commit()
    finally:
        conn.close()
    old_tickers = "SELECT count(*) FROM tickers WHERE exchange_ts < now() - interval '5 days'"
    assert query(settings.database_url, old_tickers)[0][0] == 2
    trades_before = query(settings.database_url, "SELECT count(*) FROM trades")[0][0]

    # tickers shorter than the default, trades kept forever; the rest are the gatherer defaults
    configured = settings.model_copy(
        update={"partitions": PartitionSettings(retention_days={"tickers": 3, "trades": None})}
    )
    retention = configured.partitions.retention()
    job = {"job_name": "drop_expired_partitions"}
    runs_before = _value("kd_job_runs_total", outcome="ok", **job)
    counted_before = {
        t.name: _value("kd_partitions_dropped_total", table=t.name) for t in TIME_SERIES_TABLES
    }
    started = time.time()
    dropped = drop_expired(configured)

    left = _partition_days(settings.database_url)
    for spec in TIME_SERIES_TABLES:
        days = retention[spec.name]
        # 40 days old is past every finite retention here; 10 days old only past those < 10
        gone = [m.date() for m in (old, mid) if days is not None and (m is old or days < 10)]
        assert sorted(dropped.get(spec.name, [])) == [partition_name(spec.name, d) for d in gone]
        assert {old.date(), mid.date(), now.date()} - left[spec.name] == set(gone), spec.name
        counted = _value("kd_partitions_dropped_total", table=spec.name)
        assert counted - counted_before[spec.name] == len(gone), spec.name
    assert len(dropped["tickers"]) == 2 and "trades" not in dropped  # the two overrides
    assert dropped["orderbook_snapshots"] == [partition_name("orderbook_snapshots", old.date())]
    assert query(settings.database_url, old_tickers)[0][0] == 0
    assert query(settings.database_url, "SELECT count(*) FROM tickers")[0][0] == 1  # today's
    assert query(settings.database_url, "SELECT count(*) FROM trades")[0][0] == trades_before

    assert _value("kd_job_runs_total", outcome="ok", **job) == runs_before + 1
    assert started <= _value("kd_job_last_success_timestamp_seconds", **job) <= time.time()
    assert _value("kd_job_interval_seconds", **job) == 3600
    assert drop_expired(configured) == {}  # idempotent: nothing is old any more
    assert _value("kd_job_runs_total", outcome="ok", **job) == runs_before + 2


def test_maintain_partitions_uses_the_configured_window(settings: Settings) -> None:
    configured = settings.model_copy(
        update={"partitions": PartitionSettings(days_ahead=10, days_back=3)}
    )
    today = datetime.now(UTC).date()
    before = _partition_days(settings.database_url)  # the migration's: today-1 .. today+3
    counted_before = {
        t.name: _value("kd_partitions_created_total", table=t.name) for t in TIME_SERIES_TABLES
    }
    created = maintain_partitions(configured)

    window = {today + timedelta(days=offset) for offset in range(-3, 11)}
    after = _partition_days(settings.database_url)
    for spec in TIME_SERIES_TABLES:
        assert window <= after[spec.name], spec.name
        assert today + timedelta(days=11) not in after[spec.name]
        new = sorted(window - before[spec.name])
        assert [n for n in created if n.startswith(f"{spec.name}_p")] == [
            partition_name(spec.name, d) for d in new
        ]
        counted = _value("kd_partitions_created_total", table=spec.name)
        assert counted - counted_before[spec.name] == len(new) > 0, spec.name
    assert maintain_partitions(configured) == []


JOB_SCRIPT = """
import sys
from app.config import load_settings
from app.ingest import maintain_partitions
settings = load_settings(None)
maintain_partitions(settings)
if sys.argv[1] == "fail":
    missing = settings.model_copy(update={"database_url": settings.database_url + "_missing"})
    try:
        maintain_partitions(missing)
    except Exception:
        pass
    else:
        sys.exit("maintain_partitions on a missing database did not fail")
"""


def test_job_metrics_in_multiprocess_mode(settings: Settings, tmp_path: Path) -> None:
    """Two processes (like two prefork children) run the job with PROMETHEUS_MULTIPROC_DIR;
    the exporter's collector sums their runs and keeps the newest success."""
    directory = tmp_path / "jobs-metrics"
    directory.mkdir()
    env = clean_env(
        PROMETHEUS_MULTIPROC_DIR=str(directory),
        KD_DATABASE_URL=settings.database_url,
        KD_REDIS_URL=settings.redis_url,
        KD_GATHERER=settings.gatherer,
        KD_PARTITIONS__DAYS_AHEAD="5",
        KD_PARTITIONS__ENSURE_INTERVAL_S="900",
    )
    started = time.time()
    for mode in ("fail", "ok"):
        done = subprocess.run(
            [sys.executable, "-c", JOB_SCRIPT, mode],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
    finished = time.time()

    registry = multiprocess_registry(directory)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"job_name": "ensure_partitions", **labels})

    assert value("kd_job_runs_total", outcome="ok") == 2
    assert value("kd_job_runs_total", outcome="error") == 1
    assert value("kd_job_duration_seconds_count") == 3
    assert started < (value("kd_job_last_success_timestamp_seconds") or 0) < finished
    assert value("kd_job_interval_seconds") == 900
    # the migration made today-1 .. today+3; days_ahead 5 adds two days to every table, once
    for spec in TIME_SERIES_TABLES:
        created = registry.get_sample_value("kd_partitions_created_total", {"table": spec.name})
        assert created == 2, spec.name
    assert len(list(directory.glob("counter_*.db"))) == 2  # one file per process, summed


SCHEDULE_SCRIPT = """
import json
from app.ingest import stream_names
from workers.celery_app import JOB_ENTRIES, app, settings
names = stream_names(settings)
from tasks.maintenance import drop_expired_partitions
jobs = {entry: app.conf.beat_schedule[entry] for entry, _, _ in JOB_ENTRIES}
print(json.dumps({
    "jobs": jobs,
    "periods": {job: app.conf.beat_schedule[entry]["schedule"] for entry, _, job in JOB_ENTRIES},
    "routes": app.conf.task_routes,
    "drains": {k: v for k, v in app.conf.beat_schedule.items() if k.startswith("drain ")},
    "streams": [*names.data_streams, names.control],
    "dead": names.dead,
    "dropped": drop_expired_partitions.apply().get(),
}))
"""


def test_beat_schedules_every_job_at_its_configured_interval(settings: Settings) -> None:
    conn = psycopg2.connect(settings.database_url)
    try:
        old = datetime.now(UTC) - timedelta(days=40)
        ensure_partitions(conn, days_ahead=0, days_back=0, now=old)
        conn.commit()
    finally:
        conn.close()
    env = clean_env(
        KD_DATABASE_URL=settings.database_url,
        KD_REDIS_URL=settings.redis_url,
        KD_GATHERER=settings.gatherer,
        KD_PARTITIONS__DROP_EXPIRED_INTERVAL_S="1800",
        KD_PARTITIONS__ENSURE_INTERVAL_S="600",
        KD_PARTITIONS__RETENTION_DAYS='{"trades": 5, "tickers": null}',
        KD_STREAMS__TRIM_INTERVAL_S="45",
        KD_STREAMS__DRAIN_INTERVAL_S="2.5",
        KD_STREAMS__DEAD_LETTER_INTERVAL_S="30",
    )
    done = subprocess.run(
        [sys.executable, "-c", SCHEDULE_SCRIPT],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])

    drop = report["jobs"]["drop expired partitions"]
    assert drop["task"] == "kd.maintenance.drop_expired_partitions"
    assert drop["schedule"] == 1800
    assert drop["options"] == {"queue": "jobs", "expires": 900}
    assert report["jobs"]["ensure partitions"]["schedule"] == 600
    assert report["jobs"]["trim streams"]["schedule"] == 45
    assert report["routes"]["kd.maintenance.*"] == {"queue": "jobs"}
    # the drains: every data stream and the control stream at the drain period, the
    # dead-letter stream at its own
    drains, streams, dead = report["drains"], report["streams"], report["dead"]
    assert len(streams) > 2 and set(drains) == {f"drain {s}" for s in (*streams, dead)}
    for stream in streams:
        entry = drains[f"drain {stream}"]
        assert (entry["schedule"], entry["args"]) == (2.5, [stream])
        assert entry["options"] == {"queue": "ingest", "expires": 12.5}
    assert drains[f"drain {dead}"]["schedule"] == 30
    # every job has a beat entry at the period its staleness metric reports
    configured = settings.model_copy(
        update={
            "partitions": PartitionSettings(drop_expired_interval_s=1800, ensure_interval_s=600),
            "streams": settings.streams.model_copy(update={"trim_interval_s": 45}),
        }
    )
    # (a gatherer host schedules no dedup: tests/dedup/test_schedule.py covers that job)
    expected = {job: every for job, every in job_intervals(configured).items() if job != "dedup"}
    assert report["periods"] == expected
    assert set(report["periods"]) == set(JOBS) - {"other", "dedup"}
    # the task itself, run eagerly with the same environment: the 40-day-old partitions of
    # tables with a finite retention go, "tickers" (null from the environment) stays
    dropped = report["dropped"]
    assert dropped["trades"] == [partition_name("trades", old.date())]
    assert "tickers" not in dropped and "coverage" not in dropped
