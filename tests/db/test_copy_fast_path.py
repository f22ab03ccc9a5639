"""The COPY encoders' fast paths produce exactly what the general paths produce."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from app.db import copy
from app.normalize.envelope import EPOCH, datetime_from_ns

_ESCAPE = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _slow_text(value: Any) -> str:
    if "\x00" in value:
        raise copy.CopyEncodingError("text cannot contain NUL characters")
    return str(value.translate(_ESCAPE))


def _slow_integer(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        raise copy.CopyEncodingError(f"expected an integer, got {value!r}")
    return str(value)


def _slow_timestamptz(value: Any) -> str:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise copy.CopyEncodingError(f"expected a timezone-aware datetime, got {value!r}")
    return value.isoformat()


def _slow_bytea(value: Any) -> str:
    return "\\\\x" + bytes(value).hex()


def _outcome(encode: Callable[[Any], str], value: Any) -> tuple[str, object]:
    try:
        return ("ok", encode(value))
    except Exception as exc:  # the error class and message are compared
        return (type(exc).__name__, str(exc))


TEXTS = [
    "",
    "KXSIMA-E1-T2",
    "a\\b",
    "tab\there",
    "line\nbreak",
    "cr\rhere",
    "nul\x00",
    "\x0b\x0c\x1b",
    "é \u00fc 中文",
    "\u2028\u2029",
    "\ud800",
    "\\",
    "\\t",
    b"bytes",
    b"nul\x00",
    12,
    ["a"],
]


@pytest.mark.parametrize("value", TEXTS, ids=repr)
def test_text_matches_the_general_path(value: Any) -> None:
    assert _outcome(copy._text, value) == _outcome(_slow_text, value)


def test_generated_text_matches_the_general_path() -> None:
    rng = random.Random(7)
    alphabet = "ab-_.:\\\t\n\r\x00\x7f\x85é€\u2028 "
    for _ in range(20_000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert _outcome(copy._text, value) == _outcome(_slow_text, value), repr(value)


class _Int(int):
    pass


@pytest.mark.parametrize("value", [0, -1, 10**40, True, False, _Int(5), 1.0, "1", None], ids=repr)
def test_integer_matches_the_general_path(value: Any) -> None:
    assert _outcome(copy._integer, value) == _outcome(_slow_integer, value)


class _Datetime(datetime):
    pass


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 11, 24, 1, tzinfo=UTC),
        datetime(2026, 11, 24, 1, 2, 3, 456789, tzinfo=UTC),
        datetime(2026, 11, 24, 1, tzinfo=timezone(timedelta(hours=-5))),
        datetime(2026, 11, 24, 1),
        _Datetime(2026, 11, 24, 1, tzinfo=UTC),
        _Datetime(2026, 11, 24, 1),
        "2026-11-24",
        0,
    ],
    ids=repr,
)
def test_timestamptz_matches_the_general_path(value: Any) -> None:
    assert _outcome(copy._timestamptz, value) == _outcome(_slow_timestamptz, value)


@pytest.mark.parametrize(
    "value", [b"", b"\x00\xff{}", bytearray(b"ab"), memoryview(b"cd"), "str"], ids=repr
)
def test_bytea_matches_the_general_path(value: Any) -> None:
    assert _outcome(copy._bytea, value) == _outcome(_slow_bytea, value)


def test_datetime_from_ns_memo_matches_the_computation() -> None:
    rng = random.Random(3)
    values = [0, 1, 999, 1000, 1_795_533_307_492_000_123, 253_402_300_799_999_999_999]
    values += [rng.randint(0, 253_402_300_799_999_999_999) for _ in range(2_000)]
    for ns in values:
        expected = EPOCH + timedelta(microseconds=ns // 1000)
        assert datetime_from_ns(ns) == expected
        assert datetime_from_ns(ns) == expected  # the memoized answer
    with pytest.raises(OverflowError):
        datetime_from_ns(253_402_300_800_000_000_000)
    assert datetime_from_ns(True) == EPOCH  # type: ignore[arg-type]
