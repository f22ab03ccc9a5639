"""Control records: what the listener knows about its own sessions and gaps, as frames.

The listener never touches SQL (STYLE §1). Gaps it detects and recovers and the WebSocket
sessions it opens and closes travel as JSON *control frames* on the gatherer's control stream
`kd:{g}:control`, in the same envelope as exchange frames (conn id = the session concerned,
sid set for gap records). The type `kd_control` is one the exchange never sends. The ingest
worker turns each one into a row with the pure functions below:

```
{"type":"kd_control","v":1,"event":"gap_detected","gatherer":"g1","conn_id":"g1-ob0-…",
 "sid":1,"market_tickers":["A","B"],"expected_seq":17,"got_seq":19,"detected_ns":…}
{"type":"kd_control","v":1,"event":"gap_recovered", …the gap_detected fields…,
 "recovered_ns":…,"recovery":"get_snapshot"|"resubscribe"|"reconnect"}
{"type":"kd_control","v":1,"event":"session_opened","gatherer":"g1","conn_id":"g1-ob0-…",
 "role":"orderbook"|"global","shard":"ob0","url":"wss://…","opened_ns":…,"market_count":250}
{"type":"kd_control","v":1,"event":"session_closed", …the session_opened fields…,
 "closed_ns":…,"close_reason":"1006 ''"}
{"type":"kd_control","v":1,"event":"hole_opened","gatherer":"g1","hole_id":"…","conn_id":"…"|null,
 "channel":"trade","market_tickers":null|["A"],"cause":"disconnect","from_ns":…,"detail":"…"}
{"type":"kd_control","v":1,"event":"hole_closed", …the hole_opened fields…, "to_ns":…}
```

Holes (`capture_holes`, docs/holes.md) are the stretches the listener knows it may have missed;
a hole record is upserted on `(gatherer, hole_id)`.

Each later record repeats every field of the earlier one, so a row can be written from either
alone (an upsert on the table key: `sequence_gaps (gatherer, connection_id, sid,
expected_seq)`, `connection_sessions (gatherer, connection_id)`), whatever the order in which
drains see them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from app.db.rows import SequenceGapRow
from app.streams.envelope import Frame
from app.streams.names import StreamNames

CONTROL_TYPE = "kd_control"
CONTROL_VERSION = 1
GAP_DETECTED = "gap_detected"
GAP_RECOVERED = "gap_recovered"
SESSION_OPENED = "session_opened"
SESSION_CLOSED = "session_closed"
GAP_EVENTS = frozenset({GAP_DETECTED, GAP_RECOVERED})
SESSION_EVENTS = frozenset({SESSION_OPENED, SESSION_CLOSED})
HOLE_OPENED = "hole_opened"
HOLE_CLOSED = "hole_closed"
HOLE_EVENTS = frozenset({HOLE_OPENED, HOLE_CLOSED})
HOLE_CAUSES = frozenset(
    {
        "not_subscribed",
        "disconnect",
        "seq_gap",
        "listener_died",
        "listener_down",
        "journal_loss",
        "subscribe_failed",
    }
)
ALL_EVENTS = GAP_EVENTS | SESSION_EVENTS | HOLE_EVENTS


class ControlRecordError(ValueError):
    """A frame on the control stream that is not a valid control record."""


def control_stream(gatherer: str) -> str:
    """The stream control frames go to (`StreamNames.control`, see docs/streams.md)."""
    return StreamNames(gatherer, 1).control


def encode_control(event: str, **fields: Any) -> bytes:
    return orjson.dumps({"type": CONTROL_TYPE, "v": CONTROL_VERSION, "event": event, **fields})


def control_frame(event: str, fields: Mapping[str, Any], conn_id: str) -> Frame:
    """A control record as a frame for the control stream: received now, on `conn_id` (the
    session concerned), with the record's sid when it has one."""
    sid = fields.get("sid")
    return Frame(
        encode_control(event, **fields),
        time.time_ns(),
        conn_id,
        sid if isinstance(sid, int) and not isinstance(sid, bool) else None,
    )


def gap_fields(
    *,
    gatherer: str,
    conn_id: str,
    sid: int,
    market_tickers: Sequence[str],
    expected_seq: int,
    got_seq: int,
    detected_ns: int,
) -> dict[str, Any]:
    return {
        "gatherer": gatherer,
        "conn_id": conn_id,
        "sid": sid,
        "market_tickers": sorted(market_tickers),
        "expected_seq": expected_seq,
        "got_seq": got_seq,
        "detected_ns": detected_ns,
    }


