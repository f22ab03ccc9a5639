"""Interval arithmetic, exhaustively against a model: a half-open interval with integer ends
is exactly the set of unit cells [k, k+1) it holds, so every union, clip, difference and cover
over a small domain is compared with plain set algebra."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import product

from app.coverage.intervals import (
    clip_intervals,
    covers,
    measure,
    subtract_intervals,
    union_intervals,
)

DOMAIN = range(5)
SPANS = [(s, e) for s in DOMAIN for e in DOMAIN]  # empty and inverted ones included
LISTS_2 = [[], *([x] for x in SPANS), *([x, y] for x, y in product(SPANS, SPANS))]


def cells(intervals: list[tuple[int, int]]) -> set[int]:
    return {k for s, e in intervals for k in range(s, e)}


def runs(points: set[int]) -> list[tuple[int, int]]:
    """The canonical form: maximal runs of consecutive cells, sorted."""
    out: list[tuple[int, int]] = []
    for k in sorted(points):
        if out and out[-1][1] == k:
            out[-1] = (out[-1][0], k + 1)
        else:
            out.append((k, k + 1))
    return out


def test_union_of_up_to_three_intervals_is_the_canonical_cell_set() -> None:
    for n in range(4):
        for combo in product(SPANS, repeat=n):
            assert union_intervals(combo) == runs(cells(list(combo))), combo


def test_clip_is_intersection_with_the_window() -> None:
    for intervals, window in product(LISTS_2, SPANS):
        expected = runs(cells(intervals) & cells([window]))
        assert clip_intervals(intervals, window) == expected, (intervals, window)


def test_subtract_is_set_difference() -> None:
    for a, b in product(LISTS_2, LISTS_2):
        assert subtract_intervals(a, b) == runs(cells(a) - cells(b)), (a, b)


def test_covers_means_every_cell_of_the_window_is_held() -> None:
    for intervals, window in product(LISTS_2, SPANS):
        expected = cells([window]) <= cells(intervals)
        assert covers(intervals, window) is expected, (intervals, window)


def test_touching_intervals_merge_and_order_does_not_matter() -> None:
    assert union_intervals([(3, 4), (0, 1), (1, 2)]) == [(0, 2), (3, 4)]
    assert covers([(2, 3), (0, 2)], (0, 3))
    assert not covers([(0, 1), (2, 3)], (0, 3))


def test_measure_counts_overlaps_once_on_datetimes() -> None:
    t = datetime(2026, 1, 10, tzinfo=UTC)
    minutes = [(0, 10), (5, 15), (30, 30), (40, 45), (45, 50)]
    spans = [(t + timedelta(minutes=a), t + timedelta(minutes=b)) for a, b in minutes]
    assert measure(spans) == timedelta(minutes=25)
    assert measure([]) == timedelta()
    window = (t + timedelta(minutes=8), t + timedelta(minutes=42))
    assert measure(clip_intervals(spans, window)) == timedelta(minutes=9)
