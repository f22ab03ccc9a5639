"""One deduplication run: every gatherer's new rows of every merged table into production.

Per (table, gatherer): lock the cursor row, read the next batch from the gatherer below its
horizon, merge it, move the cursor, commit: one production transaction per batch (DED-2). A
gatherer that cannot be reached, or whose schema is not migrated, is skipped this run with a
warning and a metric, its cursors unchanged, and the others go on (DED-7). Production
unreachable or not migrated fails the run, and beat retries it (DED-8). A run stops starting
batches after `max_run_s`, leaving the rest to the next one.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2

from app.config import DedupSettings
from app.db.engine import DatabaseUnavailable, connect, first_line
from app.dedup.books import (
    copy_window,
    first_book_time,
    load_book_cursor,
    next_book_time,
    plan_window,
    read_source,
    record_gaps,
    save_book_cursor,
)
from app.dedup.coverage import open_markets, read_holes, store_parts, window_parts
from app.dedup.cursors import Cursor, load_cursor, save_cursor
from app.dedup.merge import MERGED_TABLES, Batch, gatherer_horizon, merge_batch, read_batch
from app.logs import log_event
from app.metrics.recorders import record_dedup_batch, record_dedup_gatherer_error

log = logging.getLogger("kalshi_data.dedup")


@dataclass
class DedupReport:
    """What one run did, per table: rows read from gatherers and rows new in production."""

    read: Counter[str] = field(default_factory=Counter)
    inserted: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    unreachable: list[str] = field(default_factory=list)
    complete: bool = True  # False when `max_run_s` cut the run short
    book_windows: int = 0
    book_gaps: int = 0  # (market, stretch) no gatherer's stream covered, in this run's windows
    books_until: datetime | None = None
    coverage: Counter[str] = field(default_factory=Counter)  # market-hour parts per status

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": dict(self.read),
            "inserted": dict(self.inserted),
            "batches": self.batches,
            "unreachable": self.unreachable,
            "complete": self.complete,
            "book_windows": self.book_windows,
            "book_gaps": self.book_gaps,
            "coverage": dict(self.coverage),
            "books_until": None if self.books_until is None else self.books_until.isoformat(),
        }


def run_dedup(
    settings: DedupSettings, production_url: str, *, now: datetime | None = None
) -> DedupReport:
    """Merge what every gatherer stored since its cursors into production; order books up
    to `now - book_lateness_s` (`now`: the clock, unless a caller knows better)."""
    report = DedupReport()
    deadline = time.monotonic() + settings.max_run_s
    production = connect(production_url)
    try:
        check_production(production)
        for gatherer in settings.gatherers:
            try:
                source = connect(gatherer.database_url, autocommit=True)
            except DatabaseUnavailable as exc:
                _skip(report, gatherer.name, "dedup_gatherer_unreachable", str(exc))
                continue
            try:
                _merge_gatherer(settings, gatherer.name, source, production, report, deadline)
            except psycopg2.Error as exc:
                if production.closed:
                    raise
                production.rollback()
                _skip(report, gatherer.name, "dedup_gatherer_failed", first_line(exc))
            finally:
                source.close()
        _merge_books(settings, production, report, deadline, now)
    finally:
        production.close()
    log_event(log, "dedup_run", **report.as_dict())
    return report


def _skip(report: DedupReport, gatherer: str, event: str, error: str) -> None:
    """A gatherer left out of this run (DED-7): reported, counted, logged; cursors unchanged."""
    report.unreachable.append(gatherer)
    record_dedup_gatherer_error(gatherer)
    log_event(log, event, logging.WARNING, gatherer=gatherer, error=error)


def check_production(conn: Any) -> None:
    """Fail early, with the database's own error, when production is not migrated to 0006."""
    with conn.cursor() as cur:
        cur.execute("SELECT position FROM dedup_cursors LIMIT 0")
        cur.execute("SELECT ingest_xid FROM trades LIMIT 0")
    conn.rollback()


