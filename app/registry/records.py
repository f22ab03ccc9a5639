"""Raw REST objects (market, event, series) -> typed rows for the relational tables.

The whole object is kept as `metadata` (Kalshi adds fields every few weeks); the columns we
query on are parsed exactly (prices in micro-dollars, times as aware datetimes, strikes as
Decimal, never through float arithmetic). Pure functions; a malformed object raises
`RecordError` so a sync can skip and count it instead of failing the page.

Fields Kalshi has removed (`response_price_units`, `fractional_trading_enabled`,
`available_on_brokers`, `liquidity_dollars`, series `volume`) are never required: an object
without them parses the same (kalshi-api.md §9). Fields added since (`exchange_index`,
`last_updated_ts`, `categories`, `fee_type_override`, `product_metadata.cadence`, ...) are kept
in `metadata`; `exchange_index` and `last_updated_ts` also get columns (alembic 0005).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

from app.normalize import fields
from app.normalize.fields import FrameError
from app.units import INTEGER_MAX

# Quote and activity fields that change with every trade. They are still stored in `metadata`
# (as of the last write) but are left out of the "did this row change?" test, so a sync does
# not rewrite every traded market; prices live in `tickers` and the book tables.
VOLATILE_MARKET_FIELDS: tuple[str, ...] = (
    "yes_bid_dollars",
    "yes_bid_size_fp",
    "yes_ask_dollars",
    "yes_ask_size_fp",
    "no_bid_dollars",
    "no_ask_dollars",
    "last_price_dollars",
    "previous_yes_bid_dollars",
    "previous_yes_ask_dollars",
    "previous_price_dollars",
    "volume_fp",
    "volume_24h_fp",
    "open_interest_fp",
    "liquidity_dollars",  # removed 2026-10-01; old objects still carry it
    # legacy (pre 2026-03-12) integer twins
    "yes_bid",
    "yes_ask",
    "no_bid",
    "no_ask",
    "last_price",
    "previous_yes_bid",
    "previous_yes_ask",
    "previous_price",
    "volume",
    "volume_24h",
    "open_interest",
    "liquidity",
    "dollar_volume",
    "dollar_open_interest",
)


class RecordError(ValueError):
    """A REST object we cannot store (missing ticker, unparseable time, ...)."""


class MarketRecord(NamedTuple):
    """Columns of `markets` (without first_seen_at/updated_at, which the database keeps)."""

    ticker: str
    event_ticker: str
    series_ticker: str | None
    market_type: str | None
    status: str
    result: str | None
    title: str | None
    yes_sub_title: str | None
    no_sub_title: str | None
    open_time: datetime | None
    close_time: datetime | None
    expected_expiration_time: datetime | None
    expiration_time: datetime | None
    latest_expiration_time: datetime | None
    settlement_ts: datetime | None
    settlement_value: int | None
    price_level_structure: str | None
    strike_type: str | None
    floor_strike: Decimal | None
    cap_strike: Decimal | None
    is_provisional: bool | None
    mve_collection_ticker: str | None
    created_time: datetime | None
    updated_time: datetime | None
    exchange_index: int | None
    metadata: dict[str, Any]


class EventRecord(NamedTuple):
    event_ticker: str
    series_ticker: str | None
    title: str | None
    sub_title: str | None
    category: str | None
    mutually_exclusive: bool | None
    collateral_return_type: str | None
    strike_date: datetime | None
    strike_period: str | None
    exchange_index: int | None
    last_updated_ts: datetime | None
    metadata: dict[str, Any]


class SeriesRecord(NamedTuple):
    ticker: str
    title: str | None
    category: str | None
    frequency: str | None
    fee_type: str | None
    tags: list[str]
    exchange_index: int | None
    last_updated_ts: datetime | None
    metadata: dict[str, Any]


# Series fields that change with every trade (only with `include_volume=true`): not stored, so
# a series row is rewritten only when its metadata really changes.
SERIES_VOLUME_FIELDS = frozenset({"volume", "volume_fp"})


def _text(obj: Mapping[str, Any], key: str) -> str | None:
    """A string field; empty strings are NULL (Kalshi uses "" for "none")."""
    value = obj.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RecordError(f"{key!r} must be a string, got {value!r:.60}")
    if "\x00" in value:
        raise RecordError(f"{key!r} contains a NUL character")
    return value


def _required(obj: Mapping[str, Any], key: str) -> str:
    value = _text(obj, key)
    if value is None:
        raise RecordError(f"missing {key!r}")
    return value


def _bool(obj: Mapping[str, Any], key: str) -> bool | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise RecordError(f"{key!r} must be a boolean, got {value!r:.60}")
    return value


def _time(obj: Mapping[str, Any], key: str) -> datetime | None:
    value = obj.get(key)
    if value is None or value == "":
        return None
    try:
        return fields.from_rfc3339(value, repr(key))
    except FrameError as exc:
        raise RecordError(str(exc)) from None


def exchange_index(obj: Mapping[str, Any], key: str = "exchange_index") -> int | None:
    """The exchange instance (shard) number: a non-negative integer (`integer` column)."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INTEGER_MAX:
        raise RecordError(f"{key!r} must be a non-negative integer, got {value!r:.60}")
    return value


def updated_ts(obj: Mapping[str, Any], key: str = "last_updated_ts") -> datetime | None:
    """`last_updated_ts` of a series or event. Its wire form is not documented yet (§9): an
    RFC 3339 string, Unix seconds or Unix milliseconds are read; anything else is NULL (the raw
    value stays in `metadata`) rather than losing the whole object."""
    value = obj.get(key)
    try:
        if isinstance(value, str) and value:
            return fields.from_rfc3339(value, repr(key))
        if isinstance(value, int) and not isinstance(value, bool):
            # Unix seconds stay below 1e11 until the year 5138; larger values are milliseconds.
            if abs(value) < 10**11:
                return fields.from_unix_s(value, repr(key))
            return fields.from_unix_ms(value, repr(key))
    except FrameError:
        return None
    return None


