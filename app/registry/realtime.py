"""Real-time registry updates from `market_lifecycle_v2` frames, applied to the database.

`apply_lifecycle_events(conn, events, ...)` runs in the caller's transaction and never
commits: the ingest worker writes the frame's `lifecycle_events` row and the registry change
together, commits, and only then publishes `report.added`/`report.removed` to the change feed
(`ChangeFeed.publish`). Each market row is locked (`SELECT ... FOR UPDATE`) while its event is
applied, so a concurrent reconcile cannot interleave.

A `created` market (or an event for a market we have never seen) is fetched with
`GET /markets/{ticker}` first (REG-8: about 100 creations a day); a 404 skips it, any other
failure falls back to the event's own fields for `created` and leaves the rest to reconcile.

Event-level messages of the same channel (`event_lifecycle`, `event_fee_update`) go through
`apply_event_updates` (`EventUpdate.from_row`): the `events` row gets the message's fields and
its `metadata` the fee overrides; an unknown event is created from `event_lifecycle` and left to
reconcile for `event_fee_update`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.config import RegistrySettings
from app.db.engine import dbapi_connection
from app.db.rows import LifecycleEventRow
from app.kalshi.errors import KalshiError, NotFound
from app.logs import log_event
from app.normalize import fields
from app.normalize.fields import FrameError
from app.registry.lifecycle import (
    LifecycleEvent,
    MarketState,
    StatusChange,
    apply_lifecycle,
)
from app.registry.membership import is_subscribed
from app.registry.records import RecordError, exchange_index, market_record
from app.registry.store import jsonb, upsert_markets

log = logging.getLogger("app.registry.realtime")

FetchMarket = Callable[[str], Mapping[str, Any]]

_STATE_COLUMNS = (
    "ticker",
    "event_ticker",
    "status",
    "series_ticker",
    "result",
    "title",
    "yes_sub_title",
    "no_sub_title",
    "open_time",
    "close_time",
    "expected_expiration_time",
    "settlement_ts",
    "settlement_value",
    "price_level_structure",
    "strike_type",
    "floor_strike",
    "cap_strike",
    "exchange_index",
    "metadata",
)
# What lifecycle events may change on an existing row.
_MUTABLE = (
    "status",
    "result",
    "yes_sub_title",
    "open_time",
    "close_time",
    "settlement_ts",
    "settlement_value",
    "price_level_structure",
    "strike_type",
    "floor_strike",
    "cap_strike",
    "exchange_index",
)


@dataclass
class LifecycleReport:
    """What a batch of lifecycle events did; `added`/`removed` go to the change feed."""

    events: int = 0
    applied: int = 0
    status_changes: int = 0
    fetched: int = 0
    created_from_event: int = 0
    skipped: int = 0
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changes: list[StatusChange] = field(default_factory=list)


def load_state(conn: Any, ticker: str, *, lock: bool = False) -> MarketState | None:
    """The registry state of one market (None if unknown), optionally row-locked."""
    columns = ", ".join(f"m.{c}" for c in _STATE_COLUMNS)
    with dbapi_connection(conn).cursor() as cur:
        cur.execute(
            f"SELECT {columns}, (SELECT h.observed_at FROM market_status_history h "
            "WHERE h.market_ticker = m.ticker ORDER BY h.observed_at DESC LIMIT 1) "
            f"FROM markets m WHERE m.ticker = %s{' FOR UPDATE OF m' if lock else ''}",
            (ticker,),
        )
        row = cur.fetchone()
    if row is None:
        return None
    values = dict(zip(_STATE_COLUMNS, row[:-1], strict=True))
    return MarketState(status_at=row[-1], **values)


def _insert_state(cur: Any, state: MarketState) -> None:
    columns = [c for c in _STATE_COLUMNS]
    values = [getattr(state, c) for c in columns]
    values = [jsonb(v) if isinstance(v, Mapping) else v for v in values]
    cur.execute(
        f"INSERT INTO markets ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) "
        "ON CONFLICT (ticker) DO NOTHING",
        values,
    )


def _update_state(cur: Any, before: MarketState, after: MarketState) -> None:
    changed = [c for c in _MUTABLE if getattr(before, c) != getattr(after, c)]
    if not changed:
        return
    sets = ", ".join(f"{c} = %s" for c in changed)
    cur.execute(
        f"UPDATE markets SET {sets}, updated_at = now() WHERE ticker = %s",
        [*(getattr(after, c) for c in changed), after.ticker],
    )


def _record_change(cur: Any, change: StatusChange) -> None:
    cur.execute(
        "INSERT INTO market_status_history "
        "(market_ticker, status, previous_status, observed_at, source, event_type) "
        "VALUES (%s, %s, %s, %s, 'ws', %s) ON CONFLICT DO NOTHING",
        (change.ticker, change.status, change.previous, change.observed_at, change.event_type),
    )


def _fetch(conn: Any, fetch_market: FetchMarket, ticker: str, now: datetime) -> str:
    """Fetch one market by REST and upsert it; returns 'ok', 'missing' or 'failed'."""
    try:
        obj = fetch_market(ticker)
        record = market_record(obj)
    except NotFound:
        log_event(log, "registry_fetch_missing", logging.WARNING, ticker=ticker)
        return "missing"
    except (KalshiError, RecordError) as exc:
        log_event(log, "registry_fetch_failed", logging.WARNING, ticker=ticker, error=str(exc))
        return "failed"
    upsert_markets(conn, [record], fetched_at=now, event_type="lifecycle_fetch")
    return "ok"


def apply_lifecycle_events(
    conn: Any,
    events: Iterable[LifecycleEvent],
    *,
    settings: RegistrySettings | None = None,
    fetch_market: FetchMarket | None = None,
    now: datetime | None = None,
) -> LifecycleReport:
    """Apply lifecycle events in order, in the caller's transaction (no commit)."""
    settings = settings or RegistrySettings()
    now = now or datetime.now(UTC)
    report = LifecycleReport()
    membership: dict[str, bool] = {}
    with dbapi_connection(conn).cursor() as cur:
        for event in events:
            report.events += 1
            ticker = event.market_ticker
            before = load_state(conn, ticker, lock=True)
            was_member = (
                is_subscribed(before.status, before.close_time, now, settings) if before else False
            )
            outcome = apply_lifecycle(before, event)
            fetched = False
            if outcome.needs_fetch and fetch_market is not None and settings.fetch_created:
                verdict = _fetch(conn, fetch_market, ticker, now)
                if verdict == "missing":
                    report.skipped += 1
                    continue
                if verdict == "ok":
                    fetched = True
                    report.fetched += 1
                    before = load_state(conn, ticker, lock=True)
                    outcome = apply_lifecycle(before, event)
            after = outcome.state
            if after is None:
                report.skipped += 1
                continue
            if before is None:
                _insert_state(cur, after)
                report.created_from_event += 1
            else:
                _update_state(cur, before, after)
            if outcome.status_change is not None:
                _record_change(cur, outcome.status_change)
                report.status_changes += 1
                report.changes.append(outcome.status_change)
            report.applied += 1
            member = is_subscribed(after.status, after.close_time, now, settings)
            if fetched or member != was_member:
                membership[ticker] = member
    report.added = [t for t, m in membership.items() if m]
    report.removed = [t for t, m in membership.items() if not m]
    return report


