"""Values no table column (or no sane exchange) can hold are caught in the normalizer (issue 9
item 6), so one frame is dead-lettered and the rest of its batch is stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest

from app.db.copy import write_rows
from app.db.migrations import upgrade
from app.normalize import Verdict, batch_rows, normalize_frame
from tests.normalize import examples
from tests.normalize.framing import LEGACY_NS, NEWEST_NS, dead_reason, envelope, one_row

BIG = 2**63  # one past PostgreSQL bigint; orjson still decodes it as an int


def _delta(**msg: Any) -> str:
    fields = {"market_ticker": "M", "price_dollars": "0.5000", "delta_fp": "-1.00", "side": "no"}
    return json.dumps({"type": "orderbook_delta", "sid": 2, "seq": 3, "msg": {**fields, **msg}})


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        # bigint overflow, in every integer column a frame fills
        (_delta(delta_fp="99999999999999999999.00"), "does not fit a 64-bit integer"),
        (_delta().replace('"sid": 2', f'"sid": {BIG}'), "does not fit a 64-bit integer"),
        (_delta().replace('"seq": 3', f'"seq": {BIG}'), "does not fit a 64-bit integer"),
        (
            examples.TICKER.replace('"dollar_volume": 16948', f'"dollar_volume": {BIG}'),
            "does not fit a 64-bit integer",
        ),
        (
            examples.TICKER.replace('"volume_fp": "33896.00"', '"volume_fp": "99999999999999999"'),
            "does not fit a 64-bit integer",
        ),
        (
            examples.SNAPSHOT.replace('"300.00"', '"99999999999999999999"'),
            "does not fit a 64-bit integer",
        ),
        (
            examples.TRADE.replace('"136.00"', '"99999999999999999999"'),
            "does not fit a 64-bit integer",
        ),
        # absurd prices: a binary contract trades between 0 and 1 dollar
        (_delta(price_dollars="1.0001"), "outside 0..1 dollar"),
        (_delta(price_dollars="-0.0001"), "negative price"),
        (examples.SNAPSHOT.replace('"0.0800"', '"2.0800"'), "outside 0..1 dollar"),
        (examples.TICKER.replace('"0.4500"', '"45.00"'), "outside 0..1 dollar"),
        (examples.LIFECYCLE_DETERMINED.replace('"1.0000"', '"100"'), "outside 0..1 dollar"),
        # negative sizes where a size cannot be negative (deltas may be)
        (examples.TICKER.replace('"300.00"', '"-300.00"'), "must not be negative"),
        (examples.TICKER.replace('"20422.00"', '"-1.00"'), "must not be negative"),
        (
            examples.TICKER.replace('"dollar_volume": 16948', '"dollar_volume": -1'),
            "must not be negative",
        ),
        (examples.SNAPSHOT.replace('"300.00"', '"-300.00"'), "negative price or size"),
        # exchange times far outside any sane range
        (_delta(ts_ms=253_402_300_799_999), "outside 2000..2099"),
        (_delta(ts_ms=1), "outside 2000..2099"),
        (_delta(ts="9999-01-01T00:00:00Z"), "outside 2000..2099"),
        (examples.TRADE.replace("1669149841000", "4102444800000"), "outside 2000..2099"),
        (examples.TICKER.replace("1669149841000", "99"), "outside 2000..2099"),
        (
            examples.LIFECYCLE_DETERMINED.replace('"sid": 13', '"sid": 13, "sending_ts_ms": 5'),
            "outside 2000..2099",
        ),
    ],
)
def test_out_of_range_values_are_dead_letters(raw: str, reason: str) -> None:
    assert reason in dead_reason(raw)


def test_legacy_cents_out_of_range_are_dead_letters() -> None:
    raw = examples.SNAPSHOT_CENTS_ONLY.replace("[56,146]", "[156,146]")
    assert "outside 0..1 dollar" in dead_reason(raw, LEGACY_NS)


def test_edges_of_the_ranges_are_stored() -> None:
    assert one_row(_delta(price_dollars="1.000000")).price == 1_000_000  # type: ignore[union-attr]
    assert one_row(_delta(price_dollars="0")).price == 0  # type: ignore[union-attr]
    assert one_row(_delta(delta_fp="-92233720368547758.08")).delta == -(2**63)  # type: ignore[union-attr]
    assert one_row(_delta(ts_ms=946_684_800_000)).exchange_ts.year == 2000  # type: ignore[union-attr]


@pytest.fixture
def db(scratch_database: str) -> Iterator[Any]:
    upgrade(scratch_database, create=False)
    conn = psycopg2.connect(scratch_database)
    yield conn
    conn.close()


def test_one_bad_frame_is_dead_lettered_and_its_batch_is_stored(db: Any) -> None:
    bad = examples.TICKER.replace('"dollar_volume": 16948', f'"dollar_volume": {BIG}')
    frames = [examples.DELTA, examples.TRADE, bad, examples.TICKER, examples.SNAPSHOT]
    results = [
        normalize_frame(raw, envelope(NEWEST_NS, batch_pos=pos, stream="kd:g1:ticker"))
        for pos, raw in enumerate(frames)
    ]
    assert [r.verdict for r in results] == [Verdict.ROWS] * 2 + [Verdict.DEAD] + [Verdict.ROWS] * 2
    written = write_rows(db, batch_rows(results))
    db.commit()
    assert written == {
        "dead_letters": 1,
        "orderbook_snapshots": 1,
        "orderbook_deltas": 1,
        "trades": 1,
        "tickers": 1,
    }
    with db.cursor() as cur:
        cur.execute("SELECT batch_pos, raw, reason, stream FROM dead_letters")
        ((pos, raw, reason, stream),) = cur.fetchall()
        cur.execute("SELECT batch_pos, dollar_volume FROM tickers")
        tickers = cur.fetchall()
    assert (pos, bytes(raw), stream) == (2, bad.encode(), "kd:g1:ticker")
    assert "does not fit a 64-bit integer" in reason
    assert tickers == [(3, 16948)]
