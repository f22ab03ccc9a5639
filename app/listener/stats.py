"""Counters and gauges of one listener process, for logs and the metrics step.

Plain attributes updated on the event loop thread (no locks); `snapshot()` copies them into a
JSON-able dict. Every buffer the listener owns is the publisher's (bounded there, STYLE §4).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ConnectionStats:
    """One connection manager (one shard); survives its sessions."""

    shard: str
    role: str
    metric_role: str = "other"  # the metrics `role` label (app.listener.metrics.metric_role)
    conn_id: str | None = None
    connected: bool = False
    sessions: int = 0
    reconnects: int = 0
    stale_reconnects: int = 0
    subscribed_markets: int = 0
    desired_markets: int = 0
    rejected_markets: int = 0  # refused by the exchange (code 16), waiting for a retry
    frames: int = 0
    last_frame_monotonic: float = field(default_factory=time.monotonic)

    def idle_s(self, now: float | None = None) -> float:
        return max(0.0, (now if now is not None else time.monotonic()) - self.last_frame_monotonic)

    def snapshot(self) -> dict[str, Any]:
        return {
            "shard": self.shard,
            "role": self.role,
            "conn_id": self.conn_id,
            "connected": self.connected,
            "sessions": self.sessions,
            "reconnects": self.reconnects,
            "stale_reconnects": self.stale_reconnects,
            "subscribed_markets": self.subscribed_markets,
            "desired_markets": self.desired_markets,
            "rejected_markets": self.rejected_markets,
            "frames": self.frames,
            "idle_s": round(self.idle_s(), 3),
        }


@dataclass
class ListenerStats:
    """Process-wide counters; `connections` holds one entry per shard."""

    frames: int = 0
    frames_by_type: Counter[str] = field(default_factory=Counter)
    bytes_by_type: Counter[str] = field(default_factory=Counter)
    unparseable_frames: int = 0
    control_frames: int = 0
    reconnects: int = 0
    gaps_detected: int = 0
    gaps_recovered: int = 0
    holes_opened: int = 0
    heartbeat_errors: int = 0
    journal_losses: int = 0
    seq_duplicates: int = 0
    snapshot_requests: int = 0
    snapshot_timeouts: int = 0
    resubscribes: int = 0
    market_refusals: int = 0  # code 16 for one market (each refusal, retries included)
    refusal_splits: int = 0  # a code 16 naming no market: the command's markets halved
    errors_by_code: Counter[int] = field(default_factory=Counter)
    registry_changes: int = 0
    registry_errors: int = 0
    connections: dict[str, ConnectionStats] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "frames_by_type": dict(self.frames_by_type),
            "bytes_by_type": dict(self.bytes_by_type),
            "unparseable_frames": self.unparseable_frames,
            "control_frames": self.control_frames,
            "reconnects": self.reconnects,
            "gaps_detected": self.gaps_detected,
            "gaps_recovered": self.gaps_recovered,
            "holes_opened": self.holes_opened,
            "heartbeat_errors": self.heartbeat_errors,
            "journal_losses": self.journal_losses,
            "seq_duplicates": self.seq_duplicates,
            "snapshot_requests": self.snapshot_requests,
            "snapshot_timeouts": self.snapshot_timeouts,
            "resubscribes": self.resubscribes,
            "market_refusals": self.market_refusals,
            "refusal_splits": self.refusal_splits,
            "errors_by_code": {str(k): v for k, v in self.errors_by_code.items()},
            "registry_changes": self.registry_changes,
            "registry_errors": self.registry_errors,
            "connections": {name: c.snapshot() for name, c in self.connections.items()},
        }
