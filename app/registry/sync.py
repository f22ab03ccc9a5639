"""Full sync and periodic reconcile of series, events and markets from Kalshi's REST API.

`full_sync` (startup, `kalshi-data registry sync`) walks `GET /series`, `GET /events` and
`GET /markets` once per status filter (REG-4, REG-5), page by page: each page is parsed,
upserted and committed before the next is fetched, so memory stays one page whatever the
market count and an interrupted sync keeps what it wrote (re-running is idempotent). Settled
markets are read only for `settled_lookback_s` (REG-4 skips them; the live partition holds
months of them and older ones are gone behind the historical cutoff, kalshi-api.md §1.11).
Statuses change while the walk runs, so it ends with a catch-up pass over markets updated
since it started.

`reconcile` (beat, every `reconcile_interval_s`, DESIGN §6) re-reads only markets updated
since a watermark (`min_updated_ts`; REG-10 [design-flaw]: not all statuses every 5 min) plus
open events and series, and rewrites whatever drifted. Both publish membership changes to the
change feed per committed page and finish with a full `ChangeFeed.refresh`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from app.config import RegistrySettings
from app.kalshi.errors import NotFound
from app.kalshi.rest import KalshiRest, Page
from app.logs import log_event
from app.registry.feed import ChangeFeed, Published
from app.registry.membership import is_subscribed
from app.registry.records import (
    EventRecord,
    MarketRecord,
    RecordError,
    SeriesRecord,
    event_record,
    market_record,
    series_record,
)
from app.registry.store import (
    MarketWrite,
    WriteCounts,
    fix_market_series,
    missing_events,
    missing_series,
    newest_updated_time,
    upsert_events,
    upsert_markets,
    upsert_series,
)

log = logging.getLogger("app.registry.sync")

MISSING_EVENTS_PER_QUERY = 50
MAX_DRIFT_SAMPLE = 20


@dataclass
class SyncReport:
    """Counts of one full sync or reconcile (what the CLI prints and the beat task logs)."""

    kind: str
    markets: MarketWrite = field(default_factory=MarketWrite)
    events: WriteCounts = field(default_factory=WriteCounts)
    series: WriteCounts = field(default_factory=WriteCounts)
    invalid: int = 0
    pages: int = 0
    watermark: datetime | None = None
    drifted: list[str] = field(default_factory=list)  # sample of rewritten tickers
    published_added: int = 0
    published_removed: int = 0
    duration_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        m = self.markets
        return {
            "kind": self.kind,
            "markets_seen": m.seen,
            "markets_inserted": m.inserted,
            "markets_updated": m.updated,
            "markets_unchanged": m.unchanged,
            "status_changes": m.status_changes,
            "stale_skipped": m.stale,
            "events_seen": self.events.seen,
            "events_inserted": self.events.inserted,
            "events_updated": self.events.updated,
            "series_seen": self.series.seen,
            "series_inserted": self.series.inserted,
            "series_updated": self.series.updated,
            "invalid": self.invalid,
            "pages": self.pages,
            "watermark": self.watermark.isoformat() if self.watermark else None,
            "subscribed_added": self.published_added,
            "subscribed_removed": self.published_removed,
            "duration_s": round(self.duration_s, 3),
        }


def _records(items: Iterable[Any], parse: Any, what: str, report: SyncReport) -> list[Any]:
    out = []
    for item in items:
        try:
            out.append(parse(item))
        except RecordError as exc:
            report.invalid += 1
            ticker = (
                item.get("ticker") or item.get("event_ticker") if isinstance(item, dict) else None
            )
            log_event(
                log,
                "registry_invalid_object",
                logging.WARNING,
                what=what,
                ticker=ticker,
                error=str(exc),
            )
    return out


class _Run:
    """One sync/reconcile: the connection, client, feed and the running report."""

    def __init__(
        self,
        kind: str,
        conn: Any,
        client: KalshiRest,
        settings: RegistrySettings,
        feed: ChangeFeed | None,
        now: datetime,
    ) -> None:
        self.conn, self.client, self.settings, self.feed = conn, client, settings, feed
        self.now = now
        self.report = SyncReport(kind)
        self._started = time.monotonic()
        self._last_log = 0.0

    def _published(self, out: Published) -> None:
        self.report.published_added += out.added
        self.report.published_removed += out.removed

    def market_pages(self, pages: Iterator[Page], label: str) -> None:
        for page in pages:
            records: list[MarketRecord] = _records(page.items, market_record, "market", self.report)
            write = upsert_markets(self.conn, records, fetched_at=datetime.now(UTC))
            self.conn.commit()
            self.report.pages += 1
            self.report.markets.add(write)
            for change in write.changes:
                if not change.inserted and len(self.report.drifted) < MAX_DRIFT_SAMPLE:
                    self.report.drifted.append(change.ticker)
            if self.feed is not None and write.changes:
                members = [
                    c.ticker
                    for c in write.changes
                    if is_subscribed(c.status, c.close_time, self.now, self.settings)
                ]
                gone = [
                    c.ticker
                    for c in write.changes
                    if not is_subscribed(c.status, c.close_time, self.now, self.settings)
                ]
                self._published(self.feed.publish(members, gone))
            self.progress(label)

    def progress(self, label: str, force: bool = False) -> None:
        elapsed = time.monotonic() - self._started
        if not force and elapsed - self._last_log < 5.0:
            return
        self._last_log = elapsed
        m = self.report.markets
        log_event(
            log,
            "registry_progress",
            kind=self.report.kind,
            phase=label,
            pages=self.report.pages,
            markets_seen=m.seen,
            inserted=m.inserted,
            updated=m.updated,
            rate_per_s=round(m.seen / elapsed, 1) if elapsed else None,
        )

    def series_all(self) -> None:
        for page in self.client.series_pages():
            records: list[SeriesRecord] = _records(page.items, series_record, "series", self.report)
            self.report.series.add(upsert_series(self.conn, records))
            self.conn.commit()
            self.report.pages += 1

    def event_pages(self, **filters: Any) -> None:
        for page in self.client.event_pages(limit=self.settings.event_page_size, **filters):
            records: list[EventRecord] = _records(page.items, event_record, "event", self.report)
            self.report.events.add(upsert_events(self.conn, records))
            self.conn.commit()
            self.report.pages += 1
            self.progress("events")

    def fill_missing(self) -> None:
        """Events and series that markets/events name but we do not hold (REG-5)."""
        tried: set[str] = set()
        while True:
            wanted = [t for t in missing_events(self.conn) if t not in tried]
            self.conn.commit()
            if not wanted:
                break
            for start in range(0, len(wanted), MISSING_EVENTS_PER_QUERY):
                chunk = wanted[start : start + MISSING_EVENTS_PER_QUERY]
                tried.update(chunk)
                self.event_pages(tickers=chunk)
        for ticker in missing_series(self.conn):
            try:
                obj = self.client.get_series(ticker)
            except NotFound:
                continue
            records: list[SeriesRecord] = _records([obj], series_record, "series", self.report)
            self.report.series.add(upsert_series(self.conn, records))
        fixed = fix_market_series(self.conn)
        self.conn.commit()
        if fixed:
            log_event(log, "registry_series_fixed", markets=fixed)

    def statuses(self) -> None:
        for status in self.settings.sync_statuses:
            filters: dict[str, Any] = {"status": status}
            if status == "settled" and self.settings.settled_lookback_s is not None:
                since = self.now - timedelta(seconds=self.settings.settled_lookback_s)
                filters["min_settled_ts"] = int(since.timestamp())
            pages = self.client.market_pages(limit=self.settings.page_size, **filters)
            self.market_pages(pages, f"markets:{status}")

    def updated_since(self, since: datetime) -> None:
        self.report.watermark = since
        pages = self.client.market_pages(
            limit=self.settings.page_size, min_updated_ts=int(since.timestamp())
        )
        self.market_pages(pages, "markets:updated")

    def finish(self) -> SyncReport:
        if self.feed is not None:
            self._published(self.feed.refresh(self.conn))
            self.conn.commit()
        self.report.duration_s = time.monotonic() - self._started
        self.progress("done", force=True)
        log_event(log, "registry_" + self.report.kind + "_done", **self.report.summary())
        return self.report


def full_sync(
    conn: Any,
    client: KalshiRest,
    settings: RegistrySettings | None = None,
    *,
    feed: ChangeFeed | None = None,
    now: datetime | None = None,
) -> SyncReport:
    """Series, events and markets of every configured status, page by page (commits per page).

    `conn` is a psycopg2 connection (it is committed); `client` a `KalshiRest`. Raises the
    client's `KalshiError`s (after its own retries) and database errors; what was committed
    stays and a re-run continues idempotently.
    """
    settings = settings or RegistrySettings()
    started = now or datetime.now(UTC)
    run = _Run("sync", conn, client, settings, feed, started)
    log_event(log, "registry_sync_start", statuses=",".join(settings.sync_statuses))
    run.series_all()
    run.event_pages()
    run.statuses()
    if settings.catch_up:
        run.updated_since(started - timedelta(seconds=settings.reconcile_overlap_s))
    run.fill_missing()
    return run.finish()


def reconcile(
    conn: Any,
    client: KalshiRest,
    settings: RegistrySettings | None = None,
    *,
    feed: ChangeFeed | None = None,
    since: datetime | None = None,
    full: bool = False,
    now: datetime | None = None,
) -> SyncReport:
    """Fix drift: re-read markets updated since `since` (default: the newest `updated_time`
    we hold minus `reconcile_overlap_s`), or every configured status when `full` or the
    registry is empty; plus open events and all series. `report.markets.updated` counts the
    rows that had drifted (`report.drifted` samples their tickers)."""
    settings = settings or RegistrySettings()
    now = now or datetime.now(UTC)
    run = _Run("reconcile", conn, client, settings, feed, now)
    run.series_all()
    run.event_pages(status="open")
    if since is None and not full:
        newest = newest_updated_time(conn)
        conn.commit()
        if newest is not None:
            since = newest - timedelta(seconds=settings.reconcile_overlap_s)
    if full or since is None:
        run.statuses()
    else:
        run.updated_since(since)
    run.fill_missing()
    report = run.finish()
    if report.markets.updated:
        log_event(
            log,
            "registry_drift_fixed",
            logging.WARNING,
            markets=report.markets.updated,
            sample=",".join(report.drifted),
        )
    return report
