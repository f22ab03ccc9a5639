"""The migrated schema agrees with the code catalogue; views and book reconstruction work."""

from __future__ import annotations

import typing
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg2.extensions
import pytest

from app.db.copy import write_rows
from app.db.rows import OrderbookDeltaRow, OrderbookSnapshotRow, TradeRow
from app.db.tables import ALL_TABLES, TIME_SERIES_TABLES, TableSpec
from app.normalize import batch_rows, normalize_frame
from tests.db.samples import now_utc, to_ns
from tests.normalize import examples
from tests.normalize.framing import envelope, one_row

_UDT_FOR_HINT = {
    int: {"int8", "int4"},
    str: {"text"},
    bool: {"bool"},
    bytes: {"bytea"},
    datetime: {"timestamptz"},
    tuple[int, ...]: {"_int8", "_int4"},
    tuple[str, ...]: {"_text"},
    dict[str, typing.Any]: {"jsonb"},
}


def _columns(cur: psycopg2.extensions.cursor, table: str) -> list[tuple[str, str, bool]]:
    cur.execute(
        "SELECT column_name, udt_name, is_nullable = 'YES' FROM information_schema.columns "
        "WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
        (table,),
    )
    return cur.fetchall()


@pytest.mark.parametrize("table", [t for t in ALL_TABLES if t.row_type], ids=lambda t: t.name)
def test_row_types_match_the_table_columns(
    pg: psycopg2.extensions.connection, table: TableSpec
) -> None:
    assert table.row_type is not None
    hints = typing.get_type_hints(table.row_type)
    with pg.cursor() as cur:
        columns = {name: (udt, nullable) for name, udt, nullable in _columns(cur, table.name)}
    for field in table.columns:
        udt, nullable = columns[field]
        hint = hints[field]
        optional = type(None) in typing.get_args(hint)
        base = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
        assert udt in _UDT_FOR_HINT[base], (table.name, field, udt, hint)
        if not optional:
            assert not nullable, f"{table.name}.{field} is NOT NULL in the row but nullable"
    # Columns the row leaves out must have defaults (identity, now(), ...): `ingest_xid` is
    # the writing transaction's id, the deduplicator's cursor (alembic 0006).
    missing = set(columns) - set(table.columns)
    assert missing <= {"id", "ingest_xid"}, missing
    if "ingest_xid" in missing:
        with pg.cursor() as cur:
            cur.execute(
                "SELECT column_default FROM information_schema.columns "
                "WHERE table_name = %s AND column_name = 'ingest_xid'",
                (table.name,),
            )
            assert cur.fetchone() == ("pg_current_xact_id()",)


@pytest.mark.parametrize("table", ALL_TABLES, ids=lambda t: t.name)
def test_idempotency_keys_and_partitioning(
    pg: psycopg2.extensions.connection, table: TableSpec
) -> None:
    with pg.cursor() as cur:
        cur.execute(
            "SELECT array_agg(a.attname ORDER BY k.ord) FROM pg_constraint c "
            "CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord) "
            "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum "
            "WHERE c.conrelid = %s::regclass AND c.contype IN ('p', 'u') GROUP BY c.oid",
            (table.name,),
        )
        keys = {tuple(row[0]) for row in cur.fetchall()}
        assert table.key in keys, (table.name, keys)
        cur.execute(
            "SELECT a.attname FROM pg_partitioned_table p "
            "JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0] "
            "WHERE p.partrelid = %s::regclass",
            (table.name,),
        )
        partition_column = cur.fetchone()
    if table.partitioned:
        assert partition_column == (table.time_column,)
        assert table.time_column in table.key
        for key in keys:  # PostgreSQL (and TimescaleDB) demand it of every unique key
            assert table.time_column in key
    else:
        assert partition_column is None


def test_time_series_catalogue() -> None:
    assert [t.name for t in TIME_SERIES_TABLES] == [
        "raw_batches",
        "dead_letters",
        "orderbook_snapshots",
        "orderbook_deltas",
        "trades",
        "tickers",
        "lifecycle_events",
        "coverage",
    ]


