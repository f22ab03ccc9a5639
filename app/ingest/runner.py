"""What a Celery drain task runs: `run_drain`, one drain of one stream of this gatherer.

Each worker process keeps one PostgreSQL connection and one Redis client per URL, opened on
first use and reused by every task the process runs (prefork children open their own: the
cache is keyed by pid, so nothing inherited across `fork` is ever used). A connection the
server dropped is replaced on the next run; a run that failed on the database discards it.
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
from app.db.engine import DatabaseUnavailable, connect
from app.ingest.control_records import write_control_entries
from app.ingest.handler import write_dead_letter_entries, write_entries
from app.logs import log_event
from app.metrics import record_drain, record_drain_failure, record_rows_by_table, time_write
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

# Keys of a handler's counts that are not tables (kd_ingest_rows_total is rows per table).
NOT_TABLES = frozenset({"registry_status_changes"})

_db: dict[str, tuple[int, psycopg2.extensions.connection]] = {}
_redis: dict[str, tuple[int, redis.Redis]] = {}


def database(url: str) -> psycopg2.extensions.connection:
    """This process's connection to `url` (opened on first use, replaced once closed)."""
    cached = _db.get(url)
    if cached is not None and cached[0] == os.getpid() and not cached[1].closed:
        return cached[1]
    conn = connect(url)
    _db[url] = (os.getpid(), conn)
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
    """Close and forget this process's connection to `url` (after it failed)."""
    cached = _db.pop(url, None)
    if cached is not None and cached[0] == os.getpid():
        with contextlib.suppress(psycopg2.Error):
            cached[1].close()


def close_all() -> None:
    """Close every connection and client this process opened (worker shutdown, tests)."""
    for url in list(_db):
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
    conn = database(settings.database_url)
    rows: dict[str, int] = {}

    def handle(write: Any, entries: list[Entry]) -> None:
        with time_write():
            counts: dict[str, int] = write(conn, entries)
        # Committed: count the new rows per table (not the registry's status changes).
        record_rows_by_table({t: n for t, n in counts.items() if t not in NOT_TABLES})
        count_stored_frames(client, names, counts.get("raw_frames", 0))
        for table, count in counts.items():
            rows[table] = rows.get(table, 0) + count

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
            retryable=RETRYABLE,
            **options,
        )
    except BaseException:
        record_drain_failure(stream)  # Redis unreachable, time limit: no result to record
        raise
    record_drain(result)
    if result.error is not None and conn.closed:
        discard_database(settings.database_url)
    run = IngestRun(result, rows)
    if result.error is not None or result.dead_lettered or result.deleted:
        log_event(log, "ingest.drain", logging.WARNING, **run.as_dict())
    return run
