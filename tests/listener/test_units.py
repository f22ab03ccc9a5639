"""Pure parts of the listener: shard map, sequence tracker, control records."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.listener import ControlRecordError, ShardMap, gap_row, parse_control, session_row
from app.listener.control import GAP_RECOVERED, SESSION_CLOSED, encode_control, gap_fields
from app.listener.recovery import NOTHING, BookRecovery, Settled
from app.listener.rejections import RejectedMarkets
from app.listener.sequence import AckSeqRule, SeqPosition, Verdict


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


def test_sequence_position_verdicts() -> None:
    position = SeqPosition()
    assert position.check(1).verdict is Verdict.OK
    gap = position.check(4)
    assert gap.verdict is Verdict.GAP and gap.expected == 2
    assert position.check(4).verdict is Verdict.DUPLICATE
    # A skipped seq that turns up after all is an original, once; then a repeat.
    assert position.check(3).verdict is Verdict.LATE
    assert position.check(3).verdict is Verdict.DUPLICATE
    assert position.check(1).verdict is Verdict.DUPLICATE
    assert position.check(5).verdict is Verdict.OK
    huge = position.check(5 + 10_000)  # a huge gap remembers only its newest skipped seqs
    assert huge.verdict is Verdict.GAP
    assert position.check(5 + 10_000 - 1).verdict is Verdict.LATE
    assert position.check(7).verdict is Verdict.DUPLICATE
    orphan = SeqPosition(None)
    assert orphan.check(7).verdict is Verdict.FIRST
    assert orphan.check(8).verdict is Verdict.OK


@pytest.mark.parametrize("mode", ["auto", "consumes"])
def test_acks_that_consume_a_seq_are_not_gaps(mode: str) -> None:
    rule, position = AckSeqRule(mode), SeqPosition()
    assert position.check(1).verdict is Verdict.OK
    assert rule.judge(position, 2).verdict is Verdict.ACK  # the ack took seq 2
    assert position.check(3).verdict is Verdict.OK
    assert rule.judge(position, 4).verdict is Verdict.ACK
    assert rule.learned == ("consumes" if mode == "consumes" else None)
    # An ack past the next seq: seq 5 (a data frame) was lost before it.
    lost = rule.judge(position, 6)
    assert lost.verdict is Verdict.GAP and lost.expected == 5
    assert position.check(7).verdict is Verdict.OK
    assert position.check(5).verdict is Verdict.LATE


@pytest.mark.parametrize("mode", ["auto", "position"])
def test_acks_that_report_the_position_are_not_gaps_and_show_losses(mode: str) -> None:
    rule, position = AckSeqRule(mode), SeqPosition()
    assert position.check(1).verdict is Verdict.OK
    assert rule.judge(position, 1).verdict is Verdict.ACK  # the current position
    assert rule.learned == "position"  # auto learns it: a consuming ack could not say 1
    assert position.check(2).verdict is Verdict.OK
    # The ack says 3 was sent: the data frame with seq 3 never came.
    lost = rule.judge(position, 3)
    assert lost.verdict is Verdict.GAP and lost.expected == 3
    assert position.check(4).verdict is Verdict.OK
    assert position.check(3).verdict is Verdict.LATE
    assert rule.judge(position, 2).verdict is Verdict.ACK  # an older position changes nothing
    with pytest.raises(ValueError):
        AckSeqRule("sometimes")


def test_book_recovery_asks_again_then_resubscribes() -> None:
    recovery = BookRecovery()
    assert recovery.next_action(0.0, 10, 1) is NOTHING
    recovery.gap({"gap": 1}, ["B", "A"])
    action = recovery.next_action(0.0, 10, 1)
    assert (action.kind, action.markets, action.overdue) == ("ask", ("A", "B"), False)
    recovery.asked(0.0)
    assert recovery.next_action(5.0, 10, 1) is NOTHING  # waiting for the snapshots
    assert recovery.snapshot("A") == (True, None)
    again = recovery.next_action(10.0, 10, 1)
    assert (again.kind, again.markets, again.overdue) == ("ask", ("B",), True)
    recovery.asked(10.0)
    assert recovery.next_action(20.0, 10, 1).kind == "resubscribe"
    gaps = recovery.take_gaps()
    assert gaps == [{"gap": 1}] and not recovery.active
    # The fresh subscription's own snapshots repair the carried gaps: nothing is asked.
    fresh = BookRecovery()
    fresh.carry(gaps, "resubscribe", ["A", "B"])
    assert fresh.next_action(100.0, 10, 1) is NOTHING
    assert fresh.snapshot("A") == (False, None)
    resync, settled = fresh.snapshot("B")
    assert not resync and settled == Settled([{"gap": 1}], "resubscribe")
    assert fresh.snapshot("B") == (False, None)


def test_book_recovery_settles_when_the_missing_markets_leave() -> None:
    recovery = BookRecovery()
    recovery.gap({"gap": 1}, ["A", "B"])
    recovery.asked(0.0)
    assert recovery.snapshot("A") == (True, None)
    settled = recovery.forget(["B"])
    assert settled == Settled([{"gap": 1}], "get_snapshot")
    # A second gap before the first is repaired waits for every market again.
    recovery.gap({"gap": 2}, ["A", "B"])
    recovery.asked(0.0)
    recovery.snapshot("A")
    recovery.gap({"gap": 3}, ["A", "B"])
    assert recovery.next_action(0.0, 10, 1).markets == ("A", "B")
    recovery.asked(0.0)
    recovery.snapshot("A")
    assert recovery.snapshot("B")[1] == Settled([{"gap": 2}, {"gap": 3}], "get_snapshot")


def test_refused_markets_back_off_per_market_and_retry_on_refresh() -> None:
    refused = RejectedMarkets(base_s=10, max_s=25)
    assert refused.refuse("A", now=0.0, now_ns=1).retry_at == 10
    assert refused.refuse("A", now=10.0, now_ns=2).retry_at == 30  # doubled
    assert refused.refuse("A", now=30.0, now_ns=3).retry_at == 55  # capped at 25 s
    refused.refuse("B", now=30.0, now_ns=3)
    assert refused.waiting(31.0) == {"A", "B"} and refused.due(41.0) == ["B"]
    assert refused.retry_all(42.0) == 2 and refused.due(42.0) == ["A", "B"]
    assert refused.accepted(["B", "C"]) == ["B"] and "B" not in refused
    refused.forget(["A"])
    assert len(refused) == 0 and refused.total == 4


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
