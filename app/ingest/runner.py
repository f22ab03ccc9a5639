"""What a Celery drain task runs: `run_drain`, one drain of one stream of this gatherer.

Each worker process keeps one PostgreSQL connection and one Redis client per URL, opened on
first use and reused by every task the process runs (prefork children open their own: the
cache is keyed by pid, so nothing inherited across `fork` is ever used). A connection the
server dropped is replaced on the next run; a run that failed on the database discards it.
Ingest connections carry TCP keepalives and a `statement_timeout` (settings.streams.db_*), so a
vanished or hung server, or a lock held too long, becomes an error instead of a stuck worker.

Database faults (app.ingest.faults: down, read-only, permission, missing table, timeout, ...)
keep the entries pending with their delivery counts restored, are logged
(`ingest.database_fault`) and counted (`kd_ingest_db_errors_total{gatherer,kind}`), and pause
every drain of the gatherer with a doubling, capped backoff (app.ingest.backoff) until a write
succeeds again. They never dead-letter anything.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import psycopg2
import psycopg2.extensions
import redis
from celery.exceptions import SoftTimeLimitExceeded

from app.config import Settings
from app.db.engine import DatabaseUnavailable, SessionLimits, connect
from app.ingest.backoff import DatabaseBackoff
from app.ingest.control_records import write_control_entries
from app.ingest.faults import describe, fault_kind, sqlstate
from app.ingest.handler import write_dead_letter_entries, write_entries
from app.logs import log_event
from app.metrics import record_drain, record_drain_failure, record_rows_by_table, time_write
from app.metrics.recorders import record_db_error, record_db_recovered, touch_db_errors
from app.normalize import FormatVersion
from app.registry import ChangeFeed
from app.streams import (
    DrainResult,
    Entry,
    StreamNames,
    consumer_name,
    dead_stream_for,
    drain,
)
from app.streams.drain import Handled

log = logging.getLogger(__name__)

# Handler errors that are not the entries' fault: the drain restores their delivery counts, so
# a database or network outage (or a write stuck past the task's soft time limit) never turns
# good entries into dead letters.
RETRYABLE: tuple[type[BaseException], ...] = (
    SoftTimeLimitExceeded,
    OSError,
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
    DatabaseUnavailable,
    redis.ConnectionError,
    redis.TimeoutError,
)


def is_retryable(exc: BaseException) -> bool:
    """Not the entries' fault: a database fault of any kind, or a transport error."""
    return fault_kind(exc) is not None or isinstance(exc, RETRYABLE)


# Keys of a handler's counts that are not tables (kd_ingest_rows_total is rows per table).
NOT_TABLES = frozenset({"registry_status_changes"})

_db: dict[tuple[str, SessionLimits | None], tuple[int, psycopg2.extensions.connection]] = {}
_redis: dict[str, tuple[int, redis.Redis]] = {}


def session_limits(settings: Settings) -> SessionLimits:
    """Keepalives and statement timeout of the ingest's database sessions."""
    cfg = settings.streams
    return SessionLimits(
        statement_timeout_ms=cfg.db_statement_timeout_ms,
        keepalives_idle_s=cfg.db_keepalives_idle_s,
        keepalives_interval_s=cfg.db_keepalives_interval_s,
        keepalives_count=cfg.db_keepalives_count,
    )


def database(url: str, limits: SessionLimits | None = None) -> psycopg2.extensions.connection:
    """This process's connection to `url` with session `limits` (drains pass theirs; the jobs
    none, so a long job never meets the drains' statement timeout), opened on first use and
    replaced once closed."""
    cached = _db.get((url, limits))
    if cached is not None and cached[0] == os.getpid() and not cached[1].closed:
        return cached[1]
    conn = connect(url, limits=limits)
    _db[(url, limits)] = (os.getpid(), conn)
    return conn


def redis_client(url: str, timeout_s: float) -> redis.Redis:
    """This process's sync Redis client for `url`: bytes replies, as `drain` requires."""
    cached = _redis.get(url)
    if cached is not None and cached[0] == os.getpid():
        return cached[1]
    client = redis.Redis.from_url(
        url,
        decode_responses=False,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=30,
    )
    _redis[url] = (os.getpid(), client)
    return client


def discard_database(url: str) -> None:
    """Close and forget this process's connections to `url` (after one failed)."""
    for key in [key for key in _db if key[0] == url]:
        pid, conn = _db.pop(key)
        if pid == os.getpid():
            with contextlib.suppress(psycopg2.Error):
                conn.close()


def close_all() -> None:
    """Close every connection and client this process opened (worker shutdown, tests)."""
    for url in {url for url, _ in _db}:
        discard_database(url)
    for pid, client in _redis.values():
        if pid == os.getpid():
            client.close()
    _redis.clear()


def stream_names(settings: Settings) -> StreamNames:
    return StreamNames(settings.gatherer, settings.streams.book_partitions)


def format_version(settings: Settings) -> FormatVersion | None:
    """The declared wire format: legacy when the simulator emits legacy frames, else by time."""
    return FormatVersion.LEGACY if settings.simulator.format == "legacy" else None


@dataclass
class IngestRun:
    """One drain run and the rows it inserted (new rows only, per table)."""

    drain: DrainResult
    rows: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        result = self.drain
        return {
            "stream": result.stream,
            "consumer": result.consumer,
            "handled": result.handled,
            "frames": result.frames,
            "reclaimed": result.reclaimed,
            "acked": result.acked,
            "dead_lettered": result.dead_lettered,
            "deleted": result.deleted,
            "failed": result.failed,
            "error": result.error,
            "transient": result.transient,
            "paused_s": round(result.paused_s, 3),
            "exhausted": result.exhausted,
            "elapsed_s": round(result.elapsed_s, 3),
            "rows": dict(self.rows),
        }


