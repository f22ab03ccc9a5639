"""Every kalshi-data Prometheus metric, defined once (DESIGN §1.4; MON-3, reworked).

Names are `kd_<component>_<noun>_<unit>` in base units (seconds, bytes, entries). Labels are
bounded sets only, never a market ticker, conn_id (one per WebSocket session) or stream entry
id; docs/metrics.md lists each metric's labels and worst-case series count. The helpers in
`app.metrics.recorders` clamp free-form inputs (channel, role, reason) onto these sets.

Gauges declare a `multiprocess_mode` because Celery prefork children write them through
`PROMETHEUS_MULTIPROC_DIR` (design-facts §6); in a single process the mode is ignored.
This module only defines metrics; it never starts a server or touches Redis.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# -- bounded label values ----------------------------------------------------------------------
CHANNELS: tuple[str, ...] = (
    "orderbook_snapshot",
    "orderbook_delta",
    "trade",
    "ticker",
    "ticker_v2",
    "market_lifecycle_v2",
    "multivariate_market_lifecycle",
    "event_lifecycle",
    "control",
    "unparseable",
    "other",
)
ROLES: tuple[str, ...] = ("orderbook", "trade", "ticker", "lifecycle", "other")
DEAD_LETTER_REASONS: tuple[str, ...] = (
    "corrupt_envelope",
    "max_deliveries",
    "unparseable_frame",
    "invalid_row",
    "rejected_row",
    "other",
)
# The beat-driven jobs (app.ingest.jobs); `other` absorbs a name added without updating this.
JOBS: tuple[str, ...] = (
    "trim_streams",
    "reap_consumers",
    "ensure_partitions",
    "drop_expired_partitions",
    "reconcile_registry",
    "refresh_subscriptions",
    "backfill_trades",
    "refresh_coverage",
    "dedup",
    "other",
)
JOB_OUTCOMES: tuple[str, ...] = ("ok", "error")
# What one backfill attempt did to its capture hole (app.backfill): filled and marked done, a
# failed fetch left pending for the next run, or a failed fetch that used up the attempts.
BACKFILL_OUTCOMES: tuple[str, ...] = ("done", "retry", "failed")
# A market-hour's coverage status (app.coverage.STATUSES; docs/coverage.md).
COVERAGE_STATUSES: tuple[str, ...] = ("complete", "degraded", "missing")
JOB_DURATION_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
WRITE_LATENCY_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# -- listener (asyncio, one process per gatherer host) -----------------------------------------
LISTENER_FRAMES = Counter(
    "kd_listener_frames_total",
    "WebSocket frames received, by channel (message type)",
    ["gatherer", "channel"],
)
LISTENER_FRAME_BYTES = Counter(
    "kd_listener_frame_bytes_total",
    "Bytes of WebSocket frames received, by channel",
    ["gatherer", "channel"],
)
LISTENER_RECONNECTS = Counter(
    "kd_listener_reconnects_total",
    "WebSocket sessions re-established after a drop or a staleness timeout",
    ["gatherer", "role"],
)
LISTENER_GAPS_DETECTED = Counter(
    "kd_listener_sequence_gaps_total",
    "Sequence gaps detected on a subscription (sid)",
    ["gatherer", "role"],
)
LISTENER_GAPS_RECOVERED = Counter(
    "kd_listener_sequence_gaps_recovered_total",
    "Sequence gaps repaired by a fresh snapshot or resubscribe",
    ["gatherer", "role"],
)
LISTENER_SUBSCRIBED_MARKETS = Gauge(
    "kd_listener_subscribed_markets",
    "Markets subscribed on one connection (shard)",
    ["gatherer", "role", "connection"],
    multiprocess_mode="mostrecent",
)
LISTENER_IDLE_SECONDS = Gauge(
    "kd_listener_idle_seconds",
    "Seconds since the connection last received a frame",
    ["gatherer", "role", "connection"],
    multiprocess_mode="mostrecent",
)
LISTENER_CONNECTED = Gauge(
    "kd_listener_connected",
    "1 while the connection has a live, subscribed WebSocket session",
    ["gatherer", "role", "connection"],
    multiprocess_mode="mostrecent",
)
# Capture holes (docs/holes.md): stretches the listener knows it may have missed.
LISTENER_HOLES_OPENED = Counter(
    "kd_listener_holes_opened_total",
    "Capture holes the listener opened (not subscribed yet, disconnect, sequence gap, ...)",
    ["gatherer"],
)
LISTENER_OPEN_HOLES = Gauge(
    "kd_listener_open_holes",
    "Capture holes open right now: a channel or some markets' books not captured",
    ["gatherer"],
    multiprocess_mode="mostrecent",
)
# Markets the registry lists and the exchange refuses (code 16), retried with backoff.
LISTENER_MARKET_REFUSALS = Counter(
    "kd_listener_market_refusals_total",
    "Times the exchange refused a market with code 16 (retries included)",
    ["gatherer"],
)
LISTENER_REFUSED_MARKETS = Gauge(
    "kd_listener_refused_markets",
    "Markets refused by the exchange (code 16) and waiting for a retry: not captured",
    ["gatherer"],
    multiprocess_mode="mostrecent",
)

# -- publisher and journal (listener side of the streams, DESIGN §3) ----------------------------
PUBLISHER_BATCHES = Counter(
    "kd_publisher_batches_published_total",
    "Stream batches that landed in Redis (directly or by journal replay)",
    ["gatherer"],
)
PUBLISHER_FRAMES = Counter(
    "kd_publisher_frames_published_total",
    "Frames that landed in Redis inside published batches",
    ["gatherer"],
)
PUBLISHER_REDIS_ERRORS = Counter(
    "kd_publisher_redis_errors_total",
    "Redis calls of the publisher that failed",
    ["gatherer"],
)
JOURNAL_SPILLED_BATCHES = Counter(
    "kd_journal_spilled_batches_total",
    "Batches written to the local journal instead of Redis (backpressure)",
    ["gatherer"],
)
JOURNAL_SPILLED_FRAMES = Counter(
    "kd_journal_spilled_frames_total",
    "Frames written to the local journal instead of Redis",
    ["gatherer"],
)
JOURNAL_REPLAYED_BATCHES = Counter(
    "kd_journal_replayed_batches_total",
    "Journal batches replayed into Redis after it recovered",
    ["gatherer"],
)
JOURNAL_REPLAYED_FRAMES = Counter(
    "kd_journal_replayed_frames_total",
    "Journal frames replayed into Redis after it recovered",
    ["gatherer"],
)
JOURNAL_BYTES = Gauge(
    "kd_journal_bytes",
    "Bytes on disk in the spill journal, not yet replayed",
    ["gatherer"],
    multiprocess_mode="mostrecent",
)
PUBLISHER_BUFFERED_BYTES = Gauge(
    "kd_publisher_buffered_bytes",
    "Bytes of sealed or open batches held in memory, not yet in Redis",
    ["gatherer"],
    multiprocess_mode="mostrecent",
)
PUBLISHER_SPILLING = Gauge(
    "kd_publisher_spilling",
    "1 while the publisher sends batches to the journal instead of Redis",
    ["gatherer"],
    multiprocess_mode="mostrecent",
)

# -- Redis streams (refreshed from stream_stats by the exporter loop or a beat task) -----------
STREAM_LENGTH = Gauge(
    "kd_stream_length_entries",
    "XLEN of the stream (entries are batches of frames)",
    ["stream"],
    multiprocess_mode="mostrecent",
)
STREAM_LAG = Gauge(
    "kd_stream_lag_entries",
    "Entries not yet delivered to the consumer group (XINFO GROUPS lag)",
    ["stream", "group"],
    multiprocess_mode="mostrecent",
)
STREAM_PENDING = Gauge(
    "kd_stream_pending_entries",
    "Entries delivered to the group but not acknowledged (pending entries list)",
    ["stream", "group"],
    multiprocess_mode="mostrecent",
)
STREAM_OLDEST_PENDING_AGE = Gauge(
    "kd_stream_oldest_pending_age_seconds",
    "Age of the oldest pending entry of the group (0 when none is pending)",
    ["stream", "group"],
    multiprocess_mode="mostrecent",
)
STREAM_CONSUMERS = Gauge(
    "kd_stream_consumers",
    "Consumers registered in the group",
    ["stream", "group"],
    multiprocess_mode="mostrecent",
)
STREAM_STATS_ERRORS = Counter(
    "kd_stream_stats_errors_total",
    "Failed refreshes of the stream gauges (Redis unreachable)",
    ["stream"],
)
STREAM_STATS_REFRESHED = Gauge(
    "kd_stream_stats_refreshed_timestamp_seconds",
    "Unix time of the last successful refresh of the stream gauges",
    multiprocess_mode="max",
)

# -- ingest (Celery prefork children) ---------------------------------------------------------
INGEST_ROWS = Counter(
    "kd_ingest_rows_total",
    "Rows written to the gatherer database, by table",
    ["table"],
)
INGEST_WRITE_SECONDS = Histogram(
    "kd_ingest_write_duration_seconds",
    "Duration of one handler transaction (normalize, write, commit)",
    buckets=WRITE_LATENCY_BUCKETS_S,
)
INGEST_ENTRIES = Counter(
    "kd_ingest_entries_total",
    "Stream entries (batches) written and acknowledged",
    ["stream"],
)
INGEST_FRAMES = Counter(
    "kd_ingest_frames_total",
    "Frames inside the entries written and acknowledged",
    ["stream"],
)
INGEST_RECLAIMED = Counter(
    "kd_ingest_entries_reclaimed_total",
    "Pending entries taken over from an idle consumer (XAUTOCLAIM)",
    ["stream"],
)
INGEST_TRIMMED_AWAY = Counter(
    "kd_ingest_entries_lost_total",
    "Pending ids whose entries had been trimmed away before being written (data lost)",
    ["stream"],
)
INGEST_DEAD_LETTERED = Counter(
    "kd_ingest_entries_dead_lettered_total",
    "Stream entries moved to the dead-letter stream (corrupt envelope or too many deliveries)",
    ["stream"],
)
DRAINS = Counter(
    "kd_ingest_drains_total",
    "Drain runs started",
    ["stream"],
)
DRAINS_FAILED = Counter(
    "kd_ingest_drains_failed_total",
    "Drain runs stopped by a handler or Redis error (entries stay pending)",
    ["stream"],
)
DEAD_LETTERS = Counter(
    "kd_dead_letters_total",
    "Rows written to the dead_letters table, by reason class",
    ["reason_class"],
)
# What kind of database fault stopped an ingest write (app.ingest.faults.FAULT_KINDS).
DB_FAULT_KINDS: tuple[str, ...] = (
    "connection",
    "read_only",
    "permission",
    "missing_object",
    "timeout",
    "resources",
    "other",
)
INGEST_DB_ERRORS = Counter(
    "kd_ingest_db_errors_total",
    "Ingest writes stopped by a database fault (entries kept pending and retried with backoff, "
    "never dead-lettered), by kind",
    ["gatherer", "kind"],
)
INGEST_DB_RETRY_SECONDS = Gauge(
    "kd_ingest_db_retry_delay_seconds",
    "Pause the ingest drains of a gatherer observe after its last database fault (0 = healthy)",
    ["gatherer"],
    multiprocess_mode="mostrecent",
)

# -- beat-driven jobs (jobs-queue prefork children) ---------------------------------------------
# The label is `job_name`, not `job`: Prometheus sets `job` to the scrape job on every target.
JOB_RUNS = Counter(
    "kd_job_runs_total",
    "Runs of a beat-driven job, by outcome (ok, error)",
    ["job_name", "outcome"],
)
JOB_DURATION_SECONDS = Histogram(
    "kd_job_duration_seconds",
    "Duration of one job run, failed runs included",
    ["job_name"],
    buckets=JOB_DURATION_BUCKETS_S,
)
JOB_LAST_SUCCESS = Gauge(
    "kd_job_last_success_timestamp_seconds",
    "Unix time at which the job last finished without error",
    ["job_name"],
    multiprocess_mode="max",
)
JOB_INTERVAL_SECONDS = Gauge(
    "kd_job_interval_seconds",
    "Configured beat period of the job (alerts compare the last success against it)",
    ["job_name"],
    multiprocess_mode="mostrecent",
)
PARTITIONS_CREATED = Counter(
    "kd_partitions_created_total",
    "Daily partitions created by the maintenance job (ahead, behind or rescuing DEFAULT rows)",
    ["table"],
)
PARTITIONS_DROPPED = Counter(
    "kd_partitions_dropped_total",
    "Partitions (or TimescaleDB chunks) dropped because they passed the table's retention",
    ["table"],
)

# -- trade backfill of capture holes (jobs-queue prefork children, app.backfill) ---------------
BACKFILL_TRADES = Counter(
    "kd_backfill_trades_total",
    "Trades the REST backfill inserted (not already stored from the WebSocket or an earlier run)",
    ["gatherer"],
)
BACKFILL_HOLES = Counter(
    "kd_backfill_holes_total",
    "Backfill attempts on capture holes, by outcome (done, retry, failed)",
    ["gatherer", "outcome"],
)
BACKFILL_PENDING_HOLES = Gauge(
    "kd_backfill_pending_holes",
    "Capture holes still waiting for a trade backfill (open ones included), after the last run",
    ["gatherer"],
    multiprocess_mode="mostrecent",
)

# -- the deduplicator (dedup-queue worker, app.dedup) ------------------------------------------
DEDUP_ROWS_READ = Counter(
    "kd_dedup_rows_read_total",
    "Rows the deduplicator read from a gatherer's database (every gatherer's copy counts)",
    ["gatherer", "table"],
)
DEDUP_ROWS_INSERTED = Counter(
    "kd_dedup_rows_inserted_total",
    "Rows new in production (read minus inserted over read is the duplicate ratio, DED-9)",
    ["table"],
)
DEDUP_GATHERER_ERRORS = Counter(
    "kd_dedup_gatherer_errors_total",
    "Runs that skipped a gatherer: unreachable, or its schema not migrated (DED-7)",
    ["gatherer"],
)

# -- coverage of capture (jobs-queue prefork children, app.coverage) ---------------------------
COVERAGE_MARKET_HOURS = Gauge(
    "kd_coverage_market_hours",
    "Market-hours of the last coverage refresh's window stored in the coverage table, by status "
    "(complete counts only market-hours with activity: a quiet complete one has no row)",
    ["gatherer", "status"],
    multiprocess_mode="mostrecent",
)
