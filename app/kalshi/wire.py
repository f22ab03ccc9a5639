"""Exact reading of Kalshi's wire values: the one home of field parsing (issue 9 item 10).

Prices, counts and times are read here, for REST answers (`app.kalshi.orderbook`,
`app.kalshi.trade`) and for WebSocket frames (`app.normalize` imports these readers through
`app.normalize.fields`, which adds its storage limits), so a field means the same everywhere.

The JSON type tells the unit (kalshi-api.md §5): a *string* price is fixed-point dollars
(`"0.5600"`, 3-dp `"0.960"` in old frames, up to 6 decimals on the $0.0001 grid since 2026-08,
§9), an *integer* price is legacy cents (1-99, removed 2026-03-12); a string count is a `*_fp`
value (`"136.00"`, may be negative in deltas), an integer count is legacy whole contracts.
Floats are refused: a float has already lost exactness, and the API never sends prices or counts
as JSON floats. Every conversion goes through `app.units`; nothing here touches float arithmetic.
Readers raise `FrameError` whose message names the field.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from app.kalshi.errors import FrameError
from app.units import (
    MICROS_PER_DOLLAR,
    UnitError,
    cents_to_micros,
    contracts_to_hundredths,
    count_to_hundredths,
    dollars_to_micros,
    fits_bigint,
)

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9})\d*)?"
    r"([Zz]|[+-]\d{2}:\d{2})$"
)
# Unix milliseconds / seconds that fit a `datetime` (years 1970..9999).
_MAX_MS = 253_402_300_799_999
_MAX_S = 253_402_300_799
_NS_PER_US = 1_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def describe(value: object) -> str:
    """A value for an error message, shortened."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- numbers ------------------------------------------------------------------------------------


def bigint(value: int, where: str) -> int:
    """`value` if it fits a PostgreSQL `bigint` column (every integer we store does)."""
    if not fits_bigint(value):
        raise FrameError(f"{where}: {describe(value)} does not fit a 64-bit integer")
    return value


def binary_price(micros: int, where: str) -> int:
    """`micros` if it is a possible price of a binary contract: 0..1 dollar."""
    if micros < 0:
        raise FrameError(f"{where}: negative price {micros} micro-dollars")
    if micros > MICROS_PER_DOLLAR:
        raise FrameError(f"{where}: price {micros} micro-dollars is outside 0..1 dollar")
    return micros


def dollars_value(value: object, where: str) -> int:
    """A fixed-point dollar string ("0.5600", up to 6 decimals) as micro-dollars, 0..1 dollar
    (every price Kalshi quotes is a binary contract's)."""
    if not isinstance(value, str):
        raise FrameError(f"{where} must be a dollar string, got {describe(value)}")
    try:
        micros = dollars_to_micros(value)
    except UnitError as exc:
        raise FrameError(f"{where}: {exc}") from None
    return binary_price(micros, where)


def count_value(value: object, where: str) -> int:
    """A fixed-point count string ("136.00") as hundredths of a contract (fits `bigint`)."""
    if not isinstance(value, str):
        raise FrameError(f"{where} must be a count string, got {describe(value)}")
    try:
        hundredths = count_to_hundredths(value)
    except UnitError as exc:
        raise FrameError(f"{where}: {exc}") from None
    return bigint(hundredths, where)


def cents_value(value: object, where: str) -> int:
    """A legacy integer-cent price as micro-dollars, 0..1 dollar."""
    if isinstance(value, int) and not isinstance(value, bool):
        return binary_price(cents_to_micros(value), where)
    raise FrameError(f"{where} must be integer cents, got {describe(value)}")


