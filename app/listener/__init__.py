"""The WebSocket listener (DESIGN §2, issue #3 item 3): exchange frames -> Redis Streams.

`Listener(settings, ListenerSettings()).run(stop)` keeps global connections (`trade`,
`ticker`, `market_lifecycle_v2`) and sharded `orderbook_delta` connections subscribed, checks
seq per sid and recovers gaps with `get_snapshot`, and publishes every frame raw through
`app.streams.StreamPublisher`. Control records (gaps, sessions) go to `kd:{g}:control`;
`app.listener.control` turns them into rows. See docs/listener.md.
"""

from app.config import ListenerSettings
from app.listener.control import (
    CONTROL_TYPE,
    ControlRecordError,
    control_stream,
    gap_row,
    is_control,
    parse_control,
    session_row,
)
from app.listener.runner import Listener, journal_dir, run_listener
from app.listener.shards import ShardMap
from app.listener.stats import ConnectionStats, ListenerStats

__all__ = [
    "CONTROL_TYPE",
    "ConnectionStats",
    "ControlRecordError",
    "Listener",
    "ListenerSettings",
    "ListenerStats",
    "ShardMap",
    "control_stream",
    "gap_row",
    "is_control",
    "journal_dir",
    "parse_control",
    "run_listener",
    "session_row",
]
