"""The simulator's virtual clock and the exchange's time formats.

Order-flow step k happens at `epoch_ns + k * period_ns` of virtual time, whatever the wall clock
says, so two runs with the same seed and epoch stamp every exchange event identically (the
server only *paces* steps to the wall clock). REST uses RFC3339 strings, WebSocket uses Unix
milliseconds or seconds (kalshi-api.md §5).
"""

from __future__ import annotations

import time

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000


class VirtualClock:
    """Maps step numbers to virtual nanoseconds."""

    __slots__ = ("epoch_ns", "period_ns", "rate")

    def __init__(self, epoch_ms: int, rate: float) -> None:
        self.epoch_ns = epoch_ms * NS_PER_MS
        self.rate = rate
        self.period_ns = max(1, round(NS_PER_S / rate))

    def at(self, step: int) -> int:
        return self.epoch_ns + step * self.period_ns


_second_cache: dict[int, str] = {}


def _second_prefix(seconds: int) -> str:
    prefix = _second_cache.get(seconds)
    if prefix is None:
        if len(_second_cache) > 4096:
            _second_cache.clear()
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _second_cache[seconds] = prefix
    return prefix


def rfc3339(ns: int, places: int = 0) -> str:
    """`2026-02-12T12:06:24Z`, or with `places` (3, 6 or 9) fractional digits."""
    seconds, frac = divmod(ns, NS_PER_S)
    prefix = _second_prefix(seconds)
    if places == 0:
        return prefix + "Z"
    digits = f"{frac:09d}"[:places]
    return f"{prefix}.{digits}Z"


def to_seconds(ns: int) -> int:
    return ns // NS_PER_S
