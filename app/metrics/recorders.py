"""Thin, typed functions that record kalshi-data metrics (definitions in `definitions`).

Callable from the listener's event loop (no I/O, no locks beyond prometheus_client's own) and
from Celery prefork children (values go to PROMETHEUS_MULTIPROC_DIR when it is set). Free-form
inputs (channel, role, dead-letter reason) are clamped onto the bounded sets of `definitions`,
so a new Kalshi message type can never grow the series count. Never raises on unknown values.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from prometheus_client import Counter
from prometheus_client.context_managers import Timer

from app.metrics import definitions as d
from app.streams import DrainResult, PublisherStats


def channel_label(channel: str | None) -> str:
    """`channel` when it is a known channel, `unparseable` for None, else `other`."""
    if channel is None:
        return "unparseable"
    return channel if channel in d.CHANNELS else "other"


def role_label(role: str) -> str:
    return role if role in d.ROLES else "other"


def classify_dead_letter(reason: str) -> str:
    """Map a free-text dead-letter reason (app/streams/drain.py, app/ingest) to a class."""
    text = reason.lower()
    if text.startswith("corrupt envelope"):
        return "corrupt_envelope"
    if text.startswith("delivered") or "deliveries" in text.split("(", 1)[0]:
        return "max_deliveries"
    if "unparseable" in text or "not json" in text or "parse" in text:
        return "unparseable_frame"
    if "invalid" in text or "missing" in text:
        return "invalid_row"
    return "other"


# -- listener ------------------------------------------------------------------------------------
def record_frame(gatherer: str, channel: str | None, size_bytes: int = 0) -> None:
    """One WebSocket frame received; `channel` is its `type` (None if it did not parse)."""
    label = channel_label(channel)
    d.LISTENER_FRAMES.labels(gatherer, label).inc()
    if size_bytes:
        d.LISTENER_FRAME_BYTES.labels(gatherer, label).inc(size_bytes)


def record_reconnect(gatherer: str, role: str) -> None:
    d.LISTENER_RECONNECTS.labels(gatherer, role_label(role)).inc()


def record_gap_detected(gatherer: str, role: str) -> None:
    d.LISTENER_GAPS_DETECTED.labels(gatherer, role_label(role)).inc()


def record_gap_recovered(gatherer: str, role: str) -> None:
    d.LISTENER_GAPS_RECOVERED.labels(gatherer, role_label(role)).inc()


def set_connection_state(
    gatherer: str,
    role: str,
    connection: str,
    *,
    subscribed_markets: int,
    idle_s: float,
    connected: bool,
) -> None:
    """Gauges of one connection; `connection` is the shard name (stable), never the conn_id."""
    labels = (gatherer, role_label(role), connection)
    d.LISTENER_SUBSCRIBED_MARKETS.labels(*labels).set(subscribed_markets)
    d.LISTENER_IDLE_SECONDS.labels(*labels).set(idle_s)
    d.LISTENER_CONNECTED.labels(*labels).set(1 if connected else 0)


def record_holes_opened(gatherer: str, count: int) -> None:
    """`count` more capture holes opened (the listener adds its stats' increments)."""
    counter = d.LISTENER_HOLES_OPENED.labels(gatherer)  # exported at 0 before the first hole
    if count > 0:
        counter.inc(count)


def set_open_holes(gatherer: str, count: int) -> None:
    """Capture holes open now, over all of the listener's connections."""
    d.LISTENER_OPEN_HOLES.labels(gatherer).set(count)


class PublisherMetrics:
    """Mirrors `StreamPublisher.stats` (monotonic totals) into counters by their increments.

    Call `update(publisher.stats)` periodically (e.g. every second from the listener loop);
    counters only ever move forward, so a publisher restart (totals back to 0) is absorbed.
    """

    def __init__(self, gatherer: str) -> None:
        self.gatherer = gatherer
        self._last: dict[str, int] = {}

    def update(self, stats: PublisherStats) -> None:
        for field, counter in (
            ("batches_published", d.PUBLISHER_BATCHES),
            ("frames_published", d.PUBLISHER_FRAMES),
            ("redis_errors", d.PUBLISHER_REDIS_ERRORS),
            ("batches_spilled", d.JOURNAL_SPILLED_BATCHES),
            ("frames_spilled", d.JOURNAL_SPILLED_FRAMES),
            ("batches_replayed", d.JOURNAL_REPLAYED_BATCHES),
            ("frames_replayed", d.JOURNAL_REPLAYED_FRAMES),
        ):
            self._advance(field, int(getattr(stats, field)), counter)
        d.JOURNAL_BYTES.labels(self.gatherer).set(stats.journal_bytes)
        d.PUBLISHER_BUFFERED_BYTES.labels(self.gatherer).set(stats.buffered_bytes)
        d.PUBLISHER_SPILLING.labels(self.gatherer).set(1 if stats.spilling else 0)

    def _advance(self, field: str, total: int, counter: Counter) -> None:
        last = self._last.get(field, 0)
        step = total - last if total >= last else total  # a new publisher starts from 0
        if step > 0:
            counter.labels(self.gatherer).inc(step)
        self._last[field] = total


# -- ingest --------------------------------------------------------------------------------------
def record_rows(table: str, rows: int) -> None:
    """Rows committed into `table` (a schema table name: a bounded set)."""
    if rows > 0:
        d.INGEST_ROWS.labels(table).inc(rows)


def record_rows_by_table(counts: dict[str, int]) -> None:
    """`commit_rows`' return value: rows per table of one transaction."""
    for table, rows in counts.items():
        record_rows(table, rows)


def observe_write_seconds(seconds: float) -> None:
    d.INGEST_WRITE_SECONDS.observe(seconds)


def time_write() -> Timer:
    """`with time_write(): ...` around one handler transaction (write + commit)."""
    return d.INGEST_WRITE_SECONDS.time()


def record_dead_letters(reason: str, count: int = 1) -> None:
    """`count` rows written to the dead_letters table; `reason` is free text or a class."""
    reason_class = reason if reason in d.DEAD_LETTER_REASONS else classify_dead_letter(reason)
    d.DEAD_LETTERS.labels(reason_class).inc(count)


def record_drain(result: DrainResult) -> None:
    """One finished drain run (`app.streams.drain`'s result)."""
    stream = result.stream
    d.DRAINS.labels(stream).inc()
    if result.error is not None:
        d.DRAINS_FAILED.labels(stream).inc()
    if result.handled:
        d.INGEST_ENTRIES.labels(stream).inc(result.handled)
    if result.frames:
        d.INGEST_FRAMES.labels(stream).inc(result.frames)
    if result.reclaimed:
        d.INGEST_RECLAIMED.labels(stream).inc(result.reclaimed)
    if result.deleted:
        d.INGEST_TRIMMED_AWAY.labels(stream).inc(result.deleted)
    if result.dead_lettered:
        d.INGEST_DEAD_LETTERED.labels(stream).inc(result.dead_lettered)


def record_drain_failure(stream: str) -> None:
    """A drain run that raised before returning a result (Redis unreachable, time limit)."""
    d.DRAINS.labels(stream).inc()
    d.DRAINS_FAILED.labels(stream).inc()


def touch_db_errors(gatherer: str) -> None:
    """Create every kind's series at 0, so a first database fault is a visible increase."""
    for kind in d.DB_FAULT_KINDS:
        d.INGEST_DB_ERRORS.labels(gatherer, kind)


def record_db_error(gatherer: str, kind: str, retry_in_s: float) -> None:
    """One ingest write stopped by a database fault of `kind`; drains pause `retry_in_s`."""
    touch_db_errors(gatherer)
    d.INGEST_DB_ERRORS.labels(gatherer, kind if kind in d.DB_FAULT_KINDS else "other").inc()
    d.INGEST_DB_RETRY_SECONDS.labels(gatherer).set(retry_in_s)


def record_db_recovered(gatherer: str) -> None:
    """The gatherer's database took a write again after a fault."""
    d.INGEST_DB_RETRY_SECONDS.labels(gatherer).set(0)


# -- beat-driven jobs ------------------------------------------------------------------------------
def job_label(job: str) -> str:
    return job if job in d.JOBS else "other"


@contextmanager
def record_job(job: str, interval_s: float | None = None) -> Iterator[None]:
    """`with record_job("trim_streams", 60): ...` around one run of a beat-driven job.

    Counts the run as `ok` or `error` (the exception propagates), observes its duration, and
    on success sets the last-success time. Both outcome series are touched first so that a
    job's first failure is an increase Prometheus can see, not a series born at 1.
    """
    label = job_label(job)
    for outcome in d.JOB_OUTCOMES:
        d.JOB_RUNS.labels(label, outcome)
    if interval_s is not None:
        d.JOB_INTERVAL_SECONDS.labels(label).set(interval_s)
    started = time.perf_counter()
    try:
        yield
    except BaseException:
        d.JOB_DURATION_SECONDS.labels(label).observe(time.perf_counter() - started)
        d.JOB_RUNS.labels(label, "error").inc()
        raise
    d.JOB_DURATION_SECONDS.labels(label).observe(time.perf_counter() - started)
    d.JOB_RUNS.labels(label, "ok").inc()
    d.JOB_LAST_SUCCESS.labels(label).set(time.time())


def record_partitions_created(table: str, count: int) -> None:
    """`count` partitions of `table` (a schema table name: a bounded set) committed."""
    if count > 0:
        d.PARTITIONS_CREATED.labels(table).inc(count)


def record_partitions_dropped(table: str, count: int) -> None:
    if count > 0:
        d.PARTITIONS_DROPPED.labels(table).inc(count)


# -- trade backfill --------------------------------------------------------------------------------
def record_backfill_hole(gatherer: str, outcome: str, trades: int = 0) -> None:
    """One committed backfill attempt on a hole (`done`, `retry`, `failed`) and the trades it
    newly inserted. Every outcome series is touched so a first failure is a visible increase."""
    for known in d.BACKFILL_OUTCOMES:
        d.BACKFILL_HOLES.labels(gatherer, known)
    d.BACKFILL_HOLES.labels(gatherer, outcome if outcome in d.BACKFILL_OUTCOMES else "retry").inc()
    counter = d.BACKFILL_TRADES.labels(gatherer)
    if trades > 0:
        counter.inc(trades)


def set_backfill_pending(gatherer: str, holes: int) -> None:
    """Holes still waiting for a backfill after a run (the backlog an alert can watch)."""
    d.BACKFILL_PENDING_HOLES.labels(gatherer).set(holes)


# -- coverage --------------------------------------------------------------------------------------
def set_coverage_market_hours(gatherer: str, counts: Mapping[str, int]) -> None:
    """Market-hours by status of the window a coverage refresh just wrote. Every status is set
    (0 when absent), so a `missing` that went away reads 0 rather than its last value."""
    for status in d.COVERAGE_STATUSES:
        d.COVERAGE_MARKET_HOURS.labels(gatherer, status).set(counts.get(status, 0))


def record_dedup_batch(gatherer: str, table: str, read: int, inserted: int) -> None:
    """One merged batch: rows read from the gatherer and rows new in production."""
    d.DEDUP_ROWS_READ.labels(gatherer, table).inc(read)
    d.DEDUP_ROWS_INSERTED.labels(table).inc(inserted)


def record_dedup_gatherer_error(gatherer: str) -> None:
    d.DEDUP_GATHERER_ERRORS.labels(gatherer).inc()
