"""Trade backfill: fill closed capture holes from the exchange's REST trade list (REC-10).

DESIGN §1 guarantee 2 (known gaps, trades backfilled from REST) and §6 (every minute). The
seed's recovery was passive only and said missed trades "cannot be recovered" (REC-1, REC-10,
SEED-SPEC §14 item 26); Kalshi's `GET /markets/trades?min_ts&max_ts` (kalshi-api.md §1.8) has
them. For each closed pending hole of this gatherer, oldest first and at most
`backfill.holes_per_run` per run: lock it (`FOR UPDATE SKIP LOCKED`), fetch every trade of its
window widened by `margin_s` (the part before the cutoff from `/historical/trades`, §1.11, and
the seconds the cutoff passed during the fetch asked again), following cursors to the end
through the client's token bucket and retries (§1.3, §4, GEN-10), then insert them as
`source = 'rest'` rows through the idempotent COPY path and mark the hole done with the count
of new rows, all in one transaction. A trade the WebSocket already stored has the same
(trade_id, exchange second) key and is neither inserted again nor counted.

This module must never: mark a hole done unless every trade of its window was fetched and
written in that same transaction; narrow a hole's window; store a trade the exchange did not
return, or a price or size through float; take an error from either partition (a 404
included) for an empty answer; work on a hole another worker holds; touch holes of other
channels (their backfill_status is NULL) or open holes; or let an exchange failure crash the
job — it is recorded on the hole (attempts, error) and retried by the next run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg2
from psycopg2 import errors

from app.backfill.holes import (
    Hole,
    candidate_holes,
    count_pending,
    lock_hole,
    mark_done,
    record_failure,
)
from app.backfill.plan import TradeQuery, plan_queries, plan_requeries
from app.config import BackfillSettings
from app.db.copy import CopyEncodingError, copy_rows
from app.db.engine import dbapi_connection
from app.db.partitions import ensure_partitions_for_range
from app.db.rows import TradeRow
from app.db.tables import TRADES
from app.kalshi.errors import (
    ExchangeUnreachable,
    KalshiError,
    RateLimited,
    ServerError,
    Unauthorized,
    WireFormatError,
)
from app.kalshi.rest import KalshiRest, Page
from app.logs import log_event
from app.metrics.recorders import (
    record_backfill_hole,
    record_partitions_created,
    set_backfill_pending,
)
from app.normalize import FrameError, rest_trade_row

log = logging.getLogger(__name__)

# A failure that says nothing about the hole but about the exchange (down, throttling us,
# refusing our key): the next holes would fail the same way and only burn their attempts.
EXCHANGE_WIDE: tuple[type[KalshiError], ...] = (
    ExchangeUnreachable,
    RateLimited,
    ServerError,
    Unauthorized,
)
# Failures recorded on the hole (attempts + 1, error kept); anything else (a database error)
# aborts the run and fails the job.
HOLE_ERRORS: tuple[type[Exception], ...] = (KalshiError, FrameError)
# Rows the database refuses (a value COPY cannot encode, a CHECK the exchange's data breaks):
# recorded on the hole like a fetch failure, so one bad trade cannot fail every run.
REFUSED_ROWS: tuple[type[Exception], ...] = (
    CopyEncodingError,
    psycopg2.DataError,
    psycopg2.IntegrityError,
)

BACKFILL_CONNECTION_PREFIX = "backfill/"  # trades.connection_id of a backfilled row + hole id


@dataclass(frozen=True, slots=True)
class HoleResult:
    """What one attempt did to one hole."""

    hole_id: str
    outcome: str  # done | retry (failed, still pending) | failed (gave up)
    queries: int = 0
    fetched: int = 0  # trades the exchange returned for the hole's markets
    inserted: int = 0  # of those, rows that were new
    attempts: int = 0  # the hole's attempts after this one
    error: str | None = None
    exchange_wide: bool = False


@dataclass
class BackfillReport:
    """One run of `backfill_trades`."""

    gatherer: str
    holes: list[HoleResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # held by another worker, or settled
    partitions_created: list[str] = field(default_factory=list)
    stopped: str | None = None  # the exchange-wide error that ended the run early
    pending: int = 0  # holes still waiting after the run (open ones included)

    @property
    def inserted(self) -> int:
        return sum(result.inserted for result in self.holes)

    def outcomes(self) -> dict[str, int]:
        counts = {"done": 0, "retry": 0, "failed": 0}
        for result in self.holes:
            counts[result.outcome] += 1
        return counts

    def summary(self) -> dict[str, Any]:
        """What the Celery task returns and logs (JSON-serializable)."""
        return {
            **self.outcomes(),
            "skipped": len(self.skipped),
            "trades_inserted": self.inserted,
            "pending": self.pending,
            "partitions_created": self.partitions_created,
            "stopped": self.stopped,
        }


def backfill_trades(
    conn: Any,
    client: KalshiRest,
    config: BackfillSettings,
    *,
    gatherer: str,
    lock_timeout_ms: int = 5000,
    clock: Callable[[], int] = time.time_ns,
) -> BackfillReport:
    """Backfill the closed pending trade holes of `gatherer`; commits hole by hole.

    `conn` is a psycopg2 connection with no transaction in progress; `client` a REST client
    built from the settings (its token bucket and retries apply to every request);
    `lock_timeout_ms` bounds the wait for the trades parent's lock when a hole's days need a
    partition. A database error rolls back the current hole and raises; an exchange error is
    recorded on the hole and, when it is exchange-wide, ends the run (`report.stopped`).
    """
    pg = dbapi_connection(conn)
    report = BackfillReport(gatherer)
    candidates = candidate_holes(
        pg, gatherer, older_than_s=config.margin_s + config.settle_s, limit=config.holes_per_run
    )
    pg.commit()
    if candidates:
        margin = timedelta(seconds=config.margin_s)
        windows = [(start - margin, end + margin) for _, start, end in candidates]
        report.partitions_created = _ensure_trade_partitions(pg, windows, lock_timeout_ms)
        cutoff: list[int | None] = []  # the historical cutoff, as last read
        for hole_id, _, _ in candidates:
            hole = lock_hole(pg, gatherer, hole_id)
            if hole is None:
                pg.rollback()
                report.skipped.append(hole_id)
                continue
            result = _attempt(pg, client, hole, config, cutoff, clock)
            report.holes.append(result)
            if result.exchange_wide:
                report.stopped = result.error
                break
    report.pending = count_pending(pg, gatherer)
    pg.commit()
    set_backfill_pending(gatherer, report.pending)
    return report


def fetch_hole_trades(
    client: KalshiRest,
    hole: Hole,
    config: BackfillSettings,
    cutoff_ns: int | None,
    *,
    clock: Callable[[], int] = time.time_ns,
) -> tuple[list[TradeRow], int, int | None]:
    """Every trade of the hole's markets in its widened window, as rows (each trade once),
    the number of queries made, and the historical cutoff as read after the fetch.

    `cutoff_ns` is the cutoff read before. The exchange moves its cutoff forward over time;
    if it moved during the fetch, the trades between the two readings may have changed
    partition between our queries, so their seconds are asked again of the partition that now
    holds them (`plan.requery_parts`). Raises `KalshiError` (HTTP, including a 404 from either
    partition, network, garbage) or `FrameError` (a trade that does not normalize): the hole
    then cannot be marked done.
    """
    fetch = _HoleFetch(client, hole, config.page_limit, clock)
    for query in plan_queries(
        hole.from_at,
        hole.to_at,
        hole.market_tickers,
        margin_s=config.margin_s,
        ticker_query_max=config.ticker_query_max,
        cutoff_ns=cutoff_ns,
    ):
        fetch.run(query)
    after_ns = client.get_historical_cutoff().trades_created_ns
    for query in plan_requeries(
        hole.from_at,
        hole.to_at,
        hole.market_tickers,
        margin_s=config.margin_s,
        ticker_query_max=config.ticker_query_max,
        before_ns=cutoff_ns,
        after_ns=after_ns,
    ):
        fetch.run(query)
    return fetch.rows, fetch.queries, after_ns


class _HoleFetch:
    """The rows of one hole's queries, each trade kept once by its key (trade_id, second):
    after a cutoff move the same trade can come back from both partitions."""

    def __init__(
        self, client: KalshiRest, hole: Hole, page_limit: int, clock: Callable[[], int]
    ) -> None:
        self.client = client
        self.hole = hole
        self.page_limit = page_limit
        self.clock = clock
        self.wanted = None if hole.market_tickers is None else frozenset(hole.market_tickers)
        self.connection_id = BACKFILL_CONNECTION_PREFIX + hole.hole_id
        self.rows: list[TradeRow] = []
        self.keys: set[tuple[str, datetime]] = set()
        self.queries = 0

    def run(self, query: TradeQuery) -> None:
        """Follow one query's cursor to the end (§1.3), adding the trades not yet seen."""
        self.queries += 1
        for page in _pages(self.client, query, self.page_limit):
            received_ns = self.clock()
            for item in page.items:
                if not isinstance(item, Mapping):
                    raise WireFormatError(f"trades page item is not an object: {item!r:.200}")
                if self.wanted is not None and _ticker(item) not in self.wanted:
                    continue
                row = rest_trade_row(
                    item,
                    gatherer=self.hole.gatherer,
                    received_ns=received_ns,
                    batch_pos=len(self.rows),
                    connection_id=self.connection_id,
                )
                key = (row.trade_id, row.exchange_ts)
                if key not in self.keys:
                    self.keys.add(key)
                    self.rows.append(row)


