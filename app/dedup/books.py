"""Order books into production: the chain of `app.dedup.chain`, read from and copied out of the
gatherer databases, one time window per production transaction (DESIGN §5).

A window [since, until) is taken once `until` is `dedup.book_lateness_s` in the past: by then
every live gatherer has stored what it received (and a successor has recorded a dead
listener's holes), and a dead gatherer does not stall production. The window's end is kept in
`dedup_cursors` (gatherer `*`, table `orderbook`, `window_end`) and moved in the transaction
that copies the window's rows, so a crash repeats nothing and a rerun inserts nothing
(every copy is `ON CONFLICT DO NOTHING` on the tables' keys).

What a gatherer tells about a stream's wholeness, per market: its capture holes on the
`orderbook_delta` channel (docs/holes.md), its connection's close, and its last stored row: a
stream silent for `dedup.stream_silence_s` with its session still open belongs to a listener
that died without a successor yet, so it is whole only up to that row.
"""

from __future__ import annotations

import io
import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from psycopg2 import sql

from app.db.copy import copy_idempotent
from app.db.engine import dbapi_connection
from app.db.tables import ORDERBOOK_DELTAS, ORDERBOOK_SNAPSHOTS, TableSpec
from app.dedup.chain import TICK, Base, Chain, Piece, StreamKey, choose_pieces

log = logging.getLogger("kalshi_data.dedup")

CURSOR_GATHERER = "*"
PRODUCTION = "*"  # the `gatherer` of production's own holes
GAP_CAUSE = "no_whole_stream"
CURSOR_TABLE = "orderbook"
BOOK_CHANNEL = "orderbook_delta"
_STREAM_SOURCES = "source IN ('ws', 'resync')"


# Causes that end a connection without losing what it delivered: its frames arrived in order
# up to the close, so its stream is whole up to its last stored row, even where the hole
# starts earlier (a hole's start may lead the last delivery, docs/holes.md). A dead listener
# (`listener_died`) may have stored later frames of a batch but not earlier ones: no such rule.
CONNECTION_ENDS = frozenset({"disconnect", "listener_down"})


@dataclass(frozen=True, slots=True)
class _Hole:
    markets: frozenset[str] | None
    from_at: datetime
    to_at: datetime | None
    cause: str = ""
    connection_id: str | None = None

    def breaks(self, market: str, after: datetime) -> datetime | None:
        """Where this hole ends a stream of `market` whose snapshot was taken at `after`.

        A hole that began before the snapshot is over for the market by then: a book hole
        ends, for each market, at the market's next snapshot (docs/holes.md), and this is one.
        Except a journal loss: frames lost in the middle of a stretch, snapshots or not."""
        if self.markets is not None and market not in self.markets:
            return None
        if self.from_at < after:
            if self.cause == "journal_loss" and (self.to_at is None or self.to_at > after):
                return after
            return None
        return self.from_at


@dataclass
class SourceView:
    """What one gatherer database says about the window's streams."""

    name: str
    conn: Any
    bases: list[tuple[str, StreamKey, int, datetime, int]] = field(default_factory=list)
    holes: dict[str, list[_Hole]] = field(default_factory=lambda: defaultdict(list))
    closed: dict[str, datetime | None] = field(default_factory=dict)
    last_row: dict[tuple[str, int], datetime] = field(default_factory=dict)
    gatherers: set[str] = field(default_factory=set)  # the `gatherer` values of its rows


@dataclass
class BookWindow:
    """One window's outcome: rows copied per table, and per market its chain."""

    since: datetime
    until: datetime
    inserted: dict[str, int] = field(default_factory=dict)
    read: dict[str, int] = field(default_factory=dict)
    chains: dict[str, Chain] = field(default_factory=dict)

    @property
    def gaps(self) -> dict[str, list[tuple[datetime, datetime]]]:
        return {m: c.gaps for m, c in self.chains.items() if c.gaps}


# -- the cursor ---------------------------------------------------------------------------


def load_book_cursor(production: Any) -> datetime | None:
    """Where the last window ended (locked for this transaction), None before the first."""
    with dbapi_connection(production).cursor() as cur:
        cur.execute(
            "INSERT INTO dedup_cursors (gatherer, table_name) VALUES (%s, %s) "
            "ON CONFLICT (gatherer, table_name) DO NOTHING",
            (CURSOR_GATHERER, CURSOR_TABLE),
        )
        cur.execute(
            "SELECT window_end FROM dedup_cursors WHERE gatherer = %s AND table_name = %s "
            "FOR UPDATE",
            (CURSOR_GATHERER, CURSOR_TABLE),
        )
        (end,) = cur.fetchone()
    return end


