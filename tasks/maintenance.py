"""Jobs-queue tasks: stream trimming, consumer janitor, partitions ahead, retention, market
registry. Each calls one `app.ingest` job, which records its own metrics."""

from __future__ import annotations

from typing import Any

from app.ingest import (
    drop_expired,
    maintain_partitions,
    reap_consumers,
    reconcile_registry,
    refresh_subscriptions,
    trim_streams,
)
from workers.celery_app import JOB_HARD_LIMIT_S, JOB_SOFT_LIMIT_S, app, settings

LIMITS: dict[str, Any] = {
    "acks_late": True,
    "soft_time_limit": JOB_SOFT_LIMIT_S,
    "time_limit": JOB_HARD_LIMIT_S,
}


@app.task(name="kd.maintenance.trim_streams", **LIMITS)
def trim_all_streams() -> dict[str, int]:
    """Trim every stream below what its consumer group still needs; entries removed each."""
    return {result.stream: result.removed for result in trim_streams(settings)}


@app.task(name="kd.maintenance.reap_consumers", **LIMITS)
def reap_idle_consumers() -> dict[str, list[str]]:
    """Delete consumers idle past `janitor_idle_ms` that hold no pending entry."""
    return reap_consumers(settings)


@app.task(name="kd.maintenance.ensure_partitions", **LIMITS)
def ensure_partitions() -> list[str]:
    """Create the coming days' partitions; the names created."""
    return maintain_partitions(settings)


@app.task(name="kd.maintenance.drop_expired_partitions", **LIMITS)
def drop_expired_partitions() -> dict[str, list[str]]:
    """Drop partitions past each table's retention; the names dropped, by table."""
    return drop_expired(settings)


@app.task(name="kd.registry.reconcile", **LIMITS)
def reconcile() -> dict[str, Any]:
    """Re-read markets changed at the exchange; publish subscription changes."""
    return reconcile_registry(settings)


@app.task(name="kd.registry.refresh_subscriptions", **LIMITS)
def refresh() -> dict[str, Any]:
    """Recompute the listeners' subscription set from the registry; publish the difference."""
    return refresh_subscriptions(settings)
