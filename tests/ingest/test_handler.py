"""The batch handler and `run_drain` against real PostgreSQL and real Redis (no Celery)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from prometheus_client import REGISTRY

from app.config import Settings
from app.fleet.pipeline import PipelineReader, PipelineStatusLine
from app.ingest import STAGE_ENVELOPE, entry_rows, run_drain, stream_names, write_entries
from app.ingest.runner import close_all, database, session_limits
from app.streams import Entry, Frame, decode_entry, stream_stats
from tests.conftest import free_port
from tests.ingest.conftest import publish, query
from tests.normalize import examples

MALFORMED = b'{"type": "trade", "sid": 11, "msg": {"trade_id": '  # cut off mid-frame
UNSUPPORTED = b'{"type": "ticker_v2", "sid": 9, "msg": {}}'


def real_frames(settings: Settings) -> list[tuple[str, Frame]]:
    names = stream_names(settings)
    book = names.book_for("FED-23DEC-T3.00")
    now = time.time_ns()
    conn = "conn-a"
    return [
        (book, Frame(examples.SNAPSHOT.encode(), now, conn, 2, 2)),
        (book, Frame(examples.DELTA.encode(), now + 1, conn, 2, 3)),
        (names.trade, Frame(examples.TRADE.encode(), now + 2, "conn-t", 11, None)),
        (names.trade, Frame(MALFORMED, now + 3, "conn-t", None, None)),
        (names.ticker, Frame(examples.TICKER.encode(), now + 4, "conn-k", 11, None)),
        (names.lifecycle, Frame(examples.LIFECYCLE_CREATED.encode(), now + 5, "conn-l", 13, None)),
        (names.other, Frame(examples.CONTROL[0].encode(), now + 6, "conn-a")),
        (names.other, Frame(UNSUPPORTED, now + 7, "conn-a")),
    ]


def metric(name: str, **labels: str) -> float:
    """A sample of this process's default registry (the in-process drains record there)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def table_counts(url: str) -> dict[str, int]:
    tables = (
        "raw_frames",
        "dead_letters",
        "orderbook_snapshots",
        "orderbook_deltas",
        "trades",
        "tickers",
        "lifecycle_events",
    )
    return {t: int(query(url, f"SELECT count(*) FROM {t}")[0][0]) for t in tables}  # type: ignore[call-overload]


