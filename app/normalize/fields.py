"""Readers for the fields of WebSocket frames: exact units, strict types, reasons instead of
exceptions.

Each reader either returns a value in storage units (`app.units`: micro-dollars, hundredths of
a contract) or raises `FrameError` with a reason fit for the dead-letter table. JSON numbers
that arrive as floats are refused (units must never pass through float, DESIGN §4): a price is
read only from a dollar *string* or, in the legacy format, an integer number of cents.

The value readers themselves (prices, counts, RFC 3339 / Unix times) live in `app.kalshi.wire`,
the one home of wire-field parsing shared with the REST client (issue 9 item 10); this module
re-exports them and adds what the normalizers need on top: message-level readers, the legacy
guard, and the storage limits.

Values the tables cannot hold, or that no sane exchange sends, are refused so that one frame
is dead-lettered instead of its whole batch failing at COPY time (issue 9 item 6): an integer
outside PostgreSQL `bigint`, a binary-market price outside 0..1 dollar, an exchange time
outside `EXCHANGE_TIME_MIN`..`EXCHANGE_TIME_MAX`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

# A frame we cannot normalize; the message is the dead-letter reason. The wire readers raise
# the same class, so their refusals are dead letters too.
from app.kalshi.errors import FrameError
from app.kalshi.wire import (
    bigint,
    binary_price,
    cents_value,
    contracts_value,
    count_either,
    count_value,
    describe,
    dollars_value,
    from_rfc3339,
    from_unix_ms,
    from_unix_s,
    price_either,
)
from app.normalize.envelope import EPOCH

__all__ = [
    "EXCHANGE_MS_MAX",
    "EXCHANGE_MS_MIN",
    "EXCHANGE_TIME_MAX",
    "EXCHANGE_TIME_MIN",
    "FrameError",
    "bigint",
    "binary_price",
    "book_side",
    "boolean",
    "cents_value",
    "contracts_value",
    "count",
    "count_either",
    "count_value",
    "dollars",
    "dollars_value",
    "exchange_ms",
    "exchange_rfc3339",
    "exchange_s",
    "exchange_time",
    "from_rfc3339",
    "from_unix_ms",
    "from_unix_s",
    "integer",
    "no_nul",
    "optional_unix_s",
    "price_either",
    "refuse_legacy_fields",
    "required_text",
    "side",
    "text",
]

_describe = describe

Msg = Mapping[str, Any]

# Exchange times (`ts_ms`, `ts`, `time`, `sending_ts_ms`, `created_time`) outside this window
# are garbage: they would also land outside every partition of the time-series tables.
EXCHANGE_TIME_MIN = datetime(2000, 1, 1, tzinfo=UTC)
EXCHANGE_TIME_MAX = datetime(2100, 1, 1, tzinfo=UTC)
EXCHANGE_MS_MIN = int((EXCHANGE_TIME_MIN - EPOCH).total_seconds()) * 1000
EXCHANGE_MS_MAX = int((EXCHANGE_TIME_MAX - EPOCH).total_seconds()) * 1000 - 1
_SIDES = frozenset({"yes", "no"})
_BOOK_SIDES = frozenset({"bid", "ask"})


def text(msg: Msg, key: str, *, required: bool = True) -> str | None:
    """A non-empty string without NUL (PostgreSQL text cannot hold NUL)."""
    value = msg.get(key)
    if value is None:
        if required:
            raise FrameError(f"missing {key!r}")
        return None
    if not isinstance(value, str) or not value:
        raise FrameError(f"{key!r} must be a non-empty string, got {_describe(value)}")
    if "\x00" in value:
        raise FrameError(f"{key!r} contains a NUL character")
    return value


def required_text(msg: Msg, key: str) -> str:
    value = text(msg, key)
    assert value is not None
    return value


def integer(msg: Msg, key: str, *, required: bool = False, nonnegative: bool = False) -> int | None:
    """An integer field stored in a `bigint` column."""
    value = msg.get(key)
    if value is None:
        if required:
            raise FrameError(f"missing {key!r}")
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if nonnegative and value < 0:
            raise FrameError(f"{key!r} must not be negative, got {_describe(value)}")
        return bigint(value, repr(key))
    raise FrameError(f"{key!r} must be an integer, got {_describe(value)}")


def boolean(msg: Msg, key: str) -> bool | None:
    value = msg.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise FrameError(f"{key!r} must be true or false, got {_describe(value)}")
    return value


def side(msg: Msg, key: str, *, required: bool = True) -> str | None:
    value = text(msg, key, required=required)
    if value is not None and value not in _SIDES:
        raise FrameError(f"{key!r} must be 'yes' or 'no', got {_describe(value)}")
    return value


def book_side(msg: Msg, key: str) -> str | None:
    value = text(msg, key, required=False)
    if value is not None and value not in _BOOK_SIDES:
        raise FrameError(f"{key!r} must be 'bid' or 'ask', got {_describe(value)}")
    return value


def dollars(
    msg: Msg, key: str, *, required: bool = False, blank_is_none: bool = False
) -> int | None:
    value = msg.get(key)
    if value is None or (blank_is_none and value == ""):
        if required:
            raise FrameError(f"missing {key!r}")
        return None
    return dollars_value(value, repr(key))


def count(msg: Msg, key: str, *, required: bool = False) -> int | None:
    value = msg.get(key)
    if value is None:
        if required:
            raise FrameError(f"missing {key!r}")
        return None
    return count_value(value, repr(key))


def refuse_legacy_fields(msg: Msg, replacements: Mapping[str, str]) -> None:
    """Fixed-point mapper guard: a removed integer field without its replacement means the
    frame is in the legacy format; mapping it here would silently drop that value."""
    for legacy, replacement in replacements.items():
        if legacy in msg and replacement not in msg:
            raise FrameError(
                f"legacy field {legacy!r} without {replacement!r}: the frame is in the legacy "
                "format; normalize it with version 'legacy'"
            )


def exchange_time(value: datetime, where: str) -> datetime:
    """`value` if it is a sane exchange time (`EXCHANGE_TIME_MIN`..`EXCHANGE_TIME_MAX`)."""
    if not EXCHANGE_TIME_MIN <= value < EXCHANGE_TIME_MAX:
        raise FrameError(
            f"{where} is outside {EXCHANGE_TIME_MIN.year}..{EXCHANGE_TIME_MAX.year - 1}: "
            f"{value.isoformat()}"
        )
    return value


def exchange_ms(value: object, where: str) -> datetime:
    """Unix milliseconds of an exchange time (sane window enforced)."""
    return exchange_time(from_unix_ms(value, where), where)


def exchange_s(value: object, where: str) -> datetime:
    """Unix seconds of an exchange time (sane window enforced)."""
    return exchange_time(from_unix_s(value, where), where)


def exchange_rfc3339(value: object, where: str) -> datetime:
    """An RFC 3339 exchange time (sane window enforced)."""
    return exchange_time(from_rfc3339(value, where), where)


def optional_unix_s(msg: Msg, key: str) -> datetime | None:
    value = msg.get(key)
    return None if value is None else from_unix_s(value, repr(key))


def no_nul(value: Any, where: str = "msg") -> None:
    """Refuse NUL anywhere in a JSON value we store as jsonb (PostgreSQL rejects \\u0000)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise FrameError(f"{where} contains a NUL character")
    elif isinstance(value, dict):
        for key, item in value.items():
            no_nul(key, where)
            no_nul(item, where)
    elif isinstance(value, list):
        for item in value:
            no_nul(item, where)
