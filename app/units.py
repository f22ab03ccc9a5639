"""Exact conversion between Kalshi's wire numbers and our integer storage units.

DESIGN §4: prices are integers in micro-dollars ("0.5600" -> 560000) and quantities are integers
in hundredths of a contract ("136.00" -> 13600). Conversion goes through `Decimal` and refuses
anything it cannot represent exactly; it never passes through float. Legacy integer-cent prices
and integer contract counts (removed from the API on 2026-03-12) convert too.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

MICROS_PER_DOLLAR = 1_000_000
MICROS_PER_CENT = 10_000
HUNDREDTHS_PER_CONTRACT = 100
# Dollar strings carry at most 6 decimals: the finest tick Kalshi lists is $0.0001
# (`center_deci_edge_centi_cent`, kalshi-api.md §9) and portfolio values use 6 dp. A 7th
# decimal is refused, never rounded, even when it is a trailing zero.
PRICE_DECIMALS = 6
# PostgreSQL `bigint` / `integer`: every integer we store must fit the column it goes to.
BIGINT_MAX = 2**63 - 1
BIGINT_MIN = -(2**63)
INTEGER_MAX = 2**31 - 1

_MICRO = Decimal(MICROS_PER_DOLLAR)
_HUNDRED = Decimal(HUNDREDTHS_PER_CONTRACT)


class UnitError(ValueError):
    """A wire number that cannot be converted exactly (garbage, NaN, too many decimals)."""


# Fast path for the common wire shape: optional '-', ASCII digits, optional '.' and ASCII
# digits, short enough that the Decimal path is exact too (a coefficient of at most 28 digits
# times the scale never rounds in the default context). Anything else goes through Decimal.
_FAST_MAX_LEN = 24


def plain_scaled(value: str, places: int, scale: int) -> int | None:
    """`value` scaled to an integer when it is a plain fixed-point string with at most `places`
    decimals; None when the general (Decimal) path must decide."""
    if len(value) > _FAST_MAX_LEN or not value.isascii():
        return None
    whole, _, frac = value.partition(".")
    negative = whole.startswith("-")
    if negative:
        whole = whole[1:]
    # ASCII-only, so isdigit() means exactly [0-9]; an empty whole part (".5") is not fast.
    if not whole.isdigit() or len(frac) > places or (frac and not frac.isdigit()):
        return None
    scaled = int(whole) * scale
    if frac:
        scaled += int(frac) * 10 ** (places - len(frac))
    return -scaled if negative else scaled


def _decimal(value: str | int, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise UnitError(f"{what}: expected a string or integer, got {type(value).__name__}")
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except InvalidOperation as exc:
        raise UnitError(f"{what}: not a number: {value!r}") from exc
    if not number.is_finite():
        raise UnitError(f"{what}: not a finite number: {value!r}")
    return number


def _exact_int(
    number: Decimal, scale: Decimal, what: str, raw: object, max_places: int | None = None
) -> int:
    if max_places is not None:
        exponent = number.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -max_places:
            raise UnitError(f"{what}: {raw!r} has more than {max_places} decimals")
    scaled = number * scale
    if scaled != scaled.to_integral_value():
        raise UnitError(f"{what}: {raw!r} has more precision than we store")
    return int(scaled)


def dollars_to_micros(value: str | int) -> int:
    """Parse a fixed-point dollar string ("0.5600", "0.960", "0.123456", "12") into
    micro-dollars; more than `PRICE_DECIMALS` decimals is an error."""
    if type(value) is str:
        fast = plain_scaled(value, PRICE_DECIMALS, MICROS_PER_DOLLAR)
        if fast is not None:
            return fast
    return _exact_int(_decimal(value, "price"), _MICRO, "price", value, PRICE_DECIMALS)


def count_to_hundredths(value: str | int) -> int:
    """Parse a fixed-point contract count ("136.00", "-54.00") into hundredths of a contract."""
    if type(value) is str:
        fast = plain_scaled(value, 2, HUNDREDTHS_PER_CONTRACT)
        if fast is not None:
            return fast
    return _exact_int(_decimal(value, "count"), _HUNDRED, "count", value)


def fits_bigint(value: int) -> bool:
    """Whether an integer fits a PostgreSQL `bigint` column."""
    return BIGINT_MIN <= value <= BIGINT_MAX


def cents_to_micros(cents: int) -> int:
    """Legacy integer-cent price (1..99) to micro-dollars."""
    if isinstance(cents, bool) or not isinstance(cents, int):
        raise UnitError(f"legacy cents: expected an integer, got {cents!r}")
    return cents * MICROS_PER_CENT


def contracts_to_hundredths(count: int) -> int:
    """Legacy integer contract count to hundredths of a contract."""
    if isinstance(count, bool) or not isinstance(count, int):
        raise UnitError(f"legacy count: expected an integer, got {count!r}")
    return count * HUNDREDTHS_PER_CONTRACT


def micros_to_dollars(micros: int, places: int = 4) -> str:
    """Format micro-dollars as the wire's dollar string, with at least `places` decimals.

    More decimals are used when the value needs them, so formatting never rounds.
    """
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_DOLLAR)
    digits = f"{frac:06d}".rstrip("0").ljust(places, "0")
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"


def hundredths_to_count(hundredths: int) -> str:
    """Format hundredths of a contract as the wire's `*_fp` string ("136.00")."""
    sign = "-" if hundredths < 0 else ""
    whole, frac = divmod(abs(hundredths), HUNDREDTHS_PER_CONTRACT)
    return f"{sign}{whole}.{frac:02d}"


def micros_to_decimal(micros: int) -> Decimal:
    """Micro-dollars as an exact `Decimal` number of dollars (for display and views)."""
    return Decimal(micros) / _MICRO