def save_book_cursor(production: Any, until: datetime) -> None:
    with dbapi_connection(production).cursor() as cur:
        cur.execute(
            "UPDATE dedup_cursors SET window_end = %s, updated_at = now() "
            "WHERE gatherer = %s AND table_name = %s",
            (until, CURSOR_GATHERER, CURSOR_TABLE),
        )


def first_book_time(conn: Any) -> datetime | None:
    """The oldest stream snapshot a gatherer holds: where the first window starts."""
    with dbapi_connection(conn).cursor() as cur:
        cur.execute(f"SELECT min(received_at) FROM orderbook_snapshots WHERE {_STREAM_SOURCES}")
        (first,) = cur.fetchone()
    return first


def next_book_time(conn: Any, since: datetime) -> datetime | None:
    """The first stream row a gatherer received at or after `since`: a window starting in a
    quiet stretch is stretched to reach it, so idle hours cost one window, not hundreds."""
    with dbapi_connection(conn).cursor() as cur:
        cur.execute(
            "SELECT least((SELECT min(received_at) FROM orderbook_snapshots "
            "WHERE received_at >= %(s)s), (SELECT min(received_at) FROM orderbook_deltas "
            "WHERE received_at >= %(s)s))",
            {"s": since},
        )
        (first,) = cur.fetchone()
    return first


# -- reading a gatherer -------------------------------------------------------------------


def read_source(
    name: str, conn: Any, since: datetime, until: datetime, silence: timedelta
) -> SourceView:
    """The window's candidate snapshots (and each market's newest before it), holes, session
    closes and last rows of one gatherer database."""
    view = SourceView(name, conn)
    with dbapi_connection(conn).cursor() as cur:
        cur.execute(
            "WITH markets AS ("
            "SELECT market_ticker FROM orderbook_snapshots WHERE received_at >= %(s)s "
            f"AND received_at < %(u)s AND {_STREAM_SOURCES} UNION "
            "SELECT market_ticker FROM orderbook_deltas WHERE received_at >= %(s)s "
            "AND received_at < %(u)s) "
            "SELECT gatherer, market_ticker, connection_id, sid, seq, received_at, received_ns "
            f"FROM orderbook_snapshots WHERE {_STREAM_SOURCES} AND received_at >= %(s)s "
            "AND received_at < %(u)s UNION ALL "
            "(SELECT DISTINCT ON (o.gatherer, o.market_ticker) o.gatherer, o.market_ticker, "
            "o.connection_id, o.sid, o.seq, o.received_at, o.received_ns "
            "FROM orderbook_snapshots o JOIN markets m USING (market_ticker) "
            f"WHERE o.{_STREAM_SOURCES} AND o.received_at < %(s)s "
            "ORDER BY o.gatherer, o.market_ticker, o.received_at DESC, o.received_ns DESC, "
            "o.seq DESC)",
            {"s": since, "u": until},
        )
        for gatherer, market, conn_id, sid, seq, at, at_ns in cur.fetchall():
            view.bases.append((market, StreamKey(gatherer, conn_id, sid), seq, at, at_ns))
            view.gatherers.add(gatherer)
        oldest = min((b[3] for b in view.bases), default=since)
        cur.execute(
            "SELECT gatherer, market_tickers, from_at, to_at, cause, connection_id "
            "FROM capture_holes "
            "WHERE channel = %s AND from_at < %s AND (to_at IS NULL OR to_at > %s)",
            (BOOK_CHANNEL, until, oldest),
        )
        for gatherer, markets, from_at, to_at, cause, conn_id in cur.fetchall():
            named = None if markets is None else frozenset(markets)
            view.holes[gatherer].append(_Hole(named, from_at, to_at, cause, conn_id))
        conns = sorted({b[1].connection_id for b in view.bases})
        cur.execute(
            "SELECT connection_id, closed_at FROM connection_sessions "
            "WHERE connection_id = ANY(%s)",
            (conns,),
        )
        view.closed = dict(cur.fetchall())
        cur.execute(
            "SELECT connection_id, sid, max(received_at) FROM ("
            "SELECT connection_id, sid, received_at FROM orderbook_deltas "
            "WHERE received_at >= %(lo)s AND received_at < %(u)s UNION ALL "
            "SELECT connection_id, sid, received_at FROM orderbook_snapshots "
            "WHERE received_at >= %(lo)s AND received_at < %(u)s) r GROUP BY 1, 2",
            {"lo": since - silence, "u": until},
        )
        view.last_row = {(c, s): at for c, s, at in cur.fetchall()}
    return view


