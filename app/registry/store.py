"""SQL for the registry tables: batched, idempotent upserts that leave unchanged rows alone.

A page of objects goes into a session temp table (`execute_values`), then one statement
inserts new rows and updates only rows whose content differs (`ON CONFLICT DO UPDATE ...
WHERE (old columns) IS DISTINCT FROM (new columns)`), so an unchanged row is never rewritten
(no dead tuple, no WAL, `updated_at` keeps its meaning). For markets the same statement writes
a `market_status_history` row for every status change, first sighting included, and refuses a
status that `status.status_wins` says is stale (REG-10 [design-flaw]).

Functions run in the caller's transaction and never commit (like `app.db`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from psycopg2.extras import Json, execute_values

from app.db.engine import dbapi_connection
from app.registry.records import (
    VOLATILE_MARKET_FIELDS,
    EventRecord,
    MarketRecord,
    SeriesRecord,
)
from app.registry.status import rank_sql

MARKET_COLUMNS: tuple[str, ...] = MarketRecord._fields
EVENT_COLUMNS: tuple[str, ...] = EventRecord._fields
SERIES_COLUMNS: tuple[str, ...] = SeriesRecord._fields

_MARKET_STAGE = "_kd_registry_markets"
_EVENT_STAGE = "_kd_registry_events"
_SERIES_STAGE = "_kd_registry_series"


def jsonb(value: Any) -> Json:
    return Json(value, dumps=lambda obj: orjson.dumps(obj).decode())


def _values(record: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(jsonb(v) if isinstance(v, dict) else v for v in record)


@dataclass(frozen=True)
class MarketChange:
    """A market row that was inserted or rewritten by an upsert."""

    ticker: str
    status: str
    previous_status: str | None
    close_time: datetime | None
    inserted: bool


@dataclass
class WriteCounts:
    seen: int = 0
    inserted: int = 0
    updated: int = 0

    @property
    def unchanged(self) -> int:
        return self.seen - self.inserted - self.updated

    def add(self, other: WriteCounts) -> None:
        self.seen += other.seen
        self.inserted += other.inserted
        self.updated += other.updated


@dataclass
class MarketWrite(WriteCounts):
    """What one market upsert did; `changes` lists inserted and rewritten rows."""

    status_changes: int = 0
    stale: int = 0
    changes: list[MarketChange] = field(default_factory=list)

    def add(self, other: WriteCounts) -> None:
        super().add(other)
        if isinstance(other, MarketWrite):
            self.status_changes += other.status_changes
            self.stale += other.stale


def _stage(cur: Any, stage: str, table: str, columns: Sequence[str], extra: str = "") -> None:
    column_list = ", ".join(columns)
    cur.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS "
        f"SELECT {column_list}{extra} FROM {table} WITH NO DATA"
    )
    cur.execute(f"DELETE FROM pg_temp.{stage}")  # rows of an earlier call in this transaction


def _changed(table: str, columns: Sequence[str], compare: dict[str, str] | None = None) -> str:
    """`(table.a, ...) IS DISTINCT FROM (EXCLUDED.a, ...)`, with per-column expressions."""
    compare = compare or {}
    old = ", ".join(compare.get(c, "{t}." + c).format(t=table) for c in columns)
    new = ", ".join(compare.get(c, "{t}." + c).format(t="EXCLUDED") for c in columns)
    return f"({old}) IS DISTINCT FROM ({new})"


_VOLATILE = "{t}.metadata - %(volatile)s::text[]"


def _market_upsert_sql() -> str:
    cols = [c for c in MARKET_COLUMNS]
    insert_cols = ", ".join(cols)
    select_cols = ", ".join(
        "series_ticker_resolved" if c == "series_ticker" else f"d.{c}" for c in cols
    )
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols if c != "ticker")
    changed = _changed("markets", [c for c in cols if c != "ticker"], {"metadata": _VOLATILE})
    fresh = (
        "i.old_status IS NULL OR i.status = i.old_status OR i.old_at IS NULL "
        f"OR i.observed_at >= i.old_at "
        f"OR COALESCE({rank_sql('i.status')} > {rank_sql('i.old_status')}, false)"
    )
    return f"""
WITH staged AS (
    SELECT DISTINCT ON (ticker) * FROM pg_temp.{_MARKET_STAGE}
    ORDER BY ticker, updated_time DESC NULLS LAST
),
incoming AS (
    SELECT s.*,
           COALESCE(e.series_ticker, s.series_ticker) AS series_ticker_resolved,
           m.status AS old_status,
           (SELECT h.observed_at FROM market_status_history h
             WHERE h.market_ticker = s.ticker ORDER BY h.observed_at DESC LIMIT 1) AS old_at
      FROM staged s
      LEFT JOIN markets m ON m.ticker = s.ticker
      LEFT JOIN events e ON e.event_ticker = s.event_ticker
),
decided AS (
    SELECT i.*, NOT ({fresh}) AS stale FROM incoming i
),
up AS (
    INSERT INTO markets AS markets ({insert_cols})
    SELECT {select_cols} FROM decided d WHERE NOT d.stale
    ON CONFLICT (ticker) DO UPDATE SET {updates}, updated_at = now()
    WHERE {changed}
    RETURNING markets.ticker, markets.status, markets.close_time, (xmax = 0) AS inserted
),
hist AS (
    INSERT INTO market_status_history
        (market_ticker, status, previous_status, observed_at, source, event_type)
    SELECT d.ticker, d.status, d.old_status, d.observed_at, %(source)s, %(event_type)s
      FROM decided d
     WHERE NOT d.stale AND d.status IS DISTINCT FROM d.old_status
    ON CONFLICT DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM decided),
       (SELECT count(*) FROM decided WHERE stale),
       (SELECT count(*) FROM hist),
       COALESCE((SELECT json_agg(json_build_array(
                    up.ticker, up.status, d.old_status, up.close_time, up.inserted))
                   FROM up JOIN decided d ON d.ticker = up.ticker), '[]'::json)