def strike_value(obj: Mapping[str, Any], key: str) -> Decimal | None:
    value = obj.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise RecordError(f"{key!r} must be a number, got {value!r:.60}")
    try:
        # repr(float) is the shortest text that round-trips: the JSON digits Kalshi sent.
        number = Decimal(value if isinstance(value, str) else repr(value))
    except InvalidOperation:
        raise RecordError(f"{key!r} is not a number: {value!r:.60}") from None
    if not number.is_finite():
        raise RecordError(f"{key!r} is not finite: {value!r:.60}")
    return number


def _settlement_value(obj: Mapping[str, Any]) -> int | None:
    try:
        value = obj.get("settlement_value_dollars")
        if value is not None and value != "":
            return fields.dollars_value(value, "'settlement_value_dollars'")
        legacy = obj.get("settlement_value")  # integer cents before 2026-03-12
        if legacy is not None and legacy != "":
            return fields.cents_value(legacy, "'settlement_value'")
    except FrameError as exc:
        raise RecordError(str(exc)) from None
    return None


def _metadata(obj: Mapping[str, Any]) -> dict[str, Any]:
    try:
        fields.no_nul(obj, "object")
    except FrameError as exc:
        raise RecordError(str(exc)) from None
    return dict(obj)


def series_ticker_of(event_ticker: str) -> str:
    """Kalshi event tickers are `<series>-<suffix>`; used only when the event is unknown."""
    return event_ticker.split("-", 1)[0]


def market_record(obj: Mapping[str, Any]) -> MarketRecord:
    """Typed columns of a REST market object (`series_ticker` guessed from the event ticker;
    the database prefers the event's own `series_ticker` when it knows the event)."""
    if not isinstance(obj, Mapping):
        raise RecordError(f"market must be an object, got {type(obj).__name__}")
    event_ticker = _required(obj, "event_ticker")
    return MarketRecord(
        ticker=_required(obj, "ticker"),
        event_ticker=event_ticker,
        series_ticker=_text(obj, "series_ticker") or series_ticker_of(event_ticker),
        market_type=_text(obj, "market_type"),
        status=_required(obj, "status"),
        result=_text(obj, "result"),
        title=_text(obj, "title"),
        yes_sub_title=_text(obj, "yes_sub_title"),
        no_sub_title=_text(obj, "no_sub_title"),
        open_time=_time(obj, "open_time"),
        close_time=_time(obj, "close_time"),
        expected_expiration_time=_time(obj, "expected_expiration_time"),
        expiration_time=_time(obj, "expiration_time"),
        latest_expiration_time=_time(obj, "latest_expiration_time"),
        settlement_ts=_time(obj, "settlement_ts"),
        settlement_value=_settlement_value(obj),
        price_level_structure=_text(obj, "price_level_structure"),
        strike_type=_text(obj, "strike_type"),
        floor_strike=strike_value(obj, "floor_strike"),
        cap_strike=strike_value(obj, "cap_strike"),
        is_provisional=_bool(obj, "is_provisional"),
        mve_collection_ticker=_text(obj, "mve_collection_ticker"),
        created_time=_time(obj, "created_time"),
        updated_time=_time(obj, "updated_time"),
        exchange_index=exchange_index(obj),
        metadata=_metadata(obj),
    )


def event_record(obj: Mapping[str, Any]) -> EventRecord:
    if not isinstance(obj, Mapping):
        raise RecordError(f"event must be an object, got {type(obj).__name__}")
    metadata = {k: v for k, v in obj.items() if k != "markets"}  # nested markets go to markets
    return EventRecord(
        event_ticker=_required(obj, "event_ticker"),
        series_ticker=_text(obj, "series_ticker"),
        title=_text(obj, "title"),
        sub_title=_text(obj, "sub_title") or _text(obj, "subtitle"),
        category=_text(obj, "category"),
        mutually_exclusive=_bool(obj, "mutually_exclusive"),
        collateral_return_type=_text(obj, "collateral_return_type"),
        strike_date=_time(obj, "strike_date"),
        strike_period=_text(obj, "strike_period"),
        exchange_index=exchange_index(obj),
        last_updated_ts=updated_ts(obj),
        metadata=_metadata(metadata),
    )


def series_record(obj: Mapping[str, Any]) -> SeriesRecord:
    if not isinstance(obj, Mapping):
        raise RecordError(f"series must be an object, got {type(obj).__name__}")
    tags = obj.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise RecordError(f"'tags' must be a list of strings, got {tags!r:.60}")
    categories = obj.get("categories")
    if categories is not None and (
        not isinstance(categories, list) or not all(isinstance(c, str) for c in categories)
    ):
        raise RecordError(f"'categories' must be a list of strings, got {categories!r:.60}")
    metadata = {k: v for k, v in obj.items() if k not in SERIES_VOLUME_FIELDS}
    return SeriesRecord(
        ticker=_required(obj, "ticker"),
        title=_text(obj, "title"),
        category=_text(obj, "category"),
        frequency=_text(obj, "frequency"),
        fee_type=_text(obj, "fee_type"),
        tags=list(tags),
        exchange_index=exchange_index(obj),
        last_updated_ts=updated_ts(obj),
        metadata=_metadata(metadata),
    )
