"""Building realistic stored order book data for tests: an exchange whose books are the truth,
WebSocket streams that deliver its changes as real Kalshi frames, and a gatherer that stores
every frame through `normalize_frame` (as the ingest workers do), ready for `write_rows`.

The expected books are computed here, independently of `app.book`: the exchange's own books,
and per stream the books built from exactly the frames that stream delivered.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime

from app.db.rows import Row, SequenceGapRow
from app.normalize import FrameEnvelope, Verdict, datetime_from_ns, normalize_frame
from app.units import hundredths_to_count, micros_to_dollars

Book = dict[str, dict[int, int]]  # {"yes": {price: size}, "no": {...}}
T0_NS = 1_790_000_000_000_000_000  # 2026-09-21T14:13:20Z: fixed-point wire format era


def empty_book() -> Book:
    return {"yes": {}, "no": {}}


def copy_book(book: Book) -> Book:
    return {"yes": dict(book["yes"]), "no": dict(book["no"])}


def snapshot_frame(sid: int, seq: int, ticker: str, book: Book) -> str:
    msg: dict[str, object] = {"market_ticker": ticker, "market_id": f"id-{ticker}"}
    for side in ("yes", "no"):
        if book[side]:  # an empty side's key is absent (kalshi-api.md §3.5)
            msg[f"{side}_dollars_fp"] = [
                [micros_to_dollars(p), hundredths_to_count(s)] for p, s in book[side].items()
            ]
    return json.dumps({"type": "orderbook_snapshot", "sid": sid, "seq": seq, "msg": msg})


def rest_body(book: Book) -> dict[str, object]:
    """A `GET /markets/{ticker}/orderbook` response body (kalshi-api.md §1.7) for `book`."""
    return {
        "orderbook_fp": {
            f"{side}_dollars": [
                [micros_to_dollars(p), hundredths_to_count(s)] for p, s in book[side].items()
            ]
            for side in ("yes", "no")
        }
    }


def delta_frame(
    sid: int, seq: int, ticker: str, side: str, price: int, delta: int, ts_ms: int
) -> str:
    msg = {
        "market_ticker": ticker,
        "market_id": f"id-{ticker}",
        "price_dollars": micros_to_dollars(price),
        "delta_fp": hundredths_to_count(delta),
        "side": side,
        "ts_ms": ts_ms,
    }
    return json.dumps({"type": "orderbook_delta", "sid": sid, "seq": seq, "msg": msg})


class Exchange:
    """The truth: every market's book, changed by random adds and cancels."""

    def __init__(self, tickers: list[str], seed: int) -> None:
        self.rng = random.Random(seed)
        self.books: dict[str, Book] = {}
        for ticker in tickers:
            book = empty_book()
            for side in ("yes", "no"):
                for _ in range(self.rng.randint(0, 5)):
                    book[side][self.rng.randint(1, 99) * 10_000] = self.rng.randint(1, 50_000)
            self.books[ticker] = book

    def change(self, ticker: str) -> tuple[str, int, int]:
        """One random change (side, price, delta), applied to the truth."""
        levels = self.books[ticker][self.rng.choice(("yes", "no"))]
        side = "yes" if levels is self.books[ticker]["yes"] else "no"
        if levels and self.rng.random() < 0.45:
            price = self.rng.choice(sorted(levels))
            size = levels[price]
            delta = -size if self.rng.random() < 0.5 else -self.rng.randint(1, size)
        else:
            price = self.rng.randint(1, 99) * 10_000
            delta = self.rng.randint(1, 20_000)
        new = levels.get(price, 0) + delta
        if new:
            levels[price] = new
        else:
            del levels[price]
        return side, price, delta


@dataclass
class Stream:
    """One subscription (connection, sid) and the books built from what it delivered."""

    connection_id: str
    sid: int
    seq: int = 0
    books: dict[str, Book] = field(default_factory=dict)


class Gatherer:
    """Receives frames on streams and stores them as the ingest path would."""

    def __init__(self, exchange: Exchange, name: str = "g1", start_ns: int = T0_NS) -> None:
        self.exchange = exchange
        self.name = name
        self.ns = start_ns
        self.step_ns = 1_000_000  # receive-time distance between frames
        self.rows: list[Row] = []
        self.batch_pos = 0
        self.last: tuple[Stream, int, str] | None = None  # the last delta frame, to redeliver

    def _tick(self) -> int:
        self.ns += self.step_ns
        return self.ns

    @property
    def now(self) -> datetime:
        return datetime_from_ns(self.ns)

    def _store(self, stream: Stream, seq: int, text: str, resync: bool = False) -> None:
        envelope = FrameEnvelope(
            received_ns=self._tick(),
            connection_id=stream.connection_id,
            batch_pos=self.batch_pos,
            gatherer=self.name,
            sid=stream.sid,
            seq=seq,
            resync=resync,
        )
        result = normalize_frame(text, envelope)
        assert result.verdict is Verdict.ROWS, result.reason
        self.rows.extend(result.all_rows())

    def snapshot(self, stream: Stream, ticker: str, resync: bool = False) -> None:
        stream.seq += 1
        book = copy_book(self.exchange.books[ticker])
        stream.books[ticker] = book
        self._store(
            stream, stream.seq, snapshot_frame(stream.sid, stream.seq, ticker, book), resync
        )

    def event(self, ticker: str, stream: Stream | None, lose: bool = False) -> None:
        """A change on the exchange, delivered on `stream` (none: nobody is subscribed).

        `lose`: the stream consumes a seq for it but the frame never arrives (a gap).
        """
        side, price, delta = self.exchange.change(ticker)
        if stream is None:
            self._tick()
            return
        stream.seq += 1
        if lose:
            self._tick()
            return
        levels = stream.books[ticker][side]
        levels[price] = levels.get(price, 0) + delta
        if not levels[price]:
            del levels[price]
        text = delta_frame(stream.sid, stream.seq, ticker, side, price, delta, self.ns // 10**6)
        self._store(stream, stream.seq, text)
        self.last = (stream, stream.seq, text)

    def redeliver(self) -> None:
        """The last delta frame arrives a second time (same seq, later receive time)."""
        assert self.last is not None
        self._store(*self.last)

    def gap(self, stream: Stream, expected: int, tickers: tuple[str, ...]) -> SequenceGapRow:
        """The gap the listener records when the frame just stored revealed it."""
        return SequenceGapRow(
            gatherer=self.name,
            connection_id=stream.connection_id,
            sid=stream.sid,
            market_tickers=tickers,
            expected_seq=expected,
            got_seq=stream.seq,
            detected_at=self.now,
            recovered_at=None,
            recovery=None,
        )