"""


_MARKET_SQL = _market_upsert_sql()


def upsert_markets(
    conn: Any,
    records: Sequence[MarketRecord],
    *,
    fetched_at: datetime,
    source: str = "rest",
    event_type: str = "sync",
) -> MarketWrite:
    """Insert new markets, rewrite changed ones, record status changes; returns what happened.

    A status observation is timed by the object's `updated_time` (Kalshi's time of its last
    non-trading change), or `fetched_at` when the object has none.
    """
    write = MarketWrite()
    if not records:
        return write
    with dbapi_connection(conn).cursor() as cur:
        _stage(cur, _MARKET_STAGE, "markets", MARKET_COLUMNS, ", now() AS observed_at")
        execute_values(
            cur,
            f"INSERT INTO pg_temp.{_MARKET_STAGE} ({', '.join(MARKET_COLUMNS)}, observed_at) "
            "VALUES %s",
            [(*_values(r), r.updated_time or fetched_at) for r in records],
            page_size=len(records),
        )
        cur.execute(
            _MARKET_SQL,
            {"volatile": list(VOLATILE_MARKET_FIELDS), "source": source, "event_type": event_type},
        )
        seen, stale, history, changed = cur.fetchone()
    write.seen, write.stale, write.status_changes = int(seen), int(stale), int(history)
    for ticker, status, previous, close_time, inserted in changed:
        write.changes.append(
            MarketChange(
                ticker,
                status,
                previous,
                datetime.fromisoformat(close_time) if close_time else None,
                bool(inserted),
            )
        )
        if inserted:
            write.inserted += 1
        else:
            write.updated += 1
    return write


def _upsert_plain(
    conn: Any,
    table: str,
    key: str,
    stage: str,
    columns: Sequence[str],
    records: Sequence[tuple[Any, ...]],
) -> WriteCounts:
    counts = WriteCounts()
    if not records:
        return counts
    column_list = ", ".join(columns)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != key)
    changed = _changed(table, [c for c in columns if c != key])
    with dbapi_connection(conn).cursor() as cur:
        _stage(cur, stage, table, columns)
        execute_values(
            cur,
            f"INSERT INTO pg_temp.{stage} ({column_list}) VALUES %s",
            [_values(r) for r in records],
            page_size=len(records),
        )
        cur.execute(
            f"""
WITH staged AS (SELECT DISTINCT ON ({key}) * FROM pg_temp.{stage} ORDER BY {key})
INSERT INTO {table} AS {table} ({column_list}) SELECT {column_list} FROM staged
ON CONFLICT ({key}) DO UPDATE SET {updates}, updated_at = now()
WHERE {changed}
RETURNING (xmax = 0)
"""
        )
        flags = [bool(row[0]) for row in cur.fetchall()]
        cur.execute(f"SELECT count(DISTINCT {key}) FROM pg_temp.{stage}")
        counts.seen = int(cur.fetchone()[0])
    counts.inserted = sum(flags)
    counts.updated = len(flags) - counts.inserted
    return counts


def upsert_events(conn: Any, records: Sequence[EventRecord]) -> WriteCounts:
    return _upsert_plain(conn, "events", "event_ticker", _EVENT_STAGE, EVENT_COLUMNS, records)


def upsert_series(conn: Any, records: Sequence[SeriesRecord]) -> WriteCounts:
    return _upsert_plain(conn, "series", "ticker", _SERIES_STAGE, SERIES_COLUMNS, records)


def missing_events(conn: Any, limit: int = 1000) -> list[str]:
    """Event tickers that markets name but `events` lacks (fetched on demand, REG-5)."""
    with dbapi_connection(conn).cursor() as cur:
        cur.execute(
            "SELECT DISTINCT m.event_ticker FROM markets m "
            "WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.event_ticker = m.event_ticker) "
            "ORDER BY 1 LIMIT %s",
            (limit,),
        )
        return [row[0] for row in cur.fetchall()]


def missing_series(conn: Any, limit: int = 1000) -> list[str]:
    """Series tickers that events name but `series` lacks (REG-5: fetched on demand)."""
    with dbapi_connection(conn).cursor() as cur:
        cur.execute(
            "SELECT DISTINCT e.series_ticker FROM events e WHERE e.series_ticker IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM series s WHERE s.ticker = e.series_ticker) "
            "ORDER BY 1 LIMIT %s",
            (limit,),
        )
        return [row[0] for row in cur.fetchall()]


def fix_market_series(conn: Any) -> int:
    """Point markets at their event's series where the ticker-prefix guess disagreed."""
    with dbapi_connection(conn).cursor() as cur:
        cur.execute(
            "UPDATE markets m SET series_ticker = e.series_ticker, updated_at = now() "
            "FROM events e WHERE e.event_ticker = m.event_ticker "
            "AND e.series_ticker IS NOT NULL AND m.series_ticker IS DISTINCT FROM e.series_ticker"
        )
        return int(cur.rowcount)


def newest_updated_time(conn: Any) -> datetime | None:
    """The reconcile watermark: the newest Kalshi `updated_time` we hold."""
    with dbapi_connection(conn).cursor() as cur:
        cur.execute("SELECT max(updated_time) FROM markets")
        row = cur.fetchone()
    return row[0] if row else None
