"""Every trade the exchange made, compactly, for `GET /markets/trades` and the truth.

Trades are numbered in the order they happened (which is also time order). Columns are
`array`s rather than objects so a long run with millions of trades stays small; the trade id is
kept as its 128 random bits and formatted when read.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass

from app.simulator.seeds import uuid_from_bits


@dataclass(frozen=True, slots=True)
class TradeRecord:
    number: int
    trade_id: str
    market_index: int
    yes_price: int  # micro-dollars
    count: int  # hundredths of a contract
    taker_yes: bool
    ts_ns: int


class TradeLog:
    """Append-only trade columns plus a per-market index of trade numbers."""

    def __init__(self) -> None:
        self.ts_ns = array("q")
        self.market = array("q")
        self.yes_price = array("q")
        self.count = array("q")
        self.taker_yes = bytearray()
        self.id_high = array("Q")
        self.id_low = array("Q")
        self.by_market: dict[int, array[int]] = {}

    def __len__(self) -> int:
        return len(self.ts_ns)

    def append(
        self, id_bits: int, market: int, yes_price: int, count: int, taker_yes: bool, ts_ns: int
    ) -> int:
        number = len(self.ts_ns)
        self.ts_ns.append(ts_ns)
        self.market.append(market)
        self.yes_price.append(yes_price)
        self.count.append(count)
        self.taker_yes.append(1 if taker_yes else 0)
        self.id_high.append(id_bits >> 64)
        self.id_low.append(id_bits & 0xFFFFFFFFFFFFFFFF)
        numbers = self.by_market.get(market)
        if numbers is None:
            numbers = self.by_market[market] = array("q")
        numbers.append(number)
        return number

    def trade_id(self, number: int) -> str:
        return uuid_from_bits(self.id_high[number] << 64 | self.id_low[number])

    def record(self, number: int) -> TradeRecord:
        return TradeRecord(
            number=number,
            trade_id=self.trade_id(number),
            market_index=self.market[number],
            yes_price=self.yes_price[number],
            count=self.count[number],
            taker_yes=bool(self.taker_yes[number]),
            ts_ns=self.ts_ns[number],
        )

    def page(
        self,
        market: int | None,
        min_ts_ns: int | None,
        max_ts_ns: int | None,
        before: int | None,
        limit: int,
    ) -> tuple[list[int], int | None]:
        """Trade numbers newest first, and the cursor (a trade number) for the next page.

        `before` is an exclusive upper bound on trade numbers (the previous page's cursor).
        Time bounds are inclusive; trade numbers and times increase together.
        """
        if market is None:
            numbers: array[int] | range = range(len(self.ts_ns))
            times = self.ts_ns
        else:
            numbers = self.by_market.get(market, array("q"))
            times = array("q", (self.ts_ns[n] for n in numbers)) if numbers else array("q")
        high = len(numbers)
        if max_ts_ns is not None:
            high = bisect_right(times, max_ts_ns)
        if before is not None:
            high = min(high, bisect_left(numbers, before))
        low = 0 if min_ts_ns is None else bisect_left(times, min_ts_ns)
        start = max(low, high - limit)
        chosen = [numbers[i] for i in range(high - 1, start - 1, -1)]
        more = start > low
        return chosen, (chosen[-1] if more and chosen else None)