def _pages(client: KalshiRest, query: TradeQuery, limit: int) -> Iterator[Page]:
    return client.trade_pages(
        limit=limit,
        ticker=query.ticker,
        min_ts=query.min_ts,
        max_ts=query.max_ts,
        historical=query.historical,
    )


def _ticker(item: Mapping[str, Any]) -> Any:
    return item.get("ticker", item.get("market_ticker"))


def _attempt(
    conn: Any,
    client: KalshiRest,
    hole: Hole,
    config: BackfillSettings,
    cutoff: list[int | None],
    clock: Callable[[], int],
) -> HoleResult:
    """One locked hole: fetch, then write + mark done (or record the failure), commit."""
    started = time.perf_counter()
    try:
        if not cutoff:
            cutoff.append(client.get_historical_cutoff().trades_created_ns)
        rows, queries, cutoff[0] = fetch_hole_trades(client, hole, config, cutoff[0], clock=clock)
    except HOLE_ERRORS as exc:
        return _failed(conn, hole, config, exc, time.perf_counter() - started)
    try:
        with conn.cursor() as cur:
            cur.execute("SAVEPOINT kd_backfill_write")
        try:
            inserted = copy_rows(conn, TRADES, rows) if rows else 0
        except REFUSED_ROWS as exc:
            # the exchange sent a trade our schema refuses: this hole's problem, not the run's
            with conn.cursor() as cur:
                cur.execute("ROLLBACK TO SAVEPOINT kd_backfill_write")
            return _failed(conn, hole, config, exc, time.perf_counter() - started)
        mark_done(conn, hole, inserted)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    record_backfill_hole(hole.gatherer, "done", inserted)
    log_event(
        log,
        "backfill_hole_done",
        gatherer=hole.gatherer,
        hole_id=hole.hole_id,
        markets=_describe_markets(hole),
        from_at=_iso(hole.from_at),
        to_at=_iso(hole.to_at),
        queries=queries,
        fetched=len(rows),
        inserted=inserted,
        duration_s=round(time.perf_counter() - started, 3),
    )
    return HoleResult(
        hole.hole_id, "done", queries, len(rows), inserted, attempts=hole.attempts + 1
    )


