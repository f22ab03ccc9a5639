"""`use_yes_price` (issue 9 item 4): NO-side book prices arrive on the YES scale and are turned
back, so a subscription made either way stores identical rows."""

from __future__ import annotations

import pytest

from app.db.rows import OrderbookDeltaRow, OrderbookSnapshotRow
from app.normalize import FrameEnvelope
from tests.normalize import examples
from tests.normalize.framing import dead_reason, one_row

# The same book as examples.SNAPSHOT, NO levels on the YES scale (0.54 -> 0.46, 0.56 -> 0.44),
# plus a $0.0001-grid level (0.1234 -> 0.8766) to show the conversion is exact.
SNAPSHOT_NO = """{"type": "orderbook_snapshot", "sid": 2, "seq": 2,
 "msg": {"market_ticker": "M", "yes_dollars_fp": [["0.0800", "300.00"]],
         "no_dollars_fp": [["0.5400", "20.00"], ["0.5600", "146.00"], ["0.1234", "1.50"]]}}"""
SNAPSHOT_YES = """{"type": "orderbook_snapshot", "sid": 2, "seq": 2,
 "msg": {"market_ticker": "M", "yes_dollars_fp": [["0.0800", "300.00"]],
         "no_dollars_fp": [["0.4600", "20.00"], ["0.4400", "146.00"], ["0.8766", "1.50"]]}}"""


def _delta(side: str, price: str) -> str:
    return (
        '{"type": "orderbook_delta", "sid": 2, "seq": 3, "msg": {"market_ticker": "M", '
        f'"price_dollars": "{price}", "delta_fp": "-5.00", "side": "{side}", '
        '"ts_ms": 1790000000000}}'
    )


def test_envelope_flag_defaults_off() -> None:
    assert FrameEnvelope(1, "c", 0, "g").yes_price is False


def test_snapshot_rows_are_identical_for_both_settings() -> None:
    plain = one_row(SNAPSHOT_NO)
    converted = one_row(SNAPSHOT_YES, yes_price=True)
    assert isinstance(plain, OrderbookSnapshotRow)
    assert converted == plain
    assert plain.no_prices == (123_400, 540_000, 560_000)
    assert plain.best_no_bid == 560_000
    # Without the flag the YES-scale frame would be stored as a different (wrong) book.
    assert one_row(SNAPSHOT_YES) != plain


@pytest.mark.parametrize(
    ("no_scale", "yes_scale"),
    [("0.3000", "0.7000"), ("0.0001", "0.9999"), ("0.123456", "0.876544"), ("0", "1")],
)
def test_no_side_deltas_are_identical_for_both_settings(no_scale: str, yes_scale: str) -> None:
    plain = one_row(_delta("no", no_scale))
    converted = one_row(_delta("no", yes_scale), yes_price=True)
    assert isinstance(plain, OrderbookDeltaRow)
    assert converted == plain


def test_yes_side_is_never_converted() -> None:
    assert one_row(_delta("yes", "0.3000"), yes_price=True) == one_row(_delta("yes", "0.3000"))


def test_other_frames_ignore_the_flag() -> None:
    for raw in (examples.TRADE, examples.TICKER, examples.LIFECYCLE_CREATED):
        assert one_row(raw, yes_price=True) == one_row(raw)


def test_out_of_range_yes_scale_price_is_still_refused() -> None:
    assert "outside 0..1 dollar" in dead_reason(_delta("no", "1.0001"), yes_price=True)
