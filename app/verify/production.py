"""Production against the exchange: the deduplicator's promise (issue 10, DESIGN §1).

A gatherer is verified against the frames the simulator sent to *its* sockets (`run.py`).
Production holds what any gatherer stored, each exchange message once, so it is verified
against what the exchange *did* (`exchange.py`: trades, ticker changes, lifecycle events, each
stored exactly once with the exchange's values) and against the exchange's own books at sampled
instants (`books.py`, `book_at` on production). A trade, ticker or lifecycle event is excused
only where **every** gatherer recorded a hole for that channel and market (and, for trades,
where none of them backfilled it); a book only where production itself recorded that no
gatherer held a whole stream (`capture_holes` of gatherer `*`): one gatherer's outage must cost
production nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.db.engine import connect
from app.dedup.books import PRODUCTION
from app.simulator.truth import read_clock
from app.verify.books import DEFAULT_SAMPLES, BookSamples, check_sampled_books
from app.verify.exchange import ExchangeCheck, check_against_exchange
from app.verify.holes import CHANNEL_OF_TYPE, Hole, HoleIndex, capture_start, read_holes
from app.verify.truth import open_truth


class EveryGatherer(HoleIndex):
    """Holes as production sees them: a point or stretch is in a hole only when every
    gatherer's own holes cover it; a trade hole counts as backfilled when any gatherer's is."""

    def __init__(self, per_gatherer: list[list[Hole]]) -> None:
        super().__init__([h for holes in per_gatherer for h in holes])
        self._indexes = [HoleIndex(holes) for holes in per_gatherer]

    def find(self, channel: str | None, ticker: str | None, wall_ns: int) -> Hole | None:
        found = [index.find(channel, ticker, wall_ns) for index in self._indexes]
        return _combined(found)

    def overlapping(
        self, channel: str, ticker: str | None, low_ns: int, high_ns: int
    ) -> Hole | None:
        found = [index.overlapping(channel, ticker, low_ns, high_ns) for index in self._indexes]
        return _combined(found)


def _combined(found: list[Hole | None]) -> Hole | None:
    if not found or any(h is None for h in found):
        return None
    holes = [h for h in found if h is not None]
    backfilled = any(h.backfilled for h in holes)
    first = holes[0]
    return Hole(first.channel, first.markets, first.from_ns, first.to_ns, backfilled)


@dataclass
class ProductionReport:
    exchange: ExchangeCheck
    books: BookSamples

    @property
    def exact(self) -> bool:
        return self.exchange.exact and self.books.exact

    def as_dict(self) -> dict[str, Any]:
        return {
            "exact": self.exact,
            "exchange": self.exchange.as_dict(),
            "sampled_books": self.books.as_dict(),
        }


def verify_production(
    truth_dir: Path | str,
    production_url: str,
    gatherer_urls: list[str],
    *,
    book_samples: int = DEFAULT_SAMPLES,
) -> ProductionReport:
    """Compare production with the exchange, excusing only what every gatherer lost."""
    truth = Path(truth_dir)
    meta = open_truth(truth)
    per_gatherer: list[list[Hole]] = []
    starts: list[int] = []
    for url in gatherer_urls:
        conn = connect(url)
        try:
            holes = read_holes(conn, None)
            start = capture_start(conn, None)
            if start is not None:
                starts.append(start)
                # Before its first listener start a gatherer claims nothing: lost, for it.
                holes += [Hole(c, None, 0, start, False) for c in set(CHANNEL_OF_TYPE.values())]
            per_gatherer.append(holes)
        finally:
            conn.rollback()
            conn.close()
    index = EveryGatherer(per_gatherer)
    start_ns = min(starts) if starts else None
    conn = connect(production_url)
    try:
        conn.set_session(readonly=True)
        exchange = check_against_exchange(conn, truth, None, index=index, start_ns=start_ns)
        # Books: production's own holes, the deduplicator's chain gaps (docs/dedup.md); a
        # stretch every gatherer lost is one of them, a seq gap one gatherer repaired is not.
        own = HoleIndex(read_holes(conn, PRODUCTION))
        books = (
            check_sampled_books(
                conn, truth, meta, read_clock(truth), own, None, start_ns, samples=book_samples
            )
            if start_ns is not None
            else BookSamples()
        )
    finally:
        conn.rollback()
        conn.close()
    return ProductionReport(exchange, books)