def _failed(
    conn: Any, hole: Hole, config: BackfillSettings, exc: Exception, elapsed_s: float
) -> HoleResult:
    error = f"{type(exc).__name__}: {exc}"
    try:
        status, attempts = record_failure(conn, hole, error, config.max_attempts)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    outcome = "failed" if status == "failed" else "retry"
    record_backfill_hole(hole.gatherer, outcome)
    log_event(
        log,
        "backfill_hole_failed",
        logging.ERROR if outcome == "failed" else logging.WARNING,
        gatherer=hole.gatherer,
        hole_id=hole.hole_id,
        markets=_describe_markets(hole),
        from_at=_iso(hole.from_at),
        to_at=_iso(hole.to_at),
        attempt=attempts,
        max_attempts=config.max_attempts,
        status=status,
        err=error,
        duration_s=round(elapsed_s, 3),
    )
    return HoleResult(
        hole.hole_id,
        outcome,
        attempts=attempts,
        error=error,
        exchange_wide=isinstance(exc, EXCHANGE_WIDE),
    )


def _ensure_trade_partitions(
    conn: Any, windows: list[tuple[datetime, datetime]], lock_timeout_ms: int
) -> list[str]:
    """Daily `trades` partitions for every hole's days, in one short transaction.

    A hole older than the maintenance job's `days_back` would otherwise send its trades to
    DEFAULT (docs/schema.md). Creating a partition locks the trades parent, so the wait is
    bounded; on a lock timeout, or a race with the maintenance job creating the same day, the
    rows go to DEFAULT for now and the maintenance job moves them later.
    """
    created: list[str] = []
    try:
        with conn.cursor() as cur:
            cur.execute("SET LOCAL lock_timeout = %s", (f"{lock_timeout_ms}ms",))
        for start, end in windows:
            created.extend(
                ensure_partitions_for_range(conn, TRADES, start, end + timedelta(seconds=1))
            )
        conn.commit()
    except (errors.LockNotAvailable, errors.UniqueViolation, errors.DuplicateTable) as exc:
        conn.rollback()
        log_event(log, "backfill_partitions_skipped", logging.WARNING, err=str(exc).strip())
        return []
    except BaseException:
        conn.rollback()
        raise
    record_partitions_created(TRADES.name, len(created))
    return created


def _describe_markets(hole: Hole) -> str:
    if hole.market_tickers is None:
        return "all"
    if len(hole.market_tickers) <= 3:
        return ",".join(hole.market_tickers)
    return f"{len(hole.market_tickers)} markets"


def _iso(value: datetime) -> str:
    return value.isoformat()
