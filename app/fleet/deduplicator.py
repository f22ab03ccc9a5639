"""The deduplicator of `kalshi-data up --gatherers N` (DESIGN §2, docs/dedup.md).

A Celery worker on queue `dedup` (-c 1) and a beat that schedules only `kd.dedup.run`, both
named `<gatherer>-dedup` (so their broker keys live under `kd:<gatherer>-dedup:celery:`, apart
from every gatherer's), merge the gatherer databases into the production database
`<database>_prod` every `--dedup-interval` seconds while `up` runs. When every gatherer has
been stopped and drained, `up` itself runs the last pass (`final_dedup`), so production holds
everything the gatherers stored when `up` exits.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path

import psycopg2

from app.config import Settings
from app.dedup import DedupReport, run_dedup
from app.fleet.gatherer import celery_command, exporter_spec, worker_metrics_env
from app.fleet.members import Member, derive_settings, derived_database_url, fleet_env
from app.fleet.supervisor import ChildSpec
from app.logs import log_event

log = logging.getLogger("kalshi_data.up")

DEDUP_WORKER = "dedup"
DEDUP_BEAT = "dedup-beat"
DEDUP_EXPORTER = "dedup-metrics"


def dedup_settings(settings: Settings, members: list[Member], interval_s: float) -> Settings:
    """Settings of the deduplicator processes: production, every member, the short period."""
    name = f"{settings.gatherer}-dedup"
    production = derived_database_url(settings.database_url, "_prod")
    gatherers = [{"name": m.name, "database_url": m.settings.database_url} for m in members]
    dedup = {
        **settings.dedup.model_dump(),
        "production_url": production,
        "gatherers": gatherers,
        "interval_s": interval_s,
    }
    metrics = settings.metrics.model_dump()
    metrics["multiproc_dir"] = settings.metrics.multiproc_dir / name
    return derive_settings(
        settings,
        gatherer=name,
        database_url=production,
        dedup=dedup,
        beat={"entries": "dedup"},
        metrics=metrics,
        partitions={**settings.partitions.model_dump(), "role": "production"},
    )


def dedup_env(dedup: Settings, config: Path | None) -> dict[str, str]:
    """What the dedup worker and beat read their settings from (`KD_DEDUP__*` as in
    docs/dedup.md, the gatherers as JSON)."""
    cfg = dedup.dedup
    gatherers = [g.model_dump() for g in cfg.gatherers]
    env = {
        "KD_GATHERER": dedup.gatherer,
        "KD_DATABASE_URL": dedup.database_url,
        "KD_REDIS_URL": dedup.redis_url,
        "KD_PARTITIONS__ROLE": dedup.partitions.role,
        "KD_DEDUP__PRODUCTION_URL": cfg.production_url or "",
        "KD_DEDUP__GATHERERS": json.dumps(gatherers),
        "KD_DEDUP__INTERVAL_S": str(cfg.interval_s),
        **fleet_env(dedup),
    }
    if config is not None:
        env["KD_CONFIG"] = str(config)
    return env


def dedup_specs(dedup: Settings, env: dict[str, str], run_dir: Path) -> list[ChildSpec]:
    """The dedup worker (and its metrics exporter when metrics are enabled), then its beat."""
    metrics = dedup.metrics.enabled
    worker_env = worker_metrics_env(dedup, "dedup", env) if metrics else env
    # A run in flight is left to finish (it stops starting batches after max_run_s); killed
    # anyway, its transaction rolls back and the cursors stay where they were.
    stop_timeout_s = dedup.dedup.max_run_s + 15.0
    worker = ChildSpec(
        name=DEDUP_WORKER,
        argv=celery_command(
            "worker", "-Q", "dedup", "-c", "1", "--pool", "prefork",
            "-n", f"{dedup.gatherer}@%h", "--without-gossip", "--without-mingle", "-l", "INFO",
        ),
        env=worker_env,
        ready_text="ready.",
        stop_timeout_s=stop_timeout_s,
    )  # fmt: skip
    beat = ChildSpec(
        name=DEDUP_BEAT,
        argv=celery_command(
            "beat", "-s", str(run_dir / f"celerybeat-{dedup.gatherer}"), "--pidfile=", "-l", "INFO"
        ),
        env=env,
    )
    exporter = [exporter_spec(dedup, "dedup", worker_env)] if metrics else []
    return [worker, *exporter, beat]


def wait_for_horizon(database_url: str, timeout_s: float) -> bool:
    """Wait until every transaction begun before now on this database's server has ended.

    The deduplicator reads only rows below a gatherer's horizon, the oldest transaction still
    running on its server (docs/dedup.md); a transaction of anyone else on that server can hold
    it back. Once it has passed a transaction id taken now, after the gatherer's writers
    stopped, a pass reads every row they stored. False when `timeout_s` ran out first.
    """
    deadline = time.monotonic() + timeout_s
    with contextlib.closing(psycopg2.connect(database_url, connect_timeout=5)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT pg_current_xact_id()::text")
            (now_xid,) = cur.fetchone() or ("0",)
            while True:
                cur.execute(
                    "SELECT pg_snapshot_xmin(pg_current_snapshot()) >= %s::xid8", (now_xid,)
                )
                passed = bool((cur.fetchone() or (False,))[0])
                if passed or time.monotonic() >= deadline:
                    return passed
                time.sleep(0.2)


def final_dedup(dedup: Settings, timeout_s: float) -> DedupReport:
    """The last pass, once every gatherer stopped: runs until nothing is left (each run stops
    after `dedup.max_run_s`) or `timeout_s` is spent. Returns the summed report.

    Order books are merged up to now: the lateness timeout (`dedup.book_lateness_s`,
    docs/dedup.md) waits for gatherers still storing, and every gatherer here has stopped and
    been drained.
    """
    deadline = time.monotonic() + timeout_s
    for gatherer in dedup.dedup.gatherers:
        if not wait_for_horizon(gatherer.database_url, max(0.0, deadline - time.monotonic())):
            log_event(log, "dedup_horizon_held", logging.WARNING, gatherer=gatherer.name)
    production = dedup.dedup.production_url or ""
    settings = dedup.dedup.model_copy(update={"book_lateness_s": 0.0})
    total = DedupReport()
    runs = 0
    while True:
        report = run_dedup(settings, production)
        runs += 1
        total.read.update(report.read)
        total.inserted.update(report.inserted)
        total.batches += report.batches
        total.book_windows += report.book_windows
        total.book_gaps += report.book_gaps
        total.coverage.update(report.coverage)
        total.books_until = report.books_until or total.books_until
        total.unreachable = report.unreachable  # the last run says what is missing
        total.complete = report.complete
        if report.complete or time.monotonic() >= deadline:
            break
    log_event(
        log, "dedup_final_pass", runs=runs, read=dict(total.read),
        inserted=dict(total.inserted), unreachable=total.unreachable, complete=total.complete,
        book_gaps=total.book_gaps, coverage=dict(total.coverage),
    )  # fmt: skip
    return total
