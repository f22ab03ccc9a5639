"""The batcher + publisher against real Redis servers: batching, backpressure, journal replay."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import redis

from app.streams import (
    Frame,
    JournalFull,
    StreamNames,
    StreamPublisher,
    StreamSettings,
    decode_entry,
    open_redis,
)
from tests.conftest import REPO, free_port
from tests.streams.conftest import RedisServer


def frames_in(client: redis.Redis, stream: str) -> list[bytes]:
    return [f.raw for _, fields in client.xrange(stream) for f in decode_entry(fields)]


def frame(stream: str, i: int, pad: int = 0) -> Frame:
    return Frame(f"{stream}#{i}|".encode() + b"\xff" * pad, time.time_ns(), "conn-1", 1, i)


def expected(stream: str, n: int, pad: int = 0) -> list[bytes]:
    return [frame(stream, i, pad).raw for i in range(n)]


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def started(
    url: str, names: StreamNames, journal: Path, settings: StreamSettings
) -> StreamPublisher:
    pub = StreamPublisher(open_redis(url, settings), names, journal, settings)
    await pub.start()
    return pub


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


async def test_batch_is_sealed_at_n_frames(client, names, fast_settings, redis_test_url) -> None:
    settings = fast_settings.model_copy(update={"batch_frames": 50, "batch_interval_ms": 60_000})
    pub = await started(redis_test_url, names, settings.journal_dir, settings)
    for i in range(120):
        pub.add(names.trade, frame("t", i))
    await until(lambda: client.xlen(names.trade) == 2)
    await asyncio.sleep(0.3)
    assert client.xlen(names.trade) == 2  # the 20 left over wait for N (or T, 60 s here)
    lengths = [int(fields[b"n"]) for _, fields in client.xrange(names.trade)]
    assert lengths == [50, 50]
    assert await pub.close(5)
    assert frames_in(client, names.trade) == expected("t", 120)
    stats = pub.stats
    assert (stats.frames_added, stats.frames_published, stats.batches_published) == (120, 120, 3)
    assert stats.frames_spilled == 0 and not stats.spilling


async def test_batch_is_sealed_t_ms_after_its_first_frame(
    client, names, fast_settings, redis_test_url
) -> None:
    settings = fast_settings.model_copy(update={"batch_frames": 10_000, "batch_interval_ms": 150})
    pub = await started(redis_test_url, names, settings.journal_dir, settings)
    t0 = time.monotonic()
    for i in range(3):
        pub.add(names.ticker, frame("k", i))
    await asyncio.sleep(0.05)
    assert client.xlen(names.ticker) == 0
    await until(lambda: client.xlen(names.ticker) == 1, timeout=2)
    waited = time.monotonic() - t0
    assert 0.14 <= waited < 2.0
    assert frames_in(client, names.ticker) == expected("k", 3)
    await pub.close()


async def test_frames_keep_their_order_and_bytes_per_stream(
    client, names, fast_settings, redis_test_url
) -> None:
    pub = await started(redis_test_url, names, fast_settings.journal_dir, fast_settings)
    streams = [names.trade, names.book(0), names.book(3), names.other]
    for i in range(1000):
        for s in streams:
            pub.add(s, frame(s, i))
        if i % 50 == 0:
            await asyncio.sleep(0)
    assert await pub.close(5)
    for s in streams:
        assert frames_in(client, s) == expected(s, 1000)
        _, fields = client.xrange(s, count=1)[0]
        assert fields[b"v"] == b"1" and fields[b"p"] == pub.publisher_id.encode()
    assert not segments(fast_settings.journal_dir)


async def test_redis_killed_and_restarted_loses_and_duplicates_nothing(
    own_redis: RedisServer, names, fast_settings
) -> None:
    pub = await started(own_redis.url, names, fast_settings.journal_dir, fast_settings)
    streams = [names.trade, names.book(1), names.lifecycle]
    sent = 0

    async def produce(seconds: float) -> None:
        nonlocal sent
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            for _ in range(10):
                for s in streams:
                    pub.add(s, frame(s, sent, pad=150))
                sent += 1
            await asyncio.sleep(0.002)

    await produce(0.3)
    own_redis.kill()
    await produce(0.6)
    assert pub.stats.spilling
    assert pub.stats.frames_spilled > 0 and segments(fast_settings.journal_dir)
    own_redis.start()  # same port, same AOF directory
    await produce(0.3)
    assert await pub.close(15)
    client = redis.Redis.from_url(own_redis.url)
    for s in streams:
        assert frames_in(client, s) == expected(s, sent, pad=150)
    stats = pub.stats
    assert stats.spill_events >= 1 and stats.recoveries >= 1
    assert stats.frames_replayed > 0
    assert stats.frames_published == 3 * sent
    assert stats.journal_bytes == 0 and not segments(fast_settings.journal_dir)
    client.close()


async def test_a_fresh_publisher_replays_the_journal_of_a_dead_one(
    client, names, fast_settings, redis_test_url, tmp_path
) -> None:
    journal = tmp_path / "dead-listener"
    dead_port = free_port()  # nothing listens there: every batch spills
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from app.streams import Frame, StreamNames, StreamPublisher, StreamSettings, open_redis
        async def main():
            s = StreamSettings(batch_frames=50, batch_interval_ms=20, redis_timeout_s=0.5,
                               high_water_memory_bytes=0, recovery_probe_min_s=0.05)
            names = StreamNames({names.gatherer!r}, 4)
            pub = StreamPublisher(open_redis("redis://127.0.0.1:{dead_port}/0", s), names,
                                  {str(journal)!r}, s, publisher_id="dead-one")
            await pub.start()
            for i in range(700):
                for stream in (names.trade, names.book(2)):
                    pub.add(stream, Frame(f"{{stream}}#{{i}}|".encode(), i, "c", 1, i))
                if i % 100 == 0:
                    await asyncio.sleep(0)
            assert not await pub.flush(timeout=1.0)
            print("spilled", pub.stats.frames_spilled, flush=True)
            await asyncio.sleep(60)
        asyncio.run(main())
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.split() == ["spilled", "1400"], line
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # dies with its journal on disk, lock released
        proc.wait(10)
    assert segments(journal)
    assert client.xlen(names.trade) == 0

    pub = await started(redis_test_url, names, journal, fast_settings)
    assert await pub.flush(10)
    assert frames_in(client, names.trade) == [f"{names.trade}#{i}|".encode() for i in range(700)]
    assert frames_in(client, names.book(2)) == [
        f"{names.book(2)}#{i}|".encode() for i in range(700)
    ]
    _, fields = client.xrange(names.trade, count=1)[0]
    assert fields[b"p"] == b"dead-one"
    assert pub.stats.frames_replayed == 1400
    assert not segments(journal)
    await pub.close()


async def test_stream_high_water_mark_spills_then_replays_in_order(
    client, names, fast_settings, redis_test_url
) -> None:
    settings = fast_settings.model_copy(update={"high_water_entries": 3})
    for _ in range(3):
        client.xadd(names.trade, {"unread": "x"})  # a backlog nobody drained yet
    pub = await started(redis_test_url, names, settings.journal_dir, settings)
    for i in range(200):
        pub.add(names.trade, frame("t", i))
    await until(lambda: pub.stats.frames_spilled == 200)
    await asyncio.sleep(0.2)
    assert client.xlen(names.trade) == 3 and pub.spilling
    assert "highwater" in pub.stats.last_error
    client.xtrim(names.trade, maxlen=0)  # consumers caught up and trimmed
    # replay runs below the low-water mark (int(3 * 0.8) = 2 entries), so it goes in steps
    replayed: list[bytes] = []
    deadline = time.monotonic() + 10
    while len(replayed) < 200:
        assert time.monotonic() < deadline
        for entry_id, fields in client.xrange(names.trade):
            replayed.extend(f.raw for f in decode_entry(fields))
            client.xdel(names.trade, entry_id)
        await asyncio.sleep(0.02)
    assert replayed == expected("t", 200)
    assert await pub.flush(5)
    # a paused replay restarts its segment from the top: the dedup key skipped what had landed
    assert pub.stats.batches_duplicate >= 1
    await pub.close()


async def test_memory_high_water_spills_and_close_leaves_a_replayable_journal(
    client, names, fast_settings, redis_test_url
) -> None:
    settings = fast_settings.model_copy(
        update={"high_water_memory_bytes": 1, "memory_check_interval_s": 0.01}
    )
    pub = await started(redis_test_url, names, settings.journal_dir, settings)
    await until(lambda: pub.spilling)  # any used_memory >= 1 byte
    for i in range(300):
        pub.add(names.trade, frame("t", i))
    assert not await pub.close(0.3)  # Redis stays "too full": everything ends in the journal
    assert client.xlen(names.trade) == 0
    assert pub.stats.frames_spilled == 300 and segments(settings.journal_dir)

    relaxed = settings.model_copy(update={"high_water_memory_bytes": 0})
    pub = await started(redis_test_url, names, settings.journal_dir, relaxed)
    assert await pub.flush(5)
    assert frames_in(client, names.trade) == expected("t", 300)
    await pub.close()


async def test_memory_bound_holds_while_redis_hangs_and_nothing_is_duplicated(
    own_redis: RedisServer, names, fast_settings
) -> None:
    bound = 64 * 1024
    settings = fast_settings.model_copy(
        update={"max_buffered_bytes": bound, "batch_frames": 20, "redis_timeout_s": 1.0}
    )
    pub = await started(own_redis.url, names, settings.journal_dir, settings)
    assert own_redis.proc is not None
    os.kill(own_redis.proc.pid, signal.SIGSTOP)  # alive but not answering: calls hang
    try:
        peak = 0
        for i in range(3000):
            pub.add(names.trade, frame("t", i, pad=200))
            peak = max(peak, pub.stats.buffered_bytes)
            if i % 10 == 0:
                await asyncio.sleep(0)  # the listener awaits its socket between frames
        assert pub.spilling
        assert peak <= bound + 300  # the bound, plus at most the frame that crossed it
    finally:
        os.kill(own_redis.proc.pid, signal.SIGCONT)
    assert await pub.close(15)
    client = redis.Redis.from_url(own_redis.url)
    assert frames_in(client, names.trade) == expected("t", 3000, pad=200)
    stats = pub.stats
    # The call in flight when the bound was hit was journaled too; whether it landed or not,
    # every frame is counted (and stored) exactly once.
    assert stats.frames_published == 3000 and stats.frames_spilled == 3000
    assert stats.batches_published == stats.batches_spilled
    client.close()


async def test_when_memory_and_journal_are_full_add_pushes_back(names, fast_settings) -> None:
    settings = fast_settings.model_copy(
        update={"max_buffered_bytes": 64 * 1024, "journal_max_bytes": 32 * 1024}
    )
    pub = await started(f"redis://127.0.0.1:{free_port()}/0", names, settings.journal_dir, settings)
    accepted = 0
    try:
        for i in range(5000):
            pub.add(names.trade, frame("t", i, pad=200))
            accepted += 1
            if i % 10 == 0:
                await asyncio.sleep(0)
        raise AssertionError("add never pushed back")
    except JournalFull as exc:
        assert "journal_max_bytes" in str(exc)
    stats = pub.stats
    assert stats.buffered_bytes <= 64 * 1024 + 300
    assert stats.journal_bytes <= 32 * 1024
    assert 0 < stats.frames_spilled < accepted  # the rest is held in memory, not dropped
    try:
        await pub.close(0.2)
        raise AssertionError("close must refuse to pretend the frames were kept")
    except JournalFull:
        pass


async def test_a_damaged_journal_segment_reports_what_it_may_have_lost(
    client, names, fast_settings, redis_test_url, tmp_path
) -> None:
    """A torn last record (a writer killed mid-append) is discarded on replay; the publisher
    says which stretch of receive times it may have held, for the listener's hole."""
    from app.streams.envelope import encode_frames
    from app.streams.journal import Journal, JournalRecord

    journal = Journal(tmp_path / "j", segment_bytes=1 << 20, max_bytes=1 << 24, fsync="always")
    journal.open()
    received = [1_000_000_000 + i for i in range(3)]
    count, data = encode_frames(
        Frame(f"f{i}".encode(), ns, "conn-1", 1, i) for i, ns in enumerate(received)
    )
    old = f"old-{time.time_ns()}"  # the publish dedup key outlives a test run (TTL 7 days)
    journal.append(JournalRecord(names.trade, old, names.publisher_key(old), 1, count, data))
    journal.close()
    (segment,) = segments(tmp_path / "j")
    with open(segment, "ab") as file:
        file.write(b"\x50\x00\x00\x00\x12\x34")  # the torn record
    written_ns = segment.stat().st_mtime_ns
    losses: list[tuple[str, int, int, str]] = []
    pub = StreamPublisher(
        open_redis(redis_test_url, fast_settings), names, tmp_path / "j", fast_settings,
        on_journal_loss=lambda *loss: losses.append(loss),
    )  # fmt: skip
    await pub.start()
    assert await pub.flush(10)
    assert frames_in(client, names.trade) == [b"f0", b"f1", b"f2"]
    ((where, from_ns, to_ns, problem),) = losses
    assert where == str(segment) and "torn" in problem
    assert (from_ns, to_ns) == (received[-1], written_ns)
    assert pub.stats.journal_torn_bytes == 6
    await pub.close()


