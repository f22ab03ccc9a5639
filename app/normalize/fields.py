"""Readers for single wire fields: exact units, strict types, reasons instead of exceptions.

Each reader either returns a value in storage units (`app.units`: micro-dollars, hundredths of
a contract) or raises `FrameError` with a reason fit for the dead-letter table. JSON numbers
that arrive as floats are refused (units must never pass through float, DESIGN §4): a price is
read only from a dollar *string* or, in the legacy format, an integer number of cents.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from app.normalize.envelope import EPOCH
from app.units import (
    UnitError,
    cents_to_micros,
    contracts_to_hundredths,
    count_to_hundredths,
    dollars_to_micros,
)

Msg = Mapping[str, Any]

# Unix milliseconds / seconds that fit a `datetime` (years 1970..9999).
_MAX_MS = 253_402_300_799_999
_MAX_S = 253_402_300_799
_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:\d{2})$"
)
_SIDES = frozenset({"yes", "no"})
_BOOK_SIDES = frozenset({"bid", "ask"})


class FrameError(ValueError):
    """A frame we cannot normalize; the message is the dead-letter reason."""


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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


def integer(msg: Msg, key: str, *, required: bool = False) -> int | None:
    value = msg.get(key)
    if value is None:
        if required:
            raise FrameError(f"missing {key!r}")
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
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


def dollars_value(value: object, where: str) -> int:
    """A fixed-point dollar string ("0.5600") as micro-dollars."""
    if not isinstance(value, str):
        raise FrameError(f"{where} must be a dollar string, got {_describe(value)}")
    try:
        return dollars_to_micros(value)
    except UnitError as exc:
        raise FrameError(f"{where}: {exc}") from None


def count_value(value: object, where: str) -> int:
    """A fixed-point count string ("136.00") as hundredths of a contract."""
    if not isinstance(value, str):
        raise FrameError(f"{where} must be a count string, got {_describe(value)}")
    try:
        return count_to_hundredths(value)
    except UnitError as exc:
        raise FrameError(f"{where}: {exc}") from None


def cents_value(value: object, where: str) -> int:
    """A legacy integer-cent price as micro-dollars."""
    if isinstance(value, int) and not isinstance(value, bool):
        return cents_to_micros(value)
    raise FrameError(f"{where} must be integer cents, got {_describe(value)}")


def contracts_value(value: object, where: str) -> int:
    """A legacy integer contract count as hundredths."""
    if isinstance(value, int) and not isinstance(value, bool):
        return contracts_to_hundredths(value)
    raise FrameError(f"{where} must be an integer count, got {_describe(value)}")


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


def price_either(msg: Msg, dollars_key: str, cents_key: str, *, required: bool) -> int | None:
    """Legacy price: the dollar string when present (exact, subpenny-safe), else the cents."""
    value = msg.get(dollars_key)
    if value is not None and value != "":
        return dollars_value(value, repr(dollars_key))
    cents = msg.get(cents_key)
    if cents is not None:
        return cents_value(cents, repr(cents_key))
    if required:
        raise FrameError(f"missing {dollars_key!r} (or legacy {cents_key!r})")
    return None


def count_either(msg: Msg, fp_key: str, int_key: str, *, required: bool) -> int | None:
    """Legacy count: the fixed-point string when present, else the integer count."""
    value = msg.get(fp_key)
    if value is not None:
        return count_value(value, repr(fp_key))
    number = msg.get(int_key)
    if number is not None:
        return contracts_value(number, repr(int_key))
    if required:
        raise FrameError(f"missing {fp_key!r} (or legacy {int_key!r})")
    return None


def refuse_legacy_fields(msg: Msg, replacements: Mapping[str, str]) -> None:
    """Fixed-point mapper guard: a removed integer field without its replacement means the
    frame is in the legacy format; mapping it here would silently drop that value."""
    for legacy, replacement in replacements.items():
        if legacy in msg and replacement not in msg:
            raise FrameError(
                f"legacy field {legacy!r} without {replacement!r}: the frame is in the legacy "
                "format; normalize it with version 'legacy'"
            )


def from_unix_ms(value: object, where: str) -> datetime:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_MS:
        return EPOCH + timedelta(milliseconds=value)
    raise FrameError(f"{where} must be Unix milliseconds, got {_describe(value)}")


def from_unix_s(value: object, where: str) -> datetime:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_S:
        return EPOCH + timedelta(seconds=value)
    raise FrameError(f"{where} must be Unix seconds, got {_describe(value)}")


def from_rfc3339(value: object, where: str) -> datetime:
    """RFC 3339 with any number of fractional digits, truncated to microseconds."""
    match = _RFC3339.match(value) if isinstance(value, str) else None
    if match is None:
        raise FrameError(f"{where} must be an RFC 3339 time, got {_describe(value)}")
    day, clock, fraction, zone = match.groups()
    micros = (fraction or "")[:6].ljust(6, "0")
    offset = "+00:00" if zone in ("Z", "z") else zone
    try:
        return datetime.fromisoformat(f"{day}T{clock}.{micros}{offset}")
    except ValueError:
        raise FrameError(f"{where} is not a valid time: {_describe(value)}") from None


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
