"""The fixed-point fast path of `app.units` agrees exactly with the general Decimal path."""

from __future__ import annotations

import random
from collections.abc import Callable
from decimal import Decimal

import pytest

from app import units

Convert = Callable[[str | int], int]


def _slow_dollars(value: str | int) -> int:
    number = units._decimal(value, "price")
    return units._exact_int(number, units._MICRO, "price", value, units.PRICE_DECIMALS)


def _slow_count(value: str | int) -> int:
    return units._exact_int(units._decimal(value, "count"), units._HUNDRED, "count", value)


PAIRS: list[tuple[Convert, Convert]] = [
    (units.dollars_to_micros, _slow_dollars),
    (units.count_to_hundredths, _slow_count),
]

EDGE_CASES = [
    "0.5600",
    "0.960",
    "12",
    "-54.00",
    ".5",
    "5.",
    "-5.",
    "-.5",
    "1e2",
    "1E-2",
    " 0.5",
    "0.5 ",
    "\t1.00\n",
    "0.1234567",
    "0.123456",
    "0.12345600",
    "0.10000000000",
    "0.001",
    "0.01",
    "0.010",
    "-0",
    "-0.00",
    "0",
    "00012.50",
    "9" * 23,
    "9" * 24,
    "9" * 25,
    "9" * 40,
    "1" * 30 + ".5",
    "12345678901234567.123456",
    "123456789012345678901234567890.123456",
    "\u0663",
    "\u0663.\u0665",
    "1.\u0665",
    "\uff11\uff12",
    "NaN",
    "nan",
    "sNaN",
    "Infinity",
    "-Infinity",
    "inf",
    "",
    " ",
    ".",
    "-",
    "--1",
    "+-1",
    "-+1",
    "+0.10",
    "+5",
    "1_000",
    "1_000.00",
    "1.0_0",
    "0x10",
    "1.2.3",
    "1,00",
    "\u0661\u0662\u0663",
    "\u00b2",
    "1\x00",
    "é",
]


def _outcome(convert: Convert, value: str | int) -> tuple[str, object]:
    try:
        return ("ok", convert(value))
    except Exception as exc:  # the error class and message are compared
        return (type(exc).__name__, str(exc))


def _generated(rng: random.Random) -> str:
    digits = "0123456789"
    whole = "".join(rng.choice(digits) for _ in range(rng.randint(0, 26)))
    frac = "".join(rng.choice(digits) for _ in range(rng.randint(0, 9)))
    text = rng.choice(("", "-", "+")) + whole + rng.choice((".", ".", "")) + frac
    if rng.random() < 0.1:
        position = rng.randint(0, len(text))
        text = text[:position] + rng.choice(" .-+_x\u0663\t") + text[position:]
    return text


@pytest.mark.parametrize("pair", PAIRS, ids=["dollars", "count"])
@pytest.mark.parametrize("value", EDGE_CASES)
def test_edge_cases_match_the_decimal_path(pair: tuple[Convert, Convert], value: str) -> None:
    fast, slow = pair
    assert _outcome(fast, value) == _outcome(slow, value)


@pytest.mark.parametrize("pair", PAIRS, ids=["dollars", "count"])
def test_generated_inputs_match_the_decimal_path(pair: tuple[Convert, Convert]) -> None:
    fast, slow = pair
    rng = random.Random(20261124)
    for _ in range(20_000):
        value = _generated(rng)
        assert _outcome(fast, value) == _outcome(slow, value), value
    # Exponents (kept short: a huge exponent makes the Decimal path build a huge integer).
    for _ in range(2_000):
        value = f"{rng.randint(0, 999)}.{rng.randint(0, 99)}e{rng.choice(('', '-', '+'))}"
        value += str(rng.randint(0, 12))
        assert _outcome(fast, value) == _outcome(slow, value), value


@pytest.mark.parametrize("pair", PAIRS, ids=["dollars", "count"])
def test_non_strings_keep_the_general_path(pair: tuple[Convert, Convert]) -> None:
    fast, slow = pair
    for value in (0, 12, -54, 10**30, True, 0.5, Decimal("0.5"), None, b"0.5"):
        assert _outcome(fast, value) == _outcome(slow, value)  # type: ignore[arg-type]


def test_fast_path_results_are_exact() -> None:
    assert units.dollars_to_micros("0.5600") == 560_000
    assert units.dollars_to_micros("0.960") == 960_000
    assert units.dollars_to_micros("12") == 12_000_000
    assert units.dollars_to_micros("0.000001") == 1
    assert units.count_to_hundredths("-54.00") == -5400
    assert units.count_to_hundredths("136.5") == 13650
    assert units.count_to_hundredths("5.") == 500
    for value in ("0.5600", "12", "-54.00", "5.", "0.000001"):
        assert units.plain_scaled(value, 6, units.MICROS_PER_DOLLAR) is not None
    for value in (".5", "+1", "1e2", " 1", "\u0663", "0.1234567", "9" * 25, ""):
        assert units.plain_scaled(value, 6, units.MICROS_PER_DOLLAR) is None


def test_six_decimal_prices_are_exact_and_a_seventh_is_refused() -> None:
    """kalshi-api.md §9: the $0.0001 grid as dollar strings with up to 6 decimals."""
    assert units.dollars_to_micros("0.1234") == 123_400
    assert units.dollars_to_micros("0.123456") == 123_456
    assert units.dollars_to_micros("0.000001") == 1
    for value in ("0.1234567", "0.1234560", "0.0000010", "1.0000000", "1.0E-7"):
        with pytest.raises(units.UnitError, match="more than 6 decimals"):
            units.dollars_to_micros(value)
    # Counts keep their own rule (2 decimals stored, trailing zeros harmless).
    assert units.count_to_hundredths("136.000") == 13_600
