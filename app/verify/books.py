"""Order books at sampled instants against the exchange's own books (issue 8).

The final-book check (`run.py`) proves the end state. This one proves `book_at(T)` at instants
T *during* the capture: for each sample, every market whose book the database captured before T
is rebuilt with `app.book.book_at` and compared with the book the exchange itself held, replayed
from `exchange.jsonl` (its initial books are regenerated from the seed; our normalizer is never
involved). A market is compared at T only when the comparison is meaningful:

* **in hole** — a recorded book hole of the market touches [S, T], S being its newest snapshot
  stored at or before T - quiet: the gatherer knows its book was not continuous since S (a hole
  ends for a market at its fresh snapshot; one that never got one, e.g. it closed while the
  listener was dead, is unknown until the end);
* **busy** — the exchange changed the market in [T - quiet, T]: a frame may be in flight, so
  the database may legitimately be one change behind at T (the next sample tries again);
* **not captured yet** — no snapshot of it stored at or before T - quiet.

Everything else must be equal, level for level. `quiet_ns` bounds how late a frame may arrive
after the exchange made the change (1 s by default: far above the loopback latency, and a
capture that lags more is reported rather than silently excused). A simulator `stall` fault
holds frames back on purpose, so instants within a stall (plus the quiet time) are not sampled.
"""

from __future__ import annotations

import sys
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from app.book import BookUnavailable, book_at
from app.simulator.recorder import EXCHANGE_FILE, FAULTS_FILE
from app.simulator.truth import StepClock, Truth, TruthMeta
from app.verify.compare import Book, BookDifference, first_book_difference
from app.verify.holes import HoleIndex

DEFAULT_SAMPLES = 10
DEFAULT_QUIET_NS = 1_000_000_000
MAX_LISTED = 20


@dataclass
class BookSamples:
    samples: int = 0
    checked: int = 0  # (market, instant) pairs compared
    in_hole: int = 0
    busy: int = 0
    not_captured: int = 0
    differences: list[tuple[int, BookDifference]] = field(default_factory=list)  # (T ns, diff)
    differing: int = 0

    @property
    def exact(self) -> bool:
        return self.differing == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "checked": self.checked,
            "in_hole": self.in_hole,
            "busy": self.busy,
            "not_captured": self.not_captured,
            "differing": self.differing,
            "differences": [{"at_ns": at, **d.as_dict()} for at, d in self.differences],
        }


