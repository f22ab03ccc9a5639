"""Applying one `market_lifecycle_v2` event to one market's registry state (pure, no I/O).

kalshi-api.md §3.5: `created` (open_ts, close_ts, additional_metadata), `activated` /
`deactivated` (is_deactivated: a trading pause), `close_date_updated` (close_ts), `determined`
(result, determination_ts, settlement_value), `settled` (settled_ts),
`price_level_structure_updated`, `metadata_updated`. There is no "closed" event: a market
closes when its close time passes (the subscription set drops it after `close_grace_s`, and
REST reconcile records the `closed` status).

`apply_lifecycle(state, event)` returns the new state, the status change (for
`market_status_history`) and whether the market must be fetched by REST first (an event for a
market we have never seen, REG-8). Status changes obey `status.status_wins`, so a replayed or
reordered frame never moves a market backwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from app.db.rows import LifecycleEventRow
from app.normalize import fields
from app.normalize.fields import FrameError
from app.registry.records import RecordError, exchange_index, series_ticker_of, strike_value
from app.registry.status import status_rank, status_wins

MARKET_LIFECYCLE_TYPES = frozenset({"market_lifecycle_v2", "multivariate_market_lifecycle"})


@dataclass(frozen=True)
class LifecycleEvent:
    """The fields of a market lifecycle message the registry acts on.

    `observed_at` is the exchange time of the frame when it has one (`ts_ms`,
    `sending_ts_ms`), else the listener's receive time.
    """

    market_ticker: str
    event_type: str
    observed_at: datetime
    event_ticker: str | None = None
    is_deactivated: bool | None = None
    open_ts: datetime | None = None
    close_ts: datetime | None = None
    determination_ts: datetime | None = None
    settled_ts: datetime | None = None
    result: str | None = None
    settlement_value: int | None = None
    payload: Mapping[str, Any] | None = None

    @property
    def exchange_index(self) -> int | None:
        """The market's exchange instance, when the message says (optional on `created`,
        kalshi-api.md §9); a malformed value is ignored (REST reconcile has the truth)."""
        try:
            return exchange_index(self.payload or {})
        except RecordError:
            return None

    @classmethod
    def from_row(cls, row: LifecycleEventRow) -> LifecycleEvent | None:
        """From a normalized lifecycle row (None for event-level messages)."""
        if row.msg_type not in MARKET_LIFECYCLE_TYPES or not row.market_ticker:
            return None
        return cls(
            market_ticker=row.market_ticker,
            event_type=row.event_type,
            observed_at=row.exchange_ts or row.received_at,
            event_ticker=row.event_ticker,
            is_deactivated=row.is_deactivated,
            open_ts=row.open_ts,
            close_ts=row.close_ts,
            determination_ts=row.determination_ts,
            settled_ts=row.settled_ts,
            result=row.result,
            settlement_value=row.settlement_value,
            payload=row.payload,
        )

    @classmethod
    def from_msg(cls, msg: Mapping[str, Any], received_at: datetime) -> LifecycleEvent:
        """From the `msg` object of a `market_lifecycle_v2` frame; raises `FrameError`."""
        meta = msg.get("additional_metadata")
        event_ticker = fields.text(msg, "event_ticker", required=False)
        if event_ticker is None and isinstance(meta, Mapping):
            event_ticker = fields.text(meta, "event_ticker", required=False)
        value = msg.get("settlement_value")
        settlement: int | None
        if isinstance(value, int) and not isinstance(value, bool):
            settlement = fields.cents_value(value, "'settlement_value'")
        else:
            settlement = fields.dollars(msg, "settlement_value", blank_is_none=True)
        result = msg.get("result")
        if result is not None and not isinstance(result, str):
            raise FrameError(f"'result' must be a string, got {result!r:.60}")
        exchange_ts = msg.get("ts_ms")
        return cls(
            market_ticker=fields.required_text(msg, "market_ticker"),
            event_type=fields.required_text(msg, "event_type"),
            observed_at=(
                fields.from_unix_ms(exchange_ts, "'ts_ms'") if exchange_ts else received_at
            ),
            event_ticker=event_ticker,
            is_deactivated=fields.boolean(msg, "is_deactivated"),
            open_ts=fields.optional_unix_s(msg, "open_ts"),
            close_ts=fields.optional_unix_s(msg, "close_ts"),
            determination_ts=fields.optional_unix_s(msg, "determination_ts"),
            settled_ts=fields.optional_unix_s(msg, "settled_ts"),
            result=result or None,
            settlement_value=settlement,
            payload=dict(msg),
        )


@dataclass(frozen=True)
class MarketState:
    """The part of a `markets` row lifecycle events change, plus when its status was seen."""

    ticker: str
    event_ticker: str
    status: str
    status_at: datetime | None = None
    series_ticker: str | None = None
    result: str | None = None
    title: str | None = None
    yes_sub_title: str | None = None
    no_sub_title: str | None = None
    open_time: datetime | None = None
    close_time: datetime | None = None
    expected_expiration_time: datetime | None = None
    settlement_ts: datetime | None = None
    settlement_value: int | None = None
    price_level_structure: str | None = None
    strike_type: str | None = None
    floor_strike: Decimal | None = None
    cap_strike: Decimal | None = None
    exchange_index: int | None = None
    metadata: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class StatusChange:
    ticker: str
    previous: str | None
    status: str
    observed_at: datetime
    event_type: str


@dataclass(frozen=True)
class LifecycleOutcome:
    state: MarketState | None
    status_change: StatusChange | None = None
    needs_fetch: bool = False

    @property
    def changed(self) -> bool:
        return self.status_change is not None


def _text(meta: Mapping[str, Any], key: str) -> str | None:
    value = meta.get(key)
    return value if isinstance(value, str) and value else None


def _strike_or(meta: Mapping[str, Any], key: str, default: Decimal | None) -> Decimal | None:
    if key not in meta:
        return default
    try:
        return strike_value(meta, key)
    except RecordError:
        return default


def _created_state(event: LifecycleEvent) -> MarketState | None:
    payload = event.payload or {}
    meta = payload.get("additional_metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    event_ticker = event.event_ticker or _text(meta, "event_ticker")
    if event_ticker is None:
        return None
    expected = meta.get("expected_expiration_ts")
    try:
        expected_at = fields.from_unix_s(expected, "expected") if expected is not None else None
    except FrameError:
        expected_at = None
    return MarketState(
        ticker=event.market_ticker,
        event_ticker=event_ticker,
        status="initialized",
        series_ticker=series_ticker_of(event_ticker),
        title=_text(meta, "title") or _text(meta, "name"),
        yes_sub_title=_text(meta, "yes_sub_title"),
        no_sub_title=_text(meta, "no_sub_title"),
        open_time=event.open_ts,
        close_time=event.close_ts,
        expected_expiration_time=expected_at,
        price_level_structure=_text(payload, "price_level_structure"),
        strike_type=_text(meta, "strike_type"),
        floor_strike=_strike_or(meta, "floor_strike", None),
        cap_strike=_strike_or(meta, "cap_strike", None),
        exchange_index=event.exchange_index,
        metadata={
            "ticker": event.market_ticker,
            "event_ticker": event_ticker,
            "status": "initialized",
            "market_lifecycle_created": dict(payload),
        },
    )


def _with_status(
    state: MarketState, event: LifecycleEvent, status: str, at: datetime, **changes: Any
) -> LifecycleOutcome:
    if not status_wins(state.status, state.status_at, status, at):
        return LifecycleOutcome(replace(state, **changes) if changes else state)
    change = StatusChange(state.ticker, state.status, status, at, event.event_type)
    return LifecycleOutcome(replace(state, status=status, status_at=at, **changes), change)


def apply_lifecycle(state: MarketState | None, event: LifecycleEvent) -> LifecycleOutcome:
    """The registry state after `event`; `state` None means the market is unknown to us."""
    kind = event.event_type
    if state is None:
        if kind != "created":
            return LifecycleOutcome(None, needs_fetch=True)
        created = _created_state(event)
        if created is None:
            return LifecycleOutcome(None, needs_fetch=True)
        created = replace(created, status_at=event.observed_at)
        change = StatusChange(created.ticker, None, created.status, event.observed_at, kind)
        return LifecycleOutcome(created, change, needs_fetch=True)

    if kind == "created":
        index = event.exchange_index
        return LifecycleOutcome(
            replace(
                state,
                open_time=event.open_ts or state.open_time,
                close_time=event.close_ts or state.close_time,
                exchange_index=state.exchange_index if index is None else index,
            )
        )
    if kind in ("activated", "deactivated"):
        # A trading pause flag: it never revives a market that has closed.
        rank = status_rank(state.status)
        if rank is not None and rank > 1:
            return LifecycleOutcome(state)
        paused = event.is_deactivated if event.is_deactivated is not None else kind == "deactivated"
        return _with_status(state, event, "inactive" if paused else "active", event.observed_at)
    if kind == "close_date_updated":
        if event.close_ts is None:
            return LifecycleOutcome(state)
        return LifecycleOutcome(replace(state, close_time=event.close_ts))
    if kind == "determined":
        at = event.determination_ts or event.observed_at
        changes: dict[str, Any] = {}
        if event.result is not None:
            changes["result"] = event.result
        if event.settlement_value is not None:
            changes["settlement_value"] = event.settlement_value
        return _with_status(state, event, "determined", at, **changes)
    if kind == "settled":
        at = event.settled_ts or event.observed_at
        settled = {"settlement_ts": event.settled_ts} if event.settled_ts else {}
        return _with_status(state, event, "finalized", at, **settled)
    if kind == "price_level_structure_updated":
        payload = event.payload or {}
        structure = _text(payload, "price_level_structure")
        return LifecycleOutcome(
            replace(state, price_level_structure=structure or state.price_level_structure)
        )
    if kind == "metadata_updated":
        payload = event.payload or {}
        return LifecycleOutcome(
            replace(
                state,
                strike_type=_text(payload, "strike_type") or state.strike_type,
                yes_sub_title=_text(payload, "yes_sub_title") or state.yes_sub_title,
                floor_strike=_strike_or(payload, "floor_strike", state.floor_strike),
                cap_strike=_strike_or(payload, "cap_strike", state.cap_strike),
            )
        )
    return LifecycleOutcome(state)  # unknown event types: stored raw elsewhere, ignored here
