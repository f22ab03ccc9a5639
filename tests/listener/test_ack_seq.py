"""Command acks and seq (issue 9 item 3): whether the exchange's `ok` takes a seq of its own or
reports the current one, a get_snapshot never causes the next gap (kalshi-api.md §7.1)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.listener import Listener
from tests.listener.conftest import (
    EPOCH_MS,
    Running,
    fast_listener,
    make_settings,
    read_published,
)


@pytest.mark.parametrize(
    ("consumes", "mode"),
    [(True, "auto"), (False, "auto"), (True, "consumes"), (False, "position")],
    ids=["consuming-auto", "position-auto", "consuming-consumes", "position-position"],
)
def test_acks_never_look_like_gaps(
    sim_factory, gatherer: str, redis_test_url: str, tmp_path: Path, consumes: bool, mode: str
) -> None:
    flags = ["--ack-consumes-seq"] if consumes else []
    sim = sim_factory("--markets", "12", "--rate", "200", "--epoch-ms", str(EPOCH_MS), *flags)
    settings = make_settings(gatherer, redis_test_url, sim, tmp_path)
    # Two commands per subscription (subscribe 6, add_markets 6): an ack on a live sid at once.
    config = fast_listener(markets_per_connection=12, command_batch=6, ack_seq=mode)

    async def scenario() -> Listener:
        run = Running(Listener(settings, config))
        stats = run.listener.stats
        await run.until(lambda: run.subscribed(12))
        for expected in (1, 2):
            await asyncio.to_thread(sim.fault, type="skip_seq", count=1)
            await run.until(lambda n=expected: stats.gaps_recovered >= n, timeout=20)
        await asyncio.sleep(1.5)  # long enough for a get_snapshot ack to be misjudged
        await run.finish()
        return run.listener

    listener = asyncio.run(scenario())
    stats = listener.stats
    # Exactly the two injected gaps, each repaired by one get_snapshot.
    assert stats.gaps_detected == 2 and stats.gaps_recovered == 2, listener.snapshot_stats()
    assert stats.snapshot_requests == 2 and stats.resubscribes == 0
    (manager,) = [m for m in listener.managers.values() if m.role == "orderbook"]
    assert manager._ack_seq.consumes == consumes
    control = read_published(redis_test_url, gatherer).control()
    recovered = [r["recovery"] for r in control if r["event"] == "gap_recovered"]
    assert recovered == ["get_snapshot", "get_snapshot"]
    acks = read_published(redis_test_url, gatherer).messages("ok")
    assert len([m for _, m in acks if "seq" in m]) >= 3  # add_markets and two get_snapshot