def test_drain_writes_every_frame_and_dead_letters_malformed(
    settings: Settings, client: redis.Redis, tmp_path: Path
) -> None:
    items = real_frames(settings)
    publish(settings, items, tmp_path / "j")
    names = stream_names(settings)
    watched = {
        "raw": ("kd_ingest_rows_total", {"table": "raw_frames"}),
        "trades": ("kd_ingest_rows_total", {"table": "trades"}),
        "dead": ("kd_ingest_rows_total", {"table": "dead_letters"}),
        "unparseable": ("kd_dead_letters_total", {"reason_class": "unparseable_frame"}),
        "invalid": ("kd_dead_letters_total", {"reason_class": "invalid_row"}),
        "writes": ("kd_ingest_write_duration_seconds_count", {}),
        "drains": ("kd_ingest_drains_total", {"stream": names.trade}),
        "frames": ("kd_ingest_frames_total", {"stream": names.trade}),
    }
    before = {key: metric(name, **labels) for key, (name, labels) in watched.items()}

    runs = [run_drain(settings, stream) for stream in names.data_streams]
    assert all(r.drain.error is None and r.drain.exhausted for r in runs)
    assert sum(r.drain.frames for r in runs) == len(items)
    moved = {key: metric(n, **labels) - before[key] for key, (n, labels) in watched.items()}
    assert moved == {
        "raw": 8,
        "trades": 1,
        "dead": 2,
        "unparseable": 1,  # MALFORMED
        "invalid": 1,  # UNSUPPORTED
        "writes": sum(1 for r in runs if r.drain.handled),
        "drains": 1,
        "frames": 2,
    }

    url = settings.database_url
    assert table_counts(url) == {
        "raw_frames": 8,
        "dead_letters": 2,
        "orderbook_snapshots": 1,
        "orderbook_deltas": 1,
        "trades": 1,
        "tickers": 1,
        "lifecycle_events": 1,
    }
    # raw frames are byte-exact and keyed by (connection, receive ns, position in entry)
    stored = {
        (conn, ns): bytes(raw)  # type: ignore[arg-type]
        for conn, ns, raw in query(url, "SELECT connection_id, received_ns, raw FROM raw_frames")
    }
    assert stored == {(f.conn_id, f.recv_ns): f.raw for _, f in items}
    positions = query(
        url, "SELECT batch_pos FROM raw_frames WHERE connection_id = 'conn-a' ORDER BY received_ns"
    )
    assert [p for (p,) in positions] == [0, 1, 0, 1]  # book entry, then the `other` entry
    trade = query(url, "SELECT trade_id, yes_price FROM trades")
    assert trade == [("d91bc706-ee49-470d-82d8-11418bda6fed", 360000)]

    # the lifecycle frame also reached the market registry, in the same transaction
    markets = query(url, "SELECT ticker, status FROM markets")
    assert [m[0] for m in markets] == ["KXBTCD-26JAN2310-T105000"]

    dead = query(url, "SELECT raw, reason, stage, stream, entry_id FROM dead_letters ORDER BY raw")
    by_raw = {bytes(row[0]): row[1:] for row in dead}  # type: ignore[arg-type]
    assert set(by_raw) == {MALFORMED, UNSUPPORTED}
    assert str(by_raw[MALFORMED][0]).startswith("malformed JSON")
    assert by_raw[MALFORMED][2] == names.trade
    assert by_raw[MALFORMED][3]  # the entry id it came in
    assert "unsupported message type" in str(by_raw[UNSUPPORTED][0])

    for stream in names.data_streams:
        group = stream_stats(client, stream).groups[0]
        assert group.pending == 0 and group.lag == 0
    # `up`'s status line counter: every frame once
    assert int(client.get(names.frames_stored_key) or 0) == len(items)
    close_all()  # an exiting backend publishes its insert counters at once (idle: up to 10 s)
    reader = PipelineReader(settings.redis_url, url, names, settings.gatherer)
    deadline = time.monotonic() + 15
    try:
        snapshot = reader.read()
        while snapshot.rows.get("dead_letters") != 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            snapshot = reader.read()
    finally:
        reader.close()
    assert snapshot.frames_stored == len(items)
    assert (snapshot.rows["trades"], snapshot.rows["dead_letters"]) == (1, 2)
    line = PipelineStatusLine("g").render(snapshot, 0.0)
    assert f"rows: frames {len(items)} book 2 trades 1" in line


def test_replay_after_commit_before_ack_inserts_nothing(
    settings: Settings, client: redis.Redis, tmp_path: Path
) -> None:
    """A worker that committed but died before XACK: the reclaimed entries change nothing."""
    items = real_frames(settings)
    publish(settings, items, tmp_path / "j")
    names = stream_names(settings)
    group = settings.streams.group
    conn = database(settings.database_url)

    # the "crashed" consumer: read and commit every entry, never acknowledge
    delivered = 0
    for stream in names.data_streams:
        client.xgroup_create(stream, group, id="0", mkstream=True)
        reply = client.xreadgroup(group, "crashed:1", {stream: ">"}, count=100)
        entries = [
            Entry(entry_id.decode(), fields, decode_entry(fields), 1)
            for _, messages in reply
            for entry_id, fields in messages
        ]
        delivered += len(entries)
        registry = settings.registry if stream == names.lifecycle else None
        write_entries(conn, entries, gatherer=settings.gatherer, stream=stream, registry=registry)
    first = table_counts(settings.database_url)
    assert first["raw_frames"] == len(items)

    replay = settings.model_copy(
        update={"streams": settings.streams.model_copy(update={"min_idle_ms": 0})}
    )
    runs = [run_drain(replay, stream) for stream in names.data_streams]
    assert sum(r.drain.reclaimed for r in runs) == delivered
    assert sum(r.drain.handled for r in runs) == delivered
    assert all(sum(r.rows.values()) == 0 for r in runs), [r.rows for r in runs]
    assert table_counts(settings.database_url) == first
    assert client.get(names.frames_stored_key) is None  # the replay stored no new frame
    for stream in names.data_streams:
        assert stream_stats(client, stream).groups[0].pending == 0


