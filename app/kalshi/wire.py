"""Exact parsing of Kalshi's wire values: prices, counts and timestamps in every format used.

The JSON type tells the unit (kalshi-api.md §5): a *string* price is fixed-point dollars
(`"0.5600"`, 3-dp `"0.960"` in old frames), an *integer* price is legacy cents (1-99, removed
2026-03-12); a string count is a `*_fp` value (`"136.00"`, may be negative in deltas), an integer
count is legacy whole contracts. Floats are refused: a float has already lost exactness, and the
API never sends prices or counts as JSON floats. Everything goes through `app.units`; nothing
here ever touches float arithmetic.
"""

from __future__ import annotations

import calendar
import re
from datetime import datetime
from typing import Any

from app.kalshi.errors import WireFormatError
from app.units import (
    UnitError,
    cents_to_micros,
    contracts_to_hundredths,
    count_to_hundredths,
    dollars_to_micros,
)

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9})\d*)?"
    r"([Zz]|[+-]\d{2}:\d{2})$"
)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def price_micros(value: Any, field: str = "price") -> int:
    """A price in micro-dollars from a dollar string or a legacy integer-cent value."""
    try:
        if isinstance(value, str):
            return dollars_to_micros(value)
        if _is_int(value):
            return cents_to_micros(value)
    except UnitError as exc:
        raise WireFormatError(f"{field}: {exc}") from exc
    raise WireFormatError(f"{field}: expected a dollar string or integer cents, got {value!r}")


def count_hundredths(value: Any, field: str = "count") -> int:
    """A contract count in hundredths from an `_fp` string or a legacy integer count."""
    try:
        if isinstance(value, str):
            return count_to_hundredths(value)
        if _is_int(value):
            return contracts_to_hundredths(value)
    except UnitError as exc:
        raise WireFormatError(f"{field}: {exc}") from exc
    raise WireFormatError(f"{field}: expected an _fp string or integer count, got {value!r}")


def rfc3339_to_ns(value: Any, field: str = "time") -> int:
    """Unix nanoseconds from an RFC3339 time, keeping all (up to 9) fractional digits exactly.

    Kalshi sends microseconds in REST (`created_time`) and nanoseconds in some WS `ts` strings;
    `datetime` would truncate the latter, so the fraction is handled as digits.
    """
    match = _RFC3339.match(value) if isinstance(value, str) else None
    if match is None:
        raise WireFormatError(f"{field}: not an RFC3339 time: {value!r}")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    try:
        datetime(year, month, day, hour, minute, second)  # validates the calendar date
    except ValueError as exc:
        raise WireFormatError(f"{field}: {exc}: {value!r}") from exc
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    zone = match.group(8)
    if zone not in ("Z", "z"):
        offset = int(zone[1:3]) * 3600 + int(zone[4:6]) * 60
        seconds -= offset if zone[0] == "+" else -offset
    fraction = (match.group(7) or "").ljust(9, "0")
    return seconds * 1_000_000_000 + int(fraction)
