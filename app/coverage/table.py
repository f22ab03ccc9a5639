"""`refresh_coverage`: store one gatherer's computed coverage in the `coverage` table.

Which rows are stored (docs/coverage.md, "What refresh_coverage stores"): every market-hour
that is not `complete`, and a `complete` one only when the market was active in that hour (a
stored trade, book delta or ticker). A million open markets x 24 hours would otherwise be 24M
rows a day saying "nothing happened, nothing was lost"; an open market with no row in a
refreshed hour is complete and quiet. Runs in the caller's transaction and never commits; it
is a plain function so a Celery task can wrap it later (STYLE §3).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from app.coverage.market_hours import HOUR, MarketHour, compute_coverage, hours_between
from app.db.engine import dbapi_connection
from app.logs import log_event

log = logging.getLogger(__name__)

FLUSH_ROWS = 10_000

_STAGE = "_kd_coverage_rows"
_ACTIVE = "_kd_coverage_active"

_CREATE = f"""
DROP TABLE IF EXISTS {_STAGE};
DROP TABLE IF EXISTS {_ACTIVE};
CREATE TEMP TABLE {_STAGE} (
    market_ticker text NOT NULL, hour timestamptz NOT NULL, status text NOT NULL,
    gap_count integer NOT NULL, PRIMARY KEY (market_ticker, hour));
CREATE TEMP TABLE {_ACTIVE} (
    market_ticker text NOT NULL, hour timestamptz NOT NULL, PRIMARY KEY (hour, market_ticker));
"""

# Activity of the range in one pass over each table's partitions (they have no time-leading
# index, so one scan per hour would read each day partition 24 times).
_ACTIVITY = f"""
INSERT INTO {_ACTIVE} (market_ticker, hour)
SELECT market_ticker, date_trunc('hour', exchange_ts, 'UTC') FROM trades
 WHERE exchange_ts >= %(low)s AND exchange_ts < %(high)s {{market}}
UNION
SELECT market_ticker, date_trunc('hour', exchange_ts, 'UTC') FROM tickers
 WHERE exchange_ts >= %(low)s AND exchange_ts < %(high)s {{market}}
UNION
SELECT market_ticker, date_trunc('hour', received_at, 'UTC') FROM orderbook_deltas
 WHERE received_at >= %(low)s AND received_at < %(high)s {{market}}
"""

# Rows owned by other gatherers (a production row the deduplicator wrote) are never touched;
# unchanged rows are not rewritten, so updated_at keeps its meaning and a re-run is a no-op.
# A reconciliation result someone else wrote is kept: only a new row starts as not_checked.
_UPSERT = f"""
INSERT INTO coverage AS c
    (market_ticker, hour, status, gatherers, gap_count, reconciliation, updated_at)
SELECT market_ticker, hour, status, %(gatherers)s::text[], gap_count, 'not_checked', now()
  FROM {_STAGE}
ON CONFLICT (market_ticker, hour) DO UPDATE
   SET status = EXCLUDED.status, gap_count = EXCLUDED.gap_count, updated_at = EXCLUDED.updated_at
 WHERE c.gatherers = EXCLUDED.gatherers
   AND (c.status, c.gap_count) IS DISTINCT FROM (EXCLUDED.status, EXCLUDED.gap_count)
"""

_DELETE_STALE = f"""
DELETE FROM coverage c
 WHERE c.hour >= %(low)s AND c.hour < %(high)s AND c.gatherers = %(gatherers)s::text[]
   {{market}}
   AND NOT EXISTS (SELECT 1 FROM {_STAGE} s
                    WHERE s.market_ticker = c.market_ticker AND s.hour = c.hour)
"""


# What the range holds for this gatherer now (staged rows minus those another owner keeps).
_OWNED = f"""
SELECT count(*) FROM {_STAGE} s JOIN coverage c USING (market_ticker, hour)
 WHERE c.gatherers = %(gatherers)s::text[]
"""


def _copy_text(value: str) -> str:
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


def _stage(cur: Any, rows: Iterable[MarketHour]) -> None:
    buffer = io.StringIO()
    for row in rows:
        buffer.write(
            f"{_copy_text(row.market_ticker)}\t{row.hour.isoformat()}\t{row.status}\t"
            f"{row.assessment.holes}\n"
        )
    buffer.seek(0)
    cur.copy_expert(f"COPY {_STAGE} (market_ticker, hour, status, gap_count) FROM STDIN", buffer)


def refresh_coverage(
    conn: Any,
    gatherer: str,
    since: datetime,
    until: datetime,
    *,
    market: str | None = None,
    now: datetime | None = None,
) -> int:
    """Rewrite `gatherer`'s coverage rows of the whole hours overlapping [since, until).

    Idempotent: the same holes, markets and data give the same table (rows that no longer
    apply are deleted, unchanged rows are left alone). Returns the number of rows the range
    holds for this gatherer afterwards. Needs migrations up to 0004; does not commit.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    hours = hours_between(since, until, now)
    if not hours:
        return 0
    low, high = hours[0], hours[-1] + HOUR
    raw = dbapi_connection(conn)
    params: dict[str, Any] = {
        "low": low,
        "high": min(high, now),
        "gatherers": [gatherer],
        "market": market,
    }
    only_market = "AND market_ticker = %(market)s" if market is not None else ""
    staged = 0
    with raw.cursor() as cur:
        cur.execute(_CREATE)
        cur.execute(_ACTIVITY.format(market=only_market), params)
        active_hour: datetime | None = None
        active: set[str] = set()
        pending: list[MarketHour] = []
        for row in compute_coverage(raw, gatherer, since, until, market=market, now=now):
            if row.hour != active_hour:
                active_hour = row.hour
                cur.execute(f"SELECT market_ticker FROM {_ACTIVE} WHERE hour = %s", (row.hour,))
                active = {ticker for (ticker,) in cur.fetchall()}
            if row.status != "complete" or row.market_ticker in active:
                pending.append(row)
            if len(pending) >= FLUSH_ROWS:
                _stage(cur, pending)
                staged += len(pending)
                pending.clear()
        _stage(cur, pending)
        staged += len(pending)
        cur.execute(f"ANALYZE {_STAGE}")
        cur.execute(_UPSERT, params)
        changed = cur.rowcount
        params["high"] = high
        cur.execute(
            _DELETE_STALE.format(market="AND c.market_ticker = %(market)s" if market else ""),
            params,
        )
        deleted = cur.rowcount
        cur.execute(_OWNED, params)
        owned = cur.fetchone()
        stored = int(owned[0]) if owned else 0
        cur.execute(f"DROP TABLE {_STAGE}; DROP TABLE {_ACTIVE}")
    log_event(
        log,
        "coverage_refreshed",
        gatherer=gatherer,
        low=low.isoformat(),
        high=high.isoformat(),
        rows=stored,
        staged=staged,
        changed=changed,
        deleted=deleted,
    )
    return stored
