"""Dead letters of the ingest side: entries a drain could not decode or could not get handled.

An entry is never silently lost (DESIGN §1): the drain copies it, with the reason, to the
gatherer's dead-letter stream (`kd:{g}:dead`, see names.py) and acknowledges the original in
the same MULTI/EXEC transaction, so it is either still pending in its stream or safe in the
dead-letter stream, never neither. Dead-letter entry fields:

| field | value |
|---|---|
| `src` | source stream |
| `src_id` | source entry id |
| `group`, `consumer` | who gave up on it |
| `reason` | why (corrupt envelope: ..., or delivered N times without an ack) |
| `deliveries` | times_delivered when it was moved |
| `at_ns` | local time of the move (ns) |
| `f.<name>` | every original field, bytes unchanged (`f.v`, `f.n`, `f.d`, ...) |

A drain of the dead-letter stream (decode=False, max_deliveries=None) can copy these into the
`dead_letters` table; `parse_dead_letter` reads one back.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import NamedTuple

import redis

ORIGINAL_PREFIX = b"f."


class DeadLetter(NamedTuple):
    source_stream: str
    source_id: str
    group: str
    consumer: str
    reason: str
    deliveries: int
    at_ns: int
    fields: dict[bytes, bytes]  # the original entry's fields, unchanged


def dead_letter_fields(
    stream: str,
    entry_id: str,
    fields: Mapping[bytes, bytes],
    *,
    group: str,
    consumer: str,
    reason: str,
    deliveries: int,
) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {
        b"src": stream.encode(),
        b"src_id": entry_id.encode(),
        b"group": group.encode(),
        b"consumer": consumer.encode(),
        b"reason": reason.encode("utf-8", "replace"),
        b"deliveries": str(deliveries).encode(),
        b"at_ns": str(time.time_ns()).encode(),
    }
    for name, value in fields.items():
        key = name if isinstance(name, bytes) else str(name).encode()
        out[ORIGINAL_PREFIX + key] = value
    return out


def move_to_dead_letters(
    client: redis.Redis,
    dead_stream: str,
    stream: str,
    group: str,
    consumer: str,
    entry_id: str,
    fields: Mapping[bytes, bytes],
    *,
    reason: str,
    deliveries: int,
) -> None:
    """Copy one entry to `dead_stream` and XACK it in `stream`, atomically."""
    record = dead_letter_fields(
        stream,
        entry_id,
        fields,
        group=group,
        consumer=consumer,
        reason=reason,
        deliveries=deliveries,
    )
    pipe = client.pipeline(transaction=True)
    pipe.xadd(dead_stream, record)  # type: ignore[arg-type]
    pipe.xack(stream, group, entry_id)
    pipe.execute()


def parse_dead_letter(fields: Mapping[bytes, bytes]) -> DeadLetter:
    def text(name: bytes) -> str:
        return fields.get(name, b"").decode("utf-8", "replace")

    original = {
        name[len(ORIGINAL_PREFIX) :]: value
        for name, value in fields.items()
        if name.startswith(ORIGINAL_PREFIX)
    }
    return DeadLetter(
        source_stream=text(b"src"),
        source_id=text(b"src_id"),
        group=text(b"group"),
        consumer=text(b"consumer"),
        reason=text(b"reason"),
        deliveries=int(fields.get(b"deliveries", b"0")),
        at_ns=int(fields.get(b"at_ns", b"0")),
        fields=original,
    )
