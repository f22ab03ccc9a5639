"""Markets the exchange refuses with code 16 (issue 9 item 1): the rest of their command is
subscribed, the refused market is retried with backoff and at once on a registry refresh, and
stays a known hole until it is captured or the registry drops it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.listener import Listener
from tests.listener.conftest import (
    EPOCH_MS,
    Running,
    fast_listener,
    feed_for,
    make_settings,
    read_published,
)


def _refused(listener: Listener) -> int:
    return sum(c.rejected_markets for c in listener.stats.connections.values())


@pytest.mark.parametrize("named", [True, False], ids=["named", "nameless"])
def test_a_refused_market_is_isolated_retried_and_kept_as_a_hole(
    sim_factory, gatherer: str, redis_test_url: str, tmp_path: Path, named: bool
) -> None:
    sim = sim_factory("--markets", "8", "--rate", "100", "--epoch-ms", str(EPOCH_MS))
    if not named:  # the exchange's 16 names no market: the listener must find it by halving
        sim.fault(type="nameless_16", count=1000)
    tickers = sorted(m["ticker"] for m in sim.get("/markets", limit=100).json()["markets"])
    feed = feed_for(redis_test_url, gatherer)
    # The unknown market sits in the middle of the one subscribe command for all of them.
    feed.publish(added=[*tickers[:4], "KXNOPE-A", *tickers[4:8]])
    settings = make_settings(gatherer, redis_test_url, sim, tmp_path)
    config = fast_listener(
        markets_per_connection=20, refused_retry_base_s=0.2, refused_retry_max_s=60
    )

    async def scenario() -> Listener:
        run = Running(Listener(settings, config))
        stats = run.listener.stats
        await run.until(lambda: run.subscribed(8))  # every known market, despite the refusal
        assert _refused(run.listener) == 1
        # Asked again with a doubling wait: 0.2, 0.4, 0.8, 1.6 s, then 3.2 s.
        await run.until(lambda: stats.market_refusals >= 5)
        waited = stats.market_refusals
        # A registry refresh asks at once, well before the 3.2 s wait is over.
        await asyncio.to_thread(feed.publish, ["KXNOPE-B"])
        await run.until(lambda: stats.market_refusals >= waited + 2, timeout=2.5)
        assert _refused(run.listener) == 2
        # The registry dropping them ends the retries and their holes.
        await asyncio.to_thread(feed.publish, [], ["KXNOPE-A", "KXNOPE-B"])
        await run.until(lambda: _refused(run.listener) == 0)
        assert run.subscribed(8)
        await run.finish()
        return run.listener

    listener = asyncio.run(scenario())
    feed.redis.close()
    stats = listener.stats
    assert stats.errors_by_code[16] >= 7
    assert (stats.refusal_splits > 0) == (not named)
    control = read_published(redis_test_url, gatherer).control()
    opened = {
        r["hole_id"]: r
        for r in control
        if r["event"] == "hole_opened" and "KXNOPE-A" in (r["market_tickers"] or ())
    }
    assert opened, "a refused market the registry lists is a known hole"
    closed = {r["hole_id"] for r in control if r["event"] == "hole_closed"}
    assert set(opened) <= closed  # closed when the registry dropped it
    snapshots = read_published(redis_test_url, gatherer).messages("orderbook_snapshot")
    assert {m["msg"]["market_ticker"] for _, m in snapshots} == set(tickers[:8])
