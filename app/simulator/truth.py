"""Reading a simulator's ground-truth directory back as typed objects.

`load_truth(dir)` is what tests and `kalshi-data verify` use to compare captured data with what
the exchange really did and really sent. Units follow DESIGN §4: prices in micro-dollars,
sizes and counts in hundredths of a contract, times in nanoseconds. Books are
`{"yes": {price: size}, "no": {price: size}}`.

The file format is documented in docs/simulator.md ("Ground truth"). Markets and initial books
are not stored (a million-market run would write gigabytes at start); they are regenerated here
from `meta.json` with the simulator's own deterministic functions, which is why the generator
version is checked. `read_clock(dir)` maps exchange steps (virtual time) to the wall-clock time
a capture's own records use (truth format 2).
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson

from app.simulator.book import initial_market
from app.simulator.catalog import Catalog
from app.simulator.recorder import (
    CLOCK_FILE,
    CONNECTIONS_FILE,
    EXCHANGE_FILE,
    FAULTS_FILE,
    FRAMES_FILE,
    GENERATOR_VERSION,
    META_FILE,
    STATE_FILE,
    TRUTH_FORMAT_VERSION,
)
from app.simulator.ticks import GRIDS, TickGrid

GRID_BY_STRUCTURE = {grid.structure: grid for grid in GRIDS}

Book = dict[str, dict[int, int]]

# Format 1 has no clock.tsv and no ticker records; everything else reads the same.
READABLE_TRUTH_FORMATS = (1, TRUTH_FORMAT_VERSION)
# A ticker record's values, named and ordered like `app.db.rows.TickerRow`'s value fields.
TICKER_VALUE_FIELDS = (
    "price",
    "yes_bid",
    "yes_ask",
    "yes_bid_size",
    "yes_ask_size",
    "last_trade_size",
    "volume",
    "open_interest",
    "dollar_volume",
    "dollar_open_interest",
)


class TruthError(Exception):
    """The directory is not a readable truth written by this simulator version."""


@dataclass(frozen=True)
class TruthMeta:
    seed: int
    markets: int
    rate: float
    period_ns: int
    epoch_ms: int
    format: str
    market_lifetime_ns: int
    max_events: int | None
    raw: dict[str, Any]
    truth_format: int = TRUTH_FORMAT_VERSION

    @property
    def epoch_ns(self) -> int:
        return self.epoch_ms * 1_000_000


@dataclass(frozen=True)
class MarketTruth:
    index: int
    ticker: str
    event_ticker: str
    series_ticker: str
    market_id: str
    price_level_structure: str  # at the end (a price_level_structure_updated changes it)
    created_ns: int
    open_ns: int
    close_ns: int  # the live close time at the end of the run
    status: str  # initialized | active | inactive | closed | determined | finalized
    result: str  # "" | yes | no


@dataclass(frozen=True)
class BookChange:
    step: int
    ts_ns: int
    ticker: str
    side: str  # yes | no
    price: int
    delta: int
    size: int  # resting size at (side, price) after the change; 0 = level removed
    cause: str  # add | cancel | trade


@dataclass(frozen=True)
class TradeTruth:
    step: int
    ts_ns: int
    ticker: str
    trade_id: str
    yes_price: int
    count: int
    taker_side: str  # yes | no


@dataclass(frozen=True)
class TickerTruth:
    """One ticker change with the values its `ticker` frame carries (None: not on the wire).

    Units as in `TickerRow`: prices in micro-dollars, sizes and counts in hundredths, dollar
    volume and open interest in whole dollars, so `values` equals a normalized row's values.
    """

    step: int
    ts_ns: int
    ticker: str
    price: int | None
    yes_bid: int | None
    yes_ask: int | None
    yes_bid_size: int | None
    yes_ask_size: int | None
    last_trade_size: int | None
    volume: int | None
    open_interest: int | None
    dollar_volume: int | None
    dollar_open_interest: int | None

    @property
    def values(self) -> tuple[int | None, ...]:
        """The values in `TICKER_VALUE_FIELDS` order."""
        return (
            self.price,
            self.yes_bid,
            self.yes_ask,
            self.yes_bid_size,
            self.yes_ask_size,
            self.last_trade_size,
            self.volume,
            self.open_interest,
            self.dollar_volume,
            self.dollar_open_interest,
        )


@dataclass(frozen=True)
class LifecycleTruth:
    """One `market_lifecycle_v2` event, with the market status right after it."""

    step: int
    ts_ns: int
    ticker: str
    event_type: str
    status: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class EventFeeUpdate:
    """One `event_fee_update` (sent on `market_lifecycle_v2` subscriptions)."""

    step: int
    ts_ns: int
    event_ticker: str
    fee_type_override: str | None
    fee_multiplier_override: float | None


@dataclass(frozen=True)
class MarketClosed:
    step: int
    ts_ns: int
    ticker: str


@dataclass(frozen=True)
class EventCreated:
    step: int
    ts_ns: int
    event_ticker: str


@dataclass(frozen=True)
class SentFrame:
    conn: int
    send_ns: int
    kind: str  # text | ping | close
    sid: int | None
    seq: int | None
    text: str  # exact frame text (ping: its payload, close: the close code)


@dataclass
class ConnectionTruth:
    conn: int
    peer: str
    authenticated: bool
    opened_ns: int
    closed_ns: int | None = None
    close_reason: str | None = None
    frames_sent: int | None = None


@dataclass(frozen=True)
class FaultTruth:
    wall_ns: int
    fault: str
    source: str  # admin | periodic
    conn: int | None
    sid: int | None
    seq: int | None
    details: dict[str, Any]


class FinalBooks(Mapping[str, Book]):
    """Every market's book at the end; untouched books are regenerated on access."""

    def __init__(self, explicit: dict[str, Book], untouched: dict[str, int], truth: Truth):
        self._explicit = explicit
        self._untouched = untouched
        self._truth = truth

    def __getitem__(self, ticker: str) -> Book:
        book = self._explicit.get(ticker)
        if book is not None:
            return book
        if ticker in self._untouched:
            return self._truth.initial_book(ticker)
        raise KeyError(ticker)

    def __iter__(self) -> Iterator[str]:
        yield from self._explicit
        yield from self._untouched

    def __len__(self) -> int:
        return len(self._explicit) + len(self._untouched)


