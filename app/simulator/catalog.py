"""Series, events and markets generated from the seed, without storing them.

Market `i` (creation order) belongs to event `i // MARKETS_PER_EVENT`, which belongs to series
`event % series_count`. Every static field of a market is a pure function of (seed, i), and a
ticker parses back to its index, so a catalog of 1,000,000 markets costs no memory: the
exchange keeps only what changes (status, close time, books that traded). The same functions let
`truth.py` rebuild the catalog from `meta.json` without the simulator writing a million lines.

Schedule (virtual time, L = market lifetime): the N initial markets close at
`epoch + L*(i+1)/N` and opened L before that; new market `N+j` is created at
`epoch + L*(j+1)/N`, opens `open_delay` later and closes L after opening. Markets therefore close
in index order unless a `close_date_updated` postpones one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from app.simulator.seeds import derive, uuid_from_bits
from app.simulator.ticks import GRIDS, TickGrid

MARKETS_PER_EVENT = 4
MAX_SERIES = 64
MARKETS_PER_SERIES_TARGET = 200
SERIES_PREFIX = "KXSIM"

_CATEGORIES = ("Economics", "Crypto", "Climate and Weather", "Financials", "Politics", "Sports")
_FREQUENCIES = ("daily", "weekly", "hourly", "monthly")
FEE_TYPES = ("quadratic", "quadratic_with_maker_fees", "flat")

GRID_LINEAR = 0
GRID_DECI = 1
GRID_TAPERED = 2
GRID_CENTER = 3  # center_deci_edge_centi_cent (kalshi-api.md §9)
# Exchange shards (kalshi-api.md §9, 2026-07-30): Crypto and Sports series trade on their own
# exchange instances; everything else on instance 0.
EXCHANGE_INDEX = {"Crypto": 1, "Sports": 2}


def _letters(number: int) -> str:
    """Bijective base-26: 0 -> A, 25 -> Z, 26 -> AA."""
    out = ""
    number += 1
    while number:
        number, rem = divmod(number - 1, 26)
        out = chr(65 + rem) + out
    return out


def _parse_letters(text: str) -> int | None:
    if not text or not text.isascii() or not text.isalpha() or not text.isupper():
        return None
    number = 0
    for char in text:
        number = number * 26 + (ord(char) - 64)
    return number - 1


def _parse_index(text: str, prefix: str) -> int | None:
    """`E123` -> 123; refuses leading zeros and anything non-canonical."""
    if not text.startswith(prefix):
        return None
    digits = text[len(prefix) :]
    if not digits.isascii() or not digits.isdigit() or (len(digits) > 1 and digits[0] == "0"):
        return None
    return int(digits)


@dataclass(frozen=True, slots=True)
class SeriesSpec:
    index: int
    ticker: str
    title: str
    category: str
    frequency: str
    tags: tuple[str, ...]
    fee_type: str
    fee_multiplier: float
    exchange_index: int


@dataclass(frozen=True, slots=True)
class EventSpec:
    index: int
    event_ticker: str
    series_ticker: str
    title: str
    sub_title: str
    category: str
    frequency: str  # the series' frequency: the event's `product_metadata.cadence`
    exchange_index: int


@dataclass(frozen=True, slots=True)
class MarketSpec:
    """Everything about market `index` that never changes."""

    index: int
    ticker: str
    event_ticker: str
    series_ticker: str
    event_index: int
    market_id: str
    grid_code: int
    floor_strike: int
    title: str
    subtitle: str
    yes_sub_title: str
    no_sub_title: str
    rules_primary: str
    rules_secondary: str
    created_ns: int
    open_ns: int
    close_ns: int  # the scheduled close; a close_date_updated may postpone the live one
    exchange_index: int


class Catalog:
    """Names, metadata and schedule of every market that exists or will exist."""

    def __init__(
        self, seed: int, initial_markets: int, epoch_ns: int, lifetime_ns: int, legacy: bool
    ) -> None:
        if initial_markets < 1:
            raise ValueError("at least one market is needed")
        self.seed = seed
        self.initial_markets = initial_markets
        self.epoch_ns = epoch_ns
        self.lifetime_ns = lifetime_ns
        self.legacy = legacy
        self.series_count = max(
            1, min(MAX_SERIES, math.ceil(initial_markets / MARKETS_PER_SERIES_TARGET))
        )
        # Derived delays (documented in docs/simulator.md): open 1/20 of a lifetime after
        # creation, determined 1/40 after close, settled 1/40 after determination.
        self.open_delay_ns = max(1, lifetime_ns // 20)
        self.determine_delay_ns = max(1, lifetime_ns // 40)
        self.settle_delay_ns = max(1, lifetime_ns // 40)
        self._series_by_ticker = {self.series_ticker(s): s for s in range(self.series_count)}

    # ---- names -------------------------------------------------------------------------

    def series_ticker(self, series: int) -> str:
        return SERIES_PREFIX + _letters(series)

    def event_ticker(self, event: int) -> str:
        return f"{self.series_ticker(event % self.series_count)}-E{event}"

    def market_ticker(self, index: int) -> str:
        event, k = divmod(index, MARKETS_PER_EVENT)
        return f"{self.event_ticker(event)}-T{k + 1}"

    def series_index(self, ticker: str) -> int | None:
        return self._series_by_ticker.get(ticker)

    def event_index(self, event_ticker: str) -> int | None:
        """Index of the event this ticker names, or None (existence is the exchange's call)."""
        parts = event_ticker.split("-")
        if len(parts) != 2:
            return None
        series = self.series_index(parts[0])
        event = _parse_index(parts[1], "E")
        if series is None or event is None or event % self.series_count != series:
            return None
        return event

    def market_index(self, ticker: str) -> int | None:
        """Index of the market this ticker names, or None (existence is the exchange's call)."""
        head, sep, tail = ticker.rpartition("-")
        if not sep:
            return None
        event = self.event_index(head)
        k = _parse_index(tail, "T")
        if event is None or k is None or not 1 <= k <= MARKETS_PER_EVENT:
            return None
        return event * MARKETS_PER_EVENT + k - 1

    # ---- schedule ----------------------------------------------------------------------

    def scheduled_times(self, index: int) -> tuple[int, int, int]:
        """(created, open, close) in virtual nanoseconds."""
        n, life = self.initial_markets, self.lifetime_ns
        if index < n:
            close = self.epoch_ns + life * (index + 1) // n
            opened = close - life
            return opened - self.open_delay_ns, opened, close
        created = self.creation_ns(index)
        opened = created + self.open_delay_ns
        return created, opened, opened + life

    def creation_ns(self, index: int) -> int:
        """When market `index` (>= initial_markets) gets created."""
        j = index - self.initial_markets
        return self.epoch_ns + self.lifetime_ns * (j + 1) // self.initial_markets

    # ---- static metadata ---------------------------------------------------------------

    def grid_code(self, index: int) -> int:
        """The grid a market is created with (a `price_level_structure_updated` may refine it)."""
        if self.legacy:
            return GRID_LINEAR  # sub-penny grids only went live on 2026-03-09
        roll = derive(self.seed, 3, index) % 100
        if roll < 75:
            return GRID_LINEAR
        if roll < 80:
            return GRID_CENTER
        return GRID_DECI if roll < 95 else GRID_TAPERED

    def exchange_index(self, series: int) -> int:
        return EXCHANGE_INDEX.get(_CATEGORIES[series % len(_CATEGORIES)], 0)

    def market_id(self, index: int) -> str:
        return uuid_from_bits(derive(self.seed, 1, index) << 64 | derive(self.seed, 2, index))

    def market(self, index: int) -> MarketSpec:
        event, k = divmod(index, MARKETS_PER_EVENT)
        series = event % self.series_count
        series_ticker = self.series_ticker(series)
        event_ticker = f"{series_ticker}-E{event}"
        step = 25 * (series + 1)
        strike = 1000 * (series + 1) + (event % 40) * step + k * step
        created, opened, close = self.scheduled_times(index)
        above = f"Above {strike:,}"
        return MarketSpec(
            index=index,
            ticker=f"{event_ticker}-T{k + 1}",
            event_ticker=event_ticker,
            series_ticker=series_ticker,
            event_index=event,
            market_id=self.market_id(index),
            grid_code=self.grid_code(index),
            floor_strike=strike,
            title=f"Will simulated index {series_ticker} be above {strike:,} at event {event}?",
            subtitle=above,
            yes_sub_title=above,
            no_sub_title=above,
            rules_primary=(
                f"If simulated index {series_ticker} is above {strike:,} when event {event} "
                "closes, the market resolves to Yes."
            ),
            rules_secondary="Simulated market; outcomes are drawn by the seeded simulator.",
            created_ns=created,
            open_ns=opened,
            close_ns=close,
            exchange_index=self.exchange_index(series),
        )

    def grid(self, index: int) -> TickGrid:
        return GRIDS[self.grid_code(index)]

    def event(self, event: int) -> EventSpec:
        series = event % self.series_count
        series_ticker = self.series_ticker(series)
        return EventSpec(
            index=event,
            event_ticker=f"{series_ticker}-E{event}",
            series_ticker=series_ticker,
            title=f"Simulated index {series_ticker} at event {event}",
            sub_title=f"Event {event}",
            category=_CATEGORIES[series % len(_CATEGORIES)],
            frequency=_FREQUENCIES[series % len(_FREQUENCIES)],
            exchange_index=self.exchange_index(series),
        )

    def series(self, series: int) -> SeriesSpec:
        ticker = self.series_ticker(series)
        category = _CATEGORIES[series % len(_CATEGORIES)]
        return SeriesSpec(
            index=series,
            ticker=ticker,
            title=f"Simulated index {ticker}",
            category=category,
            frequency=_FREQUENCIES[series % len(_FREQUENCIES)],
            tags=(category.split()[0], "Simulated"),
            fee_type=FEE_TYPES[series % len(FEE_TYPES)],
            fee_multiplier=1 if series % 3 else 0.5,
            exchange_index=self.exchange_index(series),
        )

    def events_for_markets(self, market_count: int) -> int:
        """How many events exist once `market_count` markets exist."""
        return -(-market_count // MARKETS_PER_EVENT)
