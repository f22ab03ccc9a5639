"""Order books and the per-market state that order flow changes.

A book holds only bids, like Kalshi's (kalshi-api.md §1.7): `yes` maps a YES bid price to its
resting size, `no` the same for NO bids, prices in micro-dollars and sizes in hundredths of a
contract. A sane book never crosses: best YES bid + best NO bid < $1, and every size is > 0.

A market's initial book and statistics are a pure function of (seed, index) (`initial_market`),
so untouched markets are never stored: `MarketState` is created the first time order flow
changes a market, and REST/WebSocket reads of an untouched market compute it on the fly.
"""

from __future__ import annotations

from app.simulator.seeds import SplitMix, derive
from app.simulator.ticks import TickGrid
from app.units import MICROS_PER_DOLLAR

Side = dict[int, int]


def best(side: Side) -> int:
    """Best (highest) bid price of one side, 0 when the side is empty."""
    return max(side) if side else 0


def draw_size(rng_value: int, whole_only: bool) -> int:
    """A resting or traded size in hundredths: mostly whole contracts, some fractional."""
    if whole_only or rng_value % 10 < 7:
        return (1 + (rng_value >> 8) % 250) * 100
    return 1 + (rng_value >> 8) % 25_000


def initial_market(
    seed: int, index: int, grid: TickGrid, whole_only: bool
) -> tuple[Side, Side, int, int, int]:
    """(yes bids, no bids, last price, volume, open interest) of a market at creation."""
    rng = SplitMix(derive(seed, 7, index))
    prices = grid.prices
    count = len(prices)
    fair_i = rng.between(count // 10, count - count // 10 - 1)
    yes_top = max(0, fair_i - rng.between(1, 3))
    yes: Side = {}
    i = yes_top
    for _ in range(rng.between(1, 6)):
        if i < 0:
            break
        yes[prices[i]] = draw_size(rng.next(), whole_only)
        i -= rng.between(1, 3)
    no_top = grid.highest_below(MICROS_PER_DOLLAR - prices[yes_top]) - rng.between(0, 2)
    no: Side = {}
    i = no_top
    for _ in range(rng.between(1, 6)):
        if i < 0:
            break
        no[prices[i]] = draw_size(rng.next(), whole_only)
        i -= rng.between(1, 3)
    traded = rng.below(4) != 0
    volume = rng.between(1, 5_000) * 100 if traded else 0
    last_price = prices[fair_i] if traded else 0
    return yes, no, last_price, volume, volume // 2


class MarketState:
    """The live, mutable part of one market that order flow has touched."""

    __slots__ = (
        "dollar_volume",
        "grid",
        "index",
        "last_price",
        "last_trade_size",
        "market_id",
        "msg_head",
        "no",
        "no_top",
        "no_top_size",
        "open_interest",
        "prev_price",
        "prev_yes_ask",
        "prev_yes_bid",
        "ticker",
        "volume",
        "yes",
        "yes_top",
        "yes_top_size",
    )

    def __init__(
        self, seed: int, index: int, ticker: str, market_id: str, grid: TickGrid, whole: bool
    ) -> None:
        yes, no, last_price, volume, open_interest = initial_market(seed, index, grid, whole)
        self.index = index
        self.ticker = ticker
        self.market_id = market_id
        self.grid = grid
        self.yes = yes
        self.no = no
        self.last_price = last_price
        self.volume = volume
        self.open_interest = open_interest
        self.last_trade_size = 0
        # Sum of price x size over all trades, in micro-dollars x hundredths.
        self.dollar_volume = volume * last_price
        # Pre-encoded `"market_ticker":...,"market_id":...` head shared by every frame.
        self.msg_head = f'"market_ticker":"{ticker}","market_id":"{market_id}"'.encode()
        self.yes_top = best(yes)
        self.yes_top_size = yes.get(self.yes_top, 0)
        self.no_top = best(no)
        self.no_top_size = no.get(self.no_top, 0)
        self.prev_yes_bid = self.yes_top
        self.prev_yes_ask = MICROS_PER_DOLLAR - self.no_top if self.no_top else 0
        self.prev_price = last_price

    def refresh_top(self) -> bool:
        """Recompute the top of book; True when anything a ticker frame shows changed."""
        yes_top = max(self.yes) if self.yes else 0
        no_top = max(self.no) if self.no else 0
        yes_size = self.yes.get(yes_top, 0)
        no_size = self.no.get(no_top, 0)
        if (
            yes_top == self.yes_top
            and no_top == self.no_top
            and yes_size == self.yes_top_size
            and no_size == self.no_top_size
        ):
            return False
        self.yes_top, self.no_top = yes_top, no_top
        self.yes_top_size, self.no_top_size = yes_size, no_size
        return True
