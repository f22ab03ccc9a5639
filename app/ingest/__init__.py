"""The ingest path: Redis Stream entries -> normalized rows -> the gatherer database.

`write_entries` is the batch handler (pure apart from the connection it is given);
`run_drain` is one Celery drain task run; `trim_streams`, `reap_consumers`,
`maintain_partitions`, `drop_expired`, `reconcile_registry`, `refresh_subscriptions`,
`backfill_trade_holes`, `refresh_recent_coverage` and `dedup_into_production` (the
deduplicator host's) are the jobs, `job_intervals` their beat
periods.
docs/ingest.md has the flow, the settings and the idempotency argument;
`workers/celery_app.py` and `tasks/` wire these into Celery.
"""

from app.ingest.handler import (
    STAGE_DRAIN,
    STAGE_ENVELOPE,
    commit_rows,
    dead_letter_rows,
    entry_rows,
    write_dead_letter_entries,
    write_entries,
)
from app.ingest.jobs import (
    backfill_trade_holes,
    dedup_into_production,
    drop_expired,
    job_intervals,
    maintain_partitions,
    reap_consumers,
    reconcile_registry,
    refresh_recent_coverage,
    refresh_subscriptions,
    trim_streams,
)
from app.ingest.runner import (
    RETRYABLE,
    IngestRun,
    close_all,
    database,
    format_version,
    redis_client,
    run_drain,
    stream_names,
)

__all__ = [
    "RETRYABLE",
    "STAGE_DRAIN",
    "STAGE_ENVELOPE",
    "IngestRun",
    "backfill_trade_holes",
    "close_all",
    "commit_rows",
    "database",
    "dead_letter_rows",
    "dedup_into_production",
    "drop_expired",
    "entry_rows",
    "format_version",
    "job_intervals",
    "maintain_partitions",
    "reap_consumers",
    "reconcile_registry",
    "redis_client",
    "refresh_recent_coverage",
    "refresh_subscriptions",
    "run_drain",
    "stream_names",
    "trim_streams",
    "write_dead_letter_entries",
    "write_entries",
]