@dataclass
class FinalState:
    reason: str  # shutdown | admin
    step: int
    virtual_ns: int
    wall_ns: int
    books: FinalBooks
    statuses: dict[str, str]
    results: dict[str, str]
    close_ns: dict[str, int]
    trades: list[TradeTruth]
    volumes: dict[str, int] = field(default_factory=dict)


@dataclass
class Truth:
    directory: Path
    meta: TruthMeta
    catalog: Catalog
    book_changes: list[BookChange]
    trades: list[TradeTruth]
    lifecycle: list[LifecycleTruth]
    closes: list[MarketClosed]
    events_created: list[EventCreated]
    frames: dict[int, list[SentFrame]]
    connections: dict[int, ConnectionTruth]
    faults: list[FaultTruth]
    final: FinalState | None
    market_count: int
    tickers: list[TickerTruth] = field(default_factory=list)  # empty in truth format 1
    event_fee_updates: list[EventFeeUpdate] = field(default_factory=list)

    @classmethod
    def empty(cls, directory: Path, meta: TruthMeta, market_count: int) -> Truth:
        """A truth with nothing read yet but what regenerating markets and books needs."""
        return cls(
            directory=directory,
            meta=meta,
            catalog=catalog_for(meta),
            book_changes=[],
            trades=[],
            lifecycle=[],
            closes=[],
            events_created=[],
            frames={},
            connections={},
            faults=[],
            final=None,
            market_count=market_count,
        )

    @cached_property
    def markets(self) -> dict[str, MarketTruth]:
        """Every market that existed at the end, by ticker (built on first access)."""
        statuses: dict[str, str] = {}
        results: dict[str, str] = {}
        closes: dict[str, int] = {}
        structures = {
            event.ticker: event.fields["price_level_structure"]
            for event in self.lifecycle
            if event.event_type == "price_level_structure_updated"
        }
        if self.final is not None:
            statuses, results, closes = (
                self.final.statuses,
                self.final.results,
                self.final.close_ns,
            )
        else:
            for event in self.lifecycle:
                statuses[event.ticker] = event.status
                if event.event_type == "determined":
                    results[event.ticker] = event.fields.get("result", "")
                if event.event_type == "close_date_updated":
                    closes[event.ticker] = event.fields["close_ts"] * 1_000_000_000
            for closed in self.closes:
                statuses[closed.ticker] = "closed"
        out = {}
        for index in range(self.market_count):
            spec = self.catalog.market(index)
            default_status = "active" if index < self.meta.markets else "initialized"
            out[spec.ticker] = MarketTruth(
                index=index,
                ticker=spec.ticker,
                event_ticker=spec.event_ticker,
                series_ticker=spec.series_ticker,
                market_id=spec.market_id,
                price_level_structure=structures.get(spec.ticker, GRIDS[spec.grid_code].structure),
                created_ns=spec.created_ns,
                open_ns=spec.open_ns,
                close_ns=closes.get(spec.ticker, spec.close_ns),
                status=statuses.get(spec.ticker, default_status),
                result=results.get(spec.ticker, ""),
            )
        return out

    def grid(self, ticker: str, step: int | None = None) -> TickGrid:
        """The market's price grid after `step` (default: at the end): its creation grid, or
        the one its last `price_level_structure_updated` up to then moved it to."""
        index = self.catalog.market_index(ticker)
        if index is None:
            raise KeyError(ticker)
        grid = self.catalog.grid(index)
        for event in self.lifecycle:
            if step is not None and event.step > step:
                break
            if event.ticker == ticker and event.event_type == "price_level_structure_updated":
                grid = GRID_BY_STRUCTURE[event.fields["price_level_structure"]]
        return grid

    def initial_book(self, ticker: str) -> Book:
        """The book a market was created with."""
        index = self.catalog.market_index(ticker)
        if index is None or index >= self.market_count:
            raise KeyError(ticker)
        yes, no, _, _, _ = initial_market(
            self.meta.seed, index, self.catalog.grid(index), self.catalog.legacy
        )
        return {"yes": dict(yes), "no": dict(no)}

    def books_at(self, step: int | None = None) -> dict[str, Book]:
        """Books of every market that changed, replayed from initial books up to `step`."""
        books: dict[str, Book] = {}
        for change in self.book_changes:
            if step is not None and change.step > step:
                break
            book = books.get(change.ticker)
            if book is None:
                book = books[change.ticker] = self.initial_book(change.ticker)
            side = book[change.side]
            if change.size:
                side[change.price] = change.size
            else:
                side.pop(change.price, None)
        return books

    def text_frames(self, conn: int) -> list[str]:
        """The exact text frames sent on one connection, in order."""
        return [f.text for f in self.frames.get(conn, []) if f.kind == "text"]

    @cached_property
    def clock(self) -> StepClock:
        """Exchange steps in wall-clock time (read on first access; TruthError before format 2)."""
        return read_clock(self.directory)


