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
