"""Exponential backoff with jitter, the one formula every retry loop uses (SEED GEN-10).

delay(attempt) = min(base * 2**attempt, max) + U(0, 25 %) of that, attempt counted from 0.
Jitter only ever adds (so the longest wait is 1.25 x max); it spreads gatherers that failed
together so they do not retry in lockstep.
The random source is injectable so tests assert exact delays without sleeping.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

JITTER_FRACTION = 0.25


def backoff_delay(
    attempt: int,
    base_s: float,
    max_s: float,
    uniform01: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry number `attempt` (0 = the first retry)."""
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    # 2**attempt overflows float for large attempts; the cap is reached long before 64 anyway.
    capped = max_s if attempt >= 64 else min(base_s * (2**attempt), max_s)
    return capped * (1.0 + JITTER_FRACTION * uniform01())


@dataclass
class Backoff:
    """Backoff parameters plus a random source; `delay(n)` gives the wait before retry n."""

    base_s: float
    max_s: float
    uniform01: Callable[[], float] = field(default=random.random, repr=False)

    def delay(self, attempt: int) -> float:
        return backoff_delay(attempt, self.base_s, self.max_s, self.uniform01)