def count_stored_frames(client: redis.Redis, names: StreamNames, frames: int) -> None:
    """Add newly stored frames to the gatherer's Redis counter (`up`'s frames/s).

    Counted after the commit and before the XACK: a redelivery stores nothing new, so it adds
    nothing. Only a crash between the commit and this call leaves a batch uncounted; the
    database stays the record (`verify`). A Redis error here is logged, never fatal.
    """
    if frames <= 0:
        return
    try:
        client.incrby(names.frames_stored_key, frames)
    except redis.RedisError as exc:
        log_event(log, "ingest.frames_counter_failed", logging.WARNING, error=str(exc))


def _database_fault(
    settings: Settings, backoff: DatabaseBackoff, stream: str, exc: BaseException
) -> None:
    """A write failed on the database: count, log, pause the gatherer's drains, reconnect."""
    kind = fault_kind(exc) or "other"
    error = describe(exc)
    pause = backoff.record_fault(kind, error)
    record_db_error(settings.gatherer, kind, pause.remaining_s)
    log_event(
        log,
        "ingest.database_fault",
        logging.ERROR,
        gatherer=settings.gatherer,
        stream=stream,
        kind=kind,
        sqlstate=sqlstate(exc),
        error=error,
        failures=pause.failures,
        retry_in_s=round(pause.remaining_s, 3),
    )
    # A fresh session next time: the old one may be dead, read-only (failover) or poisoned.
    discard_database(settings.database_url)


def run_drain(settings: Settings, stream: str, *, budget_s: float | None = None) -> IngestRun:
    """Drain one stream of this gatherer into the database (one Celery drain task run).

    Data streams go through `write_entries`; the listener's control stream `kd:{g}:control`
    becomes `sequence_gaps` / `connection_sessions` rows; the dead-letter stream `kd:{g}:dead`
    is copied into the `dead_letters` table. Any other name raises ValueError (a task for
    another gatherer).
    """
    names = stream_names(settings)
    cfg = settings.streams
    client = redis_client(settings.redis_url, cfg.redis_timeout_s)
    touch_db_errors(settings.gatherer)
    backoff = DatabaseBackoff(client, settings.gatherer, cfg.db_retry_min_s, cfg.db_retry_max_s)
    pause = backoff.check()
    if pause.remaining_s > 0:
        # The database failed recently: every drain of this gatherer waits (entries pending).
        skipped = DrainResult(stream=stream, consumer=consumer_name(), paused_s=pause.remaining_s)
        record_drain(skipped)
        return IngestRun(skipped)
    try:
        conn = database(settings.database_url, session_limits(settings))
    except DatabaseUnavailable as exc:
        failed = DrainResult(stream=stream, consumer=consumer_name(), error=describe(exc))
        failed.fault, failed.transient = exc, True
        record_drain(failed)
        _database_fault(settings, backoff, stream, exc)
        return IngestRun(failed)
    rows: dict[str, int] = {}

    def handle(write: Any, entries: list[Entry]) -> Handled:
        rejected: dict[str, str] = {}
        with time_write():
            if stream in names.data_streams:
                counts: dict[str, int] = write(conn, entries, rejected=rejected)
            else:
                counts = write(conn, entries)
        # Committed: count the new rows per table (not the registry's status changes).
        record_rows_by_table({t: n for t, n in counts.items() if t not in NOT_TABLES})
        count_stored_frames(client, names, counts.get("raw_frames", 0))
        for table, count in counts.items():
            rows[table] = rows.get(table, 0) + count
        return Handled(rejected)

    if stream == names.dead:
        writer: Any = partial(
            write_dead_letter_entries, gatherer=settings.gatherer, dead_stream=stream
        )
        options: dict[str, Any] = {
            "decode": False,
            "max_deliveries": None,
            "dead_stream": dead_stream_for(stream),
        }
    elif stream == names.control:
        writer = partial(write_control_entries, gatherer=settings.gatherer, stream=stream)
        options = {"max_deliveries": cfg.max_deliveries, "dead_stream": names.dead}
    elif stream in names.data_streams:
        lifecycle = stream == names.lifecycle
        writer = partial(
            write_entries,
            gatherer=settings.gatherer,
            stream=stream,
            version=format_version(settings),
            registry=settings.registry if lifecycle else None,
            feed=ChangeFeed(client, settings.gatherer, settings.registry) if lifecycle else None,
        )
        options = {"max_deliveries": cfg.max_deliveries, "dead_stream": names.dead}
    else:
        raise ValueError(f"{stream!r} is not a stream of gatherer {settings.gatherer!r}")

    try:
        result = drain(
            client,
            stream,
            cfg.group,
            consumer_name(),
            partial(handle, writer),
            budget_s=cfg.drain_budget_s if budget_s is None else budget_s,
            count=cfg.drain_count,
            min_idle_ms=cfg.min_idle_ms,
            retryable=is_retryable,
            **options,
        )
    except BaseException:
        record_drain_failure(stream)  # Redis unreachable, time limit: no result to record
        raise
    record_drain(result)
    if result.fault is not None and fault_kind(result.fault) is not None:
        _database_fault(settings, backoff, stream, result.fault)
    elif result.error is not None and conn.closed:
        discard_database(settings.database_url)
    elif result.handled and pause.failures and backoff.clear():
        record_db_recovered(settings.gatherer)
        log_event(
            log,
            "ingest.database_recovered",
            logging.WARNING,
            gatherer=settings.gatherer,
            stream=stream,
            failures=pause.failures,
        )
    run = IngestRun(result, rows)
    if result.error is not None or result.dead_lettered or result.deleted:
        log_event(log, "ingest.drain", logging.WARNING, **run.as_dict())
    return run
