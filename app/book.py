"""Order books: an in-memory book, and `book_at`, one market's book at any past instant.

DESIGN §1 guarantee 3 (rebuildable): the book at T is the newest usable snapshot at or before T
plus the deltas of *its own* subscription stream up to T, in `seq` order. docs/book.md explains
the base-selection and ordering rules and why they are correct given per-sid `seq`
(kalshi-api.md §3.6).

Units are DESIGN §4's: prices in micro-dollars, sizes in hundredths of a contract. Books hold
bids only, as Kalshi sends them (kalshi-api.md §3.5); asks are implied: best YES ask =
1 - best NO bid, best NO ask = 1 - best YES bid.

This module only reads the database; it never writes, never merges deltas of different streams
and never clamps an impossible size: a delta that would make a level negative is reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg2.extensions

from app.db.engine import connect, dbapi_connection
from app.units import MICROS_PER_DOLLAR

YES = "yes"
NO = "no"
SIDES = (YES, NO)
STREAM_SOURCES = ("ws", "resync")
REST_SOURCE = "rest"
_DELTA_FETCH = 10_000  # rows per round trip when streaming a long delta run

Level = tuple[int, int]  # (price micro-dollars, size hundredths)


class BookError(Exception):
    """Base class of the order book errors."""


class NegativeLevel(BookError):
    """A delta would leave a negative resting size: the data is inconsistent."""

    def __init__(self, side: str, price: int, size: int, delta: int) -> None:
        super().__init__(
            f"{side} level {price} micro-dollars holds {size} hundredths; "
            f"delta {delta} would make it negative"
        )
        self.side, self.price, self.size, self.delta = side, price, size, delta


class BookUnavailable(BookError):
    """No book can be reconstructed for the market at the requested instant."""


class UnknownMarket(BookUnavailable):
    """The database holds no order book data at all for the ticker."""


class NoSnapshot(BookUnavailable):
    """Order book data exists, but no snapshot at or before the instant to start from."""

    def __init__(self, message: str, first_snapshot_at: datetime | None) -> None:
        super().__init__(message)
        self.first_snapshot_at = first_snapshot_at


def _check_side(side: str) -> str:
    if side not in SIDES:
        raise ValueError(f"side must be 'yes' or 'no', not {side!r}")
    return side


def _other(side: str) -> str:
    return NO if _check_side(side) == YES else YES


@dataclass
class OrderBook:
    """Resting bids of one market: `yes` and `no` map price (micro-dollars) -> size (hundredths).

    No level ever holds size 0 or less: size 0 removes it, a negative result raises.
    """

    yes: dict[int, int] = field(default_factory=dict)
    no: dict[int, int] = field(default_factory=dict)

    @classmethod
    def from_levels(cls, yes: Iterable[Level] = (), no: Iterable[Level] = ()) -> OrderBook:
        book = cls()
        book.apply_snapshot(yes, no)
        return book

    def side(self, side: str) -> dict[int, int]:
        return self.yes if _check_side(side) == YES else self.no

    def apply_snapshot(self, yes: Iterable[Level], no: Iterable[Level]) -> None:
        """Replace both sides. Zero-size levels are not resting orders and are dropped."""
        for side, levels in ((self.yes, yes), (self.no, no)):
            side.clear()
            for price, size in levels:
                if size < 0:
                    raise ValueError(f"snapshot level {price} has negative size {size}")
                if size:
                    side[price] = size

    def apply_delta(self, side: str, price: int, delta: int) -> int:
        """Add the signed `delta` to the level; returns the new size (0 = level removed).

        Raises `NegativeLevel` (leaving the book unchanged) when the result would be negative.
        """
        levels = self.side(side)
        size = levels.get(price, 0)
        new = size + delta
        if new < 0:
            raise NegativeLevel(side, price, size, delta)
        if new:
            levels[price] = new
        else:
            levels.pop(price, None)
        return new

    def remove_level(self, side: str, price: int) -> None:
        self.side(side).pop(price, None)

    def bids(self, side: str) -> list[Level]:
        """Bids of one side, best (highest price) first."""
        return sorted(self.side(side).items(), reverse=True)

    def asks(self, side: str) -> list[Level]:
        """Implied asks of one side, best (lowest price) first: YES asks are 1 - NO bids."""
        return [(MICROS_PER_DOLLAR - price, size) for price, size in self.bids(_other(side))]

    def best_bid(self, side: str) -> Level | None:
        levels = self.side(side)
        if not levels:
            return None
        price = max(levels)
        return price, levels[price]

    def best_ask(self, side: str) -> Level | None:
        best = self.best_bid(_other(side))
        return None if best is None else (MICROS_PER_DOLLAR - best[0], best[1])

    def spread(self, side: str = YES) -> int | None:
        """Best ask minus best bid of `side` (negative when the book is crossed)."""
        bid, ask = self.best_bid(side), self.best_ask(side)
        return None if bid is None or ask is None else ask[0] - bid[0]

    def copy(self) -> OrderBook:
        return OrderBook(dict(self.yes), dict(self.no))


@dataclass(frozen=True)
class SnapshotRef:
    """Which stored snapshot a reconstruction started from."""

    source: str  # ws | resync | rest
    gatherer: str
    connection_id: str
    sid: int
    seq: int
    received_at: datetime
    received_ns: int
    exchange_ts: datetime | None


@dataclass(frozen=True)
class GapRef:
    """A `sequence_gaps` row on the replayed stream between the base snapshot and T."""

    connection_id: str
    sid: int
    expected_seq: int
    got_seq: int
    detected_at: datetime
    recovered_at: datetime | None
    recovery: str | None


@dataclass(frozen=True)
class Inconsistency:
    """A delta that would have left a negative size; the level was removed instead."""

    seq: int
    received_at: datetime
    side: str
    price: int
    size_before: int
    delta: int


@dataclass
class ReconstructedBook:
    """`book_at`'s answer: the book plus where it came from and how far to trust it."""

    ticker: str
    at: datetime
    book: OrderBook
    snapshot: SnapshotRef
    stream: SnapshotRef | None  # the WS snapshot whose (connection, sid) deltas were replayed
    deltas_applied: int = 0
    last_seq: int | None = None
    last_delta_at: datetime | None = None
    duplicate_deltas: int = 0
    inconsistencies: list[Inconsistency] = field(default_factory=list)
    gaps: list[GapRef] = field(default_factory=list)
    stream_closed_at: datetime | None = None
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """False when the book at T may be wrong (gap, inconsistency, ended stream, race)."""
        return not self.warnings


