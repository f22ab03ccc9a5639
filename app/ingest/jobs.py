"""The jobs-queue work of a gatherer: stream trimming, the consumer janitor, partitions ahead,
and the market registry's reconcile and subscription refresh (DESIGN §6)."""

from __future__ import annotations

from typing import Any

from app.config import Settings
from app.db.partitions import ensure_partitions
from app.ingest.handler import rollback
from app.ingest.runner import database, discard_database, redis_client, stream_names
from app.kalshi.rest import KalshiRest
from app.registry import ChangeFeed, reconcile
from app.streams import TrimResult, reap_idle_consumers, trim_stream


def trim_streams(settings: Settings) -> list[TrimResult]:
    """Safely trim every stream of this gatherer (below what every group still needs)."""
    client = redis_client(settings.redis_url, settings.streams.redis_timeout_s)
    return [
        trim_stream(
            client,
            stream,
            retain_ms=settings.streams.trim_retain_ms,
            approximate=settings.streams.trim_approximate,
        )
        for stream in stream_names(settings).all_streams
    ]


def reap_consumers(settings: Settings) -> dict[str, list[str]]:
    """Delete idle consumers with nothing pending from every stream; returns what went."""
    client = redis_client(settings.redis_url, settings.streams.redis_timeout_s)
    reaped: dict[str, list[str]] = {}
    for stream in stream_names(settings).all_streams:
        gone = reap_idle_consumers(
            client, stream, settings.streams.group, settings.streams.janitor_idle_ms
        )
        if gone:
            reaped[stream] = gone
    return reaped


def maintain_partitions(settings: Settings, *, lock_timeout_ms: int = 5_000) -> list[str]:
    """Create the daily partitions ahead (and rescue stray DEFAULT rows); commit.

    A short `lock_timeout` keeps the ACCESS EXCLUSIVE lock request from queueing ingest writes
    behind it for long; a timeout raises and the next hourly run tries again.
    """
    conn = database(settings.database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SET LOCAL lock_timeout = %s", (f"{int(lock_timeout_ms)}ms",))
        created = ensure_partitions(conn)
        conn.commit()
    except BaseException:
        _abandon(settings, conn)
        raise
    return created


def _feed(settings: Settings) -> ChangeFeed:
    client = redis_client(settings.redis_url, settings.streams.redis_timeout_s)
    return ChangeFeed(client, settings.gatherer, settings.registry)


def reconcile_registry(settings: Settings, *, full: bool = False) -> dict[str, Any]:
    """Re-read markets changed at the exchange since the newest one held, publish membership
    changes; commits page by page (`app.registry.reconcile`). Unsigned when no Kalshi key is
    configured (the simulator). Returns the report's summary."""
    conn = database(settings.database_url)
    signer: Any = "settings" if settings.kalshi.has_credentials else None
    try:
        with KalshiRest.from_settings(settings.kalshi, signer=signer) as client:
            report = reconcile(conn, client, settings.registry, feed=_feed(settings), full=full)
    except BaseException:
        _abandon(settings, conn)
        raise
    return report.summary()


def refresh_subscriptions(settings: Settings) -> dict[str, Any]:
    """Recompute the subscription set from the registry and publish the difference."""
    conn = database(settings.database_url)
    try:
        published = _feed(settings).refresh(conn)
        conn.commit()
    except BaseException:
        _abandon(settings, conn)
        raise
    return {"version": published.version, "added": published.added, "removed": published.removed}


def _abandon(settings: Settings, conn: Any) -> None:
    rollback(conn)
    if conn.closed:
        discard_database(settings.database_url)
