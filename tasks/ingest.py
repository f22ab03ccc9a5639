"""Ingest tasks: a drain carries only a stream name (DESIGN §3); see app.ingest.run_drain."""

from __future__ import annotations

from typing import Any

from app.ingest import run_drain
from workers.celery_app import DRAIN_HARD_LIMIT_S, DRAIN_SOFT_LIMIT_S, app, settings


@app.task(
    name="kd.ingest.drain",
    acks_late=True,
    soft_time_limit=DRAIN_SOFT_LIMIT_S,
    time_limit=DRAIN_HARD_LIMIT_S,
)
def drain(stream: str) -> dict[str, Any]:
    """Drain one stream of this gatherer into the database; report what the run did."""
    return run_drain(settings, stream).as_dict()