_SNAPSHOT_COLUMNS = (
    "source, gatherer, connection_id, sid, seq, received_at, received_ns, exchange_ts, "
    "yes_prices, yes_sizes, no_prices, no_sizes"
)


@dataclass(frozen=True)
class _Snapshot:
    ref: SnapshotRef
    yes: tuple[Level, ...]
    no: tuple[Level, ...]


def _snapshot(row: tuple[Any, ...]) -> _Snapshot:
    source, gatherer, conn, sid, seq, received_at, received_ns, exchange_ts = row[:8]
    yes_prices, yes_sizes, no_prices, no_sizes = row[8:12]
    return _Snapshot(
        SnapshotRef(source, gatherer, conn, sid, seq, received_at, received_ns, exchange_ts),
        tuple(zip(yes_prices, yes_sizes, strict=True)),
        tuple(zip(no_prices, no_sizes, strict=True)),
    )


def _latest_snapshot(
    cur: Any,
    ticker: str,
    at: datetime,
    sources: tuple[str, ...],
    gatherer: str | None,
    after: SnapshotRef | None = None,
) -> _Snapshot | None:
    """Newest snapshot of `ticker` from `sources` at or before `at` (index: market, time DESC)."""
    where = ["market_ticker = %(ticker)s", "received_at <= %(at)s", "source = ANY(%(sources)s)"]
    params: dict[str, Any] = {"ticker": ticker, "at": at, "sources": list(sources)}
    if gatherer is not None:
        where.append("gatherer = %(gatherer)s")
        params["gatherer"] = gatherer
    if after is not None:
        where += ["received_at >= %(after_at)s", "received_ns > %(after_ns)s"]
        params.update(after_at=after.received_at, after_ns=after.received_ns)
    cur.execute(
        f"SELECT {_SNAPSHOT_COLUMNS} FROM orderbook_snapshots WHERE {' AND '.join(where)} "
        "ORDER BY received_at DESC, received_ns DESC, seq DESC LIMIT 1",
        params,
    )
    row = cur.fetchone()
    return None if row is None else _snapshot(row)


def _gaps(
    cur: Any, ticker: str, stream: SnapshotRef, after: datetime | None, until: datetime
) -> list[GapRef]:
    """Gaps of the stream's (gatherer, connection, sid) that can affect `ticker` after its
    snapshot: messages after the snapshot's seq are missing, detected in (after, until].

    A gap row with no markets listed is sid-wide (per-sid seq spans markets, so the listener
    cannot always tell which market lost a message).
    """
    params: dict[str, Any] = {
        "gatherer": stream.gatherer,
        "conn": stream.connection_id,
        "sid": stream.sid,
        "seq": stream.seq,
        "ticker": ticker,
        "until": until,
    }
    where = ""
    if after is not None:
        where = "AND detected_at > %(after)s"
        params["after"] = after
    cur.execute(
        "SELECT connection_id, sid, expected_seq, got_seq, detected_at, recovered_at, recovery "
        "FROM sequence_gaps WHERE gatherer = %(gatherer)s AND connection_id = %(conn)s "
        "AND sid = %(sid)s AND expected_seq > %(seq)s AND detected_at <= %(until)s "
        "AND (cardinality(market_tickers) = 0 OR %(ticker)s = ANY(market_tickers)) "
        f"{where} ORDER BY expected_seq",
        params,
    )
    return [GapRef(*row) for row in cur.fetchall()]


