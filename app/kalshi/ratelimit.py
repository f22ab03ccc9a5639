"""Client-side REST rate limiting that matches Kalshi's token buckets (kalshi-api.md §4).

Kalshi gives each account a read and a write bucket refilled at the tier's tokens/s (Basic 200
read / 100 write). Since 2026-08-19 (kalshi-api.md §9) a read bucket holds 2 s of refill on
Basic and Advanced and 1 s above; a write bucket 1 s on Basic and 2 s above. A request costs
`DEFAULT_COST` (10) tokens and a batch request costs that for every item ("batch endpoints don't
save tokens"). We only read, so the client spends from a read bucket; the write figures are
here so the tier table is complete (and for a future order path). Spending from our own copy of
the bucket before sending means we almost never see a 429, which Kalshi answers without any
Retry-After hint.

The client only depends on the `TokenLimiter` protocol: `reserve(tokens)` debits the budget at
once and says how long to wait before sending. A reservation (rather than "wait until free,
then take") is a single atomic step, so a Redis-backed limiter shared by every gatherer process
can implement it as one Lua script (balance, last-refill time -> new balance, wait) and drop in
for `TokenBucket` without changing the client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal, Protocol

DEFAULT_COST = 10

# Tokens per second per usage tier (kalshi-api.md §4; Expert and Prestige as of 2026-08-19, §9).
# Keys match `app.config.Tier`. The 20 % increase for Premier and above announced 2026-09-24 has
# no published figures yet.
TIER_READ_TOKENS_PER_S: dict[str, int] = {
    "basic": 200,
    "advanced": 300,
    "expert": 600,
    "premier": 1_000,
    "paragon": 2_000,
    "prime": 4_000,
    "prestige": 10_000,
}
TIER_WRITE_TOKENS_PER_S: dict[str, int] = {
    "basic": 100,
    "advanced": 300,
    "expert": 600,
    "premier": 1_000,
    "paragon": 2_000,
    "prime": 4_000,
    "prestige": 8_000,
}

# Seconds of refill a full bucket holds (§9): reads 2 s on Basic and Advanced, 1 s above;
# writes 1 s on Basic, 2 s above.
_READ_BURST_2S = frozenset({"basic", "advanced"})
_WRITE_BURST_1S = frozenset({"basic"})


def read_burst_s(tier: str) -> float:
    _check_tier(tier)
    return 2.0 if tier in _READ_BURST_2S else 1.0


def write_burst_s(tier: str) -> float:
    _check_tier(tier)
    return 1.0 if tier in _WRITE_BURST_1S else 2.0


def _check_tier(tier: str) -> None:
    if tier not in TIER_READ_TOKENS_PER_S:
        known = ", ".join(TIER_READ_TOKENS_PER_S)
        raise ValueError(f"unknown Kalshi tier {tier!r} (known: {known})")


# Share of the bucket our copy keeps in reserve. Kalshi debits when a request *arrives*; the
# first request of a burst is slowed by connection setup, so Kalshi's bucket can have refilled
# a little less than ours. 10 % of Basic is 40 tokens = 200 ms of latency spread tolerated.
READ_HEADROOM = 0.1


def read_capacity(tier: str) -> float:
    """Tokens the read bucket of `tier` holds when full."""
    burst = read_burst_s(tier)  # checks the tier first
    return TIER_READ_TOKENS_PER_S[tier] * burst


def write_capacity(tier: str) -> float:
    """Tokens the write bucket of `tier` holds when full."""
    burst = write_burst_s(tier)  # checks the tier first
    return TIER_WRITE_TOKENS_PER_S[tier] * burst


def affordable_batch_size(tier: str, upper: int, item_cost: float = DEFAULT_COST) -> int:
    """Most items one batch request may carry on `tier`, at most `upper`.

    Kalshi bills every item of a batch like a single call and refuses a request its full
    bucket cannot cover, so on Basic (400 tokens) a batch larger than 40 items would be
    refused forever, never merely delayed.
    """
    return max(1, min(upper, int(read_capacity(tier) // item_cost)))


class TokenLimiter(Protocol):
    """A token budget shared by everything that calls the Kalshi REST API with one key."""

    def reserve(self, tokens: float) -> float:
        """Debit `tokens` now and return the seconds to wait before sending (0 = send now)."""
        ...


class TokenBucket:
    """An in-process token bucket with reservation semantics (thread-safe).

    The balance may go negative: a reservation that overdraws it waits until the refill has
    paid the debt back, so the long-run spend never exceeds `rate_per_s` and concurrent
    callers queue in the order they reserved. A request costing more than `capacity` is still
    allowed; it simply waits for the overdraft to refill.
    """

    def __init__(
        self,
        rate_per_s: float,
        capacity: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s <= 0 or capacity <= 0:
            raise ValueError("rate_per_s and capacity must be positive")
        self.rate_per_s = float(rate_per_s)
        self.capacity = float(capacity)
        self._clock = clock
        self._balance = float(capacity)
        self._updated = clock()
        self._lock = threading.Lock()

    @classmethod
    def for_tier(
        cls,
        tier: str,
        clock: Callable[[], float] = time.monotonic,
        headroom: float = READ_HEADROOM,
        *,
        kind: Literal["read", "write"] = "read",
    ) -> TokenBucket:
        """Our copy of the read (or write) bucket of a Kalshi usage tier (`basic` ...
        `prestige`), with `headroom` (a fraction) of its capacity held back so latency jitter
        cannot turn into 429s."""
        if not 0 <= headroom < 1:
            raise ValueError(f"headroom must be in [0, 1), got {headroom}")
        if kind == "write":
            capacity, rate = write_capacity(tier), TIER_WRITE_TOKENS_PER_S[tier]
        else:
            capacity, rate = read_capacity(tier), TIER_READ_TOKENS_PER_S[tier]
        return cls(rate, capacity * (1 - headroom), clock)

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._updated)
        self._balance = min(self.capacity, self._balance + elapsed * self.rate_per_s)
        self._updated = now

    def reserve(self, tokens: float) -> float:
        if tokens < 0:
            raise ValueError(f"cannot reserve a negative number of tokens ({tokens})")
        with self._lock:
            self._refill()
            self._balance -= tokens
            return 0.0 if self._balance >= 0 else -self._balance / self.rate_per_s

    @property
    def balance(self) -> float:
        """Tokens available right now (negative while reservations are queued)."""
        with self._lock:
            self._refill()
            return self._balance
