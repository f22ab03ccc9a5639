"""Arithmetic on half-open intervals `[start, end)`: union, clip, difference, cover, measure.

Coverage statuses are decided by these few operations (docs/coverage.md), so they live apart,
pure and generic (datetimes in production, small integers in the exhaustive tests of
tests/coverage/test_intervals.py). An interval whose end is not after its start is empty and
is dropped everywhere; touching intervals (`[0, 1)` and `[1, 2)`) merge.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar


class _Ordered(Protocol):
    def __lt__(self, other: Any, /) -> bool: ...
    def __le__(self, other: Any, /) -> bool: ...


P = TypeVar("P", bound=_Ordered)


def _later(a: P, b: P) -> P:
    return b if a < b else a


def _earlier(a: P, b: P) -> P:
    return a if a <= b else b


def union_intervals(intervals: Iterable[tuple[P, P]]) -> list[tuple[P, P]]:
    """The union as sorted, disjoint, non-touching, non-empty intervals."""
    spans = sorted((s, e) for s, e in intervals if s < e)
    merged: list[tuple[P, P]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], _later(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def clip_intervals(intervals: Iterable[tuple[P, P]], window: tuple[P, P]) -> list[tuple[P, P]]:
    """The union of `intervals` intersected with `window`."""
    low, high = window
    return union_intervals((_later(s, low), _earlier(e, high)) for s, e in intervals)


def subtract_intervals(
    minuend: Iterable[tuple[P, P]], subtrahend: Iterable[tuple[P, P]]
) -> list[tuple[P, P]]:
    """Every point of `minuend` that is in no interval of `subtrahend`, as a union."""
    cuts = union_intervals(subtrahend)
    result: list[tuple[P, P]] = []
    for start, end in union_intervals(minuend):
        cursor = start
        for cut_start, cut_end in cuts:
            if cut_end <= cursor:
                continue
            if end <= cut_start:
                break
            if cursor < cut_start:
                result.append((cursor, cut_start))
            cursor = cut_end
            if end <= cursor:
                break
        if cursor < end:
            result.append((cursor, end))
    return result


def covers(intervals: Iterable[tuple[P, P]], window: tuple[P, P]) -> bool:
    """Whether every point of `window` lies in some interval (an empty window is covered)."""
    low, high = window
    if not low < high:
        return True
    return any(s <= low and high <= e for s, e in union_intervals(intervals))


def measure(intervals: Iterable[tuple[datetime, datetime]]) -> timedelta:
    """Total length of the union (overlaps counted once)."""
    return sum((e - s for s, e in union_intervals(intervals)), timedelta())
