"""Production coverage: per (market, hour), what production holds after merging every gatherer
(DESIGN §4 `coverage`, §5 "mark windows no gatherer covers as missing").

A stretch is lost in production only where *every* gatherer read lost it: per channel, the
intersection of the gatherers' lost intervals (their capture holes, trade holes backfilled from
REST given back, as in `app.coverage.status`); for order books also every gap of the chain
(`app.dedup.chain`), which can be longer, since the chain moves only at snapshots. Then, as for
one gatherer: `missing` when some channel lost the whole (market's part of the) hour,
`degraded` when anything was lost, `complete` otherwise.

Each book window updates the rows of the hours it touches; a window covers part of an hour, so
a row combines with the one already stored: missing only if every part was missing, complete
only if every part was complete, gap counts add up, contributing gatherers (those that lost
nothing there) are intersected and book sources united.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from app.coverage.intervals import clip_intervals, covers, subtract_intervals, union_intervals
from app.coverage.status import CAPTURED_CHANNELS, Hole, Status, Window, lost_intervals
from app.db.engine import dbapi_connection
from app.dedup.books import BOOK_CHANNEL, BookWindow, SourceView

HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class CoveragePart:
    """One market's part of one hour inside one window."""

    market: str
    hour: datetime
    status: Status
    gatherers: tuple[str, ...]  # gatherers that lost nothing of it
    book_sources: tuple[str, ...]  # gatherers production's book took rows from
    gaps: int


def _intersect(a: list[Window], b: list[Window]) -> list[Window]:
    return subtract_intervals(a, subtract_intervals(a, b))


def read_holes(conn: Any, since: datetime, until: datetime) -> list[tuple[str, Hole]]:
    """Every hole of a gatherer database touching [since, until), with its gatherer."""
    with dbapi_connection(conn).cursor() as cur:
        cur.execute(
            "SELECT gatherer, hole_id, channel, cause, from_at, to_at, backfill_status, "
            "market_tickers FROM capture_holes WHERE from_at < %s "
            "AND (to_at IS NULL OR to_at >= %s)",
            (until, since),
        )
        return [
            (g, Hole(h, ch, cause, f.astimezone(UTC), None if t is None else t.astimezone(UTC),
                     bf, None if m is None else frozenset(m)))
            for g, h, ch, cause, f, t, bf, m in cur.fetchall()
        ]  # fmt: skip


def open_markets(
    conns: Iterable[Any], since: datetime, until: datetime
) -> dict[str, tuple[datetime | None, datetime | None]]:
    """Markets any gatherer's registry has open in [since, until): (open, close) times."""
    found: dict[str, tuple[datetime | None, datetime | None]] = {}
    for conn in conns:
        with dbapi_connection(conn).cursor() as cur:
            cur.execute(
                "SELECT ticker, open_time, close_time FROM markets "
                "WHERE (open_time IS NULL OR open_time < %s) "
                "AND (close_time IS NULL OR close_time > %s)",
                (until, since),
            )
            for ticker, opened, closed in cur.fetchall():
                found.setdefault(ticker, (opened, closed))
    return found


def _hours(low: datetime, high: datetime) -> list[datetime]:
    hour = low.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    out = []
    while hour < high:
        out.append(hour)
        hour += HOUR
    return out


def window_parts(
    views: list[SourceView],
    window: BookWindow,
    holes: dict[str, list[tuple[str, Hole]]],
    markets: dict[str, tuple[datetime | None, datetime | None]],
) -> list[CoveragePart]:
    """Coverage of every market open in the window (or with book rows in it), per hour."""
    since, until = window.since, window.until
    parts = []
    for market in sorted(set(markets) | set(window.chains)):
        opened, closed = markets.get(market, (None, None))
        low = max(since, opened) if opened is not None else since
        high = min(until, closed) if closed is not None else until
        chain = window.chains.get(market)
        for hour in _hours(low, high):
            part = (max(low, hour), min(high, hour + HOUR))
            if part[0] >= part[1]:
                continue
            parts.append(_part(views, holes, market, hour, part, chain, until))
    return parts


def _part(
    views: list[SourceView],
    holes: dict[str, list[tuple[str, Hole]]],
    market: str,
    hour: datetime,
    part: Window,
    chain: Any,
    now: datetime,
) -> CoveragePart:
    complete_in: list[str] = []
    lost: dict[str, list[Window] | None] = dict.fromkeys(CAPTURED_CHANNELS)
    for view in views:
        own = [h for _, h in holes.get(view.name, ()) if h.applies_to(market)]
        touched = False
        for channel in CAPTURED_CHANNELS:
            mine = lost_intervals(channel, own, part, now)
            touched = touched or bool(mine)
            before = lost[channel]
            lost[channel] = mine if before is None else _intersect(before, mine)
        if not touched:
            complete_in.append(view.name)
    if chain is not None:
        # The chain already weighed every gatherer's holes per market (a book hole ends for a
        # market at its next snapshot); after its last piece, production has no book yet.
        gaps = list(chain.gaps)
        if chain.pieces and chain.pieces[-1].stop < part[1]:
            gaps.append((chain.pieces[-1].stop, part[1]))
        lost[BOOK_CHANNEL] = union_intervals(clip_intervals(gaps, part))
    spans = [spans for spans in lost.values() if spans]
    status: Status = "complete"
    if any(covers(s, part) for s in spans):
        status = "missing"
    elif spans:
        status = "degraded"
    sources = sorted(
        {
            p.base.stream.gatherer
            for p in (chain.pieces if chain is not None else [])
            if p.base.at < part[1] and p.stop > part[0]
        }
    )
    return CoveragePart(
        market, hour, status, tuple(complete_in), tuple(sources), sum(len(s) for s in spans)
    )


_UPSERT = """
INSERT INTO coverage AS c (market_ticker, hour, status, gatherers, book_source, gap_count,
    reconciliation, updated_at)
SELECT m, h, s, g, NULLIF(b, ''), n, 'not_checked', now()
FROM unnest(%s::text[], %s::timestamptz[], %s::text[], %s::text[], %s::text[], %s::int[])
    AS v(m, h, s, gs, b, n), LATERAL (SELECT string_to_array(gs, ',') AS g) x
ON CONFLICT (market_ticker, hour) DO UPDATE SET
    status = CASE
        WHEN c.status = EXCLUDED.status THEN c.status
        ELSE 'degraded' END,
    gatherers = ARRAY(SELECT unnest(c.gatherers) INTERSECT SELECT unnest(EXCLUDED.gatherers)
                      ORDER BY 1),
    book_source = NULLIF(array_to_string(ARRAY(
        SELECT DISTINCT unnest(string_to_array(coalesce(c.book_source, '') || ','
                                              || coalesce(EXCLUDED.book_source, ''), ','))
        EXCEPT SELECT '' ORDER BY 1), ','), ''),
    gap_count = c.gap_count + EXCLUDED.gap_count,
    updated_at = now()
"""


def store_parts(production: Any, parts: list[CoveragePart]) -> None:
    """Combine the parts into production's `coverage` (the caller's transaction)."""
    if not parts:
        return
    with dbapi_connection(production).cursor() as cur:
        cur.execute(
            _UPSERT,
            (
                [p.market for p in parts],
                [p.hour for p in parts],
                [p.status for p in parts],
                [",".join(p.gatherers) for p in parts],
                [",".join(p.book_sources) for p in parts],
                [p.gaps for p in parts],
            ),
        )
