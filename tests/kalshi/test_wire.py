"""Exact parsing of prices, counts and times in every wire format (kalshi-api.md §5)."""

from __future__ import annotations

import pytest

from app.kalshi.errors import WireFormatError
from app.kalshi.wire import count_hundredths, price_micros, rfc3339_to_ns


@pytest.mark.parametrize(
    ("wire", "micros"),
    [
        ("0.5600", 560_000),
        ("0.960", 960_000),  # 3-dp prices from older frames
        ("0.29", 290_000),  # float would give 0.28999...
        ("0.0010", 1_000),  # deci-cent grid
        ("0.123456", 123_456),  # portfolio fields up to 6 dp
        ("1.0000", 1_000_000),
        ("0", 0),
        (56, 560_000),  # legacy integer cents
        (1, 10_000),
        (99, 990_000),
    ],
)
def test_prices(wire: str | int, micros: int) -> None:
    assert price_micros(wire) == micros


@pytest.mark.parametrize(
    ("wire", "hundredths"),
    [
        ("136.00", 13_600),
        ("0.01", 1),
        ("-54.00", -5_400),  # a delta that removes size
        ("-0.07", -7),
        ("1000000.00", 100_000_000),
        (75, 7_500),  # legacy whole contracts
        (-1, -100),  # legacy negative delta (real Aug-2025 frame)
        (0, 0),
    ],
)
def test_counts(wire: str | int, hundredths: int) -> None:
    assert count_hundredths(wire) == hundredths


@pytest.mark.parametrize(
    "garbage",
    ["", "abc", "NaN", "Infinity", "0.5600000001", "1e", 0.56, None, True, [], {"a": 1}],
)
def test_garbage_prices_are_refused_with_the_field_name(garbage: object) -> None:
    with pytest.raises(WireFormatError, match=r"^yes_price_dollars: "):
        price_micros(garbage, "yes_price_dollars")


@pytest.mark.parametrize("garbage", ["1.001", "x", "", 12.5, None, False])
def test_garbage_counts_are_refused(garbage: object) -> None:
    with pytest.raises(WireFormatError, match=r"^count_fp: "):
        count_hundredths(garbage, "count_fp")


def test_no_float_ever_reaches_the_result() -> None:
    # 0.1 + 0.2 style errors would show up as off-by-one micros.
    total = sum(price_micros(f"0.{n:04d}") for n in range(1, 10_000))
    assert total == sum(n * 100 for n in range(1, 10_000))
    assert isinstance(price_micros("0.5"), int)


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("2026-02-12T12:06:24.123456Z", 1_770_897_984_123_456_000),
        ("2025-08-12T21:00:32.539836022Z", 1_755_032_432_539_836_022),
        ("2022-11-22T20:44:01Z", 1_669_149_841_000_000_000),
        ("2022-11-22T15:44:01-05:00", 1_669_149_841_000_000_000),
        ("2022-11-23T02:14:01.5+05:30", 1_669_149_841_500_000_000),
    ],
)
def test_rfc3339_to_ns_keeps_every_digit(text: str, ns: int) -> None:
    assert rfc3339_to_ns(text) == ns


@pytest.mark.parametrize(
    "bad", ["", "2026-02-30T00:00:00Z", "2026-02-12 12:06", "1770897984", 1770897984, None]
)
def test_rfc3339_garbage(bad: object) -> None:
    with pytest.raises(WireFormatError, match="created_time"):
        rfc3339_to_ns(bad, "created_time")
