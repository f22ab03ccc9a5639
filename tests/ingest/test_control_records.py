"""The listener's control records become sequence_gaps / connection_sessions rows, idempotently."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from app.config import Settings
from app.ingest import run_drain, stream_names
from app.listener.control import (
    GAP_DETECTED,
    GAP_RECOVERED,
    HOLE_CLOSED,
    HOLE_OPENED,
    SESSION_CLOSED,
    SESSION_OPENED,
    encode_control,
    gap_fields,
)
from app.streams import Frame
from tests.ingest.conftest import publish, query


def _records(gatherer: str, now: int) -> list[bytes]:
    gap = gap_fields(
        gatherer=gatherer,
        conn_id="c1",
        sid=2,
        market_tickers=["A", "B"],
        expected_seq=10,
        got_seq=12,
        detected_ns=now,
    )
    session = {
        "gatherer": gatherer,
        "conn_id": "c1",
        "role": "orderbook",
        "shard": "0",
        "url": "ws://x",
        "opened_ns": now - 5_000_000_000,
        "market_count": 2,
    }
    return [
        encode_control(SESSION_OPENED, **session),
        encode_control(GAP_DETECTED, **gap),
        encode_control(GAP_RECOVERED, **gap, recovered_ns=now + 1_000_000, recovery="get_snapshot"),
        encode_control(SESSION_CLOSED, **session, closed_ns=now + 9_000_000, close_reason="drop"),
        b'{"type": "kd_control", "v": 1, "event": "gap_detected"}',  # missing fields
    ]


def test_control_records_upsert_and_replay_changes_nothing(
    settings: Settings, client: redis.Redis, tmp_path: Path
) -> None:
    names = stream_names(settings)
    now = time.time_ns()
    records = _records(settings.gatherer, now)
    # The detection and its recovery arrive in separate batches too: publish twice.
    publish(settings, [(names.control, Frame(r, now + i, "c1")) for i, r in enumerate(records)],
            tmp_path / "j1")  # fmt: skip
    run = run_drain(settings, names.control)
    assert run.drain.error is None and run.drain.frames == len(records)

    gaps = query(settings.database_url,
                 "SELECT sid, market_tickers, expected_seq, got_seq, recovered_at IS NOT NULL,"
                 " recovery FROM sequence_gaps")  # fmt: skip
    assert gaps == [(2, ["A", "B"], 10, 12, True, "get_snapshot")]
    sessions = query(settings.database_url,
                     "SELECT connection_id, role, closed_at IS NOT NULL, close_reason,"
                     " market_count FROM connection_sessions")  # fmt: skip
    assert sessions == [("c1", "orderbook", True, "drop", 2)]
    dead = query(settings.database_url, "SELECT stage, raw FROM dead_letters")
    assert len(dead) == 1 and dead[0][0] == "control" and bytes(dead[0][1]) == records[-1]

    # Only the detection again (a replayed older record): the recovery must not be undone.
    publish(settings, [(names.control, Frame(records[1], now + 99, "c1"))], tmp_path / "j2")
    assert run_drain(settings, names.control).drain.error is None
    again = query(settings.database_url,
                  "SELECT recovered_at IS NOT NULL, recovery FROM sequence_gaps")  # fmt: skip
    assert again == [(True, "get_snapshot")]
    assert query(settings.database_url, "SELECT count(*) FROM connection_sessions") == [(1,)]


def test_hole_records_become_capture_holes_and_a_replay_never_reopens_one(
    settings: Settings, client: redis.Redis, tmp_path: Path
) -> None:
    names = stream_names(settings)
    now = time.time_ns()
    hole = {
        "gatherer": settings.gatherer, "hole_id": "h1", "conn_id": "c1", "channel": "trade",
        "market_tickers": None, "cause": "disconnect", "from_ns": now, "detail": "1006",
    }  # fmt: skip
    book = {**hole, "hole_id": "h2", "channel": "orderbook_delta", "market_tickers": ["B", "A"],
            "cause": "seq_gap"}  # fmt: skip
    records = [
        encode_control(HOLE_OPENED, **hole),
        encode_control(HOLE_OPENED, **book),
        encode_control(HOLE_CLOSED, **hole, to_ns=now + 2_000_000_000),
        encode_control(HOLE_CLOSED, **hole, to_ns=now - 1_000_000_000),  # ends before it starts
    ]
    publish(settings, [(names.control, Frame(r, now + i, "c1")) for i, r in enumerate(records)],
            tmp_path / "j1")  # fmt: skip
    assert run_drain(settings, names.control).drain.error is None
    sql = ("SELECT hole_id, channel, market_tickers, cause, to_at - from_at, backfill_status"
           " FROM capture_holes ORDER BY hole_id")  # fmt: skip
    rows = query(settings.database_url, sql)
    assert [(r[0], r[1], r[2], r[3], r[5]) for r in rows] == [
        ("h1", "trade", None, "disconnect", "pending"),  # trades wait for the REST backfill
        ("h2", "orderbook_delta", ["A", "B"], "seq_gap", None),  # still open, no backfill
    ]
    assert rows[0][4].total_seconds() == 2.0 and rows[1][4] is None
    dead = query(settings.database_url, "SELECT stage, reason FROM dead_letters")
    assert dead == [("control", "to_ns is before from_ns")]
    # A replayed opening record leaves the closed hole closed.
    publish(settings, [(names.control, Frame(records[0], now + 99, "c1"))], tmp_path / "j2")
    assert run_drain(settings, names.control).drain.error is None
    assert query(settings.database_url, sql) == rows