async def test_the_high_water_mark_counts_unread_entries_not_the_stream_length(
    client, names, fast_settings, redis_test_url
) -> None:
    """Issue 9 item 7: entries every consumer group has read (kept until the trim job runs)
    are no backlog; entries a group has not read yet are."""
    settings = fast_settings.model_copy(update={"high_water_entries": 3})
    for _ in range(5):
        client.xadd(names.trade, {"read": "x"})
    client.xgroup_create(names.trade, "writers", id="0")
    client.xreadgroup("writers", "c1", {names.trade: ">"})  # all read: lag 0, XLEN 5
    pub = await started(redis_test_url, names, settings.journal_dir, settings)
    for i in range(20):
        pub.add(names.trade, frame("t", i))
    assert await pub.flush(5)
    assert not pub.spilling and pub.stats.frames_spilled == 0
    assert client.xlen(names.trade) > 5  # published on top of the read entries
    # Now the group falls behind: what it has not read is the backlog (one entry per flush).
    for i in range(6):
        pub.add(names.trade, frame("u", i))
        await pub.flush(0.5)
    assert pub.spilling and "highwater" in pub.stats.last_error
    assert pub.stats.frames_spilled >= 1
    await pub.close()


async def test_the_durability_bound_stays_bounded_without_anyone_reading_it(
    client, names, fast_settings, redis_test_url
) -> None:
    """The first-frame times kept for `durable_before_ns` are forgotten as batches land, even
    when no heartbeat ever asks (a publisher outside the listener)."""
    settings = fast_settings.model_copy(update={"batch_frames": 1})
    pub = await started(redis_test_url, names, settings.journal_dir, settings)
    for i in range(2_000):
        pub.add(names.trade, frame("b", i))  # one batch each
        if i % 100 == 99:
            assert await pub.flush(10)
    # At most the slack (256) plus twice the batches waiting when it was last pruned (100).
    assert len(pub._first_ns) <= 256 + 2 * 100 + 1
    before = time.time_ns()
    assert pub.durable_before_ns() >= before  # everything landed: the bound is now
    assert pub._first_ns == {}
    await pub.close()
