"""REST token buckets (kalshi-api.md §4, tiers and bucket depths as of 2026-08-19 in §9).

Each client (its `KALSHI-ACCESS-KEY`, or its IP address when unsigned) has a read bucket that
refills at `tokens_per_s` and holds that tier's read depth: two seconds of budget for Basic and
Advanced, one second above (and for a plain tokens-per-second budget). Only market data is
simulated, so only read buckets exist; the write figures are here for completeness. A request
costs 10 tokens by default;
the batch order book endpoint costs one token per ticker, never less than 10. An empty bucket
means HTTP 429 with body `{"error": "too many requests"}` and no Retry-After header.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

DEFAULT_COST = 10


@dataclass(frozen=True)
class Tier:
    read_per_s: int
    write_per_s: int
    read_bucket_s: int  # bucket depth in seconds of budget
    write_bucket_s: int


TIERS: dict[str, Tier] = {
    "basic": Tier(200, 100, 2, 1),
    "advanced": Tier(300, 300, 2, 2),
    "expert": Tier(600, 600, 1, 2),
    "premier": Tier(1_000, 1_000, 1, 2),
    "paragon": Tier(2_000, 2_000, 1, 2),
    "prime": Tier(4_000, 4_000, 1, 2),
    "prestige": Tier(10_000, 8_000, 1, 2),
}
GENEROUS = 100_000  # default: 10,000 default-cost reads/s, so tests and demos never hit it
_READ_DEPTH_S = {tier.read_per_s: tier.read_bucket_s for tier in TIERS.values()}


def read_bucket_seconds(tokens_per_s: int) -> int:
    """Read bucket depth of a budget: its tier's when it is a tier's read rate, else 1 s."""
    return _READ_DEPTH_S.get(tokens_per_s, 1)


def parse_budget(text: str) -> int | None:
    """`basic`..`prestige`, a number of tokens per second, or `off` (None = unlimited)."""
    value = text.strip().lower()
    if value in ("off", "none", "unlimited"):
        return None
    if value in TIERS:
        return TIERS[value].read_per_s
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise ValueError(
        f"rate limit must be off, a tier ({', '.join(TIERS)}) or tokens per second, not {text!r}"
    )


class TokenBuckets:
    """One bucket per client key."""

    def __init__(self, tokens_per_s: int | None) -> None:
        self.rate = tokens_per_s
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill)
        self.rejected = 0

    def take(self, key: str, cost: int = DEFAULT_COST) -> bool:
        """Spend `cost` tokens of `key`'s bucket; False means answer 429."""
        if self.rate is None:
            return True
        now = time.monotonic()
        capacity = float(self.rate * read_bucket_seconds(self.rate))
        tokens, last = self._buckets.get(key, (capacity, now))
        tokens = min(capacity, tokens + (now - last) * self.rate)
        if tokens < cost:
            self._buckets[key] = (tokens, now)
            self.rejected += 1
            return False
        self._buckets[key] = (tokens - cost, now)
        return True
