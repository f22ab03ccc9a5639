"""Dedup-queue task: one deduplicator run, gatherer databases into production (docs/dedup.md).

It calls one `app.ingest` job, which records its run (`kd_job_runs_total{job_name="dedup"}`)
and the rows merged; it never retries by itself: the next beat run goes on from the cursors,
which only move with the rows they cover.
"""

from __future__ import annotations

from typing import Any

from app.ingest import dedup_into_production
from workers.celery_app import JOB_HARD_LIMIT_S, JOB_SOFT_LIMIT_S, app, settings


@app.task(
    name="kd.dedup.run",
    acks_late=True,
    soft_time_limit=JOB_SOFT_LIMIT_S,
    time_limit=JOB_HARD_LIMIT_S,
)
def run_dedup() -> dict[str, Any]:
    """Merge what every gatherer stored since its cursors; the run's report."""
    return dedup_into_production(settings)