def test_corrupt_entry_reaches_dead_letters_table(settings: Settings, client: redis.Redis) -> None:
    names = stream_names(settings)
    fields = {b"v": b"1", b"n": b"1", b"p": b"x", b"q": b"1", b"d": b"\x00garbage"}
    client.xadd(names.trade, fields)  # type: ignore[arg-type]
    lettered = metric("kd_ingest_entries_dead_lettered_total", stream=names.trade)
    corrupt = metric("kd_dead_letters_total", reason_class="corrupt_envelope")

    run = run_drain(settings, names.trade)
    assert run.drain.dead_lettered == 1 and run.drain.handled == 0
    assert metric("kd_ingest_entries_dead_lettered_total", stream=names.trade) == lettered + 1

    first = run_drain(settings, names.dead)
    assert first.drain.handled == 1 and first.rows == {"dead_letters": 1}
    assert metric("kd_dead_letters_total", reason_class="corrupt_envelope") == corrupt + 1
    rows = query(settings.database_url, "SELECT stage, stream, raw, reason FROM dead_letters")
    assert len(rows) == 1
    stage, stream, raw, reason = rows[0]
    assert (stage, stream, bytes(raw)) == (STAGE_ENVELOPE, names.trade, b"\x00garbage")  # type: ignore[arg-type]
    assert reason

    # copying the same dead letter again (a replay) adds nothing
    entry_id, dl_fields = client.xrange(names.dead)[0]
    from app.ingest import write_dead_letter_entries

    again = write_dead_letter_entries(
        database(settings.database_url),
        [Entry(entry_id.decode(), dl_fields, [], 2)],
        gatherer=settings.gatherer,
        dead_stream=names.dead,
    )
    assert again == {"dead_letters": 0}


def test_entry_rows_positions_and_legacy_version(settings: Settings) -> None:
    now = time.time_ns()
    frames = [Frame(examples.DELTA_AUG_2025.encode(), now + i, "c") for i in range(3)]
    from app.normalize import FormatVersion

    rows = entry_rows(
        [Entry("1-0", {}, frames, 1)],
        gatherer="g",
        stream="kd:g:book:0",
        version=FormatVersion.LEGACY,
    )
    deltas = [r for r in rows if type(r).__name__ == "OrderbookDeltaRow"]
    assert [r.batch_pos for r in deltas] == [0, 1, 2]
    assert not [r for r in rows if type(r).__name__ == "DeadLetterRow"]


def test_database_outage_leaves_entries_pending_and_reconnects(
    settings: Settings, client: redis.Redis, tmp_path: Path
) -> None:
    names = stream_names(settings)
    publish(settings, real_frames(settings)[2:4], tmp_path / "j")  # a trade + a malformed frame
    settings = settings.model_copy(
        update={"streams": settings.streams.model_copy(update={"db_retry_min_s": 0.05})}
    )
    conn = database(settings.database_url, session_limits(settings))
    with conn.cursor() as cur:  # warm the cached connection, then kill it server-side
        cur.execute("SELECT 1")
    conn.commit()
    pid = conn.get_backend_pid()
    query(settings.database_url, "SELECT pg_terminate_backend(%s)", pid)

    failures = metric("kd_ingest_drains_failed_total", stream=names.trade)
    failed = run_drain(settings, names.trade)
    assert failed.drain.error is not None and failed.drain.failed == 1
    assert metric("kd_ingest_drains_failed_total", stream=names.trade) == failures + 1
    assert failed.drain.handled == 0
    pending = client.xpending_range(names.trade, settings.streams.group, "-", "+", 10)
    assert [p["times_delivered"] for p in pending] == [0]  # retryable: count restored

    paused = run_drain(settings, names.trade)  # the database backoff holds every drain
    assert paused.drain.paused_s > 0 and paused.drain.handler_calls == 0
    time.sleep(0.1)
    ok = run_drain(settings, names.trade)  # a fresh connection; the entry is retried at once
    assert ok.drain.error is None and ok.drain.handled == 1
    assert ok.rows == {"raw_batches": 1, "raw_frames": 2, "dead_letters": 1, "trades": 1}
    assert database(settings.database_url, session_limits(settings)) is not conn


def test_drain_that_raises_counts_as_failed(settings: Settings) -> None:
    unreachable = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    stream = stream_names(settings).trade
    runs = metric("kd_ingest_drains_total", stream=stream)
    failures = metric("kd_ingest_drains_failed_total", stream=stream)
    with pytest.raises(redis.ConnectionError):
        run_drain(unreachable, stream)
    assert metric("kd_ingest_drains_total", stream=stream) == runs + 1
    assert metric("kd_ingest_drains_failed_total", stream=stream) == failures + 1