EVENT_MESSAGE_TYPES = frozenset({"event_lifecycle", "event_fee_update"})
# `event_lifecycle` fields -> `events` columns (kalshi-api.md §3.5; `subtitle` on the wire,
# `sub_title` in a third-party capture and in REST).
_EVENT_TEXT_COLUMNS = (
    ("title", ("title",)),
    ("sub_title", ("subtitle", "sub_title")),
    ("collateral_return_type", ("collateral_return_type",)),
    ("series_ticker", ("series_ticker",)),
    ("strike_period", ("strike_period",)),
)
_FEE_FIELDS = ("fee_type_override", "fee_multiplier_override")


@dataclass(frozen=True)
class EventUpdate:
    """What an `event_lifecycle` or `event_fee_update` message changes on an `events` row.

    `columns` holds typed column values the message carries (absent fields are left alone);
    `metadata` the keys merged into the row's `metadata` (the fee overrides, which may be null
    to clear an override).
    """

    msg_type: str
    event_ticker: str
    columns: Mapping[str, Any]
    metadata: Mapping[str, Any]

    @classmethod
    def from_row(cls, row: LifecycleEventRow) -> EventUpdate | None:
        """From a normalized lifecycle row (None for market messages or unusable payloads)."""
        if row.msg_type not in EVENT_MESSAGE_TYPES or not row.event_ticker:
            return None
        try:
            return cls.from_msg(row.msg_type, row.payload)
        except (FrameError, RecordError) as exc:
            log_event(
                log,
                "registry_event_update_skipped",
                logging.WARNING,
                event_ticker=row.event_ticker,
                error=str(exc),
            )
            return None

    @classmethod
    def from_msg(cls, msg_type: str, msg: Mapping[str, Any]) -> EventUpdate:
        """From the `msg` of an event-level frame; raises `FrameError` / `RecordError`."""
        ticker = fields.required_text(msg, "event_ticker")
        columns: dict[str, Any] = {}
        metadata: dict[str, Any] = {}
        if msg_type == "event_lifecycle":
            for column, keys in _EVENT_TEXT_COLUMNS:
                for key in keys:
                    value = fields.text(msg, key, required=False) if msg.get(key) != "" else None
                    if value is not None:
                        columns[column] = value
                        break
            if msg.get("strike_date") is not None:
                columns["strike_date"] = fields.from_unix_s(msg["strike_date"], "'strike_date'")
            index = exchange_index(msg)
            if index is not None:
                columns["exchange_index"] = index
        elif msg_type == "event_fee_update":
            for key in _FEE_FIELDS:
                if key in msg:
                    metadata[key] = msg[key]
        else:
            raise FrameError(f"not an event-level message type: {msg_type!r}")
        return cls(msg_type, ticker, columns, metadata)


def apply_event_updates(conn: Any, updates: Iterable[EventUpdate]) -> int:
    """Apply event-level updates in order, in the caller's transaction (no commit); returns how
    many `events` rows were written."""
    written = 0
    with dbapi_connection(conn).cursor() as cur:
        for update in updates:
            sets = [f"{c} = %s" for c in update.columns]
            values: list[Any] = list(update.columns.values())
            if update.metadata:
                sets.append("metadata = events.metadata || %s")
                values.append(jsonb(dict(update.metadata)))
            if not sets:
                continue
            cur.execute(
                f"UPDATE events SET {', '.join(sets)}, updated_at = now() WHERE event_ticker = %s",
                [*values, update.event_ticker],
            )
            if cur.rowcount:
                written += 1
                continue
            if update.msg_type != "event_lifecycle":
                continue  # fee overrides of an event we lack: reconcile fetches it whole
            columns = {"event_ticker": update.event_ticker, **update.columns}
            metadata = {**columns, "event_lifecycle": True}
            metadata.pop("strike_date", None)
            cur.execute(
                f"INSERT INTO events ({', '.join(columns)}, metadata) "
                f"VALUES ({', '.join(['%s'] * (len(columns) + 1))}) "
                "ON CONFLICT (event_ticker) DO NOTHING",
                [*columns.values(), jsonb(metadata)],
            )
            written += cur.rowcount
    return written
