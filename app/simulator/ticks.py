"""Price grids: the valid prices of a market (kalshi-api.md §1.5 `price_level_structure`).

Prices are integer micro-dollars (DESIGN §4). Every grid is symmetric (p valid means 1 - p
valid), so a YES bid and a NO bid on the same grid can always be compared as `yes + no < $1`
without rounding. `center_deci_edge_centi_cent` (kalshi-api.md §9: ticks of $0.0001, the
structure of combo markets) is also a refinement of every other grid, which is what lets a
`price_level_structure_updated` move a market onto it without touching its resting levels.
Its dollar strings carry six decimals on the wire (`places`), as §9 allows ("up to 6").
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

from app.units import MICROS_PER_DOLLAR, micros_to_dollars

CENT = 10_000
DECI_CENT = 1_000
CENTI_CENT = 100


@dataclass(frozen=True)
class TickGrid:
    """One price level structure: its name, ranges and every valid bid price, ascending."""

    structure: str
    ranges: tuple[tuple[int, int, int], ...]  # (start, end, step) in micro-dollars
    places: int = 4  # decimals of this grid's dollar strings on the wire
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
                "start": micros_to_dollars(start, self.places),
                "end": micros_to_dollars(end, self.places),
                "step": micros_to_dollars(step, self.places),
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

CENTER_DECI_EDGE_CENTI_CENT = TickGrid(
    "center_deci_edge_centi_cent",
    (
        (0, 100_000, CENTI_CENT),
        (100_000, 900_000, DECI_CENT),
        (900_000, MICROS_PER_DOLLAR, CENTI_CENT),
    ),
    places=6,
)

# A market stores its grid as a small code (index into this tuple).
GRIDS: tuple[TickGrid, ...] = (
    LINEAR_CENT,
    DECI_CENT_GRID,
    TAPERED_DECI_CENT,
    CENTER_DECI_EDGE_CENTI_CENT,
)
