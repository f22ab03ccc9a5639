"""The listener's heartbeat: what its successor needs if it dies without a word.

A listener killed with -9 cannot close its sessions or say where its capture stopped. So every
`heartbeat_interval_s` it writes one small JSON value to Redis (`kd:{g}:listener:{name}`): its
state, the receive time before which every frame it read is durable (in Redis or in its
journal, `StreamPublisher.durable_before_ns`), its open sessions and its open holes. The next
listener of the same name reads it before it connects anywhere and publishes, as control
records, what the dead one never could: its sessions closed, its holes closed, and one
`listener_died` hole per channel from the durable bound to its own start (docs/holes.md).
After a clean stop the value says `stopped` and holds the shutdown's holes, which the successor
closes at its start. The value never holds market lists (bounded size at 1M markets): a hole
whose opening record was lost is re-created covering every market, never fewer.

Nothing here touches SQL (STYLE §1); a heartbeat that cannot be written only widens the hole a
successor records, it never stops capture.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from app.listener.control import HOLE_CLOSED, HOLE_OPENED, SESSION_CLOSED
from app.listener.holes import OpenHole

HEARTBEAT_VERSION = 1
RUNNING = "running"
STOPPED = "stopped"


def heartbeat_key(gatherer: str, name: str) -> str:
    return f"kd:{gatherer}:listener:{name}"


@dataclass(frozen=True)
class SessionInfo:
    conn_id: str
    role: str
    shard: str
    url: str
    opened_ns: int
    market_count: int | None


def encode_heartbeat(
    *,
    listener_id: str,
    state: str,
    started_ns: int,
    now_ns: int,
    durable_ns: int,
    channels: Iterable[str],
    sessions: Iterable[SessionInfo],
    holes: Iterable[OpenHole],
) -> bytes:
    return orjson.dumps(
        {
            "v": HEARTBEAT_VERSION,
            "listener_id": listener_id,
            "state": state,
            "started_ns": started_ns,
            "heartbeat_ns": now_ns,
            "durable_ns": durable_ns,
            "channels": sorted(set(channels)),
            "sessions": [vars(s) for s in sessions],
            "holes": [
                {
                    "hole_id": h.hole_id,
                    "channel": h.channel,
                    "cause": h.cause,
                    "from_ns": h.from_ns,
                    "conn_id": h.conn_id,
                    "detail": h.detail,
                }
                for h in holes
            ],
        }
    )


def decode_heartbeat(raw: bytes | str | None) -> dict[str, Any] | None:
    """The predecessor's heartbeat, or None when absent or unreadable (then nothing is known
    about a predecessor and nothing can be recorded for it)."""
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict) or value.get("v") != HEARTBEAT_VERSION:
        return None
    return value


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def successor_records(
    previous: dict[str, Any] | None, *, gatherer: str, started_ns: int, lead_ns: int
) -> list[tuple[str, dict[str, Any]]]:
    """Control records (event, fields) that settle what the predecessor left open.

    * its open holes end where this listener starts (this listener's own `not_subscribed`
      holes go on from there);
    * if it did not stop cleanly: its sessions are closed at its last heartbeat and each of
      its channels gets a `listener_died` hole from its durable bound (less the lead, for
      frames still on the way) to this start.
    """
    if previous is None:
        return []
    records: list[tuple[str, dict[str, Any]]] = []
    for hole in previous.get("holes") or []:
        from_ns = _int(hole.get("from_ns"))
        if from_ns is None or not isinstance(hole.get("hole_id"), str):
            continue
        fields = {
            "gatherer": gatherer,
            "hole_id": hole["hole_id"],
            "conn_id": hole.get("conn_id") if isinstance(hole.get("conn_id"), str) else None,
            "channel": hole.get("channel"),
            "market_tickers": None,
            "cause": hole.get("cause"),
            "from_ns": from_ns,
            "detail": hole.get("detail"),
            "to_ns": max(started_ns, from_ns),
        }
        records.append((HOLE_CLOSED, fields))
    if previous.get("state") == STOPPED:
        return records
    beat_ns = _int(previous.get("heartbeat_ns")) or started_ns
    durable_ns = _int(previous.get("durable_ns")) or beat_ns
    listener_id = previous.get("listener_id")
    for session in previous.get("sessions") or []:
        opened_ns = _int(session.get("opened_ns"))
        if opened_ns is None or not isinstance(session.get("conn_id"), str):
            continue
        records.append(
            (
                SESSION_CLOSED,
                {
                    "gatherer": gatherer,
                    "conn_id": session["conn_id"],
                    "role": session.get("role") or "unknown",
                    "shard": session.get("shard"),
                    "url": session.get("url"),
                    "opened_ns": opened_ns,
                    "market_count": _int(session.get("market_count")),
                    "closed_ns": max(beat_ns, opened_ns),
                    "close_reason": f"listener {listener_id} died (closed by its successor)",
                },
            )
        )
    from_ns = min(durable_ns - lead_ns, started_ns)
    for channel in previous.get("channels") or []:
        fields = {
            "gatherer": gatherer,
            "hole_id": f"died-{listener_id}-{channel}",
            "conn_id": None,
            "channel": channel,
            "market_tickers": None,
            "cause": "listener_died",
            "from_ns": from_ns,
            "detail": f"listener {listener_id} stopped without closing; last heartbeat "
            f"{(started_ns - beat_ns) / 1e9:.1f}s before this start",
        }
        records.append((HOLE_OPENED, fields))
        records.append((HOLE_CLOSED, {**fields, "to_ns": started_ns}))
    return records
