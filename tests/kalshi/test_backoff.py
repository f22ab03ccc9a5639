"""GEN-10 backoff: min(base * 2**attempt, max) + 0-25 % jitter."""

from __future__ import annotations

import random

import pytest

from app.kalshi.backoff import Backoff, backoff_delay


def test_doubles_from_base_and_caps_at_max_without_jitter() -> None:
    delays = [backoff_delay(n, 0.5, 30.0, lambda: 0.0) for n in range(9)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_jitter_adds_at_most_a_quarter() -> None:
    assert backoff_delay(2, 1.0, 300.0, lambda: 1.0) == 5.0
    assert backoff_delay(20, 1.0, 300.0, lambda: 0.5) == 337.5
    rng = random.Random(7)
    samples = [backoff_delay(3, 1.0, 300.0, rng.random) for _ in range(2000)]
    assert min(samples) >= 8.0 and max(samples) <= 10.0
    assert max(samples) - min(samples) > 1.5  # actually jittered, not constant


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert backoff_delay(10_000, 1.0, 60.0, lambda: 0.0) == 60.0


def test_negative_attempt_is_a_bug() -> None:
    with pytest.raises(ValueError):
        backoff_delay(-1, 1.0, 2.0)


def test_backoff_object() -> None:
    backoff = Backoff(1.0, 300.0, uniform01=lambda: 0.0)
    assert [backoff.delay(n) for n in (0, 1, 8, 9)] == [1.0, 2.0, 256.0, 300.0]
