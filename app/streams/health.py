"""What a stream looks like right now, for metrics and `status` (DESIGN §1.4, MON).

`stream_stats` returns the length, and per consumer group: consumers, pending (delivered, not
acked), lag (not yet delivered; None when Redis cannot compute it) and the age of the oldest
pending entry (Redis server clock minus the millisecond part of its id). Read-only; three round
trips at most (one pipeline, then one XPENDING summary per group with pending entries).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import redis
from redis.exceptions import ResponseError


class GroupStats(NamedTuple):
    name: str
    consumers: int
    pending: int
    lag: int | None
    last_delivered_id: str
    oldest_pending_id: str | None
    oldest_pending_age_ms: int | None


class StreamStats(NamedTuple):
    stream: str
    length: int
    groups: tuple[GroupStats, ...]


def stream_stats(client: redis.Redis, stream: str) -> StreamStats:
    pipe = client.pipeline(transaction=False)
    pipe.xlen(stream)
    pipe.xinfo_groups(stream)
    pipe.time()
    length, groups_reply, now = pipe.execute(raise_on_error=False)
    if isinstance(length, Exception):
        raise length
    if isinstance(now, Exception):
        raise now
    if isinstance(groups_reply, ResponseError):
        groups_reply = []  # no such key: no groups yet
    elif isinstance(groups_reply, Exception):
        raise groups_reply
    now_ms = int(now[0]) * 1000 + int(now[1]) // 1000
    groups = []
    for info in groups_reply:
        name = _text(info["name"])
        pending = int(info["pending"])
        oldest: str | None = None
        age: int | None = None
        if pending:
            summary = client.xpending(stream, name)
            if summary["min"] is not None:
                oldest = _text(summary["min"])
                age = max(0, now_ms - int(oldest.split("-", 1)[0]))
        lag = info.get("lag")
        groups.append(
            GroupStats(
                name=name,
                consumers=int(info["consumers"]),
                pending=pending,
                lag=None if lag is None else int(lag),
                last_delivered_id=_text(info["last-delivered-id"]),
                oldest_pending_id=oldest,
                oldest_pending_age_ms=age,
            )
        )
    return StreamStats(stream, int(length), tuple(groups))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
