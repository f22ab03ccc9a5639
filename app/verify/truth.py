"""The expected side: records of every frame the simulator sent, and the books it showed.

Streams `frames.tsv` (never `load_truth`, which holds every frame in memory) and normalizes each
text frame exactly as the listener's ingest does (`app.normalize.normalize_frame`), so expected
rows are what a perfect capture would store. Frames the simulator never sent (a `skip_seq`
fault's frame lives only in `faults.jsonl`) are not in `frames.tsv` and so are never expected.
Memory: one frame at a time, plus the last seq per (connection, sid) and, per market subscribed
to `orderbook_delta`, its last sent snapshot or the time of its last sent delta.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from app.db.rows import OrderbookDeltaRow, OrderbookSnapshotRow, TradeRow
from app.normalize import FormatVersion, FrameEnvelope, normalize_frame
from app.simulator.recorder import CONNECTIONS_FILE, EXCHANGE_FILE, FRAMES_FILE
from app.simulator.truth import (
    Truth,
    TruthError,
    TruthMeta,
    iter_frames,
    read_meta,
    yes_price_subscriptions,
)
from app.verify.compare import Book
from app.verify.holes import CHANNEL_OF_TYPE, HoleIndex
from app.verify.records import gap_record, record_for, session_record
from app.verify.spill import Tagged

_SEQUENCED = (OrderbookSnapshotRow, OrderbookDeltaRow, TradeRow)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TRUTH_GATHERER = "truth"
# Table-name prefix of the records of a frame sent inside a recorded capture hole: they may be
# missing (compare_records' `optional`). Only this module and run.py use it.
OPTIONAL = "?"


def open_truth(directory: Path) -> TruthMeta:
    """Check that `directory` is a readable truth; raises `TruthError` otherwise."""
    if not directory.is_dir():
        raise TruthError(f"truth directory {directory} does not exist")
    meta = read_meta(directory)
    if not (directory / FRAMES_FILE).exists():
        raise TruthError(f"{directory} has no {FRAMES_FILE} (was the simulator run with --truth?)")
    return meta


def _lines(path: Path) -> Iterator[bytes]:
    if not path.exists():
        return
    with open(path, "rb") as handle:
        for line in handle:
            if line.endswith(b"\n"):
                yield line[:-1]


@dataclass
class TruthScan:
    """One streaming pass over the sent frames. After `records()` is exhausted,
    `book_markets` holds every market that got an `orderbook_snapshot`."""

    directory: Path
    meta: TruthMeta
    connections: Collection[int] | None = None
    book_markets: set[str] = field(default_factory=set)
    frames: int = 0
    # Per market, the last book frame the exchange sent: a snapshot's levels, or the exchange
    # time (ns, end of its millisecond) of the last delta. `seen_books` stops there.
    last_book: dict[str, Book | int] = field(default_factory=dict)
    holes: HoleIndex | None = None
    # Markets whose last sent book frame lies inside a recorded hole.
    books_in_hole: set[str] = field(default_factory=set)

    def _version(self) -> FormatVersion | None:
        # Legacy-format runs are declared legacy (as the listener is configured for them);
        # otherwise the mapper is chosen by capture time, as ingest does.
        return FormatVersion.LEGACY if self.meta.format == "legacy" else None

    def records(self) -> Iterator[Tagged]:
        version = self._version()
        last_seq: dict[tuple[int, int], int] = {}
        # Frames of subscriptions made with `use_yes_price`, and acks that take a seq of their
        # own (the simulator's --ack-consumes-seq): a capture reads both as the listener does.
        yes_price = yes_price_subscriptions(self.directory)
        acks_consume = bool(self.meta.raw.get("ack_consumes_seq"))
        for frame in iter_frames(self.directory):
            if frame.kind != "text":
                continue
            if self.connections is not None and frame.conn not in self.connections:
                continue
            self.frames += 1
            envelope = FrameEnvelope(
                received_ns=frame.send_ns,
                connection_id=f"sim-{frame.conn}",
                batch_pos=0,
                gatherer=_TRUTH_GATHERER,
                yes_price=bool(yes_price) and (frame.conn, _sid_of(frame.text)) in yes_price,
            )
            result = normalize_frame(frame.text, envelope, version=version)
            raw = result.raw_frame
            if acks_consume and raw.msg_type in _ACKS and raw.sid is not None and raw.seq:
                last_seq[(frame.conn, raw.sid)] = raw.seq
            hole = None
            if self.holes:
                channel = CHANNEL_OF_TYPE.get(raw.msg_type or "")
                hole = self.holes.find(channel, raw.market_ticker, frame.send_ns)
            prefix = OPTIONAL if hole is not None else ""
            tagged = record_for(raw)
            if tagged is not None:
                yield prefix + tagged[0], tagged[1]
            if result.dead_letter is not None:
                tagged = record_for(result.dead_letter)
                if tagged is not None:
                    yield prefix + tagged[0], tagged[1]
            for row in result.rows:
                if isinstance(row, _SEQUENCED) and row.sid is not None and row.seq is not None:
                    key = (frame.conn, row.sid)
                    previous = last_seq.get(key)
                    if previous is not None and row.seq <= previous:
                        continue  # the same exchange message again (repeat fault)
                    last_seq[key] = row.seq
                    if previous is not None and row.seq > previous + 1:
                        yield "sequence_gaps", gap_record(row.sid, previous + 1, row.seq)
                if isinstance(row, OrderbookSnapshotRow | OrderbookDeltaRow):
                    if hole is None:
                        self.books_in_hole.discard(row.market_ticker)
                    else:
                        self.books_in_hole.add(row.market_ticker)
                if isinstance(row, OrderbookSnapshotRow):
                    self.book_markets.add(row.market_ticker)
                    self.last_book[row.market_ticker] = {
                        "yes": dict(zip(row.yes_prices, row.yes_sizes, strict=True)),
                        "no": dict(zip(row.no_prices, row.no_sizes, strict=True)),
                    }
                elif isinstance(row, OrderbookDeltaRow) and row.exchange_ts is not None:
                    self.last_book[row.market_ticker] = _end_of_millisecond_ns(row.exchange_ts)
                tagged = record_for(row)
                if tagged is not None:
                    yield prefix + tagged[0], tagged[1]
        for line in _lines(self.directory / CONNECTIONS_FILE):
            event = orjson.loads(line)
            if event.get("event") != "open":
                continue
            if self.connections is not None and event["conn"] not in self.connections:
                continue
            yield "connection_sessions", session_record()


def _exchange_truth(directory: Path, meta: TruthMeta) -> Truth:
    """A `Truth` holding only what `initial_book` needs (no frames, no exchange log)."""
    return Truth.empty(directory, meta, sys.maxsize)


def _end_of_millisecond_ns(stamp: datetime) -> int:
    micros = (stamp - _EPOCH) // timedelta(microseconds=1)
    return (micros // 1000) * 1_000_000 + 999_999


def seen_books(
    directory: Path, meta: TruthMeta, last_book: Mapping[str, Book | int]
) -> Iterator[tuple[str, Book]]:
    """(ticker, the exchange's book as of the last book frame it SENT for that market).

    A capture can only hold what was sent: when the exchange dropped the connection (or the run
    ended) while the book kept changing, those later changes reached no one. The exchange log is
    replayed per market up to the exchange time of its last sent delta (all changes of that
    millisecond: one order-flow step); a market whose last sent frame was a snapshot is that
    snapshot. Every sent frame is checked by the table comparison; this checks that the
    database rebuilds the book the exchange held at the end of what it sent.
    """
    cutoffs = {t: v for t, v in last_book.items() if isinstance(v, int)}
    for ticker, value in sorted(last_book.items()):
        if not isinstance(value, int):
            yield ticker, value
    truth = _exchange_truth(directory, meta)
    books: dict[str, dict[str, dict[int, int]]] = {}
    for line in _lines(directory / EXCHANGE_FILE):
        record = orjson.loads(line)
        ticker = record.get("ticker")
        if record.get("kind") != "delta" or ticker not in cutoffs:
            continue
        if record["ts_ns"] > cutoffs[ticker]:
            continue
        book = books.get(ticker)
        if book is None:
            initial = truth.initial_book(ticker)
            book = books[ticker] = {side: dict(levels) for side, levels in initial.items()}
        if record["size"]:
            book[record["side"]][record["price"]] = record["size"]
        else:
            book[record["side"]].pop(record["price"], None)
    for ticker in sorted(cutoffs):
        yield ticker, books[ticker] if ticker in books else truth.initial_book(ticker)


__all__ = ["TruthError", "TruthScan", "open_truth", "seen_books"]


_ACKS = frozenset({"ok", "unsubscribed"})


def _sid_of(text: str) -> int | None:
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    sid = message.get("sid") if isinstance(message, dict) else None
    return sid if isinstance(sid, int) else None