def _closed_at(cur: Any, stream: SnapshotRef) -> datetime | None:
    cur.execute(
        "SELECT closed_at FROM connection_sessions WHERE gatherer = %s AND connection_id = %s",
        (stream.gatherer, stream.connection_id),
    )
    row = cur.fetchone()
    return None if row is None else row[0]


def _no_book(cur: Any, ticker: str, at: datetime, gatherer: str | None) -> BookUnavailable:
    """The precise reason nothing could be built: unknown market, or T before its first book."""
    scope = "" if gatherer is None else " AND gatherer = %(gatherer)s"
    params = {"ticker": ticker, "gatherer": gatherer}
    cur.execute(
        "SELECT received_at FROM orderbook_snapshots WHERE market_ticker = %(ticker)s"
        f"{scope} ORDER BY received_at LIMIT 1",
        params,
    )
    first = cur.fetchone()
    by = "" if gatherer is None else f" from gatherer {gatherer}"
    if first is not None:
        return NoSnapshot(
            f"no order book snapshot of {ticker}{by} at or before {at.isoformat()}; "
            f"the first is at {first[0].isoformat()}",
            first[0],
        )
    cur.execute(
        f"SELECT 1 FROM orderbook_deltas WHERE market_ticker = %(ticker)s{scope} LIMIT 1",
        params,
    )
    if cur.fetchone() is not None:
        return NoSnapshot(f"no order book snapshot of {ticker}{by} (only deltas)", None)
    cur.execute("SELECT 1 FROM markets WHERE ticker = %s", (ticker,))
    if cur.fetchone() is not None:
        return NoSnapshot(f"no order book of {ticker}{by} has been captured", None)
    return UnknownMarket(f"unknown market {ticker}: no order book data{by}")


def _deltas(
    conn: psycopg2.extensions.connection,
    ticker: str,
    stream: SnapshotRef,
    base: SnapshotRef,
    at: datetime,
) -> Iterator[tuple[int, int, datetime, str, int, int]]:
    """(seq, received_ns, received_at, side, price, delta) of the stream after `base`, by seq.

    Only the stream's own (gatherer, connection, sid) and only seq after the stream snapshot;
    the time range keeps the scan on the (market_ticker, received_at) index.
    """
    params: dict[str, Any] = {
        "ticker": ticker,
        "from": base.received_at,
        "from_ns": base.received_ns,
        "at": at,
        "gatherer": stream.gatherer,
        "conn": stream.connection_id,
        "sid": stream.sid,
        "seq": stream.seq,
    }
    query = (
        "SELECT seq, received_ns, received_at, side, price, delta FROM orderbook_deltas "
        "WHERE market_ticker = %(ticker)s AND received_at >= %(from)s AND received_at <= %(at)s "
        "AND gatherer = %(gatherer)s AND connection_id = %(conn)s AND sid = %(sid)s "
        "AND seq > %(seq)s"
    )
    if base.source == REST_SOURCE:
        query += " AND received_ns > %(from_ns)s"
    query += " ORDER BY seq, received_ns"
    # A server-side cursor streams long runs; it needs a transaction (not autocommit).
    if conn.autocommit:
        with conn.cursor() as cur:
            cur.execute(query, params)
            yield from cur
        return
    with conn.cursor(name="kd_book_deltas") as cur:
        cur.itersize = _DELTA_FETCH
        cur.execute(query, params)
        yield from cur


def _choose_base(
    cur: Any, ticker: str, at: datetime, gatherer: str | None
) -> tuple[_Snapshot, _Snapshot | None, list[str]]:
    """(base snapshot, WS stream snapshot whose deltas to replay, notes).

    The newest WS/resync snapshot at or before T is the base. A newer REST snapshot replaces it
    only when that stream cannot be trusted up to the REST instant (a gap detected, or its
    connection closed, at or before the REST snapshot) or there is no WS snapshot at all: REST
    books are taken at an instant unrelated to the stream's seq, so otherwise they are
    independent checks (DESIGN §5), not bases.
    """
    ws = _latest_snapshot(cur, ticker, at, STREAM_SOURCES, gatherer)
    rest = _latest_snapshot(cur, ticker, at, (REST_SOURCE,), gatherer, after=ws.ref if ws else None)
    if ws is None and rest is None:
        raise _no_book(cur, ticker, at, gatherer)
    if rest is None:
        assert ws is not None
        return ws, ws, []
    if ws is None:
        return rest, None, []
    when = rest.ref.received_at
    broken = _gaps(cur, ticker, ws.ref, None, when)
    closed = _closed_at(cur, ws.ref)
    if broken or (closed is not None and closed <= when):
        why = (
            f"a sequence gap at seq {broken[0].expected_seq}" if broken else "its connection closed"
        )
        return rest, ws, [f"REST snapshot used as base: the WS stream had {why} before it"]
    note = (
        f"newer REST snapshot at {when.isoformat()} not used as base: the WS stream is intact "
        "(REST snapshots are independent checks)"
    )
    return ws, ws, [note]