def parse_control(raw: bytes | str) -> dict[str, Any]:
    """The decoded record; raises ControlRecordError for anything else."""
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ControlRecordError(f"control frame is not JSON: {exc}") from None
    if not isinstance(record, dict) or record.get("type") != CONTROL_TYPE:
        raise ControlRecordError("not a kd_control frame")
    if record.get("v") != CONTROL_VERSION:
        raise ControlRecordError(f"unsupported control version {record.get('v')!r}")
    if record.get("event") not in ALL_EVENTS:
        raise ControlRecordError(f"unknown control event {record.get('event')!r}")
    return record


def is_control(raw: bytes | str) -> bool:
    try:
        parse_control(raw)
    except ControlRecordError:
        return False
    return True


def _ns_time(value: Any, what: str) -> datetime:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ControlRecordError(f"{what} must be integer ns, got {value!r}")
    return datetime.fromtimestamp(value // 1_000_000_000, UTC).replace(
        microsecond=(value % 1_000_000_000) // 1000
    )


def _int(record: Mapping[str, Any], key: str) -> int:
    value = record.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ControlRecordError(f"{key} must be an integer, got {value!r}")
    return value


def _str(record: Mapping[str, Any], key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value:
        raise ControlRecordError(f"{key} must be a non-empty string, got {value!r}")
    return value


def gap_row(record: Mapping[str, Any]) -> SequenceGapRow:
    """A `gap_detected` / `gap_recovered` record as a `sequence_gaps` row."""
    if record.get("event") not in GAP_EVENTS:
        raise ControlRecordError(f"not a gap record: {record.get('event')!r}")
    tickers = record.get("market_tickers", [])
    if not isinstance(tickers, list) or not all(isinstance(t, str) for t in tickers):
        raise ControlRecordError("market_tickers must be a list of strings")
    recovered = record.get("recovered_ns")
    recovery = record.get("recovery")
    return SequenceGapRow(
        gatherer=_str(record, "gatherer"),
        connection_id=_str(record, "conn_id"),
        sid=_int(record, "sid"),
        market_tickers=tuple(tickers),
        expected_seq=_int(record, "expected_seq"),
        got_seq=_int(record, "got_seq"),
        detected_at=_ns_time(record.get("detected_ns"), "detected_ns"),
        recovered_at=_ns_time(recovered, "recovered_ns") if recovered is not None else None,
        recovery=recovery if isinstance(recovery, str) else None,
    )


def session_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """A `session_opened` / `session_closed` record as a `connection_sessions` row dict."""
    if record.get("event") not in SESSION_EVENTS:
        raise ControlRecordError(f"not a session record: {record.get('event')!r}")
    closed = record.get("closed_ns")
    market_count = record.get("market_count")
    reason = record.get("close_reason")
    return {
        "gatherer": _str(record, "gatherer"),
        "connection_id": _str(record, "conn_id"),
        "role": _str(record, "role"),
        "shard": record.get("shard") if isinstance(record.get("shard"), str) else None,
        "url": record.get("url") if isinstance(record.get("url"), str) else None,
        "opened_at": _ns_time(record.get("opened_ns"), "opened_ns"),
        "closed_at": _ns_time(closed, "closed_ns") if closed is not None else None,
        "close_reason": reason if isinstance(reason, str) else None,
        "market_count": market_count if isinstance(market_count, int) else None,
    }


def hole_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """A `hole_opened` / `hole_closed` record as a `capture_holes` row dict.

    A trade-channel hole starts `pending` backfill (docs/backfill.md); other channels cannot
    be backfilled from REST, so their status stays NULL.
    """
    if record.get("event") not in HOLE_EVENTS:
        raise ControlRecordError(f"not a hole record: {record.get('event')!r}")
    cause = _str(record, "cause")
    if cause not in HOLE_CAUSES:
        raise ControlRecordError(f"unknown hole cause {cause!r}")
    tickers = record.get("market_tickers")
    if tickers is not None and (
        not isinstance(tickers, list) or not all(isinstance(t, str) for t in tickers)
    ):
        raise ControlRecordError("market_tickers must be null or a list of strings")
    conn_id = record.get("conn_id")
    detail = record.get("detail")
    to_ns = record.get("to_ns")
    from_at = _ns_time(record.get("from_ns"), "from_ns")
    to_at = _ns_time(to_ns, "to_ns") if to_ns is not None else None
    if to_at is not None and to_at < from_at:
        raise ControlRecordError("to_ns is before from_ns")
    channel = _str(record, "channel")
    return {
        "gatherer": _str(record, "gatherer"),
        "hole_id": _str(record, "hole_id"),
        "connection_id": conn_id if isinstance(conn_id, str) else None,
        "channel": channel,
        "market_tickers": sorted(tickers) if tickers is not None else None,
        "cause": cause,
        "from_at": from_at,
        "to_at": to_at,
        "detail": detail if isinstance(detail, str) else None,
        "backfill_status": "pending" if channel == "trade" else None,
    }
