"""The jobs-queue work of a gatherer: stream trimming, the consumer janitor, partitions ahead,
retention, the market registry's reconcile and subscription refresh, the trade backfill
of capture holes and the refresh of the coverage table (DESIGN §6).

Every job is a plain function of `Settings` wrapped by `_job`, which records its run, duration
and last success (docs/metrics.md); `job_intervals` is the one place that maps a job to its
configured beat period, read by both the beat schedule and the staleness metric. Nothing here
imports Celery's app or `tasks/`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

from app.backfill import backfill_trades
from app.config import Settings
from app.coverage import HOUR, STATUSES, floor_hour, refresh_coverage
from app.db.partitions import drop_expired_partitions, ensure_partitions
from app.db.tables import TIME_SERIES_TABLES
from app.dedup import run_dedup
from app.ingest.handler import rollback
from app.ingest.runner import database, discard_database, redis_client, stream_names
from app.kalshi.rest import KalshiRest
from app.metrics import (
    record_job,
    record_partitions_created,
    record_partitions_dropped,
    set_coverage_market_hours,
)
from app.registry import ChangeFeed, reconcile
from app.streams import TrimResult, reap_idle_consumers, trim_stream

P = ParamSpec("P")
R = TypeVar("R")


def job_intervals(settings: Settings) -> dict[str, float]:
    """Beat period in seconds of every job, by job name (the metrics' `job_name` label)."""
    return {
        "trim_streams": settings.streams.trim_interval_s,
        "reap_consumers": settings.streams.janitor_interval_s,
        "ensure_partitions": settings.partitions.ensure_interval_s,
        "drop_expired_partitions": settings.partitions.drop_expired_interval_s,
        "reconcile_registry": settings.registry.reconcile_interval_s,
        "refresh_subscriptions": settings.registry.subscription_refresh_s,
        "backfill_trades": settings.backfill.interval_s,
        "refresh_coverage": settings.coverage.interval_s,
        "dedup": settings.dedup.interval_s,
    }


def _job(
    name: str,
) -> Callable[[Callable[Concatenate[Settings, P], R]], Callable[Concatenate[Settings, P], R]]:
    """Record every run of the decorated job under `name` (outcome, duration, last success)."""

    def wrap(func: Callable[Concatenate[Settings, P], R]) -> Callable[Concatenate[Settings, P], R]:
        @functools.wraps(func)
        def run(settings: Settings, /, *args: P.args, **kwargs: P.kwargs) -> R:
            with record_job(name, job_intervals(settings)[name]):
                return func(settings, *args, **kwargs)

        return run

    return wrap


@_job("trim_streams")
def trim_streams(settings: Settings) -> list[TrimResult]:
    """Safely trim every stream of this gatherer (below what every group still needs)."""
    client = redis_client(settings.redis_url, settings.streams.redis_timeout_s)
    return [
        trim_stream(
            client,
            stream,
            retain_ms=settings.streams.trim_retain_ms,
            approximate=settings.streams.trim_approximate,
        )
        for stream in stream_names(settings).all_streams
    ]


@_job("reap_consumers")
def reap_consumers(settings: Settings) -> dict[str, list[str]]:
    """Delete idle consumers with nothing pending from every stream; returns what went."""
    client = redis_client(settings.redis_url, settings.streams.redis_timeout_s)
    reaped: dict[str, list[str]] = {}
    for stream in stream_names(settings).all_streams:
        gone = reap_idle_consumers(
            client, stream, settings.streams.group, settings.streams.janitor_idle_ms
        )
        if gone:
            reaped[stream] = gone
    return reaped


def _set_lock_timeout(conn: Any, settings: Settings) -> None:
    """Bound the wait for the parent's ACCESS EXCLUSIVE lock in this transaction, so partition
    DDL never queues ingest writes behind it for long; a timeout raises and the next run retries.
    """
    with conn.cursor() as cur:
        cur.execute("SET LOCAL lock_timeout = %s", (f"{settings.partitions.lock_timeout_ms}ms",))


@_job("ensure_partitions")
def maintain_partitions(settings: Settings) -> list[str]:
    """Create `partitions.days_back` .. `days_ahead` daily partitions of every time-series table
    (and rescue stray DEFAULT rows); commit table by table. Returns the partitions created.

    One transaction per table holds one parent's lock at a time, and what was committed before
    a lock timeout stays (and is counted).
    """
    conn = database(settings.database_url)
    config = settings.partitions
    created: list[str] = []
    try:
        for spec in TIME_SERIES_TABLES:
            _set_lock_timeout(conn, settings)
            names = ensure_partitions(conn, config.days_ahead, config.days_back, tables=[spec])
            conn.commit()
            record_partitions_created(spec.name, len(names))
            created.extend(names)
    except BaseException:
        _abandon(settings, conn)
        raise
    return created


@_job("drop_expired_partitions")
def drop_expired(settings: Settings) -> dict[str, list[str]]:
    """Drop the partitions (or chunks) entirely older than each table's retention; commit table
    by table. Returns the names dropped, by table (tables that lost nothing are left out).

    Retention is `settings.partitions.retention()`: the role's defaults from `app.db.tables`
    plus the configured overrides; a table mapped to None is kept forever (STO-14).
    """
    conn = database(settings.database_url)
    dropped: dict[str, list[str]] = {}
    try:
        for table, days in settings.partitions.retention().items():
            if days is None:
                continue
            _set_lock_timeout(conn, settings)
            names = drop_expired_partitions(conn, {table: days})
            conn.commit()
            record_partitions_dropped(table, len(names))
            if names:
                dropped[table] = names
    except BaseException:
        _abandon(settings, conn)
        raise
    return dropped


def _feed(settings: Settings) -> ChangeFeed:
    client = redis_client(settings.redis_url, settings.streams.redis_timeout_s)
    return ChangeFeed(client, settings.gatherer, settings.registry)


@_job("reconcile_registry")
def reconcile_registry(settings: Settings, *, full: bool = False) -> dict[str, Any]:
    """Re-read markets changed at the exchange since the newest one held, publish membership
    changes; commits page by page (`app.registry.reconcile`). Unsigned when no Kalshi key is
    configured (the simulator). Returns the report's summary."""
    conn = database(settings.database_url)
    signer: Any = "settings" if settings.kalshi.has_credentials else None
    try:
        with KalshiRest.from_settings(settings.kalshi, signer=signer) as client:
            report = reconcile(conn, client, settings.registry, feed=_feed(settings), full=full)
    except BaseException:
        _abandon(settings, conn)
        raise
    return report.summary()


@_job("refresh_subscriptions")
def refresh_subscriptions(settings: Settings) -> dict[str, Any]:
    """Recompute the subscription set from the registry and publish the difference."""
    conn = database(settings.database_url)
    try:
        published = _feed(settings).refresh(conn)
        conn.commit()
    except BaseException:
        _abandon(settings, conn)
        raise
    return {"version": published.version, "added": published.added, "removed": published.removed}


@_job("backfill_trades")
def backfill_trade_holes(settings: Settings) -> dict[str, Any]:
    """Fill this gatherer's closed pending trade holes from REST (`app.backfill`); commits
    hole by hole. Signed when a Kalshi key is configured, unsigned otherwise (the simulator),
    with the same client, token bucket and retries as the registry reconcile. An exchange
    failure is recorded on the hole, not raised. Returns the report's summary."""
    conn = database(settings.database_url)
    signer: Any = "settings" if settings.kalshi.has_credentials else None
    try:
        with KalshiRest.from_settings(settings.kalshi, signer=signer) as client:
            report = backfill_trades(
                conn,
                client,
                settings.backfill,
                gatherer=settings.gatherer,
                lock_timeout_ms=settings.partitions.lock_timeout_ms,
            )
    except BaseException:
        _abandon(settings, conn)
        raise
    return report.summary()


# Market-hours by status that the refreshed window holds for this gatherer alone (a row other
# owners share is not ours to count, exactly as refresh_coverage leaves it alone).
_COVERAGE_COUNTS = """
SELECT status, count(*) FROM coverage
 WHERE gatherers = %(gatherers)s::text[] AND hour >= %(low)s AND hour < %(high)s
 GROUP BY status
"""


@_job("refresh_coverage")
def refresh_recent_coverage(
    settings: Settings, *, lookback_hours: int | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """Rewrite this gatherer's `coverage` rows of the current UTC hour and the
    `coverage.lookback_hours` whole hours before it (`app.coverage.refresh_coverage`), commit,
    and set `kd_coverage_market_hours` from what that window now holds.

    The lookback is there because an hour's coverage changes after the hour: a hole closes, a
    trade hole is backfilled, a successor records a dead listener's hole. Another run of the
    same gatherer still in progress (a manual call next to beat's) makes this one a no-op, so
    two never rewrite the same rows at once. `lookback_hours` overrides the setting for a
    one-off catch-up; `now` is for tests.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    hours = settings.coverage.lookback_hours if lookback_hours is None else lookback_hours
    if hours < 0:
        raise ValueError(f"lookback_hours must be >= 0, got {hours}")
    low, high = floor_hour(now) - timedelta(hours=hours), floor_hour(now) + HOUR
    report: dict[str, Any] = {"since": low.isoformat(), "until": now.isoformat()}
    conn = database(settings.database_url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_try_advisory_xact_lock(hashtext(%s))",
                (f"kd.coverage.refresh:{settings.gatherer}",),
            )
            locked = cur.fetchone()
            if not (locked and locked[0]):
                conn.rollback()
                return {**report, "skipped": True}
            stored = 0
            if low < now:  # else lookback 0 exactly on the hour: no hour has started yet
                stored = refresh_coverage(conn, settings.gatherer, low, now, now=now)
            cur.execute(
                _COVERAGE_COUNTS, {"gatherers": [settings.gatherer], "low": low, "high": high}
            )
            counts = {str(status): int(n) for status, n in cur.fetchall()}
        conn.commit()
    except BaseException:
        _abandon(settings, conn)
        raise
    set_coverage_market_hours(settings.gatherer, counts)
    return {**report, "rows": stored, **{s: counts.get(s, 0) for s in STATUSES}}


def _abandon(settings: Settings, conn: Any) -> None:
    rollback(conn)
    if conn.closed:
        discard_database(settings.database_url)


@_job("dedup")
def dedup_into_production(settings: Settings) -> dict[str, Any]:
    """One deduplicator run (`app.dedup.run_dedup`, docs/dedup.md): every gatherer's new rows
    merged into production. Raises when no production database is configured."""
    production = settings.dedup.production_url
    if not production:
        raise ValueError("dedup.production_url is not set: this host runs no deduplicator")
    return run_dedup(settings.dedup, production).as_dict()