def _replay(
    conn: psycopg2.extensions.connection,
    result: ReconstructedBook,
    stream: _Snapshot,
) -> None:
    base, book = result.snapshot, result.book
    previous: int | None = None
    for seq, _ns, received_at, side, price, delta in _deltas(
        conn, result.ticker, stream.ref, base, result.at
    ):
        if seq == previous:
            # Same seq = the same exchange message delivered twice; apply it once.
            result.duplicate_deltas += 1
            continue
        previous = seq
        try:
            book.apply_delta(side, price, delta)
        except NegativeLevel as exc:
            result.inconsistencies.append(
                Inconsistency(seq, received_at, side, price, exc.size, delta)
            )
            book.remove_level(side, price)
        result.deltas_applied += 1
        result.last_seq, result.last_delta_at = seq, received_at


def _assess(cur: Any, result: ReconstructedBook) -> None:
    """Warnings: unrecovered gaps crossed, negative levels, ended stream, REST race."""
    stream, base = result.stream, result.snapshot
    if result.inconsistencies:
        first = result.inconsistencies[0]
        result.warnings.append(
            f"{len(result.inconsistencies)} delta(s) would have made a level negative "
            f"(first: seq {first.seq}, {first.side} {first.price} micro-dollars, "
            f"size {first.size_before}, delta {first.delta}); those levels were removed"
        )
    if result.duplicate_deltas:
        result.notes.append(f"{result.duplicate_deltas} repeated delta(s) (same seq) ignored")
    if stream is None:
        return
    after = base.received_at if base.source == REST_SOURCE else None
    result.gaps = _gaps(cur, result.ticker, stream, after, result.at)
    for gap in result.gaps:
        recovered = (
            f", recovered at {gap.recovered_at.isoformat()} by {gap.recovery or 'unknown'}"
            if gap.recovered_at is not None
            else ", not recovered"
        )
        result.warnings.append(
            f"sequence gap on connection {gap.connection_id} sid {gap.sid}: expected seq "
            f"{gap.expected_seq}, got {gap.got_seq} at {gap.detected_at.isoformat()}{recovered}; "
            "no newer snapshot before T, so the book may be incomplete"
        )
    closed = _closed_at(cur, stream)
    if closed is not None and closed <= result.at:
        result.stream_closed_at = closed
        if base.source != REST_SOURCE or closed > base.received_at:
            result.warnings.append(
                f"connection {stream.connection_id} closed at {closed.isoformat()} and no newer "
                "snapshot exists before T: the book is as of its last delta and may be stale"
            )
    if base.source == REST_SOURCE and result.deltas_applied:
        result.warnings.append(
            "REST base: deltas received shortly after the REST response may already be "
            "included in it (REST has no seq to align with the stream)"
        )


def book_at(
    conn_or_url: Any, ticker: str, at: datetime, *, gatherer: str | None = None
) -> ReconstructedBook:
    """The order book of `ticker` as it stood at `at` (tz-aware), from the stored rows.

    `conn_or_url` is a database URL (a connection is opened and closed here) or a psycopg2 /
    SQLAlchemy connection (used in its transaction, never committed). `gatherer` restricts the
    reconstruction to one gatherer's rows. Raises `UnknownMarket` / `NoSnapshot` when no book
    can be built, `app.db.engine.DatabaseUnavailable` when a URL cannot be reached.
    """
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("at must be a timezone-aware datetime")
    if isinstance(conn_or_url, str):
        conn = connect(conn_or_url)
        try:
            return _book_at(conn, ticker, at, gatherer)
        finally:
            conn.rollback()
            conn.close()
    return _book_at(dbapi_connection(conn_or_url), ticker, at, gatherer)


def _book_at(
    conn: psycopg2.extensions.connection, ticker: str, at: datetime, gatherer: str | None
) -> ReconstructedBook:
    with conn.cursor() as cur:
        base, stream, notes = _choose_base(cur, ticker, at, gatherer)
    result = ReconstructedBook(
        ticker=ticker,
        at=at,
        book=OrderBook.from_levels(base.yes, base.no),
        snapshot=base.ref,
        stream=stream.ref if stream is not None else None,
        notes=notes,
    )
    if stream is not None:
        _replay(conn, result, stream)
    with conn.cursor() as cur:
        _assess(cur, result)
    return result
