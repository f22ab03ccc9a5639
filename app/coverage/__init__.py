"""Coverage: per market and UTC hour, did one gatherer capture everything? (DESIGN §1.2, §4)

Computed from the gatherer's `capture_holes` (what it knows it may have missed), the registry's
open/close times and its first session; never from the data itself, because absence of rows
cannot tell a quiet market from a lost one. Rules and limits: docs/coverage.md.

- `intervals`: pure interval arithmetic (union, clip, difference, cover, measure).
- `status`: pure rules, one window + its holes -> `complete` / `degraded` / `missing`.
- `market_hours`: the SQL side, streaming `MarketHour` rows for a range (one market or all).
- `table`: `refresh_coverage`, storing them in the `coverage` table.
"""

from app.coverage.market_hours import (
    HOUR,
    MarketHour,
    UnknownMarket,
    capture_start,
    compute_coverage,
    floor_hour,
    hours_between,
    load_holes,
)
from app.coverage.status import (
    CAPTURED_CHANNELS,
    STATUSES,
    Assessment,
    Hole,
    Status,
    assess,
)
from app.coverage.table import refresh_coverage

__all__ = [
    "CAPTURED_CHANNELS",
    "HOUR",
    "STATUSES",
    "Assessment",
    "Hole",
    "MarketHour",
    "Status",
    "UnknownMarket",
    "assess",
    "capture_start",
    "compute_coverage",
    "floor_hour",
    "hours_between",
    "load_holes",
    "refresh_coverage",
]
