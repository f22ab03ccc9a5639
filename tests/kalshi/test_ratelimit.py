"""The client-side token bucket (kalshi-api.md §4) on an injected clock: no real waiting."""

from __future__ import annotations

import threading

import pytest

from app.kalshi.ratelimit import (
    DEFAULT_COST,
    TIER_READ_TOKENS_PER_S,
    TIER_WRITE_TOKENS_PER_S,
    TokenBucket,
    TokenLimiter,
    affordable_batch_size,
    read_capacity,
    write_capacity,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_basic_tier_allows_a_two_second_burst_then_paces() -> None:
    clock = FakeClock()
    bucket = TokenBucket.for_tier("basic", clock, headroom=0)
    assert (bucket.rate_per_s, bucket.capacity) == (200, 400)  # 2 s of tokens (§9)
    assert [bucket.reserve(DEFAULT_COST) for _ in range(40)] == [0.0] * 40
    # The 41st read overdraws by 10 tokens = 0.05 s at 200 tokens/s; reservations queue up.
    assert bucket.reserve(DEFAULT_COST) == pytest.approx(0.05)
    assert bucket.reserve(DEFAULT_COST) == pytest.approx(0.10)
    clock.sleep(0.10)
    assert bucket.balance == pytest.approx(0.0, abs=1e-9)
    assert bucket.reserve(DEFAULT_COST) == pytest.approx(0.05)


def test_refill_is_capped_at_capacity() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=100, capacity=50, clock=clock)
    bucket.reserve(50)
    clock.sleep(3600)
    assert bucket.balance == 50
    assert bucket.reserve(50) == 0.0
    assert bucket.reserve(1) == pytest.approx(0.01)


def test_long_run_rate_never_exceeds_the_tier() -> None:
    """1,000 default-cost reads on Basic take (10,000 - 400 burst) / 200 = 48 s of clock."""
    clock = FakeClock()
    bucket = TokenBucket.for_tier("basic", clock, headroom=0)
    start = clock.now
    for _ in range(1000):
        clock.sleep(bucket.reserve(DEFAULT_COST))
    assert clock.now - start == pytest.approx(48.0)


def test_batch_cost_larger_than_capacity_waits_for_its_overdraft() -> None:
    clock = FakeClock()
    bucket = TokenBucket.for_tier("basic", clock, headroom=0)
    assert bucket.reserve(DEFAULT_COST * 100) == pytest.approx(3.0)  # 1000 tokens, 400 held


@pytest.mark.parametrize(("tier", "rate"), sorted(TIER_READ_TOKENS_PER_S.items()))
def test_every_configurable_tier_has_a_bucket(tier: str, rate: int) -> None:
    bucket = TokenBucket.for_tier(tier, FakeClock())
    assert bucket.rate_per_s == rate
    burst = 2 if tier in ("basic", "advanced") else 1
    assert bucket.capacity == pytest.approx(rate * burst * 0.9)  # 10 % held back by default


# kalshi-api.md §9 (2026-08-19): tier -> (read/s, write/s, read burst s, write burst s)
TIERS_2026_08 = {
    "basic": (200, 100, 2, 1),
    "advanced": (300, 300, 2, 2),
    "expert": (600, 600, 1, 2),
    "premier": (1_000, 1_000, 1, 2),
    "paragon": (2_000, 2_000, 1, 2),
    "prime": (4_000, 4_000, 1, 2),
    "prestige": (10_000, 8_000, 1, 2),
}


@pytest.mark.parametrize(("tier", "figures"), sorted(TIERS_2026_08.items()))
def test_tier_table_of_2026_08(tier: str, figures: tuple[int, int, int, int]) -> None:
    read, write, read_burst, write_burst = figures
    assert (read_capacity(tier), write_capacity(tier)) == (read * read_burst, write * write_burst)
    bucket = TokenBucket.for_tier(tier, FakeClock(), headroom=0, kind="write")
    assert (bucket.rate_per_s, bucket.capacity) == (write, write * write_burst)
    assert set(TIER_WRITE_TOKENS_PER_S) == set(TIER_READ_TOKENS_PER_S) == set(TIERS_2026_08)


def test_headroom_shrinks_the_burst_not_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket.for_tier("basic", clock)
    assert [bucket.reserve(DEFAULT_COST) for _ in range(36)] == [0.0] * 36
    assert bucket.reserve(DEFAULT_COST) == pytest.approx(0.05)
    with pytest.raises(ValueError):
        TokenBucket.for_tier("basic", clock, headroom=1.0)


def test_tiers_match_the_config_vocabulary() -> None:
    from typing import get_args

    from app.config import Tier

    assert set(get_args(Tier)) == set(TIER_READ_TOKENS_PER_S)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown Kalshi tier 'gold'"):
        TokenBucket.for_tier("gold")
    with pytest.raises(ValueError):
        TokenBucket(0, 10)
    with pytest.raises(ValueError):
        TokenBucket(10, 10).reserve(-1)


def test_bucket_satisfies_the_limiter_protocol() -> None:
    limiter: TokenLimiter = TokenBucket(10, 10)
    assert limiter.reserve(1) == 0.0


def test_concurrent_reservations_are_all_accounted() -> None:
    clock = FakeClock()  # frozen: no refill while threads race
    bucket = TokenBucket(rate_per_s=100, capacity=100, clock=clock)
    waits: list[float] = []
    lock = threading.Lock()

    def spend() -> None:
        for _ in range(50):
            wait = bucket.reserve(1)
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=spend) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert bucket.balance == pytest.approx(100 - 400)
    assert sorted(waits)[-1] == pytest.approx(3.0)  # the last of 400 tokens waits 300/100 s
    assert sum(1 for wait in waits if wait == 0) == 100


def test_batches_are_sized_to_fit_a_full_bucket() -> None:
    assert affordable_batch_size("basic", 100) == 40  # 400 tokens
    assert affordable_batch_size("advanced", 100) == 60  # 600 tokens
    assert affordable_batch_size("expert", 100) == 60  # 600 tokens, 1 s
    assert affordable_batch_size("premier", 100) == 100
    assert affordable_batch_size("basic", 100, item_cost=1000) == 1  # never zero