class StepClock:
    """When (wall clock, ns) the exchange had executed how many steps, from `clock.tsv`.

    Line i says: `steps[i]` steps had run by `walls[i]`, and the frames of the steps since the
    previous line were sent right after it. Both columns never decrease, so every question is
    one bisection; memory is two integers per line (one line per pump batch, not per step).
    """

    def __init__(self, walls: array[int], steps: array[int]) -> None:
        if not walls:
            raise ValueError("a step clock needs at least one line")
        self._walls = walls
        self._steps = steps

    @property
    def started_wall_ns(self) -> int:
        """When the exchange began (before its first step)."""
        return self._walls[0]

    @property
    def last_wall_ns(self) -> int:
        """The last line's time: nothing is known about the exchange after it."""
        return self._walls[-1]

    @property
    def steps_done(self) -> int:
        """Steps executed by the last line."""
        return self._steps[-1]

    def __len__(self) -> int:
        return len(self._walls)

    def wall_ns(self, step: int) -> int | None:
        """Wall time by which step `step` (0-based) had run; None if the clock never got there.

        Its frames went out at or after this time (and, barring a stall fault, before the next
        line's time).
        """
        if step < 0:
            raise ValueError(f"steps are 0-based, got {step}")
        line = bisect_right(self._steps, step)  # the first line with steps[line] > step
        return self._walls[line] if line < len(self._steps) else None

    def executed_between(self, step: int) -> tuple[int, int] | None:
        """(earliest, latest) wall time step `step` can have run at: a line covers a whole pump
        batch, which may be long when the pump catches up. None if the clock never got there."""
        if step < 0:
            raise ValueError(f"steps are 0-based, got {step}")
        line = bisect_right(self._steps, step)
        if line >= len(self._steps):
            return None
        return self._walls[max(0, line - 1)], self._walls[line]

    def steps_done_at(self, wall_ns: int) -> int:
        """Steps executed at or before `wall_ns` (0 before the first line)."""
        line = bisect_right(self._walls, wall_ns) - 1
        return self._steps[line] if line >= 0 else 0


