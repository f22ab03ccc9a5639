"""The shard map: which orderbook connection holds which market (CM-4, DESIGN §10).

A new market goes to the least-loaded shard that has room; when every shard is full a new shard
is opened. Markets stay where they are while their connection is down (CM-4's no-rebalancing
trade-off: the reconnect backoff is bounded and the other gatherers hold the same markets).
Pure bookkeeping: no I/O.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable


class ShardMap:
    """market ticker -> shard index, with at most `capacity` markets per shard."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._shard_of: dict[str, int] = {}
        self._members: list[set[str]] = []

    def __len__(self) -> int:
        return len(self._shard_of)

    def __contains__(self, ticker: object) -> bool:
        return ticker in self._shard_of

    @property
    def shard_count(self) -> int:
        return len(self._members)

    def shard_of(self, ticker: str) -> int | None:
        return self._shard_of.get(ticker)

    def members(self, shard: int) -> frozenset[str]:
        return frozenset(self._members[shard])

    def tickers(self) -> frozenset[str]:
        return frozenset(self._shard_of)

    def assign(self, tickers: Iterable[str]) -> dict[int, list[str]]:
        """Place new tickers (already placed ones are ignored); returns shard -> added."""
        added: dict[int, list[str]] = {}
        heap = [
            (len(members), shard)
            for shard, members in enumerate(self._members)
            if len(members) < self.capacity
        ]
        heapq.heapify(heap)
        for ticker in tickers:
            if ticker in self._shard_of:
                continue
            if heap:
                load, shard = heapq.heappop(heap)
            else:
                self._members.append(set())
                load, shard = 0, len(self._members) - 1
            self._members[shard].add(ticker)
            self._shard_of[ticker] = shard
            added.setdefault(shard, []).append(ticker)
            if load + 1 < self.capacity:
                heapq.heappush(heap, (load + 1, shard))
        return added

    def remove(self, tickers: Iterable[str]) -> dict[int, list[str]]:
        """Forget tickers (unknown ones are ignored); returns shard -> removed."""
        removed: dict[int, list[str]] = {}
        for ticker in tickers:
            shard = self._shard_of.pop(ticker, None)
            if shard is None:
                continue
            self._members[shard].discard(ticker)
            removed.setdefault(shard, []).append(ticker)
        return removed
