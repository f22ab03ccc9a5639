"""REST token buckets (kalshi-api.md §4).

Each client (its `KALSHI-ACCESS-KEY`, or its IP address when unsigned) has a read bucket that
refills at `tokens_per_s` and holds one second of budget. A request costs 10 tokens by default;
the batch order book endpoint costs one token per ticker, never less than 10. An empty bucket
means HTTP 429 with body `{"error": "too many requests"}` and no Retry-After header.
"""

from __future__ import annotations

import time

DEFAULT_COST = 10
TIERS: dict[str, int] = {
    "basic": 200,
    "advanced": 300,
    "expert": 600,
    "premier": 1_000,
    "paragon": 2_000,
    "prime": 4_000,
    "prestige": 6_000,
}
GENEROUS = 100_000  # default: 10,000 default-cost reads/s, so tests and demos never hit it


def parse_budget(text: str) -> int | None:
    """`basic`..`prestige`, a number of tokens per second, or `off` (None = unlimited)."""
    value = text.strip().lower()
    if value in ("off", "none", "unlimited"):
        return None
    if value in TIERS:
        return TIERS[value]
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
        capacity = float(self.rate)
        tokens, last = self._buckets.get(key, (capacity, now))
        tokens = min(capacity, tokens + (now - last) * self.rate)
        if tokens < cost:
            self._buckets[key] = (tokens, now)
            self.rejected += 1
            return False
        self._buckets[key] = (tokens - cost, now)
        return True