def contracts_value(value: object, where: str) -> int:
    """A legacy integer contract count as hundredths (fits `bigint`)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return bigint(contracts_to_hundredths(value), where)
    raise FrameError(f"{where} must be an integer count, got {describe(value)}")


def price_either(
    msg: Mapping[str, Any], dollars_key: str, cents_key: str, *, required: bool
) -> int | None:
    """A price from the dollar string when present (exact, subpenny-safe), else the legacy
    integer cents; None (or an error when `required`) when neither is there."""
    value = msg.get(dollars_key)
    if value is not None and value != "":
        return dollars_value(value, repr(dollars_key))
    cents = msg.get(cents_key)
    if cents is not None:
        return cents_value(cents, repr(cents_key))
    if required:
        raise FrameError(f"missing {dollars_key!r} (or legacy {cents_key!r})")
    return None


def count_either(
    msg: Mapping[str, Any], fp_key: str, int_key: str, *, required: bool
) -> int | None:
    """A count from the fixed-point string when present, else the legacy integer count."""
    value = msg.get(fp_key)
    if value is not None:
        return count_value(value, repr(fp_key))
    number = msg.get(int_key)
    if number is not None:
        return contracts_value(number, repr(int_key))
    if required:
        raise FrameError(f"missing {fp_key!r} (or legacy {int_key!r})")
    return None


def price_micros(value: Any, field: str = "price") -> int:
    """A price in micro-dollars from a dollar string or a legacy integer-cent value (the JSON
    type decides), 0..1 dollar."""
    if isinstance(value, str):
        return dollars_value(value, field)
    if _is_int(value):
        return cents_value(value, field)
    raise FrameError(f"{field}: expected a dollar string or integer cents, got {value!r}")


def count_hundredths(value: Any, field: str = "count") -> int:
    """A contract count in hundredths from an `_fp` string or a legacy integer count."""
    if isinstance(value, str):
        return count_value(value, field)
    if _is_int(value):
        return contracts_value(value, field)
    raise FrameError(f"{field}: expected an _fp string or integer count, got {value!r}")


# -- times --------------------------------------------------------------------------------------


def rfc3339_to_ns(value: Any, field: str = "time") -> int:
    """Unix nanoseconds from an RFC3339 time, keeping all (up to 9) fractional digits exactly.

    Kalshi sends microseconds in REST (`created_time`) and nanoseconds in some WS `ts` strings;
    `datetime` would truncate the latter, so the fraction is handled as digits.
    """
    match = _RFC3339.match(value) if isinstance(value, str) else None
    if match is None:
        raise FrameError(f"{field}: not an RFC3339 time: {value!r}")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    zone = match.group(8)
    try:
        datetime(year, month, day, hour, minute, second)  # validates the calendar date
        if zone not in ("Z", "z") and (int(zone[1:3]) > 23 or int(zone[4:6]) > 59):
            raise ValueError(f"UTC offset {zone} out of range")
    except ValueError as exc:
        raise FrameError(f"{field}: {exc}: {value!r}") from None
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    if zone not in ("Z", "z"):
        offset = int(zone[1:3]) * 3600 + int(zone[4:6]) * 60
        seconds -= offset if zone[0] == "+" else -offset
    fraction = (match.group(7) or "").ljust(9, "0")
    return seconds * 1_000_000_000 + int(fraction)


def is_rfc3339(value: object) -> bool:
    """Whether `value` has the RFC 3339 shape (the calendar is checked by `rfc3339_to_ns`)."""
    return isinstance(value, str) and _RFC3339.match(value) is not None


def from_rfc3339(value: object, where: str) -> datetime:
    """An RFC 3339 time (any number of fractional digits) as a UTC datetime, truncated to the
    microseconds `datetime` and `timestamptz` keep."""
    if not is_rfc3339(value):
        raise FrameError(f"{where} must be an RFC 3339 time, got {describe(value)}")
    try:
        ns = rfc3339_to_ns(value, where)
        return EPOCH + timedelta(microseconds=ns // _NS_PER_US)
    except (FrameError, OverflowError):
        raise FrameError(f"{where} is not a valid time: {describe(value)}") from None


def from_unix_ms(value: object, where: str) -> datetime:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_MS:
        return EPOCH + timedelta(milliseconds=value)
    raise FrameError(f"{where} must be Unix milliseconds, got {describe(value)}")


def from_unix_s(value: object, where: str) -> datetime:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_S:
        return EPOCH + timedelta(seconds=value)
    raise FrameError(f"{where} must be Unix seconds, got {describe(value)}")


def unix_time_ns(value: Any, field: str, scale: int) -> int:
    """Unix seconds (`scale` 10**9) or milliseconds (10**6) as ns; the integer must be one."""
    if not _is_int(value):
        raise FrameError(f"{field}: expected an integer, got {value!r}")
    return int(value) * scale
