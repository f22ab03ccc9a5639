"""Deterministic randomness derived from the run seed.

The exchange's order flow draws from one `random.Random(seed)` in step order. Everything that
must not depend on *when* it is computed (a market's metadata, its initial book, its UUID) is
instead a pure function of (seed, market index), built here from SplitMix64, so that a market
nobody looked at until minute ten is identical to the one a client fetched at start.
"""

from __future__ import annotations

MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def mix64(value: int) -> int:
    """SplitMix64 finalizer: a well-scrambled 64-bit function of `value`."""
    z = (value + _GOLDEN) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def derive(seed: int, *parts: int) -> int:
    """A 64-bit value that depends on the seed and every part, in order."""
    value = mix64(seed & MASK64)
    for part in parts:
        value = mix64(value ^ (part & MASK64))
    return value


class SplitMix:
    """A tiny, fast, reproducible generator for per-market draws."""

    __slots__ = ("state",)

    def __init__(self, seed: int) -> None:
        self.state = seed & MASK64

    def next(self) -> int:
        self.state = (self.state + _GOLDEN) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def below(self, bound: int) -> int:
        """An integer in [0, bound); the tiny modulo bias is irrelevant for a simulator."""
        return self.next() % bound

    def between(self, low: int, high: int) -> int:
        """An integer in [low, high] inclusive."""
        return low + self.next() % (high - low + 1)


def uuid_from_bits(bits: int) -> str:
    """Format 128 random bits as a UUID-shaped string (version nibble set to 4)."""
    text = f"{bits & ((1 << 128) - 1):032x}"
    return f"{text[:8]}-{text[8:12]}-4{text[13:16]}-{text[16:20]}-{text[20:32]}"
