"""Which gatherer's order book stream production takes for one market, and when (DESIGN §5).

Pure: no clock, no database. Order book deltas are never merged by content (two identical deltas
in one instant are legitimate, and delta times are coarse). Instead production holds, for each
market, a *chain* of pieces: a snapshot (subscribe, resubscribe or get_snapshot) of one
gatherer's stream, then that stream's deltas, until the chain moves to another snapshot. The
chain moves only at a snapshot of the stream it moves to, so `book_at` in production (the newest
snapshot at or before T plus the deltas of its own stream) rebuilds the exchange's book at every
instant a piece covers.

A `Base` is a candidate snapshot with `end`: the last instant its stream is known whole for the
market (inclusive; the first capture hole of its gatherer touching the market after it, its
connection's close, or the last row of a stream that went silent). `choose_pieces` follows the
current piece for as long as it is whole, and before it breaks moves to the snapshot (of any
gatherer) taken at or before the break whose stream stays whole the longest; when there is none,
the chain has a gap until the next snapshot. Ties keep the current stream: three healthy
gatherers never make production hop between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

TICK = timedelta(microseconds=1)  # the precision of received_at


@dataclass(frozen=True, slots=True)
class StreamKey:
    """One subscription stream: seqs are only comparable within it (kalshi-api.md §3.6)."""

    gatherer: str
    connection_id: str
    sid: int


@dataclass(frozen=True, slots=True)
class Base:
    """A `ws`/`resync` snapshot of `market` a piece can start from."""

    market: str
    stream: StreamKey
    seq: int
    at: datetime  # received_at
    at_ns: int
    end: datetime  # its stream is whole for the market up to and including this instant
    stored: bool = False  # already in production (the piece the last run ended on)

    @property
    def usable(self) -> bool:
        return self.end >= self.at


@dataclass(frozen=True, slots=True)
class Piece:
    """Copy `base` and its stream's rows of the market received in [base.at, stop)."""

    base: Base
    stop: datetime


@dataclass
class Chain:
    pieces: list[Piece] = field(default_factory=list)
    gaps: list[tuple[datetime, datetime]] = field(default_factory=list)  # no whole stream


def _order(base: Base) -> tuple[datetime, int, int]:
    return (base.at, base.at_ns, base.seq)


def choose_pieces(
    current: Base | None, bases: list[Base], since: datetime, until: datetime
) -> Chain:
    """The pieces covering [since, until) for one market.

    `current` is the piece production already ends on (None for a market new to it); `bases`
    are every gatherer's candidate snapshots: those received in [since, until) and, per
    stream, the newest one before `since` (a stream that has been whole since long ago can
    take over at its old snapshot)."""
    chain = Chain()
    usable = sorted((b for b in bases if b.usable), key=_order)
    if current is None or not current.usable or current.end < since:
        if current is not None:  # the stored piece broke before this range
            first = next((b for b in usable if b.end >= since and b.at <= since), None)
            if first is None:
                later = [b for b in usable if b.at > current.end]
                if not later:
                    return chain  # still no stream: the gap is counted when one resumes
                first = later[0]
                chain.gaps.append((max(current.end + TICK, since), first.at))
            current = first
        else:
            current = usable[0] if usable else None
        if current is None:
            return chain
    while True:
        if current.end + TICK >= until:
            chain.pieces.append(Piece(current, until))
            return chain
        following = [b for b in usable if current.at < b.at <= current.end and b.end > current.end]
        if following:
            # The longest-lasting takes over; among equals the current stream, then the earliest.
            stream = current.stream
            nxt = max(following, key=lambda b: (b.end, b.stream == stream, -b.at.timestamp()))
            chain.pieces.append(Piece(current, nxt.at))
        else:
            chain.pieces.append(Piece(current, current.end + TICK))
            later = [b for b in usable if b.at > current.end]
            if not later:
                # Every stream ended (the fleet stopped, or all lost it) and none resumed yet:
                # the gap is known, and counted, when a snapshot resumes the chain.
                return chain
            nxt = later[0]
            chain.gaps.append((current.end + TICK, nxt.at))
        current = nxt