def sample_instants(
    start_ns: int,
    end_ns: int,
    count: int,
    quiet_ns: int,
    avoid: Sequence[tuple[int, int]] = (),
) -> list[int]:
    """`count` instants spread over (start + quiet, end], at least `quiet_ns` apart, none
    within `quiet_ns` after a stretch of `avoid` (frames held back on purpose)."""
    low = start_ns + quiet_ns
    if count <= 0 or end_ns <= low:
        return []
    count = min(count, max(1, (end_ns - low) // quiet_ns))
    step = (end_ns - low) // count
    instants = [low + step * (i + 1) for i in range(count)]
    return [t for t in instants if not any(a - quiet_ns <= t <= b + quiet_ns for a, b in avoid)]


def _stalls(directory: Path) -> list[tuple[int, int]]:
    """Wall-clock stretches in which the simulator held frames back (`stall` faults)."""
    path = directory / FAULTS_FILE
    if not path.exists():
        return []
    stretches = []
    for line in path.read_bytes().splitlines():
        record = orjson.loads(line)
        if record.get("fault") == "stall":
            start = int(record["wall_ns"])
            stretches.append((start, start + round(float(record.get("seconds", 0)) * 1e9)))
    return stretches


def _snapshot_times(conn: Any, gatherer: str | None) -> dict[str, list[int]]:
    """Receive times (ns, ascending) of every stored snapshot, by market."""
    where, params = (" WHERE gatherer = %s", (gatherer,)) if gatherer else ("", ())
    times: dict[str, list[int]] = {}
    with conn.cursor() as cur:
        cur.execute(
            "SELECT market_ticker, received_ns FROM orderbook_snapshots"
            + where
            + " ORDER BY market_ticker, received_ns",
            params,
        )
        for ticker, received_ns in cur.fetchall():
            times.setdefault(ticker, []).append(received_ns)
    return times


def _exchange_books(
    directory: Path, meta: TruthMeta, markets: set[str], cuts: list[tuple[int, int]]
) -> tuple[list[dict[str, Book]], list[set[str]]]:
    """Per cut (steps_lo, steps_hi): the books of `markets` after steps_lo steps, and the
    markets the exchange changed in steps [steps_lo, steps_hi)."""
    truth = Truth.empty(directory, meta, sys.maxsize)
    books: dict[str, dict[str, dict[int, int]]] = {}
    at_cut: list[dict[str, Book]] = [{} for _ in cuts]
    busy: list[set[str]] = [set() for _ in cuts]
    taken = 0  # cuts whose books have been copied

    def book_of(ticker: str) -> dict[str, dict[int, int]]:
        book = books.get(ticker)
        if book is None:
            initial = truth.initial_book(ticker)
            book = books[ticker] = {side: dict(levels) for side, levels in initial.items()}
        return book

    def take_until(step: int) -> None:
        nonlocal taken
        while taken < len(cuts) and cuts[taken][0] <= step:
            at_cut[taken] = {
                t: {side: dict(levels) for side, levels in book_of(t).items()} for t in markets
            }
            taken += 1

    with open(directory / EXCHANGE_FILE, "rb") as handle:
        for line in handle:
            if b'"kind":"delta"' not in line or not line.endswith(b"\n"):
                continue
            record = orjson.loads(line)
            ticker = record["ticker"]
            if ticker not in markets:
                continue
            step = record["step"]
            take_until(step)
            for index, (low, high) in enumerate(cuts):
                if low <= step < high:
                    busy[index].add(ticker)
            book = book_of(ticker)
            if record["size"]:
                book[record["side"]][record["price"]] = record["size"]
            else:
                book[record["side"]].pop(record["price"], None)
    take_until(sys.maxsize)
    return at_cut, busy


def check_sampled_books(
    conn: Any,
    directory: Path,
    meta: TruthMeta,
    clock: StepClock,
    holes: HoleIndex,
    gatherer: str | None,
    capture_start_ns: int,
    *,
    samples: int = DEFAULT_SAMPLES,
    quiet_ns: int = DEFAULT_QUIET_NS,
) -> BookSamples:
    result = BookSamples()
    instants = sample_instants(
        capture_start_ns, clock.last_wall_ns + quiet_ns, samples, quiet_ns, _stalls(directory)
    )
    snapshots = _snapshot_times(conn, gatherer)
    if not instants or not snapshots:
        return result
    result.samples = len(instants)
    cuts = [(clock.steps_done_at(t - quiet_ns), clock.steps_done_at(t)) for t in instants]
    expected, busy = _exchange_books(directory, meta, set(snapshots), cuts)
    for index, at_ns in enumerate(instants):
        at = datetime.fromtimestamp(at_ns / 1e9, UTC)
        for ticker in sorted(snapshots):
            times = snapshots[ticker]
            newest = bisect_right(times, at_ns - quiet_ns) - 1
            if newest < 0:
                result.not_captured += 1
            elif holes.overlaps("orderbook_delta", ticker, times[newest], at_ns):
                result.in_hole += 1
            elif ticker in busy[index]:
                result.busy += 1
            else:
                result.checked += 1
                _compare(conn, ticker, at, at_ns, expected[index][ticker], gatherer, result)
    return result


def book_difference_at(
    conn: Any, ticker: str, at: datetime, gatherer: str | None, expected: Book
) -> BookDifference | None:
    """`book_at(T)` against an expected book: its first differing level, or no book at all."""
    try:
        built = book_at(conn, ticker, at, gatherer=gatherer)
    except BookUnavailable as exc:
        return BookDifference(ticker, None, None, None, None, f"no book in the database ({exc})")
    return first_book_difference(ticker, expected, {"yes": built.book.yes, "no": built.book.no})


def _compare(
    conn: Any,
    ticker: str,
    at: datetime,
    at_ns: int,
    expected: Book,
    gatherer: str | None,
    result: BookSamples,
) -> None:
    difference = book_difference_at(conn, ticker, at, gatherer, expected)
    if difference is not None:
        result.differing += 1
        if len(result.differences) < MAX_LISTED:
            result.differences.append((at_ns, difference))
