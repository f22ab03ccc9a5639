"""REST order books parsed exactly into integer levels (kalshi-api.md §1.7, DESIGN §4).

Both wire shapes are accepted:
* newest: `{"orderbook_fp": {"yes_dollars": [["0.4500", "100.00"]], "no_dollars": [...]}}`
* legacy (pre 2026-03-12): `{"orderbook": {"yes": [[45, 100]], "no": [...],
  "yes_dollars": [["0.45", 100]], "no_dollars": [...]}}` where a side may be `null`.
The legacy `*_dollars` side wins over the cent side because it can carry sub-penny prices.
Only bids are listed (YES bids and NO bids); the best ask of one side is 1 minus the best bid of
the other. Levels are returned sorted by ascending price because the wire order is not
guaranteed; "best" is therefore the last level.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from app.kalshi.errors import WireFormatError
from app.kalshi.wire import (
    cents_value,
    contracts_value,
    count_hundredths,
    count_value,
    dollars_value,
    price_micros,
)
from app.units import MICROS_PER_DOLLAR

BookFormat = Literal["fp", "legacy"]
# What a side's values must be: a shape's own types, or "any" (decided by the JSON type).
PriceKind = Literal["dollars", "cents", "any"]
SizeKind = Literal["fp", "contracts", "any"]
_Reader = Callable[[Any, str], int]
_PRICE_READERS: dict[str, _Reader] = {
    "dollars": dollars_value,
    "cents": cents_value,
    "any": price_micros,
}
_SIZE_READERS: dict[str, _Reader] = {
    "fp": count_value,
    "contracts": contracts_value,
    "any": count_hundredths,
}


class Level(NamedTuple):
    """One price level: price in micro-dollars, resting size in hundredths of a contract."""

    price_micros: int
    size_hundredths: int


@dataclass(frozen=True, slots=True)
class Orderbook:
    """Both bid sides of one market's book, in exact integer units."""

    ticker: str
    yes: tuple[Level, ...]
    no: tuple[Level, ...]
    wire_format: BookFormat

    @property
    def best_yes_bid(self) -> Level | None:
        return self.yes[-1] if self.yes else None

    @property
    def best_no_bid(self) -> Level | None:
        return self.no[-1] if self.no else None

    @property
    def best_yes_ask_micros(self) -> int | None:
        """Best YES ask = 1 dollar minus the best NO bid."""
        best = self.best_no_bid
        return MICROS_PER_DOLLAR - best.price_micros if best else None

    @property
    def best_no_ask_micros(self) -> int | None:
        best = self.best_yes_bid
        return MICROS_PER_DOLLAR - best.price_micros if best else None


def parse_levels(
    raw: Any, field: str, prices: PriceKind = "any", sizes: SizeKind = "any"
) -> tuple[Level, ...]:
    """One side's `[[price, size], ...]` (`null` = empty) as sorted levels.

    `prices`/`sizes` pin the value types of a known shape (the newest book has dollar strings
    and `_fp` strings only); "any" reads either by JSON type. Refuses prices outside 0..1
    dollar, negative sizes and two levels at one price, because a book with those cannot be
    reconstructed unambiguously.
    """
    read_price, read_size = _PRICE_READERS[prices], _SIZE_READERS[sizes]
    if raw is None:
        return ()
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        raise WireFormatError(f"{field}: expected a list of [price, size] levels, got {raw!r}")
    levels: list[Level] = []
    for position, entry in enumerate(raw):
        where = f"{field}[{position}]"
        if not isinstance(entry, Sequence) or isinstance(entry, str | bytes) or len(entry) != 2:
            raise WireFormatError(f"{where}: expected [price, size], got {entry!r}")
        price = read_price(entry[0], f"{where} price")
        size = read_size(entry[1], f"{where} size")
        if not 0 <= price <= MICROS_PER_DOLLAR:
            raise WireFormatError(f"{where}: price {entry[0]!r} is outside 0..1 dollar")
        if size < 0:
            raise WireFormatError(f"{where}: negative resting size {entry[1]!r}")
        levels.append(Level(price, size))
    levels.sort()
    for before, after in itertools.pairwise(levels):
        if before.price_micros == after.price_micros:
            raise WireFormatError(f"{field}: two levels at price {before.price_micros} micros")
    return tuple(levels)


# Each side's keys in order of preference, with the value types that key carries.
_FP_SIDE: dict[str, tuple[tuple[str, PriceKind, SizeKind], ...]] = {
    "yes": (("yes_dollars", "dollars", "fp"),),
    "no": (("no_dollars", "dollars", "fp"),),
}
_LEGACY_SIDE: dict[str, tuple[tuple[str, PriceKind, SizeKind], ...]] = {
    "yes": (("yes_dollars", "dollars", "any"), ("yes", "cents", "contracts")),
    "no": (("no_dollars", "dollars", "any"), ("no", "cents", "contracts")),
}


def _side(
    book: Mapping[str, Any], keys: Sequence[tuple[str, PriceKind, SizeKind]], container: str
) -> tuple[Level, ...]:
    for name, prices, sizes in keys:
        if book.get(name) is not None:
            return parse_levels(book[name], f"{container}.{name}", prices, sizes)
    return ()


def parse_orderbook(body: Mapping[str, Any], ticker: str) -> Orderbook:
    """An `Orderbook` from a single-book response or one entry of the batch response."""
    if not isinstance(body, Mapping):
        raise WireFormatError(f"order book for {ticker}: expected a JSON object, got {body!r}")
    newest = body.get("orderbook_fp")
    if isinstance(newest, Mapping):
        return Orderbook(
            ticker,
            _side(newest, _FP_SIDE["yes"], "orderbook_fp"),
            _side(newest, _FP_SIDE["no"], "orderbook_fp"),
            "fp",
        )
    legacy = body.get("orderbook")
    if isinstance(legacy, Mapping):
        return Orderbook(
            ticker,
            _side(legacy, _LEGACY_SIDE["yes"], "orderbook"),
            _side(legacy, _LEGACY_SIDE["no"], "orderbook"),
            "legacy",
        )
    raise WireFormatError(
        f"order book for {ticker}: no 'orderbook_fp' or 'orderbook' object in {sorted(body)}"
    )