def stream_end(
    view: SourceView,
    market: str,
    stream: StreamKey,
    after: datetime,
    until: datetime,
    silence: timedelta,
) -> datetime:
    """The last instant (inclusive) the stream is whole for `market`, from `after` on;
    `until` when nothing ends it in the window."""
    end = until
    last = view.last_row.get((stream.connection_id, stream.sid), after)
    for hole in view.holes.get(stream.gatherer, ()):
        broken = hole.breaks(market, after)
        if broken is None:
            continue
        if hole.cause in CONNECTION_ENDS:
            if hole.connection_id not in (None, stream.connection_id):
                continue  # another connection of this gatherer closed
            broken = max(broken, last)
        end = min(end, broken)
    closed = view.closed.get(stream.connection_id)
    if closed is not None:
        end = min(end, max(closed, after))
    elif until - last > silence:
        end = min(end, max(last, after))
    return end


# -- the window ---------------------------------------------------------------------------


def stored_pieces(production: Any, markets: list[str], since: datetime) -> dict[str, tuple]:
    """Per market, the newest stream snapshot production holds before the window."""
    with dbapi_connection(production).cursor() as cur:
        cur.execute(
            "SELECT DISTINCT ON (market_ticker) market_ticker, gatherer, connection_id, sid, seq, "
            f"received_at, received_ns FROM orderbook_snapshots WHERE {_STREAM_SOURCES} "
            "AND market_ticker = ANY(%s) AND received_at < %s "
            "ORDER BY market_ticker, received_at DESC, received_ns DESC, seq DESC",
            (markets, since),
        )
        return {row[0]: row[1:] for row in cur.fetchall()}


def plan_window(
    production: Any,
    views: list[SourceView],
    since: datetime,
    until: datetime,
    silence: timedelta,
) -> BookWindow:
    """Every market's chain over [since, until)."""
    window = BookWindow(since, until)
    owner = {g: v for v in views for g in v.gatherers}
    candidates: dict[str, list[Base]] = defaultdict(list)
    for view in views:
        for market, stream, seq, at, at_ns in view.bases:
            end = stream_end(view, market, stream, at, until, silence)
            if at < since and end < since:  # a standing base whose stream broke before
                end = at - TICK
            candidates[market].append(Base(market, stream, seq, at, at_ns, end))
    markets = sorted(candidates)
    stored = stored_pieces(production, markets, since)
    for market in markets:
        current = None
        found = stored.get(market)
        if found is not None:
            gatherer, conn_id, sid, seq, at, at_ns = found
            stream = StreamKey(gatherer, conn_id, sid)
            source = owner.get(gatherer)
            # A stream whose gatherer cannot be read this time is taken as broken before it.
            end = (
                stream_end(source, market, stream, at, until, silence)
                if source is not None
                else since - TICK
            )
            current = Base(market, stream, seq, at, at_ns, end, stored=True)
        window.chains[market] = choose_pieces(current, candidates[market], since, until)
    return window


def _pieces_query(spec: TableSpec, snapshots: bool) -> sql.Composable:
    cols = sql.SQL(", ").join(sql.Identifier("d", c) for c in spec.columns)
    seq = "d.seq >= p.q" if snapshots else "d.seq > p.q"
    extra = f" AND d.{_STREAM_SOURCES}" if snapshots else ""
    return sql.SQL(
        "SELECT {cols} FROM {table} d JOIN unnest(%s::text[], %s::text[], %s::text[], "
        "%s::bigint[], %s::bigint[], %s::timestamptz[], %s::timestamptz[]) "
        "AS p(g, m, c, s, q, lo, hi) ON d.gatherer = p.g AND d.market_ticker = p.m "
        "AND d.connection_id = p.c AND d.sid = p.s AND {seq} AND d.received_at >= p.lo "
        "AND d.received_at < p.hi{extra} "
        # The pieces' overall span as constants: partitions outside it are pruned, and the
        # received_at BRIN index (alembic 0007) narrows the scan to the window.
        "WHERE d.received_at >= %s AND d.received_at < %s"
    ).format(cols=cols, table=sql.Identifier(spec.name), seq=sql.SQL(seq), extra=sql.SQL(extra))


