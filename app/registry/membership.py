"""Which markets the listener should hold subscriptions for (GEN-7: the registry decides).

A market is subscribed while it can still trade or is about to: status `initialized`,
`active` or `inactive` (paused books still exist), and its close time has not passed by more
than `close_grace_s`. Kalshi sends no lifecycle event when a market closes, so the close time
is what drops it within seconds; REST later records the `closed` status. One predicate, in
Python (`is_subscribed`) and in SQL (`desired_tickers`), so both sides agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from app.config import RegistrySettings
from app.db.engine import dbapi_connection


def close_cutoff(now: datetime, settings: RegistrySettings) -> datetime:
    return now - timedelta(seconds=settings.close_grace_s)


def is_subscribed(
    status: str | None, close_time: datetime | None, now: datetime, settings: RegistrySettings
) -> bool:
    if status is None or status not in settings.subscribed_statuses:
        return False
    return close_time is None or close_time > close_cutoff(now, settings)


def desired_tickers(
    conn: Any, now: datetime, settings: RegistrySettings, *, batch: int = 10_000
) -> Iterator[list[str]]:
    """Every ticker the listener should hold, in batches, streamed by a server-side cursor
    (a million tickers never sit in memory at once). Needs an open transaction."""
    raw = dbapi_connection(conn)
    with raw.cursor(name="kd_registry_desired") as cur:
        cur.itersize = batch
        cur.execute(
            "SELECT ticker FROM markets WHERE status = ANY(%s) "
            "AND (close_time IS NULL OR close_time > %s)",
            (list(settings.subscribed_statuses), close_cutoff(now, settings)),
        )
        while True:
            rows = cur.fetchmany(batch)
            if not rows:
                return
            yield [row[0] for row in rows]
