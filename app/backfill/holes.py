"""The backfill's side of `capture_holes` (alembic 0004, docs/schema.md): find, lock, settle.

The listener's ingest path inserts trade holes with `backfill_status = 'pending'` (other
channels get NULL, which is never touched here); the backfill moves a closed pending hole to
`done` in the same transaction as its trades, or records a failed attempt. A hole is locked
with `FOR UPDATE SKIP LOCKED` for the whole attempt, so two job workers never fill the same
hole at once: the second simply skips it. Every function runs in the caller's transaction
and never commits; nothing here ever changes a hole's times, markets or cause (the listener's).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.db.engine import dbapi_connection

ERROR_TEXT_MAX = 2000  # characters of an error message kept in backfill_error

_CANDIDATES_SQL = """
SELECT hole_id, from_at, to_at FROM capture_holes
WHERE gatherer = %s AND backfill_status = 'pending' AND to_at IS NOT NULL
  AND to_at <= now() - make_interval(secs => %s)
ORDER BY from_at, hole_id
LIMIT %s
"""

_LOCK_SQL = """
SELECT hole_id, channel, market_tickers, from_at, to_at, backfill_attempts FROM capture_holes
WHERE gatherer = %s AND hole_id = %s AND backfill_status = 'pending' AND to_at IS NOT NULL
FOR UPDATE SKIP LOCKED
"""

_DONE_SQL = """
UPDATE capture_holes SET backfill_status = 'done', backfilled_at = now(),
    backfilled_trades = %s, backfill_attempts = backfill_attempts + 1
WHERE gatherer = %s AND hole_id = %s
"""

_FAILED_SQL = """
UPDATE capture_holes SET backfill_attempts = backfill_attempts + 1, backfill_error = %s,
    backfill_status = CASE WHEN backfill_attempts + 1 >= %s THEN 'failed' ELSE 'pending' END
WHERE gatherer = %s AND hole_id = %s
RETURNING backfill_status, backfill_attempts
"""

_PENDING_SQL = """
SELECT count(*) FROM capture_holes WHERE gatherer = %s AND backfill_status = 'pending'
"""


@dataclass(frozen=True, slots=True)
class Hole:
    """A closed trade hole waiting for its backfill, as locked for one attempt."""

    gatherer: str
    hole_id: str
    channel: str
    market_tickers: tuple[str, ...] | None  # None: every market of the channel
    from_at: datetime
    to_at: datetime
    attempts: int  # failed or successful attempts before this one


def candidate_holes(
    conn: Any, gatherer: str, *, older_than_s: float, limit: int
) -> list[tuple[str, datetime, datetime]]:
    """(hole_id, from_at, to_at) of closed pending holes that ended at least `older_than_s`
    ago, oldest first. Not locked: `lock_hole` decides who gets each one."""
    with dbapi_connection(conn).cursor() as cur:
        cur.execute(_CANDIDATES_SQL, (gatherer, older_than_s, limit))
        return [(str(hole_id), start, end) for hole_id, start, end in cur.fetchall()]


def lock_hole(conn: Any, gatherer: str, hole_id: str) -> Hole | None:
    """Lock one hole for this transaction; None when another worker holds it or it is no
    longer a closed pending hole (done meanwhile, or reopened)."""
    with dbapi_connection(conn).cursor() as cur:
        cur.execute(_LOCK_SQL, (gatherer, hole_id))
        row = cur.fetchone()
    if row is None:
        return None
    found_id, channel, markets, from_at, to_at, attempts = row
    return Hole(
        gatherer=gatherer,
        hole_id=str(found_id),
        channel=str(channel),
        market_tickers=None if markets is None else tuple(markets),
        from_at=from_at,
        to_at=to_at,
        attempts=int(attempts),
    )


def mark_done(conn: Any, hole: Hole, inserted: int) -> None:
    """The hole is filled: `inserted` trades were new (the rest were already stored)."""
    with dbapi_connection(conn).cursor() as cur:
        cur.execute(_DONE_SQL, (inserted, hole.gatherer, hole.hole_id))


def record_failure(conn: Any, hole: Hole, error: str, max_attempts: int) -> tuple[str, int]:
    """Count a failed attempt and keep its error; the hole stays `pending` until it has
    failed `max_attempts` times, then it is `failed`. Returns (status, attempts)."""
    with dbapi_connection(conn).cursor() as cur:
        cur.execute(
            _FAILED_SQL, (error[:ERROR_TEXT_MAX], max_attempts, hole.gatherer, hole.hole_id)
        )
        status, attempts = cur.fetchone()
    return str(status), int(attempts)


def count_pending(conn: Any, gatherer: str) -> int:
    """Holes of `gatherer` still waiting for a backfill, open ones included."""
    with dbapi_connection(conn).cursor() as cur:
        cur.execute(_PENDING_SQL, (gatherer,))
        return int(cur.fetchone()[0])