def _piece_arrays(pieces: list[Piece], since: datetime) -> tuple[Any, ...]:
    rows = []
    for piece in pieces:
        base = piece.base
        low = max(base.at, since) if base.stored else base.at
        if low < piece.stop:
            s = base.stream
            rows.append((s.gatherer, base.market, s.connection_id, s.sid, base.seq, low,
                         piece.stop))  # fmt: skip
    if not rows:
        return ()
    columns = [list(column) for column in zip(*rows, strict=True)]
    return (*columns, min(columns[5]), max(columns[6]))


def copy_window(production: Any, views: list[SourceView], window: BookWindow) -> None:
    """Copy every piece's rows from its gatherer into production (the caller's transaction)."""
    by_view: dict[str, list[Piece]] = defaultdict(list)
    owner = {g: v.name for v in views for g in v.gatherers}
    for chain in window.chains.values():
        for piece in chain.pieces:
            name = owner.get(piece.base.stream.gatherer)
            if name is not None:
                by_view[name].append(piece)
    for view in views:
        arrays = _piece_arrays(by_view.get(view.name, []), window.since)
        if not arrays:
            continue
        for spec, snapshots in ((ORDERBOOK_SNAPSHOTS, True), (ORDERBOOK_DELTAS, False)):
            payload = _copy_out(view.conn, _pieces_query(spec, snapshots), arrays)
            rows = payload.count(b"\n")
            window.read[spec.name] = window.read.get(spec.name, 0) + rows
            if rows:
                added = _copy_in(production, spec, payload)
                window.inserted[spec.name] = window.inserted.get(spec.name, 0) + added


def _copy_out(conn: Any, query: sql.Composable, arrays: tuple[Any, ...]) -> bytes:
    """The pieces' rows as COPY text. One pass over the window joined by hash with the pieces:
    probing an index once per piece is quadratic when the planner picks the key index of a
    whole stream (it does on a fresh partition not yet analyzed: 4 s instead of 0.1 s for
    100,000 deltas of 200 markets)."""
    out = io.BytesIO()
    with dbapi_connection(conn).cursor() as cur:
        text = cur.mogrify(query.as_string(cur), arrays).decode()
        cur.execute("SET enable_nestloop = off")
        try:
            cur.copy_expert(f"COPY ({text}) TO STDOUT", out)
        finally:
            cur.execute("RESET enable_nestloop")
    return out.getvalue()


def _copy_in(production: Any, spec: TableSpec, payload: bytes) -> int:
    """The ingest write path (`app.db.copy.copy_idempotent`): a direct COPY, and the staged
    `ON CONFLICT DO NOTHING` insert only when a row is already there (a window repeated, or a
    piece starting at a snapshot copied before)."""
    return copy_idempotent(production, spec, spec.columns, lambda: io.BytesIO(payload))


def record_gaps(production: Any, window: BookWindow) -> None:
    """Production's own book holes (gatherer `*`, cause `no_whole_stream`, alembic 0007): the
    chain's gaps, so `verify` and readers see where production's book is not the exchange's.
    A gap's id is derived from its market and start, so a repeated window records it once."""
    rows = [
        (str(uuid.uuid5(uuid.NAMESPACE_URL, f"kd-gap:{market}:{low.isoformat()}")), market,
         low, high)
        for market, gaps in window.gaps.items()
        for low, high in gaps
    ]  # fmt: skip
    if not rows:
        return
    with dbapi_connection(production).cursor() as cur:
        cur.executemany(
            "INSERT INTO capture_holes (gatherer, hole_id, channel, market_tickers, cause, "
            "from_at, to_at, detail) VALUES (%s, %s, %s, ARRAY[%s], %s, %s, %s, %s) "
            "ON CONFLICT (gatherer, hole_id) DO NOTHING",
            [
                (PRODUCTION, hole_id, BOOK_CHANNEL, market, GAP_CAUSE, low, high,
                 "no gatherer held a whole stream of this market's book")
                for hole_id, market, low, high in rows
            ],
        )  # fmt: skip
