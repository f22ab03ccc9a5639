"""Trade backfill of capture holes from the exchange's REST trade list (docs/backfill.md).

`backfill_trades(conn, client, settings.backfill, gatherer=...)` is one run: every closed
pending trade hole of the gatherer (oldest first, a bounded number) is filled from
`GET /markets/trades` (and `/historical/trades` before the cutoff) and marked done in the same
transaction as its new `source = 'rest'` rows. `plan` holds the pure window arithmetic,
`holes` the `capture_holes` SQL. The job wrapper is `app.ingest.backfill_trade_holes`; this
package never imports Celery, `tasks/` or `workers/`.
"""

from app.backfill.holes import Hole, candidate_holes, count_pending, lock_hole
from app.backfill.plan import (
    TradeQuery,
    plan_queries,
    plan_requeries,
    query_window,
    requery_parts,
    split_at_cutoff,
)
from app.backfill.trades import (
    BACKFILL_CONNECTION_PREFIX,
    BackfillReport,
    HoleResult,
    backfill_trades,
    fetch_hole_trades,
)

__all__ = [
    "BACKFILL_CONNECTION_PREFIX",
    "BackfillReport",
    "Hole",
    "HoleResult",
    "TradeQuery",
    "backfill_trades",
    "candidate_holes",
    "count_pending",
    "fetch_hole_trades",
    "lock_hole",
    "plan_queries",
    "plan_requeries",
    "query_window",
    "requery_parts",
    "split_at_cutoff",
]