def _merge_gatherer(
    settings: DedupSettings,
    name: str,
    source: Any,
    production: Any,
    report: DedupReport,
    deadline: float,
) -> None:
    """Batch after batch per table; the next batch is read from the gatherer while this one
    is merged into production (two servers working at once). A prefetched batch is used only
    if the cursor it was read after is the one production holds when its turn comes."""
    horizon = gatherer_horizon(source)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"dedup-{name}") as reader:
        for spec in MERGED_TABLES:
            ahead: tuple[Cursor, Future[Batch]] | None = None
            while True:
                if time.monotonic() > deadline:
                    report.complete = False
                    return
                cursor = load_cursor(production, name, spec.name)
                if cursor.xid >= horizon and cursor.legacy_done:
                    production.rollback()
                    break
                if ahead is not None and ahead[0] == cursor:
                    batch = ahead[1].result()
                else:
                    batch = read_batch(source, spec, cursor, horizon, settings.batch_rows)
                ahead = None
                following = batch.after
                caught_up = following.legacy_done and following.xid >= horizon
                if not caught_up:
                    ahead = (
                        following,
                        reader.submit(
                            read_batch, source, spec, following, horizon, settings.batch_rows
                        ),
                    )
                # On an error the executor's exit waits for a read still running.
                inserted = merge_batch(production, spec, batch)
                save_cursor(production, following)
                production.commit()
                report.batches += 1
                record_dedup_batch(name, spec.name, batch.rows, inserted)
                if batch.rows:
                    report.read[spec.name] += batch.rows
                if inserted:
                    report.inserted[spec.name] += inserted
                if caught_up:
                    break


def _merge_books(
    settings: DedupSettings,
    production: Any,
    report: DedupReport,
    deadline: float,
    now: datetime | None,
) -> None:
    """Order books window after window (app/dedup/books.py), with every reachable gatherer."""
    horizon = (now or datetime.now(UTC)) - timedelta(seconds=settings.book_lateness_s)
    step = timedelta(seconds=settings.book_window_s)
    silence = timedelta(seconds=settings.stream_silence_s)
    sources: list[tuple[str, Any]] = []
    try:
        for gatherer in settings.gatherers:
            if gatherer.name in report.unreachable:
                continue
            try:
                sources.append((gatherer.name, connect(gatherer.database_url, autocommit=True)))
            except DatabaseUnavailable as exc:
                _skip(report, gatherer.name, "dedup_gatherer_unreachable", str(exc))
        if not sources:
            return
        while time.monotonic() <= deadline:
            since = load_book_cursor(production)
            if since is None:
                firsts = [t for _, c in sources if (t := first_book_time(c)) is not None]
                if not firsts:
                    production.rollback()
                    return
                since = min(firsts)
            if since >= horizon:
                production.rollback()
                return
            nexts = [t for _, c in sources if (t := next_book_time(c, since)) is not None]
            until = min(max([since, *nexts]) + step, horizon) if nexts else horizon
            views = [read_source(name, conn, since, until, silence) for name, conn in sources]
            window = plan_window(production, views, since, until, silence)
            copy_window(production, views, window)
            record_gaps(production, window)
            holes = {name: read_holes(conn, since, until) for name, conn in sources}
            markets = open_markets((conn for _, conn in sources), since, until)
            parts = window_parts(views, window, holes, markets)
            store_parts(production, parts)
            report.coverage.update(p.status for p in parts)
            save_book_cursor(production, until)
            production.commit()
            report.book_windows += 1
            report.book_gaps += sum(len(g) for g in window.gaps.values())
            report.books_until = until
            for table, rows in window.read.items():
                report.read[table] += rows
            for table, rows in window.inserted.items():
                report.inserted[table] += rows
            for market, gaps in window.gaps.items():
                for low, high in gaps:
                    log_event(log, "dedup_book_gap", logging.WARNING, market=market,
                              from_at=low.isoformat(), to_at=high.isoformat())  # fmt: skip
        report.complete = False
    finally:
        for _, conn in sources:
            conn.close()
