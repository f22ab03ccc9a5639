"""Jobs-queue task: the trade backfill of capture holes (docs/backfill.md). It calls one
`app.ingest` job, which records its own metrics; it never retries by itself (the hole keeps
its attempts and the next beat run picks it up again)."""

from __future__ import annotations

from typing import Any

from app.ingest import backfill_trade_holes
from workers.celery_app import JOB_HARD_LIMIT_S, JOB_SOFT_LIMIT_S, app, settings


@app.task(
    name="kd.backfill.trades",
    acks_late=True,
    soft_time_limit=JOB_SOFT_LIMIT_S,
    time_limit=JOB_HARD_LIMIT_S,
)
def backfill_trades() -> dict[str, Any]:
    """Fill closed pending trade holes from REST; what the run did (done, retry, failed)."""
    return backfill_trade_holes(settings)
