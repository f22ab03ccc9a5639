"""Lifecycle mappers: `market_lifecycle_v2`, `multivariate_market_lifecycle`, the v1
`market_lifecycle` the seed describes (KAPI-8), `event_lifecycle` and `event_fee_update`.

The whole `msg` is kept as `payload` (jsonb) with `payload_hash` = SHA-256 of its canonical JSON
(sorted keys), which production uses to union the same event seen by several gatherers
(DESIGN §5); the fields we query on are typed columns. Lifecycle frames carry no exchange time
of their own, so `exchange_ts` is `ts_ms` if a future frame has it, else the envelope's
`sending_ts_ms`, else the v1 `ts`; the event's own times (`open_ts`, `close_ts`,
`determination_ts`, `settled_ts`, Unix seconds) are typed columns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from app.db.rows import LifecycleEventRow
from app.normalize import fields
from app.normalize.envelope import ParsedFrame
from app.normalize.fields import FrameError
from app.normalize.versions import FormatVersion


def payload_hash(msg: Mapping[str, Any]) -> bytes:
    """SHA-256 of the canonical JSON of a lifecycle `msg` (sorted keys, compact)."""
    return hashlib.sha256(orjson.dumps(msg, option=orjson.OPT_SORT_KEYS)).digest()


def _exchange_time(frame: ParsedFrame) -> datetime | None:
    msg = frame.msg
    if msg.get("ts_ms") is not None:
        return fields.exchange_ms(msg["ts_ms"], "'ts_ms'")
    if frame.sending_ts_ms is not None:
        return fields.exchange_ms(frame.sending_ts_ms, "'sending_ts_ms'")
    if msg.get("ts") is not None:
        return fields.exchange_s(msg["ts"], "'ts'")
    return None


def _settlement_fixed_point(msg: Mapping[str, Any]) -> int | None:
    return fields.dollars(msg, "settlement_value", blank_is_none=True)


def _settlement_legacy(msg: Mapping[str, Any]) -> int | None:
    # A dollar string since 2026-02-26; older frames (if any) carried integer cents.
    value = msg.get("settlement_value")
    if isinstance(value, int) and not isinstance(value, bool):
        return fields.cents_value(value, "'settlement_value'")
    return fields.dollars(msg, "settlement_value", blank_is_none=True)


def _event_ticker(msg: Mapping[str, Any]) -> str | None:
    ticker = fields.text(msg, "event_ticker", required=False)
    if ticker is None and isinstance(msg.get("additional_metadata"), Mapping):
        ticker = fields.text(msg["additional_metadata"], "event_ticker", required=False)
    return ticker


def _row(
    frame: ParsedFrame,
    *,
    event_type: str,
    market_ticker: str | None,
    event_ticker: str | None,
    result: str | None = None,
    settlement_value: int | None = None,
) -> LifecycleEventRow:
    msg, env = frame.msg, frame.envelope
    fields.no_nul(msg)
    return LifecycleEventRow(
        gatherer=env.gatherer,
        connection_id=env.connection_id,
        sid=frame.sid,
        received_ns=env.received_ns,
        received_at=env.received_at,
        batch_pos=env.batch_pos,
        msg_type=frame.type,
        event_type=event_type,
        market_ticker=market_ticker,
        event_ticker=event_ticker,
        exchange_ts=_exchange_time(frame),
        result=result,
        settlement_value=settlement_value,
        is_deactivated=fields.boolean(msg, "is_deactivated"),
        open_ts=fields.optional_unix_s(msg, "open_ts"),
        close_ts=fields.optional_unix_s(msg, "close_ts"),
        determination_ts=fields.optional_unix_s(msg, "determination_ts"),
        settled_ts=fields.optional_unix_s(msg, "settled_ts"),
        payload=dict(msg),
        payload_hash=payload_hash(msg),
    )


def _result(msg: Mapping[str, Any]) -> str | None:
    value = msg.get("result")
    if value is None or value == "":
        return None
    if not isinstance(value, str) or "\x00" in value:
        raise FrameError(f"'result' must be a string, got {value!r:.60}")
    return value


def _market(frame: ParsedFrame, settlement: int | None) -> LifecycleEventRow:
    msg = frame.msg
    return _row(
        frame,
        event_type=fields.required_text(msg, "event_type"),
        market_ticker=fields.required_text(msg, "market_ticker"),
        event_ticker=_event_ticker(msg),
        result=_result(msg),
        settlement_value=settlement,
    )


def market_fixed_point(frame: ParsedFrame) -> LifecycleEventRow:
    return _market(frame, _settlement_fixed_point(frame.msg))


def market_legacy(frame: ParsedFrame) -> LifecycleEventRow:
    return _market(frame, _settlement_legacy(frame.msg))


def event_lifecycle(frame: ParsedFrame) -> LifecycleEventRow:
    """`event_lifecycle` has no event_type of its own; the message type stands in for it."""
    return _row(
        frame,
        event_type=frame.type,
        market_ticker=None,
        event_ticker=fields.required_text(frame.msg, "event_ticker"),
    )


MARKET = {FormatVersion.LEGACY: market_legacy, FormatVersion.FIXED_POINT: market_fixed_point}
EVENT = {FormatVersion.LEGACY: event_lifecycle, FormatVersion.FIXED_POINT: event_lifecycle}
