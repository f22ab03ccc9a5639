"""The listener against a real simulator over sockets, with real Redis: completeness,
byte-exactness, gaps, drops, registry changes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from app.listener import Listener, gap_row, session_row
from app.simulator.truth import load_truth
from tests.listener.conftest import (
    EPOCH_MS,
    Running,
    assert_exactly_once,
    fast_listener,
    feed_for,
    make_settings,
    read_published,
)


def test_every_frame_reaches_the_streams_exactly_once(
    sim_factory, gatherer: str, redis_test_url: str, tmp_path: Path
) -> None:
    sim = sim_factory(
        "--markets",
        "100",
        "--rate",
        "400",
        "--max-events",
        "1200",
        "--epoch-ms",
        str(EPOCH_MS),
    )
    settings = make_settings(gatherer, redis_test_url, sim, tmp_path)

    async def scenario() -> Listener:
        run = Running(Listener(settings, fast_listener(markets_per_connection=30)))
        await run.until(lambda: run.subscribed(100))
        await asyncio.to_thread(sim.wait_finished, 30)
        await asyncio.sleep(0.5)
        await run.finish()
        return run.listener

    listener = asyncio.run(scenario())
    assert listener.shards.shard_count == 4  # 100 markets, 30 per connection
    published = read_published(redis_test_url, gatherer)
    mapping = assert_exactly_once(sim, published)
    assert len(mapping) == 4 + 3  # 4 orderbook + trade, ticker, lifecycle connections
    assert len(set(mapping.values())) == len(mapping)
    snapshots = published.messages("orderbook_snapshot")
    assert sorted(m["msg"]["market_ticker"] for _, m in snapshots) == sorted(
        t for t in load_truth(sim.truth).markets if t in listener.shards
    )
    deltas = published.messages("orderbook_delta")
    assert deltas and all(f.sid is not None and f.seq is not None for f, _ in deltas)
    assert not any(f.gap or f.resync for f in published.data)
    # Sessions: one opened and one closed record per connection, convertible to rows.
    sessions = [r for r in published.control() if r["event"].startswith("session")]
    rows = [session_row(r) for r in sessions]
    assert {r["connection_id"] for r in rows} == set(mapping)
    closed = [r for r in rows if r["closed_at"] is not None]
    assert len(closed) == 7 and all(r["close_reason"].startswith("shutdown") for r in closed)
    stats = listener.snapshot_stats()
    assert stats["gaps_detected"] == 0 and stats["publisher"]["frames_spilled"] == 0


def test_seq_gaps_are_recorded_and_repaired_by_get_snapshot(
    sim_factory, gatherer: str, redis_test_url: str, tmp_path: Path
) -> None:
    sim = sim_factory(
        "--markets",
        "60",
        "--rate",
        "400",
        "--max-events",
        "1200",
        "--skip-seq-every",
        "60",
        "--epoch-ms",
        str(EPOCH_MS),
    )
    settings = make_settings(gatherer, redis_test_url, sim, tmp_path)

    async def scenario() -> Listener:
        run = Running(Listener(settings, fast_listener(markets_per_connection=20)))
        await run.until(lambda: run.subscribed(60))
        await asyncio.to_thread(sim.wait_finished, 30)
        stats = run.listener.stats
        await run.until(
            lambda: stats.gaps_detected > 0 and stats.gaps_recovered == stats.gaps_detected
        )
        await asyncio.sleep(0.3)
        await run.finish()
        return run.listener

    listener = asyncio.run(scenario())
    published = read_published(redis_test_url, gatherer)
    mapping = assert_exactly_once(sim, published)  # nothing else stopped or was lost
    truth = load_truth(sim.truth)
    skipped = {(f.conn, f.sid, f.seq) for f in truth.faults if f.fault == "skip_seq"}
    assert skipped
    records = published.control()
    detected = [gap_row(r) for r in records if r["event"] == "gap_detected"]
    recovered = [gap_row(r) for r in records if r["event"] == "gap_recovered"]
    found = {(mapping[g.connection_id], g.sid, g.expected_seq) for g in detected}
    assert found == skipped
    assert all(g.got_seq == g.expected_seq + 1 for g in detected)
    assert {(g.connection_id, g.sid, g.expected_seq) for g in recovered} == {
        (g.connection_id, g.sid, g.expected_seq) for g in detected
    }
    assert all(g.recovery == "get_snapshot" and g.recovered_at >= g.detected_at for g in recovered)
    assert all(len(g.market_tickers) == 20 for g in detected)
    # The frame after each hole carries the gap flag; a resync snapshot followed it.
    flagged = {(mapping[f.conn_id], f.sid, f.seq) for f in published.data if f.gap}
    assert flagged == {(c, s, q + 1) for c, s, q in skipped}
    snapshot_acks = [m for _, m in published.messages("ok") if isinstance(m.get("msg"), dict)]
    assert snapshot_acks
    snapshots = published.messages("orderbook_snapshot")
    assert len(snapshots) > 60
    assert listener.stats.snapshot_requests >= 1
    # The subscribe snapshots are plain; those answering get_snapshot carry the resync flag,
    # one per market of the gapped shard per repair, each after its gap on that connection.
    resyncs = [(f, m) for f, m in snapshots if f.resync]
    assert 0 < len(resyncs) == len(snapshots) - 60
    first_gap: dict[tuple[str, int | None], int] = {}
    for frame in published.data:
        if frame.gap:
            key = (frame.conn_id, frame.sid)
            first_gap[key] = min(frame.recv_ns, first_gap.get(key, frame.recv_ns))
    assert all(f.recv_ns > first_gap[(f.conn_id, f.sid)] for f, _ in resyncs)


def test_dropped_connections_reconnect_with_new_ids_and_resubscribe(
    sim_factory, gatherer: str, redis_test_url: str, tmp_path: Path
) -> None:
    sim = sim_factory("--markets", "40", "--rate", "200", "--epoch-ms", str(EPOCH_MS))
    settings = make_settings(gatherer, redis_test_url, sim, tmp_path)

    async def scenario() -> Listener:
        run = Running(Listener(settings, fast_listener(markets_per_connection=20)))
        await run.until(lambda: run.subscribed(40))
        first = {name: c.conn_id for name, c in run.listener.stats.connections.items()}
        await asyncio.to_thread(sim.fault, type="drop")
        conns = run.listener.stats.connections
        await run.until(lambda: all(c.sessions >= 2 for c in conns.values()) and run.subscribed(40))
        assert all(conns[name].conn_id != old for name, old in first.items())
        await asyncio.sleep(0.5)
        await run.finish()
        return run.listener

    listener = asyncio.run(scenario())
    assert listener.stats.reconnects >= 5
    published = read_published(redis_test_url, gatherer)
    sessions = [session_row(r) for r in published.control() if r["event"] == "session_closed"]
    dropped = [r for r in sessions if not r["close_reason"].startswith("shutdown")]
    assert len(dropped) == 5  # 2 orderbook + 3 global
    by_conn: dict[str, set[str]] = {}
    for frame, message in published.messages("orderbook_snapshot"):
        by_conn.setdefault(frame.conn_id, set()).add(message["msg"]["market_ticker"])
    # Every market was snapshotted on its first session and again on the new one.
    assert len(by_conn) == 4 and all(len(t) == 20 for t in by_conn.values())


def test_registry_changes_add_and_remove_markets(
    sim_factory, gatherer: str, redis_test_url: str, tmp_path: Path
) -> None:
    sim = sim_factory("--markets", "30", "--rate", "200", "--epoch-ms", str(EPOCH_MS))
    tickers = sorted(m["ticker"] for m in sim.get("/markets", limit=100).json()["markets"])
    feed = feed_for(redis_test_url, gatherer)
    feed.publish(added=tickers[:10])
    settings = make_settings(gatherer, redis_test_url, sim, tmp_path)

    async def scenario() -> Listener:
        run = Running(Listener(settings, fast_listener(markets_per_connection=6)))
        await run.until(lambda: run.subscribed(10))
        await asyncio.to_thread(feed.publish, [tickers[20], tickers[21]], [tickers[0]])
        listener = run.listener
        await run.until(
            lambda: (
                tickers[20] in listener.shards
                and tickers[0] not in listener.shards
                and run.subscribed(11)
            )
        )
        manager = listener.managers[f"ob{listener.shards.shard_of(tickers[20])}"]
        ws = manager.session
        assert ws is not None
        subs = await ws.list_subscriptions()
        assert [s.channel for s in subs] == ["orderbook_delta"]
        await asyncio.sleep(0.3)
        await run.finish()
        return listener

    listener = asyncio.run(scenario())
    feed.redis.close()
    assert listener.registry_version == 2
    assert len(listener.shards) == 11
    published = read_published(redis_test_url, gatherer)
    snapshotted = {m["msg"]["market_ticker"] for _, m in published.messages("orderbook_snapshot")}
    assert {tickers[20], tickers[21]} <= snapshotted
    assert snapshotted <= set(tickers[:10]) | {tickers[20], tickers[21]}
    acks = [m for _, m in published.messages("ok") if isinstance(m.get("msg"), dict)]
    lists = [set(m["msg"].get("market_tickers", ())) for m in acks]
    assert any(tickers[20] in tl for tl in lists)
    assert any(tickers[0] not in tl and tl for tl in lists)


def test_stalled_connection_is_detected_and_replaced(
    sim_factory, gatherer: str, redis_test_url: str, tmp_path: Path
) -> None:
    sim = sim_factory("--markets", "10", "--rate", "100", "--epoch-ms", str(EPOCH_MS))
    settings = make_settings(gatherer, redis_test_url, sim, tmp_path)
    config = fast_listener(staleness_timeout_s=0.8, reply_timeout_s=0.7)

    async def scenario() -> Listener:
        run = Running(Listener(settings, config))
        await run.until(lambda: run.subscribed(10))
        book = run.listener.stats.connections["ob0"]
        await asyncio.to_thread(sim.fault, type="stall", seconds=6)
        await run.until(lambda: book.stale_reconnects >= 1 and book.sessions >= 2, timeout=10)
        await run.until(lambda: run.subscribed(10))
        await run.finish()
        return run.listener

    asyncio.run(scenario())
    closed = [
        r
        for r in read_published(redis_test_url, gatherer).control()
        if r["event"] == "session_closed"
    ]
    assert any(r["close_reason"].startswith("stale") for r in closed)


def test_terminal_error_resubscribes_the_dropped_subscription(
    sim_factory, gatherer: str, redis_test_url: str, tmp_path: Path
) -> None:
    sim = sim_factory("--markets", "10", "--rate", "200", "--epoch-ms", str(EPOCH_MS))
    settings = make_settings(gatherer, redis_test_url, sim, tmp_path)

    async def scenario() -> Listener:
        run = Running(Listener(settings, fast_listener()))
        await run.until(lambda: run.subscribed(10))
        conns = [
            c
            for c in sim.state()["connections"]
            if any(s["channel"] == "orderbook_delta" for s in c["subscriptions"])
        ]
        assert len(conns) == 1
        await asyncio.to_thread(sim.fault, type="ws_error", code=10, sid=1, conn=conns[0]["conn"])
        stats = run.listener.stats
        await run.until(lambda: stats.resubscribes >= 1 and run.subscribed(10))
        await asyncio.sleep(0.5)
        await run.finish()
        return run.listener

    listener = asyncio.run(scenario())
    assert listener.stats.errors_by_code[10] == 1
    assert listener.stats.connections["ob0"].sessions == 1
    published = read_published(redis_test_url, gatherer)
    sids = {f.sid for f, _ in published.messages("orderbook_snapshot")}
    assert sids == {1, 2}  # the original subscription and its replacement
