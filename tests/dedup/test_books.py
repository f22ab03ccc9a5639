"""Order books into production (DESIGN §5): three gatherers, each missing a different stretch of
the same exchange, stored through the real ingest path; production's `book_at` must equal the
exchange's book at every instant, although no gatherer alone could rebuild it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg2

from app.book import book_at
from app.dedup import run_dedup
from app.dedup.chain import Base, StreamKey, choose_pieces
from app.ingest import write_entries
from app.normalize import datetime_from_ns
from app.streams import Entry, Frame, encode_entry
from tests.book.capture import Book, Exchange, copy_book, delta_frame, snapshot_frame
from tests.dedup.conftest import BASE_MS, Fleet, rows

T0_NS = BASE_MS * 1_000_000 + 3600 * 10**9  # an hour after the other dedup tests' rows
S = 10**9
TICKERS = ("KXB-26DEC01-T1", "KXB-26DEC01-T2")


def at(seconds: float) -> datetime:
    return datetime_from_ns(T0_NS + round(seconds * S))


@dataclass
class _Stream:
    conn: str
    sid: int
    seq: int = 0
    books: dict[str, Book] = field(default_factory=dict)


class Feed:
    """One exchange, three gatherers; who received which frame when. Gatherer `g<i>` receives
    each frame `i` ms after the exchange sent it (different clocks, as on three hosts)."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.exchange = Exchange(list(TICKERS), seed=7)
        self.truth: list[tuple[int, dict[str, Book]]] = [(T0_NS, self._books())]
        self.frames: dict[str, list[Frame]] = {g: [] for g in names}
        self.streams: dict[str, _Stream | None] = dict.fromkeys(names)
        self.holes: list[tuple[str, str, float, float | None]] = []  # gatherer, cause, from, to
        self.sessions: list[tuple[str, str, float, float | None]] = []

    def _books(self) -> dict[str, Book]:
        return {t: copy_book(b) for t, b in self.exchange.books.items()}

    def _recv(self, gatherer: str, seconds: float) -> int:
        return T0_NS + round(seconds * S) + int(gatherer[1:]) * 1_000_000

    def _snapshot(self, gatherer: str, seconds: float, ticker: str, resync: bool) -> None:
        stream = self.streams[gatherer]
        assert stream is not None
        stream.seq += 1
        text = snapshot_frame(stream.sid, stream.seq, ticker, self.exchange.books[ticker])
        self.frames[gatherer].append(
            Frame(text.encode(), self._recv(gatherer, seconds), stream.conn, stream.sid,
                  stream.seq, resync=resync)
        )  # fmt: skip

    def subscribe(self, gatherer: str, seconds: float) -> None:
        conn = f"{gatherer}-{uuid.uuid4().hex[:8]}"
        self.streams[gatherer] = _Stream(conn, 1)
        self.sessions.append((gatherer, conn, seconds, None))
        for ticker in TICKERS:
            self._snapshot(gatherer, seconds, ticker, resync=False)

    def disconnect(self, gatherer: str, seconds: float) -> None:
        stream = self.streams[gatherer]
        assert stream is not None
        self.sessions = [
            (g, c, o, seconds if c == stream.conn else e) for g, c, o, e in self.sessions
        ]
        self.streams[gatherer] = None

    def resync(self, gatherer: str, seconds: float) -> None:
        for ticker in TICKERS:
            self._snapshot(gatherer, seconds, ticker, resync=True)

    def change(self, seconds: float, lost_by: tuple[str, ...] = ()) -> None:
        ticker = TICKERS[int(seconds) % 2]
        side, price, delta = self.exchange.change(ticker)
        self.truth.append((T0_NS + round(seconds * S), self._books()))
        for gatherer, stream in self.streams.items():
            if stream is None:
                continue
            stream.seq += 1  # a lost frame still consumed its seq: the gatherer sees a gap
            if gatherer in lost_by:
                continue
            text = delta_frame(stream.sid, stream.seq, ticker, side, price, delta,
                               (T0_NS // 10**6) + round(seconds * 1000))  # fmt: skip
            self.frames[gatherer].append(
                Frame(text.encode(), self._recv(gatherer, seconds), stream.conn, stream.sid,
                      stream.seq)
            )  # fmt: skip

    def book(self, seconds: float) -> dict[str, Book]:
        """The exchange's books just after `seconds`."""
        found = self.truth[0][1]
        for ns, books in self.truth:
            if ns <= T0_NS + round(seconds * S):
                found = books
        return found

    def store(self, fleet: Fleet) -> None:
        for gatherer, frames in self.frames.items():
            conn = psycopg2.connect(fleet.gatherers[gatherer])
            try:
                for i in range(0, len(frames), 50):
                    chunk = frames[i : i + 50]
                    entry = Entry(f"{i + 1}-0", encode_entry(chunk), chunk, 1)
                    write_entries(conn, [entry], gatherer=gatherer, stream=f"kd:{gatherer}:b")
                with conn.cursor() as cur:
                    for g, cause, low, high in self.holes:
                        if g == gatherer:
                            cur.execute(
                                "INSERT INTO capture_holes (gatherer, hole_id, channel, cause, "
                                "from_at, to_at) VALUES (%s, %s, 'orderbook_delta', %s, %s, %s)",
                                (g, uuid.uuid4().hex, cause, at(low),
                                 None if high is None else at(high)),
                            )  # fmt: skip
                    for g, conn_id, opened, closed in self.sessions:
                        if g == gatherer:
                            cur.execute(
                                "INSERT INTO connection_sessions (gatherer, connection_id, role, "
                                "opened_at, closed_at) VALUES (%s, %s, 'orderbook', %s, %s)",
                                (g, conn_id, at(opened), None if closed is None else at(closed)),
                            )
                conn.commit()
            finally:
                conn.close()


def _book(url: str, ticker: str, seconds: float, gatherer: str | None = None) -> Book:
    result = book_at(url, ticker, at(seconds), gatherer=gatherer)
    return {"yes": dict(result.book.yes), "no": dict(result.book.no)}


def _faulted_feed() -> Feed:
    """g1 loses frames 20-29 (a seq gap, repaired by get_snapshot at 30); g2's connection
    drops at 40 and a new one subscribes at 45; g3 is down from 10 to 50. At every instant
    one gatherer holds a whole stream, but only switching at snapshots rebuilds the book."""
    feed = Feed(("g1", "g2", "g3"))
    for g in ("g1", "g2", "g3"):
        feed.subscribe(g, 0.0)
    for second in range(1, 61):
        if second == 10:
            feed.holes.append(("g3", "listener_down", 9.5, 50.0))
            feed.disconnect("g3", 9.5)
        if second == 50:
            feed.subscribe("g3", 50.0)
        if second == 40:
            feed.holes.append(("g2", "disconnect", 39.5, 45.0))
            feed.disconnect("g2", 39.5)
        if second == 45:
            feed.subscribe("g2", 45.0)
        if second == 30:
            feed.resync("g1", 30.0)
        lost = ("g1",) if 20 <= second < 30 else ()
        if second == 20:
            feed.holes.append(("g1", "seq_gap", 19.0, 30.0))
        feed.change(second + 0.5, lost_by=lost)
    return feed


def test_production_books_equal_the_exchange_at_every_instant(fleet: Fleet) -> None:
    feed = _faulted_feed()
    feed.store(fleet)
    settings = fleet.settings(book_lateness_s=0, book_window_s=25)
    report = run_dedup(settings, fleet.production, now=at(70))
    assert report.book_windows >= 2 and report.book_gaps == 0, report.as_dict()
    # Changes happen at x.5 and arrive within 3 ms: instants away from them are unambiguous.
    for seconds in (whole + frac for whole in range(70) for frac in (0.2, 0.9)):
        for ticker in TICKERS:
            assert _book(fleet.production, ticker, seconds) == feed.book(seconds)[ticker], (
                ticker,
                seconds,
            )
    # Each gatherer alone is wrong somewhere (else the test would prove nothing).
    for g, seconds in (("g1", 25.9), ("g2", 42.0), ("g3", 30.9)):
        alone = {t: _book(fleet.gatherers[g], t, seconds) for t in TICKERS}
        assert alone != {t: feed.book(seconds)[t] for t in TICKERS}, g
    # Provenance: production took rows from more than one gatherer, and a rerun adds nothing.
    sources = {r[0] for r in rows(fleet.production, "SELECT gatherer FROM orderbook_deltas")}
    assert len(sources) >= 2
    again = run_dedup(settings, fleet.production, now=at(70))
    assert not again.inserted and again.book_windows == 0
    # Coverage: every gatherer lost part of the hour, production nothing.
    coverage = rows(
        fleet.production, "SELECT market_ticker, status, gap_count, book_source FROM coverage"
    )
    assert sorted(r[:3] for r in coverage) == [(t, "complete", 0) for t in TICKERS]
    assert all(len(r[3].split(",")) >= 2 for r in coverage), coverage


def test_a_stretch_no_gatherer_holds_is_a_gap_and_the_book_resumes_at_the_next_snapshot(
    fleet: Fleet,
) -> None:
    feed = Feed(("g1", "g2"))
    for g in ("g1", "g2"):
        feed.subscribe(g, 0.0)
    for second in range(1, 31):
        if second == 10:  # both lose 10-14 and resync at 15
            feed.holes += [("g1", "seq_gap", 9.0, 15.0), ("g2", "seq_gap", 9.0, 15.0)]
        if second == 15:
            feed.resync("g2", 15.0)
            feed.resync("g1", 15.2)
        feed.change(second + 0.5, lost_by=("g1", "g2") if 10 <= second < 15 else ())
    feed.store(fleet)
    # A market listed only while both were blind: nothing of it reached anyone.
    with psycopg2.connect(fleet.gatherers["g1"]) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO markets (ticker, event_ticker, status, metadata, open_time, close_time) "
            "VALUES ('KXB-26DEC01-T3', 'KXB-26DEC01', 'closed', '{}', %s, %s)",
            (at(10), at(14)),
        )
    conn.close()
    two = Fleet({g: fleet.gatherers[g] for g in ("g1", "g2")}, fleet.production)
    report = run_dedup(two.settings(book_lateness_s=0), fleet.production, now=at(40))
    assert report.book_gaps == len(TICKERS), report.as_dict()
    for seconds in (5.0, 9.2, 15.1, 22.0, 31.0):
        for ticker in TICKERS:
            assert _book(fleet.production, ticker, seconds) == feed.book(seconds)[ticker]
    holes = rows(
        fleet.production,
        "SELECT market_tickers[1], cause, from_at, to_at FROM capture_holes WHERE gatherer = '*'",
    )
    assert sorted(h[:2] for h in holes) == [(t, "no_whole_stream") for t in TICKERS]
    assert all(at(9.0) < low and high <= at(15.3) for _, _, low, high in holes), holes
    coverage = rows(fleet.production, "SELECT market_ticker, status, gatherers FROM coverage")
    assert sorted(coverage) == [
        ("KXB-26DEC01-T1", "degraded", []),
        ("KXB-26DEC01-T2", "degraded", []),
        ("KXB-26DEC01-T3", "missing", []),
    ]


def _base(stream: str, start: float, end: float) -> Base:
    return Base("M", StreamKey(stream, "c", 1), 1, at(start), 0, at(end))


def test_the_chain_keeps_its_stream_and_moves_only_to_a_snapshot_before_the_break() -> None:
    since, until = at(0), at(100)
    a, b, c = _base("a", 0, 100), _base("b", 0.001, 100), _base("c", 50, 100)
    chain = choose_pieces(None, [a, b, c], since, until)
    assert [p.base for p in chain.pieces] == [a] and not chain.gaps
    broken = _base("a", 0, 40)
    chain = choose_pieces(None, [broken, b, c], since, until)
    assert [p.base for p in chain.pieces] == [broken, b] and chain.pieces[0].stop == b.at
    # b took over before a broke; c (after the break) is not needed.
    alone = choose_pieces(None, [broken, c], since, until)
    assert [p.base for p in alone.pieces] == [broken, c]
    assert alone.gaps == [(at(40) + timedelta(microseconds=1), at(50))]
    assert choose_pieces(None, [], since, until).pieces == []
