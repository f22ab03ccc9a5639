"""The market registry: which series, events and markets exist, their status, and which
markets the listener must hold subscriptions for (GEN-7; docs/registry.md).

Entry points (all plain functions; Celery tasks and the listener wrap them):

- `full_sync(conn, client, settings, feed=...)` - startup / `kalshi-data registry sync`
- `reconcile(conn, client, settings, feed=..., since=..., full=...)` - the 5-minute beat job
- `apply_lifecycle_events(conn, events, settings=..., fetch_market=...)` - real-time updates
  from `market_lifecycle_v2` (`LifecycleEvent.from_row` / `.from_msg`); the caller commits
  and then calls `feed.publish(report.added, report.removed)`
- `apply_event_updates(conn, updates)` - `event_lifecycle` / `event_fee_update` rows
  (`EventUpdate.from_row`), same transaction
- `ChangeFeed(redis, gatherer)` - `.snapshot()` / `.read(after)` for listeners,
  `.refresh(conn)` for the beat

It never opens WebSockets and never decides how frames are stored (that is the listener's and
the ingest workers' job); it reads REST and writes only `series`, `events`, `markets`,
`market_status_history` and its own Redis keys.
"""

from app.config import RegistrySettings
from app.registry.feed import Change, ChangeFeed, Published, Snapshot
from app.registry.lifecycle import (
    LifecycleEvent,
    LifecycleOutcome,
    MarketState,
    StatusChange,
    apply_lifecycle,
)
from app.registry.membership import desired_tickers, is_subscribed
from app.registry.realtime import (
    EventUpdate,
    LifecycleReport,
    apply_event_updates,
    apply_lifecycle_events,
    load_state,
)
from app.registry.sync import SyncReport, full_sync, reconcile

__all__ = [
    "Change",
    "ChangeFeed",
    "EventUpdate",
    "LifecycleEvent",
    "LifecycleOutcome",
    "LifecycleReport",
    "MarketState",
    "Published",
    "RegistrySettings",
    "Snapshot",
    "StatusChange",
    "SyncReport",
    "apply_event_updates",
    "apply_lifecycle",
    "apply_lifecycle_events",
    "desired_tickers",
    "full_sync",
    "is_subscribed",
    "load_state",
    "reconcile",
]
