"""Pure parts of the listener: shard map, sequence tracker, control records."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.listener import ControlRecordError, ShardMap, gap_row, parse_control, session_row
from app.listener.control import GAP_RECOVERED, SESSION_CLOSED, encode_control, gap_fields
from app.listener.sequence import SequenceTracker, Verdict


def test_shard_map_fills_least_loaded_and_opens_shards_when_full() -> None:
    shards = ShardMap(3)
    added = shards.assign(["a", "b", "c", "d"])
    assert shards.shard_count == 2 and sum(len(v) for v in added.values()) == 4
    assert shards.assign(["a"]) == {}
    removed = shards.remove(["a", "zz"])
    assert list(removed.values()) == [["a"]]
    shards.assign(["e", "f"])
    assert shards.shard_count == 2 and len(shards) == 5
    assert max(len(shards.members(i)) for i in range(2)) <= 3
    with pytest.raises(ValueError):
        ShardMap(0)


def test_sequence_tracker_verdicts() -> None:
    tracker = SequenceTracker()
    tracker.start(1)
    assert tracker.check(1, 1).verdict is Verdict.OK
    gap = tracker.check(1, 4)
    assert gap.verdict is Verdict.GAP and gap.expected == 2
    assert tracker.check(1, 4).verdict is Verdict.DUPLICATE
    # A skipped seq that turns up after all is an original, once; then a repeat.
    assert tracker.check(1, 3).verdict is Verdict.LATE
    assert tracker.check(1, 3).verdict is Verdict.DUPLICATE
    assert tracker.check(1, 1).verdict is Verdict.DUPLICATE
    assert tracker.check(1, 5).verdict is Verdict.OK
    huge = tracker.check(1, 5 + 10_000)  # a huge gap remembers only its newest skipped seqs
    assert huge.verdict is Verdict.GAP
    assert tracker.check(1, 5 + 10_000 - 1).verdict is Verdict.LATE
    assert tracker.check(1, 7).verdict is Verdict.DUPLICATE
    assert tracker.check(9, 7).verdict is Verdict.FIRST
    assert tracker.check(9, 8).verdict is Verdict.OK
    tracker.forget(1)
    assert tracker.expected(1) is None


def test_control_records_convert_to_rows() -> None:
    fields = gap_fields(
        gatherer="g1",
        conn_id="g1-ob0-x",
        sid=3,
        market_tickers=["B", "A"],
        expected_seq=10,
        got_seq=12,
        detected_ns=1_770_000_000_123_456_789,
    )
    raw = encode_control(
        GAP_RECOVERED, **fields, recovered_ns=1_770_000_001_000_000_000, recovery="get_snapshot"
    )
    row = gap_row(parse_control(raw))
    assert row.market_tickers == ("A", "B") and row.expected_seq == 10 and row.got_seq == 12
    assert row.detected_at == datetime(2026, 2, 2, 2, 40, 0, 123456, tzinfo=UTC)
    assert row.recovered_at == datetime(2026, 2, 2, 2, 40, 1, tzinfo=UTC)
    assert row.recovery == "get_snapshot"
    session = session_row(
        parse_control(
            encode_control(
                SESSION_CLOSED,
                gatherer="g1",
                conn_id="c",
                role="orderbook",
                shard="ob0",
                url="ws://x",
                opened_ns=1_770_000_000_000_000_000,
                closed_ns=1_770_000_002_000_000_000,
                close_reason="shutdown",
                market_count=5,
            )
        )
    )
    assert session["closed_at"] == datetime(2026, 2, 2, 2, 40, 2, tzinfo=UTC)
    assert session["market_count"] == 5 and session["role"] == "orderbook"
    with pytest.raises(ControlRecordError):
        parse_control(b'{"type":"trade"}')
    with pytest.raises(ControlRecordError):
        parse_control(b"not json")
    with pytest.raises(ControlRecordError):
        session_row(parse_control(raw))