def test_dollar_views(pg: psycopg2.extensions.connection) -> None:
    moment = now_utc().replace(microsecond=0)
    trade = one_row(examples.TRADE)
    ticker = one_row(examples.TICKER)
    assert isinstance(trade, TradeRow)
    trade = trade._replace(exchange_ts=moment, exchange_ms=to_ns(moment) // 1_000_000 + 250)
    rows = [
        trade,
        ticker._replace(exchange_ts=moment),  # type: ignore[union-attr]
        one_row(examples.DELTA)._replace(received_at=moment),  # type: ignore[union-attr]
        one_row(examples.SNAPSHOT)._replace(received_at=moment),  # type: ignore[union-attr]
    ]
    write_rows(pg, rows)
    with pg.cursor() as cur:
        cur.execute(
            "SELECT exchange_time, yes_price_dollars, no_price_dollars, size_contracts "
            "FROM trades_dollars"
        )
        assert cur.fetchone() == (
            moment + timedelta(milliseconds=250),
            Decimal("0.360000"),
            Decimal("0.640000"),
            Decimal("136.00"),
        )
        cur.execute(
            "SELECT price_dollars, yes_bid_dollars, volume_contracts, dollar_volume "
            "FROM tickers_dollars"
        )
        assert cur.fetchone() == (
            Decimal("0.480000"),
            Decimal("0.450000"),
            Decimal("33896.00"),
            16948,
        )
        cur.execute("SELECT side, price_dollars, delta_contracts FROM orderbook_deltas_dollars")
        assert cur.fetchone() == ("yes", Decimal("0.960000"), Decimal("-54.00"))
        cur.execute(
            "SELECT yes_prices_dollars, no_sizes_contracts, best_no_bid_dollars "
            "FROM orderbook_snapshots_dollars"
        )
        assert cur.fetchone() == (
            [Decimal("0.080000"), Decimal("0.220000")],
            [Decimal("20.00"), Decimal("146.00")],
            Decimal("0.560000"),
        )
        cur.execute(
            "SELECT side, price, size, price_dollars FROM orderbook_snapshot_levels "
            "ORDER BY side DESC, price"
        )
        assert cur.fetchall() == [
            ("yes", 80_000, 30_000, Decimal("0.080000")),
            ("yes", 220_000, 33_300, Decimal("0.220000")),
            ("no", 540_000, 2_000, Decimal("0.540000")),
            ("no", 560_000, 14_600, Decimal("0.560000")),
        ]


# docs/schema.md "Book reconstruction": the latest WS snapshot at or before T for the market,
# plus that subscription's later deltas up to T.
BOOK_AT = """
WITH snap AS (
    SELECT * FROM orderbook_snapshots
    WHERE market_ticker = %(market)s AND received_at <= %(at)s AND source IN ('ws', 'resync')
    ORDER BY received_at DESC, seq DESC
    LIMIT 1
), levels AS (
    SELECT 'yes' AS side, l.price, l.size
    FROM snap CROSS JOIN LATERAL unnest(snap.yes_prices, snap.yes_sizes) AS l(price, size)
    UNION ALL
    SELECT 'no', l.price, l.size
    FROM snap CROSS JOIN LATERAL unnest(snap.no_prices, snap.no_sizes) AS l(price, size)
    UNION ALL
    SELECT d.side, d.price, d.delta
    FROM snap JOIN orderbook_deltas d
      ON d.market_ticker = snap.market_ticker AND d.gatherer = snap.gatherer
     AND d.connection_id = snap.connection_id AND d.sid = snap.sid AND d.seq > snap.seq
     AND d.received_at >= snap.received_at AND d.received_at <= %(at)s
)
SELECT side, price, sum(size)::bigint FROM levels
GROUP BY side, price HAVING sum(size) <> 0 ORDER BY side, price
"""


def test_book_reconstruction_from_snapshot_and_deltas(pg: psycopg2.extensions.connection) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)

    def at(seconds: int) -> int:
        return to_ns(start + timedelta(seconds=seconds))

    market = '"market_ticker":"FED-23DEC-T3.00"'
    frames = [
        (at(0), examples.SNAPSHOT),
        (at(1), f'{{"type":"orderbook_delta","sid":2,"seq":3,"msg":{{{market},'
                '"price_dollars":"0.2200","delta_fp":"-333.00","side":"yes"}}'),
        (at(2), f'{{"type":"orderbook_delta","sid":2,"seq":4,"msg":{{{market},'
                '"price_dollars":"0.3000","delta_fp":"5.50","side":"yes"}}'),
        (at(3), f'{{"type":"orderbook_delta","sid":2,"seq":5,"msg":{{{market},'
                '"price_dollars":"0.5600","delta_fp":"-46.00","side":"no"}}'),
    ]  # fmt: skip
    results = [
        normalize_frame(raw, envelope(ns, batch_pos=i)) for i, (ns, raw) in enumerate(frames)
    ]
    assert isinstance(results[0].rows[0], OrderbookSnapshotRow)
    assert all(isinstance(r.rows[0], OrderbookDeltaRow) for r in results[1:])
    write_rows(pg, batch_rows(results))
    with pg.cursor() as cur:
        cur.execute(BOOK_AT, {"market": "FED-23DEC-T3.00", "at": start + timedelta(seconds=2)})
        assert cur.fetchall() == [
            ("no", 540_000, 2_000),
            ("no", 560_000, 14_600),
            ("yes", 80_000, 30_000),
            ("yes", 300_000, 550),
        ]
        cur.execute(BOOK_AT, {"market": "FED-23DEC-T3.00", "at": start + timedelta(seconds=9)})
        assert ("no", 560_000, 10_000) in cur.fetchall()
        cur.execute(BOOK_AT, {"market": "FED-23DEC-T3.00", "at": start - timedelta(seconds=1)})
        assert cur.fetchall() == []
