"""`refresh_coverage`: which rows it stores, and that running it again changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg2

from app.coverage import refresh_coverage
from tests.coverage.conftest import add_hole, add_market, add_session

T0 = datetime(2026, 1, 10, tzinfo=UTC)
NOW = T0 + timedelta(hours=6)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def add_trade(conn, ticker: str, when: datetime) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO trades (trade_id, exchange_ts, market_ticker, yes_price, no_price, size,"
            " source, gatherer, connection_id, received_ns, received_at, batch_pos) "
            "VALUES (%s, %s, %s, 560000, 440000, 100, 'ws', 'g1', 'c1', 0, %s, 0)",
            (f"tr-{ticker}-{when.isoformat()}", when, ticker, when),
        )


def coverage_rows(conn) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT market_ticker, extract(hour FROM hour AT TIME ZONE 'UTC')::int, status,"
            " gatherers, gap_count, reconciliation, updated_at FROM coverage ORDER BY 1, 2"
        )
        return cur.fetchall()


def scenario(conn) -> None:
    for ticker in ("A", "B", "C"):
        add_market(conn, ticker, T0 - timedelta(days=1), T0 + timedelta(days=30))
    add_session(conn, at(1))
    add_hole(conn, "k1", "ticker", at(2.1), at(2.2))  # every market degraded in hour 2
    add_hole(conn, "b1", "orderbook_delta", at(3), at(4), markets=["B"])  # B missing in hour 3
    add_trade(conn, "A", at(4.5))  # A active and complete in hour 4


def test_stores_incomplete_rows_and_active_complete_ones_and_is_idempotent(
    migrated_database: str,
) -> None:
    conn = psycopg2.connect(migrated_database)  # a transaction, as a task would use it
    try:
        scenario(conn)
        conn.commit()
        assert refresh_coverage(conn, "g1", T0, NOW, now=NOW) == 5
        conn.commit()
        first = coverage_rows(conn)
        assert [row[:6] for row in first] == [
            ("A", 2, "degraded", ["g1"], 1, "not_checked"),
            ("A", 4, "complete", ["g1"], 0, "not_checked"),
            ("B", 2, "degraded", ["g1"], 1, "not_checked"),
            ("B", 3, "missing", ["g1"], 1, "not_checked"),
            ("C", 2, "degraded", ["g1"], 1, "not_checked"),
        ]
        # Again, in a later transaction: same rows, none rewritten (updated_at unchanged).
        assert refresh_coverage(conn, "g1", T0, NOW, now=NOW) == 5
        conn.commit()
        assert coverage_rows(conn) == first
    finally:
        conn.close()


def test_rerun_follows_changed_holes_and_leaves_other_owners_alone(db) -> None:
    scenario(db)  # db is in autocommit mode: refresh must work there too
    with db.cursor() as cur:
        # A production row (several gatherers) where g1 alone says degraded: never ours.
        cur.execute(
            "INSERT INTO coverage (market_ticker, hour, status, gatherers, reconciliation)"
            " VALUES ('C', %s, 'complete', '{g1,g2}', 'match')",
            (at(2),),
        )
    assert refresh_coverage(db, "g1", T0, NOW, now=NOW) == 4
    assert ("C", 2, "complete", ["g1", "g2"], 0, "match") in [r[:6] for r in coverage_rows(db)]
    with db.cursor() as cur:
        cur.execute("DELETE FROM capture_holes WHERE hole_id = 'k1'")
        cur.execute(
            "UPDATE capture_holes SET to_at = %s WHERE hole_id = 'b1'", (at(3.5),)
        )  # B's hour 3 now only degraded
        cur.execute("UPDATE coverage SET reconciliation = 'match' WHERE market_ticker = 'B'")
    assert refresh_coverage(db, "g1", T0, NOW, now=NOW) == 2
    assert [row[:6] for row in coverage_rows(db)] == [
        ("A", 4, "complete", ["g1"], 0, "not_checked"),
        ("B", 3, "degraded", ["g1"], 1, "match"),  # status follows, reconciliation is kept
        ("C", 2, "complete", ["g1", "g2"], 0, "match"),
    ]


def test_one_market_touches_only_its_rows(db) -> None:
    scenario(db)
    assert refresh_coverage(db, "g1", T0, NOW, now=NOW) == 5
    with db.cursor() as cur:
        cur.execute("DELETE FROM capture_holes WHERE hole_id = 'k1'")
    assert refresh_coverage(db, "g1", T0, NOW, market="B", now=NOW) == 1
    assert [row[:3] for row in coverage_rows(db)] == [
        ("A", 2, "degraded"),  # not refreshed: still says what the last full refresh saw
        ("A", 4, "complete"),
        ("B", 3, "missing"),
        ("C", 2, "degraded"),
    ]
    assert refresh_coverage(db, "g1", T0, NOW, now=NOW) == 2


def test_nothing_to_claim_stores_nothing(db) -> None:
    add_market(db, "A", None, None)
    assert refresh_coverage(db, "g1", T0, NOW, now=NOW) == 0  # no capture recorded
    assert refresh_coverage(db, "g1", NOW, NOW + timedelta(hours=2), now=NOW) == 0  # future
    assert coverage_rows(db) == []
