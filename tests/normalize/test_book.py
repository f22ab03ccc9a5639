"""Order book snapshots and deltas in the newest and legacy formats, with exact units."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.db.rows import OrderbookDeltaRow, OrderbookSnapshotRow
from app.normalize import FormatVersion, FrameError, rest_snapshot_row
from tests.normalize import examples
from tests.normalize.framing import LEGACY_NS, NEWEST_NS, dead_reason, one_row

LEGACY = FormatVersion.LEGACY
FIXED = FormatVersion.FIXED_POINT


def test_newest_snapshot_all_levels_exact() -> None:
    row = one_row(examples.SNAPSHOT)
    assert isinstance(row, OrderbookSnapshotRow)
    assert row.market_ticker == "FED-23DEC-T3.00"
    assert row.market_id == "9b0f6b43-5b68-4f9f-9f02-9a2d1b8ac1a1"
    assert (row.sid, row.seq, row.source) == (2, 2, "ws")
    assert row.yes_prices == (80_000, 220_000)
    assert row.yes_sizes == (30_000, 33_300)
    assert row.no_prices == (540_000, 560_000)
    assert row.no_sizes == (2_000, 14_600)
    assert (row.best_yes_bid, row.best_no_bid) == (220_000, 560_000)
    assert row.exchange_ts is None  # snapshots carry no exchange time
    assert row.received_at == datetime(2026, 9, 21, 14, 13, 20, 123456, tzinfo=UTC)
    assert row.received_ns == NEWEST_NS


def test_empty_book_has_no_side_keys() -> None:
    row = one_row(examples.EMPTY_SNAPSHOT)
    assert isinstance(row, OrderbookSnapshotRow)
    assert row.yes_prices == row.yes_sizes == row.no_prices == row.no_sizes == ()
    assert row.best_yes_bid is None and row.best_no_bid is None


def test_one_empty_side() -> None:
    raw = (
        '{"type":"orderbook_snapshot","sid":4,"seq":1,"msg":{"market_ticker":"M",'
        '"no_dollars_fp":[["0.5600","146.00"]]}}'
    )
    row = one_row(raw)
    assert isinstance(row, OrderbookSnapshotRow)
    assert row.yes_prices == () and row.best_yes_bid is None
    assert row.no_prices == (560_000,) and row.no_sizes == (14_600,)


def test_levels_are_sorted_and_best_is_the_maximum() -> None:
    raw = (
        '{"type":"orderbook_snapshot","sid":4,"seq":1,"msg":{"market_ticker":"M",'
        '"yes_dollars_fp":[["0.4600","250.00"],["0.0105","0.01"],["0.4500","100.00"]]}}'
    )
    row = one_row(raw)
    assert isinstance(row, OrderbookSnapshotRow)
    assert row.yes_prices == (10_500, 450_000, 460_000)  # subpenny price kept exactly
    assert row.yes_sizes == (1, 10_000, 25_000)  # 0.01 contract = 1 hundredth
    assert row.best_yes_bid == 460_000


def test_resync_snapshot_is_marked() -> None:
    row = one_row(examples.SNAPSHOT, resync=True)
    assert isinstance(row, OrderbookSnapshotRow)
    assert row.source == "resync"


def test_sending_ts_becomes_snapshot_exchange_time() -> None:
    raw = examples.SNAPSHOT.replace('"seq": 2,', '"seq": 2, "sending_ts_ms": 1669149841123,')
    row = one_row(raw)
    assert isinstance(row, OrderbookSnapshotRow)
    assert row.exchange_ts == datetime(2022, 11, 22, 20, 44, 1, 123000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (
            '{"type":"orderbook_snapshot","sid":4,"seq":1,"msg":{"market_ticker":"M",'
            '"yes_dollars_fp":[["0.45","1.00"],["0.4500","2.00"]]}}',
            "listed twice",
        ),
        (
            '{"type":"orderbook_snapshot","sid":4,"seq":1,"msg":{"market_ticker":"M",'
            '"yes_dollars_fp":[["0.45"]]}}',
            "[price, size]",
        ),
        (
            '{"type":"orderbook_snapshot","sid":4,"seq":1,"msg":{"market_ticker":"M",'
            '"yes_dollars_fp":[[0.45,"1.00"]]}}',
            "must be a dollar string",
        ),
        (
            '{"type":"orderbook_snapshot","sid":4,"seq":1,"msg":{"market_ticker":"M",'
            '"yes_dollars_fp":[["0.45","1.001"]]}}',
            "more precision than we store",
        ),
        (
            '{"type":"orderbook_snapshot","sid":4,"seq":1,"msg":{"market_ticker":"M",'
            '"yes_dollars_fp":{"0.45":"1.00"}}}',
            "must be a list of levels",
        ),
        (
            '{"type":"orderbook_snapshot","sid":4,"msg":{"market_ticker":"M"}}',
            "without sid/seq",
        ),
        ('{"type":"orderbook_snapshot","sid":4,"seq":1,"msg":{"market_id":"x"}}', "market_ticker"),
    ],
)
def test_malformed_snapshots_are_dead_letters(raw: str, reason: str) -> None:
    assert reason in dead_reason(raw)


def test_legacy_snapshot_prefers_dollar_strings() -> None:
    row = one_row(examples.SNAPSHOT_LEGACY, LEGACY_NS)
    assert isinstance(row, OrderbookSnapshotRow)
    assert row.yes_prices == (80_000, 220_000)
    assert row.yes_sizes == (30_000, 33_300)
    assert row.no_prices == (540_000, 560_000)
    assert row.no_sizes == (2_000, 14_600)


def test_legacy_snapshot_uses_dollars_not_rounded_cents() -> None:
    # A subpenny level: the cent array can only say 1 cent; the dollar string is exact.
    raw = (
        '{"type":"orderbook_snapshot","sid":2,"seq":2,"msg":{"market_ticker":"M",'
        '"yes":[[1,10]],"yes_dollars":[["0.0105",10]]}}'
    )
    row = one_row(raw, LEGACY_NS)
    assert isinstance(row, OrderbookSnapshotRow)
    assert row.yes_prices == (10_500,)


def test_cents_only_snapshot_converts_exactly() -> None:
    row = one_row(examples.SNAPSHOT_CENTS_ONLY, LEGACY_NS)
    assert isinstance(row, OrderbookSnapshotRow)
    assert row.yes_prices == (80_000, 220_000)
    assert row.yes_sizes == (30_000, 33_300)
    assert row.no_prices == (560_000,) and row.no_sizes == (14_600,)


def test_fixed_point_mapper_refuses_a_legacy_snapshot_instead_of_storing_an_empty_book() -> None:
    reason = dead_reason(examples.SNAPSHOT_LEGACY, NEWEST_NS)
    assert "legacy format" in reason and "version 'legacy'" in reason
    # Declaring the version maps it.
    assert isinstance(one_row(examples.SNAPSHOT_LEGACY, NEWEST_NS, LEGACY), OrderbookSnapshotRow)


def test_legacy_mapper_also_reads_newest_snapshots() -> None:
    assert one_row(examples.SNAPSHOT, LEGACY_NS) == one_row(examples.SNAPSHOT, LEGACY_NS, FIXED)


def test_newest_delta() -> None:
    row = one_row(examples.DELTA)
    assert isinstance(row, OrderbookDeltaRow)
    assert (row.market_ticker, row.side, row.price, row.delta) == (
        "FED-23DEC-T3.00",
        "yes",
        960_000,
        -5_400,
    )
    assert (row.sid, row.seq) == (2, 3)
    assert row.exchange_ts == datetime(2022, 11, 22, 20, 44, 1, tzinfo=UTC)  # from ts_ms


def test_newest_delta_without_deprecated_ts_fields() -> None:
    raw = (
        '{"type":"orderbook_delta","sid":2,"seq":3,"msg":{"market_ticker":"M",'
        '"price_dollars":"0.0960","delta_fp":"0.01","side":"no","brand_new_field":{"x":1}}}'
    )
    row = one_row(raw)
    assert isinstance(row, OrderbookDeltaRow)
    assert (row.price, row.delta, row.side, row.exchange_ts) == (96_000, 1, "no", None)


def test_aug_2025_cents_delta() -> None:
    row = one_row(examples.DELTA_AUG_2025, LEGACY_NS)
    assert isinstance(row, OrderbookDeltaRow)
    assert (row.market_ticker, row.side, row.price, row.delta) == (
        "KXMLBGAME-25AUG12SDSF-SD",
        "no",
        510_000,
        -100,
    )
    # Nanosecond RFC 3339 truncated (not rounded) to the microsecond.
    assert row.exchange_ts == datetime(2025, 8, 12, 21, 0, 32, 539836, tzinfo=UTC)


def test_feb_2026_dual_delta() -> None:
    row = one_row(examples.DELTA_FEB_2026, LEGACY_NS)
    assert isinstance(row, OrderbookDeltaRow)
    assert (row.price, row.delta) == (960_000, -5_400)
    assert row.exchange_ts == datetime(2026, 2, 12, 12, 6, 24, 123456, tzinfo=UTC)


def test_fixed_point_mapper_refuses_cents_delta() -> None:
    reason = dead_reason(examples.DELTA_AUG_2025, NEWEST_NS)
    assert "legacy field 'price' without 'price_dollars'" in reason


@pytest.mark.parametrize(
    ("msg", "reason"),
    [
        ('"price_dollars":"0.96","delta_fp":"-1.00","side":"maybe"', "'yes' or 'no'"),
        ('"price_dollars":"0.96","side":"yes"', "missing 'delta_fp'"),
        ('"delta_fp":"-1.00","side":"yes"', "missing 'price_dollars'"),
        ('"price_dollars":"abc","delta_fp":"-1.00","side":"yes"', "not a number"),
        ('"price_dollars":"NaN","delta_fp":"-1.00","side":"yes"', "not a finite number"),
        ('"price_dollars":"-0.10","delta_fp":"-1.00","side":"yes"', "negative price"),
        ('"price_dollars":"0.96","delta_fp":"-1.00","side":"yes","ts_ms":"soon"', "'ts_ms'"),
        ('"price_dollars":"0.96","delta_fp":"-1.00","side":"yes","ts":"yesterday"', "RFC 3339"),
    ],
)
def test_malformed_deltas(msg: str, reason: str) -> None:
    raw = f'{{"type":"orderbook_delta","sid":2,"seq":3,"msg":{{"market_ticker":"M",{msg}}}}}'
    assert reason in dead_reason(raw)


def test_rest_orderbook_newest_and_old_shapes() -> None:
    newest = {
        "orderbook_fp": {
            "yes_dollars": [["0.4600", "250.00"], ["0.4500", "100.00"]],
            "no_dollars": [["0.5200", "120.00"]],
        }
    }
    row = rest_snapshot_row("M", newest, gatherer="g1", received_ns=NEWEST_NS, batch_pos=3)
    assert row.source == "rest" and (row.sid, row.seq, row.connection_id) == (0, 0, "rest")
    assert row.yes_prices == (450_000, 460_000) and row.yes_sizes == (10_000, 25_000)
    assert row.no_prices == (520_000,) and row.best_no_bid == 520_000
    old = {"orderbook": {"yes": [[45, 100]], "no": None, "yes_dollars": [["0.45", 100]]}}
    row = rest_snapshot_row("M", old, gatherer="g1", received_ns=NEWEST_NS, batch_pos=0)
    assert row.yes_prices == (450_000,) and row.no_prices == ()
    with pytest.raises(FrameError, match="orderbook_fp"):
        rest_snapshot_row("M", {"book": {}}, gatherer="g1", received_ns=NEWEST_NS, batch_pos=0)
