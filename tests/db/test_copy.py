"""COPY-staging writes against real PostgreSQL: exact round trip and idempotency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg2
import psycopg2.extensions
import pytest
from sqlalchemy import text

from app.db.copy import CopyEncodingError, copy_rows, encode_rows, write_rows
from app.db.engine import create_db_engine
from app.db.rows import (
    DeadLetterRow,
    OrderbookSnapshotRow,
    RawBatchRow,
    SequenceGapRow,
    TradeRow,
)
from app.db.tables import TRADES
from app.normalize import rest_trade_row
from app.streams.envelope import Frame, encode_frames
from tests.db.samples import frame_rows, now_utc, to_ns
from tests.normalize import examples
from tests.normalize.framing import one_row


def _trade(moment: datetime, n: int, **changes: object) -> TradeRow:
    row = TradeRow(
        trade_id=f"t-{n}",
        exchange_ts=moment.replace(microsecond=0),
        exchange_ms=None,
        market_ticker="KX-1",
        yes_price=360_000,
        no_price=640_000,
        size=13_600,
        taker_side="no",
        taker_book_side="ask",
        is_block_trade=False,
        source="ws",
        gatherer="g1",
        connection_id="conn-1",
        sid=11,
        seq=None,
        received_ns=to_ns(moment) + n,
        received_at=moment,
        batch_pos=n,
    )
    return row._replace(**changes)


def test_redelivered_batch_inserts_nothing(fresh_pg: psycopg2.extensions.connection) -> None:
    moment = now_utc()
    rows = [_trade(moment, n) for n in range(500)]
    assert copy_rows(fresh_pg, TRADES, rows) == 500
    fresh_pg.commit()
    assert copy_rows(fresh_pg, "trades", rows) == 0
    fresh_pg.commit()
    with fresh_pg.cursor() as cur:
        cur.execute("SELECT count(*) FROM trades")
        assert cur.fetchone()[0] == 500


def test_duplicates_inside_one_batch_count_once(pg: psycopg2.extensions.connection) -> None:
    moment = now_utc()
    row = _trade(moment, 1)
    # Same trade from another connection (another gatherer would be the same): same key.
    twin = row._replace(connection_id="conn-2", received_ns=row.received_ns + 5)
    assert copy_rows(pg, TRADES, [row, twin, row]) == 1


def test_two_writes_of_one_table_in_one_transaction(pg: psycopg2.extensions.connection) -> None:
    moment = now_utc()
    assert copy_rows(pg, TRADES, [_trade(moment, 1), _trade(moment, 2)]) == 2
    # The staging table is reused; rows staged by the first call must not be counted again.
    assert copy_rows(pg, TRADES, [_trade(moment, 2), _trade(moment, 3)]) == 1


def test_rollback_leaves_nothing_and_staging_still_works(
    fresh_pg: psycopg2.extensions.connection,
) -> None:
    moment = now_utc()
    assert copy_rows(fresh_pg, TRADES, [_trade(moment, 1)]) == 1
    fresh_pg.rollback()
    assert copy_rows(fresh_pg, TRADES, [_trade(moment, 1)]) == 1
    fresh_pg.commit()
    with fresh_pg.cursor() as cur:
        cur.execute("SELECT count(*) FROM trades")
        assert cur.fetchone()[0] == 1


def test_values_round_trip_exactly(pg: psycopg2.extensions.connection) -> None:
    moment = datetime.now(UTC).replace(microsecond=654321)
    awkward = "tab\there\nnew\\line \"quoted\" 'single' ünï"
    raw = b'{"type":"x"}\x00\xff\\x00\t\n'
    ns = to_ns(moment) + 321
    count, data = encode_frames([Frame(raw, ns, awkward, None, 4, True)])
    frame = RawBatchRow(awkward, awkward, 7, moment, ns, ns, count, awkward, None, (9,), data)
    dead = DeadLetterRow("g1", "c", 1, moment, 0, 1, 2, None, "normalize", awkward, "s", "1-0", raw)
    snapshot = one_row(examples.SNAPSHOT)
    assert isinstance(snapshot, OrderbookSnapshotRow)
    snapshot = snapshot._replace(received_at=moment)
    tickers = ('a"b', "c\\d", "e\tf", "{x,y}", "NULL")
    gap = SequenceGapRow("g1", awkward, 2, tickers, 4, 7, moment, None, "get_snapshot")
    assert write_rows(pg, [frame, dead, snapshot, gap]) == {
        "raw_batches": 1,
        "dead_letters": 1,
        "orderbook_snapshots": 1,
        "sequence_gaps": 1,
    }
    with pg.cursor() as cur:
        cur.execute(
            "SELECT gatherer, publisher, stream, connection_id, batch_pos, sid, seq, raw, "
            "received_ns, received_at, gap FROM raw_frames"
        )
        stored_frames = [
            tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
            for row in cur.fetchall()
        ]
        assert stored_frames == [
            (awkward, awkward, awkward, awkward, 9, None, 4, raw, ns, moment, True)
        ]
        cur.execute("SELECT reason, raw FROM dead_letters")
        reason, stored = cur.fetchone()
        assert (reason, bytes(stored)) == (awkward, raw)
        cur.execute(
            "SELECT yes_prices, yes_sizes, no_prices, no_sizes, best_yes_bid, market_id "
            "FROM orderbook_snapshots"
        )
        assert cur.fetchone() == (
            [80_000, 220_000],
            [30_000, 33_300],
            [540_000, 560_000],
            [2_000, 14_600],
            220_000,
            "9b0f6b43-5b68-4f9f-9f02-9a2d1b8ac1a1",
        )
        cur.execute("SELECT connection_id, market_tickers, recovery FROM sequence_gaps")
        assert cur.fetchone() == (awkward, list(tickers), "get_snapshot")


def test_lifecycle_payload_keeps_numbers_exact(pg: psycopg2.extensions.connection) -> None:
    raw = examples.LIFECYCLE_CREATED.replace('"floor_strike": 105000', '"floor_strike": 67749.99')
    row = one_row(raw)
    assert write_rows(pg, [row]) == {"lifecycle_events": 1}
    with pg.cursor() as cur:
        cur.execute(
            "SELECT payload -> 'additional_metadata' ->> 'floor_strike', payload_hash, "
            "(payload -> 'additional_metadata' -> 'floor_strike')::numeric FROM lifecycle_events"
        )
        text_value, digest, number = cur.fetchone()
    assert text_value == "67749.99" and number == Decimal("67749.99")
    assert bytes(digest) == row.payload_hash  # type: ignore[union-attr]


def test_ws_and_rest_copies_of_a_trade_are_one_row(pg: psycopg2.extensions.connection) -> None:
    ws = one_row(examples.TRADE)
    rest = rest_trade_row(
        {
            "trade_id": "d91bc706-ee49-470d-82d8-11418bda6fed",
            "ticker": "HIGHNY-22DEC23-B53.5",
            "count_fp": "136.00",
            "yes_price_dollars": "0.3600",
            "created_time": "2022-11-22T20:44:01.000917Z",
        },
        gatherer="g1",
        received_ns=to_ns(now_utc()),
        batch_pos=0,
    )
    assert write_rows(pg, [ws]) == {"trades": 1}
    assert write_rows(pg, [rest]) == {"trades": 0}


def test_full_batch_redelivery_through_write_rows(fresh_pg: psycopg2.extensions.connection) -> None:
    rows = frame_rows(now_utc())
    first = write_rows(fresh_pg, rows)
    fresh_pg.commit()
    assert first["raw_batches"] == 1 and first["dead_letters"] == 1
    assert first["trades"] == first["tickers"] == first["orderbook_deltas"] == 1
    assert first["orderbook_snapshots"] == 2 and first["lifecycle_events"] == 5
    assert first["market_status_history"] == first["sequence_gaps"] == 1
    assert set(write_rows(fresh_pg, rows).values()) == {0}


def test_sqlalchemy_connection_is_accepted(migrated_database: str) -> None:
    engine = create_db_engine(migrated_database)
    moment = now_utc()
    try:
        with engine.begin() as conn:
            assert copy_rows(conn, TRADES, [_trade(moment, 1), _trade(moment, 2)]) == 2
        with engine.begin() as conn:
            assert copy_rows(conn, TRADES, [_trade(moment, 2)]) == 0
            assert conn.execute(text("SELECT count(*) FROM trades")).scalar() == 2
    finally:
        engine.dispose()


def test_constraint_violations_surface(pg: psycopg2.extensions.connection) -> None:
    moment = now_utc()
    with pytest.raises(psycopg2.errors.CheckViolation, match="trades_whole_second_check"):
        copy_rows(pg, TRADES, [_trade(moment, 1, exchange_ts=moment.replace(microsecond=5))])
    pg.rollback()
    with pytest.raises(psycopg2.errors.CheckViolation, match="trades_exchange_ms_check"):
        copy_rows(pg, TRADES, [_trade(moment, 1, exchange_ms=5)])


def test_unstorable_values_are_refused_before_the_database() -> None:
    moment = now_utc()
    with pytest.raises(CopyEncodingError, match="NUL"):
        encode_rows(TRADES, [_trade(moment, 1, market_ticker="a\x00b")])
    with pytest.raises(CopyEncodingError, match="timezone-aware"):
        encode_rows(TRADES, [_trade(moment, 1, received_at=datetime(2026, 1, 1))])
    with pytest.raises(CopyEncodingError, match="integer"):
        encode_rows(TRADES, [_trade(moment, 1, size=1.5)])
    with pytest.raises(CopyEncodingError, match="expected 18 values"):
        encode_rows(TRADES, [("too", "short")])
    with pytest.raises(TypeError, match="no row type"):
        encode_rows("markets", [])
    with pytest.raises(TypeError, match="no table takes rows"):
        write_rows(None, [("not", "a", "row")])  # type: ignore[list-item]


def test_encoding_of_text_arrays_and_nulls() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    gap = SequenceGapRow("g", "c", 1, ('a"b', "c\\d", "e\tf"), 4, 7, moment, None, None)
    line = encode_rows("sequence_gaps", [gap])
    assert line == (
        'g\tc\t1\t{"a\\\\"b","c\\\\\\\\d","e\\tf"}\t4\t7\t2026-01-02T03:04:05.000006+00:00'
        "\t\\N\t\\N\n"
    )
    later = moment + timedelta(days=1)
    assert "2026-01-03T03:04:05.000006+00:00" in encode_rows(
        "sequence_gaps", [gap._replace(detected_at=later)]
    )
