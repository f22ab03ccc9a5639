"""`book_at` against real PostgreSQL: rows stored from real frames through `normalize_frame` and
`write_rows`, checked at many instants against books computed independently (tests/book/capture).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg2
import psycopg2.extensions
import pytest
from sqlalchemy import create_engine

from app.book import NoSnapshot, OrderBook, UnknownMarket, book_at
from app.db.copy import write_rows
from app.db.engine import sqlalchemy_url
from app.normalize import rest_snapshot_row
from tests.book.capture import Book, Exchange, Gatherer, Stream, copy_book, delta_frame, rest_body

A, B, C = "KXA-26SEP21-T1", "KXB-26SEP21-T2", "KXC-26SEP21-T3"


@dataclass
class Check:
    ticker: str
    at: datetime
    expected: Book
    complete: bool
    warning: str | None = None  # a substring one warning must contain
    source: str | None = None  # the expected snapshot source


def _as_book(book: OrderBook) -> Book:
    return {"yes": book.yes, "no": book.no}


@pytest.fixture
def conn(migrated_database: str) -> Iterator[psycopg2.extensions.connection]:
    connection = psycopg2.connect(migrated_database)
    try:
        yield connection
    finally:
        connection.rollback()
        connection.close()


def _store(conn: psycopg2.extensions.connection, gatherer: Gatherer, *extra) -> None:
    write_rows(conn, [*gatherer.rows, *extra])
    conn.commit()


def _session(conn, gatherer: str, connection_id: str, opened: datetime, closed: datetime | None):
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO connection_sessions (gatherer, connection_id, role, opened_at, closed_at)"
            " VALUES (%s, %s, 'book', %s, %s)",
            (gatherer, connection_id, opened, closed),
        )


def test_book_at_many_instants_through_gap_resync_reconnect_and_rest(conn) -> None:
    exchange = Exchange([A, B, C], seed=3)
    g = Gatherer(exchange)
    checks: list[Check] = []

    def check(ticker: str, stream: Stream, complete: bool = True, **kw: object) -> None:
        # Expected = the books built from exactly what the stream delivered; when the capture
        # is complete these are also the exchange's true books (asserted here).
        expected = copy_book(stream.books[ticker])
        if complete and kw.get("source") != "rest":
            assert expected == exchange.books[ticker]
        checks.append(Check(ticker, g.now, expected, complete, **kw))  # type: ignore[arg-type]

    start = g.now
    # Phase 1: connection c1; A and B interleaved on sid 1, C on sid 2.
    s1, s2 = Stream("c1", 1), Stream("c1", 2)
    g.snapshot(s1, A)
    check(A, s1, source="ws")
    g.snapshot(s1, B)
    g.snapshot(s2, C)
    for i in range(60):
        ticker = (A, B, C)[i % 3] if i % 7 else A
        stream = s2 if ticker == C else s1
        g.event(ticker, stream)
        check(ticker, stream)
    g.event(A, s1)
    g.redeliver()  # a repeated frame (same seq): must be applied once
    check(A, s1)
    repeated = checks[-1]

    # Phase 2: two sid-1 messages lost (a gap), then resync snapshots A then B.
    g.event(A, s1, lose=True)
    g.event(B, s1, lose=True)
    g.event(B, s1)
    gap = g.gap(s1, expected=s1.seq - 2, tickers=(A, B))
    check(B, s1, complete=False, warning="sequence gap")
    check(C, s2)  # another sid: unaffected
    g.event(A, s1)
    check(A, s1, complete=False, warning="sequence gap")
    g.snapshot(s1, A, resync=True)
    check(A, s1, source="resync")
    g.event(B, s1)
    check(B, s1, complete=False, warning="sequence gap")
    g.snapshot(s1, B, resync=True)
    check(B, s1, source="resync")
    gap = gap._replace(recovered_at=g.now, recovery="get_snapshot")
    for i in range(20):
        ticker = (A, B)[i % 2]
        g.event(ticker, s1)
        check(ticker, s1)

    # Phase 3: c1 drops; changes while disconnected are missed; c2 (new sid 3) restarts all.
    c1_closed = g.now + timedelta(microseconds=500)
    g.event(A, None)
    stale = copy_book(s1.books[A])
    checks.append(Check(A, g.now, stale, False, warning="closed"))
    s3 = Stream("c2", 3)
    c2_opened = g.now
    for ticker in (A, B, C):
        g.snapshot(s3, ticker)
        check(ticker, s3, source="ws")
    for i in range(45):
        ticker = (A, B, C)[i % 3]
        g.event(ticker, s3)
        check(ticker, s3)

    # Phase 4: a REST snapshot of A that lags the stream by one change, while c2 is intact:
    # it must not become the base (it would lose that change).
    before = copy_book(exchange.books[A])
    g.event(A, s3)
    rest_a = rest_snapshot_row(
        A,
        rest_body(before),
        gatherer="g1",
        received_ns=g.ns + 100_000,
        batch_pos=0,
    )
    g.ns += 200_000
    check(A, s3)
    g.event(A, s3)
    check(A, s3)

    # Phase 5: a gap on sid 3 for B only, never resynced; a REST snapshot of B repairs it.
    g.event(B, s3, lose=True)
    g.event(B, s3)
    gap_b = g.gap(s3, expected=s3.seq - 1, tickers=(B,))
    check(B, s3, complete=False, warning="sequence gap")
    g.event(A, s3)
    check(A, s3)  # the gap names B only
    g.ns += 100_000
    rest_b = rest_snapshot_row(
        B,
        rest_body(exchange.books[B]),
        gatherer="g1",
        received_ns=g.ns,
        batch_pos=0,
    )
    s3.books[B] = copy_book(exchange.books[B])  # what a REST-based book now holds
    check(B, s3, source="rest")
    g.event(B, s3)
    check(B, s3, complete=False, warning="REST base", source="rest")

    _store(conn, g, gap, gap_b, rest_a, rest_b)
    _session(conn, "g1", "c1", start, c1_closed)
    _session(conn, "g1", "c2", c2_opened, None)
    conn.commit()

    assert len(checks) > 140
    for number, c in enumerate(checks):
        result = book_at(conn, c.ticker, c.at)
        where = f"check {number}: {c.ticker} at {c.at.isoformat()}"
        assert _as_book(result.book) == c.expected, where
        assert result.complete is c.complete, (where, result.warnings)
        if c.warning is not None:
            assert any(c.warning in w for w in result.warnings), (where, result.warnings)
        if c.source is not None:
            assert result.snapshot.source == c.source, where
        assert result.snapshot.received_at <= c.at
        # Half a millisecond later nothing has arrived yet: the same book.
        later = book_at(conn, c.ticker, c.at + timedelta(microseconds=500))
        assert later.book == result.book, where

    final_a = book_at(conn, A, g.now + timedelta(seconds=1))
    assert final_a.snapshot.connection_id == "c2" and final_a.snapshot.sid == 3
    assert any("REST snapshot" in note for note in final_a.notes)
    assert _as_book(final_a.book) == exchange.books[A]

    # The repeated frame was skipped, and counted.
    assert book_at(conn, A, repeated.at).duplicate_deltas == 1


def test_instant_before_any_snapshot_and_unknown_market(conn) -> None:
    g = Gatherer(Exchange([A], seed=1))
    stream = Stream("c1", 1)
    before = g.now
    g.snapshot(stream, A)
    g.event(A, stream)
    _store(conn, g)
    with pytest.raises(NoSnapshot, match="no order book snapshot of KXA") as caught:
        book_at(conn, A, before)
    assert caught.value.first_snapshot_at is not None and caught.value.first_snapshot_at > before
    with pytest.raises(UnknownMarket, match="unknown market NOPE"):
        book_at(conn, "NOPE", g.now)
    with pytest.raises(ValueError, match="timezone-aware"):
        book_at(conn, A, g.now.replace(tzinfo=None))


def test_negative_level_is_reported_not_clamped(conn) -> None:
    exchange = Exchange([A], seed=5)
    exchange.books[A] = {"yes": {450_000: 1_000}, "no": {520_000: 500}}
    g = Gatherer(exchange)
    stream = Stream("c1", 7)
    g.snapshot(stream, A)
    # A corrupted stream: cancels more than rests at 0.45 (and at a price with nothing).
    for price, delta in ((450_000, -1_500), (300_000, -1), (520_000, 200)):
        stream.seq += 1
        g._store(
            stream,
            stream.seq,
            delta_frame(
                7,
                stream.seq,
                A,
                "yes" if price != 520_000 else "no",
                price,
                delta,
                1_790_000_000_000,
            ),
        )
    _store(conn, g)
    result = book_at(conn, A, g.now)
    assert result.book.yes == {}
    assert result.book.no == {520_000: 700}
    assert [(i.seq, i.price, i.size_before, i.delta) for i in result.inconsistencies] == [
        (2, 450_000, 1_000, -1_500),
        (3, 300_000, 0, -1),
    ]
    assert not result.complete
    assert "negative" in result.warnings[0]
    assert result.deltas_applied == 3


def test_gatherer_filter_url_and_sqlalchemy_connection(conn, migrated_database: str) -> None:
    exchange = Exchange([A], seed=9)
    g1 = Gatherer(exchange, "g1")
    s = Stream("c1", 1)
    g1.snapshot(s, A)
    g1.event(A, s)
    g1_book = copy_book(exchange.books[A])
    g2 = Gatherer(exchange, "g2", start_ns=g1.ns + 5_000_000)
    s2 = Stream("x9", 4)
    g2.snapshot(s2, A)
    g2.event(A, s2)
    write_rows(conn, [*g1.rows, *g2.rows])
    conn.commit()
    at = g2.now
    assert _as_book(book_at(migrated_database, A, at, gatherer="g1").book) == g1_book
    latest = book_at(migrated_database, A, at)
    assert latest.snapshot.gatherer == "g2"
    assert _as_book(latest.book) == exchange.books[A]
    engine = create_engine(sqlalchemy_url(migrated_database))
    try:
        with engine.connect() as sa_conn:
            assert book_at(sa_conn, A, at, gatherer="g2").book == latest.book
    finally:
        engine.dispose()
    with pytest.raises(UnknownMarket, match="from gatherer g3"):
        book_at(conn, A, at, gatherer="g3")


def test_seq_not_receive_time_decides_within_one_microsecond(conn) -> None:
    exchange = Exchange([A], seed=6)
    exchange.books[A] = {"yes": {450_000: 1_000}, "no": {}}
    g = Gatherer(exchange)
    stream = Stream("c1", 1)
    g.snapshot(stream, A)
    g.step_ns = 100  # the next two frames arrive within one microsecond (same received_at)
    g.event(A, stream)  # seq 2: already included in the resync snapshot (seq 3)
    g.snapshot(stream, A, resync=True)
    g.step_ns = 1_000_000
    g.event(A, stream)  # seq 4
    _store(conn, g)
    deltas = [r for r in g.rows if type(r).__name__ == "OrderbookDeltaRow"]
    snap = next(r for r in g.rows if getattr(r, "source", None) == "resync")
    assert deltas[0].received_at == snap.received_at
    result = book_at(conn, A, g.now)
    assert result.snapshot.source == "resync"
    assert (result.deltas_applied, result.last_seq) == (1, 4)
    assert _as_book(result.book) == exchange.books[A]
