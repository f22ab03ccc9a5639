"""get_snapshot after a gap (issue 9 item 2): an unanswered request is asked again after
`snapshot_timeout_s`, and after `snapshot_retries` the book subscription is made afresh."""

from __future__ import annotations

import asyncio
from pathlib import Path

from app.listener import Listener
from tests.listener.conftest import (
    EPOCH_MS,
    Running,
    fast_listener,
    make_settings,
    read_published,
)


def test_an_unanswered_get_snapshot_is_asked_again_then_resubscribed(
    sim_factory, gatherer: str, redis_test_url: str, tmp_path: Path
) -> None:
    sim = sim_factory("--markets", "10", "--rate", "300", "--epoch-ms", str(EPOCH_MS))
    settings = make_settings(gatherer, redis_test_url, sim, tmp_path)
    config = fast_listener(markets_per_connection=10, snapshot_timeout_s=0.5, snapshot_retries=1)

    async def scenario() -> Listener:
        run = Running(Listener(settings, config))
        stats = run.listener.stats
        await run.until(lambda: run.subscribed(10))
        # One request swallowed: asking again repairs the gap.
        await asyncio.to_thread(sim.fault, type="ignore_snapshot", count=1)
        await asyncio.to_thread(sim.fault, type="skip_seq", count=1)
        await run.until(lambda: stats.gaps_recovered >= 1, timeout=20)
        # Every request swallowed: after the retry, a fresh subscription repairs it.
        await asyncio.to_thread(sim.fault, type="ignore_snapshot", count=100)
        await asyncio.to_thread(sim.fault, type="skip_seq", count=1)
        await run.until(lambda: stats.gaps_recovered >= 2, timeout=20)
        await run.finish()
        return run.listener

    listener = asyncio.run(scenario())
    control = read_published(redis_test_url, gatherer).control()
    recovered = [r["recovery"] for r in control if r["event"] == "gap_recovered"]
    assert recovered[:2] == ["get_snapshot", "resubscribe"], recovered
    stats = listener.stats
    assert stats.snapshot_timeouts >= 3 and stats.resubscribes >= 1
    # The stalled resnapshot is a recorded hole for those books until the fresh snapshots.
    holes = [r for r in control if r["event"] == "hole_closed" and r["cause"] == "seq_gap"]
    assert len(holes) >= 2


def test_a_resent_seq_is_flagged_as_a_repeat(
    sim_factory, gatherer: str, redis_test_url: str, tmp_path: Path
) -> None:
    """Issue 9 item 5: the exchange sending a (sid, seq) again is marked in the envelope, so
    ingest stores that delta once (tests/db/test_ingest_write_path.py)."""
    sim = sim_factory(
        "--markets", "6", "--rate", "300", "--repeat-seq-every", "25", "--epoch-ms", str(EPOCH_MS)
    )  # fmt: skip
    settings = make_settings(gatherer, redis_test_url, sim, tmp_path)

    async def scenario() -> None:
        run = Running(Listener(settings, fast_listener(markets_per_connection=6)))
        await run.until(lambda: run.subscribed(6))
        await run.until(lambda: run.listener.stats.seq_duplicates >= 3, timeout=20)
        await run.finish()

    asyncio.run(scenario())
    seen: set[tuple[str, int, int]] = set()
    repeats = 0
    for frame in sorted(read_published(redis_test_url, gatherer).data, key=lambda f: f.recv_ns):
        if frame.sid is None or frame.seq is None or b'"orderbook_' not in frame.raw[:40]:
            continue  # replies carry a seq too, but only data frames are sequence-checked
        key = (frame.conn_id, frame.sid, frame.seq)
        assert frame.repeat == (key in seen), key  # only a later copy is a repeat
        repeats += frame.repeat
        seen.add(key)
    assert repeats >= 3
