"""Price grids: the valid prices of a market (kalshi-api.md §1.5 `price_level_structure`).

Prices are integer micro-dollars (DESIGN §4). All three grids are symmetric (p valid means
1 - p valid), so a YES bid and a NO bid on the same grid can always be compared as
`yes + no < $1` without rounding.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

from app.units import MICROS_PER_DOLLAR, micros_to_dollars

CENT = 10_000
DECI_CENT = 1_000


@dataclass(frozen=True)
class TickGrid:
    """One price level structure: its name, ranges and every valid bid price, ascending."""

    structure: str
    ranges: tuple[tuple[int, int, int], ...]  # (start, end, step) in micro-dollars
    prices: tuple[int, ...] = field(init=False)
    index: dict[int, int] = field(init=False, repr=False)
    ranges_json: tuple[dict[str, str], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        valid: set[int] = set()
        for start, end, step in self.ranges:
            valid.update(range(start, end + 1, step))
        prices = tuple(sorted(p for p in valid if 0 < p < MICROS_PER_DOLLAR))
        object.__setattr__(self, "prices", prices)
        object.__setattr__(self, "index", {p: i for i, p in enumerate(prices)})
        ranges = tuple(
            {
                "start": micros_to_dollars(start),
                "end": micros_to_dollars(end),
                "step": micros_to_dollars(step),
            }
            for start, end, step in self.ranges
        )
        object.__setattr__(self, "ranges_json", ranges)

    def highest_below(self, limit: int) -> int:
        """Index of the highest valid price strictly below `limit` (-1 if none)."""
        return bisect_left(self.prices, limit) - 1

    def price_ranges(self) -> list[dict[str, str]]:
        """The wire's `price_ranges` array (a fresh copy each time)."""
        return [dict(entry) for entry in self.ranges_json]


LINEAR_CENT = TickGrid("linear_cent", ((0, MICROS_PER_DOLLAR, CENT),))
DECI_CENT_GRID = TickGrid("deci_cent", ((0, MICROS_PER_DOLLAR, DECI_CENT),))
TAPERED_DECI_CENT = TickGrid(
    "tapered_deci_cent",
    (
        (0, 100_000, DECI_CENT),
        (100_000, 900_000, CENT),
        (900_000, MICROS_PER_DOLLAR, DECI_CENT),
    ),
)

# A market stores its grid as a small code (index into this tuple).
GRIDS: tuple[TickGrid, ...] = (LINEAR_CENT, DECI_CENT_GRID, TAPERED_DECI_CENT)