def _lines(path: Path) -> Iterator[bytes]:
    if not path.exists():
        return
    with open(path, "rb") as handle:
        for line in handle:
            if line.endswith(b"\n"):
                yield line[:-1]


def read_meta(directory: Path) -> TruthMeta:
    """`meta.json`, refusing truths of another generator or an unknown truth format."""
    try:
        raw = orjson.loads((directory / META_FILE).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise TruthError(f"{directory} has no readable {META_FILE}: {exc}") from exc
    truth_format = raw.get("truth_format")
    if truth_format not in READABLE_TRUTH_FORMATS or raw.get("generator") != GENERATOR_VERSION:
        readable = ", ".join(str(v) for v in READABLE_TRUTH_FORMATS)
        raise TruthError(
            f"{directory} was written by {raw.get('generator')} (truth format "
            f"{truth_format}); this reader is {GENERATOR_VERSION} (formats {readable})"
        )
    return TruthMeta(
        seed=raw["seed"],
        markets=raw["markets"],
        rate=raw["rate"],
        period_ns=raw["period_ns"],
        epoch_ms=raw["epoch_ms"],
        format=raw["format"],
        market_lifetime_ns=raw["market_lifetime_ns"],
        max_events=raw["max_events"],
        raw=raw,
        truth_format=truth_format,
    )


def catalog_for(meta: TruthMeta) -> Catalog:
    return Catalog(
        meta.seed, meta.markets, meta.epoch_ns, meta.market_lifetime_ns, meta.format == "legacy"
    )


def iter_frames(directory: Path | str) -> Iterator[SentFrame]:
    """Stream `frames.tsv` (for runs too big to hold in memory)."""
    for line in _lines(Path(directory) / FRAMES_FILE):
        conn, sent, kind, sid, seq, text = line.split(b"\t", 5)
        yield SentFrame(
            conn=int(conn),
            send_ns=int(sent),
            kind=kind.decode(),
            sid=int(sid) if sid else None,
            seq=int(seq) if seq else None,
            text=text.decode(),
        )


def iter_exchange(directory: Path | str) -> Iterator[dict[str, Any]]:
    """Stream `exchange.jsonl` records as dicts (skip kinds you do not know: more may come)."""
    for line in _lines(Path(directory) / EXCHANGE_FILE):
        yield orjson.loads(line)


def iter_tickers(directory: Path | str) -> Iterator[TickerTruth]:
    """Stream the ticker records of `exchange.jsonl` (none in truth format 1)."""
    for line in _lines(Path(directory) / EXCHANGE_FILE):
        if b'"kind":"ticker"' in line:  # cheap pre-filter; the parsed kind decides
            record = orjson.loads(line)
            if record["kind"] == "ticker":
                yield _ticker(record)


def read_clock(directory: Path | str) -> StepClock:
    """Read `clock.tsv` (truth format 2); TruthError when it is missing, empty or disordered."""
    path = Path(directory) / CLOCK_FILE
    if not path.exists():
        raise TruthError(
            f"{directory} has no {CLOCK_FILE}: it was written before truth format 2 "
            "(or the simulator never started its order flow), so steps cannot be placed in "
            "wall-clock time"
        )
    walls: array[int] = array("q")
    steps: array[int] = array("q")
    for number, line in enumerate(_lines(path), 1):
        try:
            wall, done = line.split(b"\t")
            wall_ns, steps_done = int(wall), int(done)
        except ValueError:
            raise TruthError(f"{path}:{number}: not 'wall_ns<TAB>steps_done': {line!r}") from None
        if walls and (wall_ns < walls[-1] or steps_done < steps[-1]):
            raise TruthError(f"{path}:{number}: the clock goes backwards")
        walls.append(wall_ns)
        steps.append(steps_done)
    if not walls:
        raise TruthError(f"{path} is empty (the simulator stopped before flushing it)")
    return StepClock(walls, steps)


def _trade(record: dict[str, Any]) -> TradeTruth:
    return TradeTruth(
        step=record.get("step", -1),
        ts_ns=record["ts_ns"],
        ticker=record["ticker"],
        trade_id=record["trade_id"],
        yes_price=record["yes_price"],
        count=record["count"],
        taker_side=record["taker_side"],
    )


def _ticker(record: dict[str, Any]) -> TickerTruth:
    return TickerTruth(
        step=record["step"],
        ts_ns=record["ts_ns"],
        ticker=record["ticker"],
        price=record["price"],
        yes_bid=record["yes_bid"],
        yes_ask=record["yes_ask"],
        yes_bid_size=record["yes_bid_size"],
        yes_ask_size=record["yes_ask_size"],
        last_trade_size=record["last_trade_size"],
        volume=record["volume"],
        open_interest=record["open_interest"],
        dollar_volume=record["dollar_volume"],
        dollar_open_interest=record["dollar_open_interest"],
    )


def _final_state(directory: Path, truth: Truth) -> FinalState | None:
    lines = _lines(directory / STATE_FILE)
    header_line = next(lines, None)
    if header_line is None:
        return None
    header = orjson.loads(header_line)
    explicit: dict[str, Book] = {}
    untouched: dict[str, int] = {}
    final = FinalState(
        reason=header["reason"],
        step=header["step"],
        virtual_ns=header["virtual_ns"],
        wall_ns=header["wall_ns"],
        books=FinalBooks(explicit, untouched, truth),
        statuses={},
        results={},
        close_ns={},
        trades=[],
    )
    for line in lines:
        record = orjson.loads(line)
        if record["kind"] == "market":
            ticker = record["ticker"]
            final.statuses[ticker] = record["status"]
            final.results[ticker] = record["result"]
            final.close_ns[ticker] = record["close_ns"]
            book = record["book"]
            if book is None:
                untouched[ticker] = record["index"]
            else:
                explicit[ticker] = {
                    "yes": {p: s for p, s in book["yes"]},
                    "no": {p: s for p, s in book["no"]},
                }
                final.volumes[ticker] = record["volume"]
        elif record["kind"] == "trade":
            final.trades.append(_trade(record))
    return final


def load_truth(directory: Path | str) -> Truth:
    """Read a whole truth directory (meta, exchange log, frames, faults, final state)."""
    directory = Path(directory)
    meta = read_meta(directory)
    truth = Truth.empty(directory, meta, meta.markets)
    created = 0
    for record in iter_exchange(directory):
        kind = record["kind"]
        if kind == "delta":
            truth.book_changes.append(
                BookChange(
                    step=record["step"],
                    ts_ns=record["ts_ns"],
                    ticker=record["ticker"],
                    side=record["side"],
                    price=record["price"],
                    delta=record["delta"],
                    size=record["size"],
                    cause=record["cause"],
                )
            )
        elif kind == "trade":
            truth.trades.append(_trade(record))
        elif kind == "ticker":
            truth.tickers.append(_ticker(record))
        elif kind == "lifecycle":
            fields = {
                k: v
                for k, v in record.items()
                if k not in ("step", "ts_ns", "kind", "ticker", "event_type", "status")
            }
            truth.lifecycle.append(
                LifecycleTruth(
                    step=record["step"],
                    ts_ns=record["ts_ns"],
                    ticker=record["ticker"],
                    event_type=record["event_type"],
                    status=record["status"],
                    fields=fields,
                )
            )
            if record["event_type"] == "created":
                created += 1
        elif kind == "status":
            truth.closes.append(MarketClosed(record["step"], record["ts_ns"], record["ticker"]))
        elif kind == "event_created":
            truth.events_created.append(
                EventCreated(record["step"], record["ts_ns"], record["event_ticker"])
            )
        elif kind == "event_fee_update":
            truth.event_fee_updates.append(
                EventFeeUpdate(
                    step=record["step"],
                    ts_ns=record["ts_ns"],
                    event_ticker=record["event_ticker"],
                    fee_type_override=record["fee_type_override"],
                    fee_multiplier_override=record["fee_multiplier_override"],
                )
            )
    truth.market_count = meta.markets + created
    for frame in iter_frames(directory):
        truth.frames.setdefault(frame.conn, []).append(frame)
    for line in _lines(directory / CONNECTIONS_FILE):
        record = orjson.loads(line)
        conn = record["conn"]
        if record["event"] == "open":
            truth.connections[conn] = ConnectionTruth(
                conn=conn,
                peer=record["peer"],
                authenticated=record["authenticated"],
                opened_ns=record["wall_ns"],
            )
        elif record["event"] == "close" and conn in truth.connections:
            entry = truth.connections[conn]
            entry.closed_ns = record["wall_ns"]
            entry.close_reason = record.get("reason")
            entry.frames_sent = record.get("frames_sent")
    for line in _lines(directory / FAULTS_FILE):
        record = orjson.loads(line)
        truth.faults.append(
            FaultTruth(
                wall_ns=record["wall_ns"],
                fault=record["fault"],
                source=record["source"],
                conn=record.get("conn"),
                sid=record.get("sid"),
                seq=record.get("seq"),
                details={
                    k: v
                    for k, v in record.items()
                    if k not in ("wall_ns", "fault", "source", "conn", "sid", "seq")
                },
            )
        )
    truth.final = _final_state(directory, truth)
    if truth.final is not None:
        truth.market_count = max(truth.market_count, len(truth.final.statuses))
    return truth


def yes_price_subscriptions(directory: Path) -> set[tuple[int, int]]:
    """(connection, sid) of every order book subscription made with `use_yes_price`: their
    frames carry NO levels on the YES scale, which a reader must know to normalize them."""
    found: set[tuple[int, int]] = set()
    for line in _lines(directory / CONNECTIONS_FILE):
        record = orjson.loads(line)
        if record.get("event") == "subscribed" and record.get("use_yes_price"):
            found.add((record["conn"], record["sid"]))
    return found
