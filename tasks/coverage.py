"""Jobs-queue task: the refresh of this gatherer's `coverage` table (docs/coverage.md). It calls
one `app.ingest` job, which commits and records its own metrics (`kd_coverage_market_hours`
among them); it never retries by itself: the next beat run recomputes the same window."""

from __future__ import annotations

from typing import Any

from app.ingest import refresh_recent_coverage
from workers.celery_app import JOB_HARD_LIMIT_S, JOB_SOFT_LIMIT_S, app, settings


@app.task(
    name="kd.coverage.refresh",
    acks_late=True,
    soft_time_limit=JOB_SOFT_LIMIT_S,
    time_limit=JOB_HARD_LIMIT_S,
)
def refresh_coverage(lookback_hours: int | None = None) -> dict[str, Any]:
    """Refresh the current hour and `coverage.lookback_hours` before it (or `lookback_hours`
    for a one-off catch-up); the window, rows stored and market-hours by status."""
    return refresh_recent_coverage(settings, lookback_hours=lookback_hours)
