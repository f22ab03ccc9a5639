"""Native daily partitions: routing, creating ahead, DEFAULT rescue, retention, dedup."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import psycopg2.extensions

from app.db import partitions
from app.db.copy import copy_rows, write_rows
from app.db.rows import TradeRow
from app.db.tables import TIME_SERIES_TABLES, TRADES
from tests.db.samples import frame_rows, now_utc, to_ns


def _trade(moment: datetime, n: int) -> TradeRow:
    return TradeRow(
        f"t-{n}", moment.replace(microsecond=0), None, "KX-1", 500_000, 500_000, 100, "yes",
        "bid", None, "ws", "g1", "c1", 1, None, to_ns(moment), moment, n,
    )  # fmt: skip


def _homes(cur: psycopg2.extensions.cursor, table: str) -> dict[str, int]:
    cur.execute(f"SELECT tableoid::regclass::text, count(*) FROM {table} GROUP BY 1")
    return dict(cur.fetchall())


def test_migration_created_partitions_around_today(pg: psycopg2.extensions.connection) -> None:
    today = now_utc().date()
    for table in TIME_SERIES_TABLES:
        days = partitions.list_partitions(pg, table)
        assert today - timedelta(days=1) in days and today + timedelta(days=2) in days, table.name


def test_todays_rows_land_in_todays_partition(pg: psycopg2.extensions.connection) -> None:
    moment = now_utc()
    write_rows(pg, frame_rows(moment))
    suffix = f"_p{moment:%Y%m%d}"
    with pg.cursor() as cur:
        for table in ("raw_batches", "dead_letters", "orderbook_snapshots", "orderbook_deltas",
                      "trades", "tickers", "lifecycle_events"):  # fmt: skip
            homes = _homes(cur, table)
            assert list(homes) == [table + suffix], (table, homes)
    assert set(partitions.default_partition_rows(pg).values()) == {0}


def test_ensure_partitions_is_idempotent_and_creates_ahead(
    pg: psycopg2.extensions.connection,
) -> None:
    later = now_utc() + timedelta(days=20)
    created = partitions.ensure_partitions(pg, days_ahead=2, days_back=0, now=later)
    assert len(created) == 3 * len(TIME_SERIES_TABLES)
    assert f"trades_p{later:%Y%m%d}" in created
    before = {t.name: partitions.list_partitions(pg, t) for t in TIME_SERIES_TABLES}
    assert partitions.ensure_partitions(pg, days_ahead=2, days_back=0, now=later) == []
    after = {t.name: partitions.list_partitions(pg, t) for t in TIME_SERIES_TABLES}
    assert before == after


def test_stray_rows_in_default_are_monitored_and_rescued(
    pg: psycopg2.extensions.connection,
) -> None:
    old = datetime(2025, 8, 12, 21, 0, 32, tzinfo=UTC)  # a replayed old capture
    batch = [_trade(old, 1), _trade(old + timedelta(days=1), 2)]
    assert copy_rows(pg, TRADES, batch) == 2
    with pg.cursor() as cur:
        assert _homes(cur, "trades") == {"trades_default": 2}
    assert partitions.default_partition_rows(pg)["trades"] == 2

    created = partitions.ensure_partitions(pg, days_ahead=0, days_back=0)
    assert {"trades_p20250812", "trades_p20250813"} <= set(created)
    assert partitions.default_partition_rows(pg)["trades"] == 0
    with pg.cursor() as cur:
        assert _homes(cur, "trades") == {"trades_p20250812": 1, "trades_p20250813": 1}
    assert copy_rows(pg, TRADES, batch) == 0  # still deduplicated after the move


def test_creating_a_day_moves_that_days_default_rows(pg: psycopg2.extensions.connection) -> None:
    day = datetime(2025, 1, 5, 12, tzinfo=UTC)
    copy_rows(pg, TRADES, [_trade(day, 1), _trade(day + timedelta(days=3), 2)])
    created = partitions.ensure_partitions_for_range(pg, TRADES, day, day + timedelta(hours=1))
    assert created == ["trades_p20250105"]
    with pg.cursor() as cur:
        assert _homes(cur, "trades") == {"trades_p20250105": 1, "trades_default": 1}


def test_retention_drops_only_whole_old_partitions(pg: psycopg2.extensions.connection) -> None:
    now = datetime.combine(now_utc().date(), datetime.min.time(), tzinfo=UTC) + timedelta(hours=6)
    partitions.ensure_partitions(pg, days_ahead=0, days_back=10, now=now)
    copy_rows(pg, TRADES, [_trade(now - timedelta(days=d), d) for d in range(11)])

    dropped = partitions.drop_expired_partitions(pg, {"trades": 3, "tickers": None}, now=now)
    today = now.date()
    # [D, D+1) goes when D+1 <= now - 3 days: D <= today - 4; today-3 still holds recent rows.
    expected = {f"trades_p{today - timedelta(days=d):%Y%m%d}" for d in range(4, 11)}
    assert set(dropped) == expected
    remaining = partitions.list_partitions(pg, TRADES)
    assert min(remaining) == today - timedelta(days=3)
    assert partitions.list_partitions(pg, "tickers")[0] <= today - timedelta(days=10)
    with pg.cursor() as cur:
        cur.execute("SELECT min(exchange_ts) FROM trades")
        assert cur.fetchone()[0] >= now - timedelta(days=3, seconds=1)
        cur.execute("SELECT count(*) FROM trades")
        assert cur.fetchone()[0] == 4
    assert partitions.drop_expired_partitions(pg, {"trades": 3}, now=now) == []


def test_redelivered_batch_across_two_partitions(pg: psycopg2.extensions.connection) -> None:
    midnight = datetime.combine(now_utc().date(), datetime.min.time(), tzinfo=UTC)
    moments = [midnight - timedelta(seconds=1), midnight + timedelta(seconds=1)]
    rows = [row for i, m in enumerate(moments) for row in frame_rows(m, first_pos=100 * i)]
    first = write_rows(pg, rows)
    assert first["raw_batches"] == 2 and first["trades"] == 2
    with pg.cursor() as cur:
        assert len(_homes(cur, "raw_batches")) == 2 and len(_homes(cur, "trades")) == 2
    assert set(write_rows(pg, rows).values()) == {0}


def test_partition_names_and_ddl() -> None:
    assert partitions.partition_name("trades", date(2026, 3, 9)) == "trades_p20260309"
    assert partitions.partition_ddl("trades", date(2026, 12, 31)) == (
        "CREATE TABLE IF NOT EXISTS trades_p20261231 PARTITION OF trades "
        "FOR VALUES FROM ('2026-12-31T00:00:00+00:00') TO ('2027-01-01T00:00:00+00:00')"
    )
    assert partitions.default_partition_ddl("coverage") == (
        "CREATE TABLE IF NOT EXISTS coverage_default PARTITION OF coverage DEFAULT"
    )
