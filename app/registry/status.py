"""Market status vocabulary and the rule deciding which observation of a status wins.

Kalshi answers with eight statuses (kalshi-api.md §1.5) but filters with five other words
(§1.4, KAPI-11). REST pages and lifecycle frames arrive in any order, so "last writer wins"
would let a page fetched before a lifecycle event overwrite the newer status (REG-10's
[design-flaw]). `status_wins` orders observations by time first and by lifecycle rank when
the times disagree. Pure: no I/O.
"""

from __future__ import annotations

from datetime import datetime

# Response vocabulary (§1.5) in lifecycle order; paused (`inactive`) ranks with `active`
# because a market moves both ways between them.
STATUS_RANK: dict[str, int] = {
    "initialized": 0,
    "active": 1,
    "inactive": 1,
    "closed": 2,
    "determined": 3,
    "disputed": 3,
    "amended": 3,
    "finalized": 4,
}

# Filter word (§1.4) -> response statuses it returns.
FILTER_STATUSES: dict[str, tuple[str, ...]] = {
    "unopened": ("initialized",),
    "open": ("active",),
    "paused": ("inactive",),
    "closed": ("closed", "determined", "disputed", "amended"),
    "settled": ("finalized",),
}

# Production's 8 -> 4 mapping [REG-15]; `inactive` is a paused open market, so it maps to open.
PRODUCTION_STATUS: dict[str, str] = {
    "initialized": "unopened",
    "active": "open",
    "inactive": "open",
    "closed": "closed",
    "determined": "settled",
    "disputed": "settled",
    "amended": "settled",
    "finalized": "settled",
}


def status_rank(status: str | None) -> int | None:
    return None if status is None else STATUS_RANK.get(status)


def status_wins(
    old: str | None, old_at: datetime | None, new: str, new_at: datetime | None
) -> bool:
    """Should `new` (observed at `new_at`) replace the stored `old` (last observed at `old_at`)?

    Yes when there is nothing stored, when the new observation is not older, or when it moves
    the market forward in its lifecycle (a stale read can only show an earlier state, so a
    forward move is never stale; an "older" forward move means two clocks disagree). Equal
    statuses are not a change.
    """
    if new == old:
        return False
    if old is None or old_at is None or new_at is None or new_at >= old_at:
        return True
    new_rank, old_rank = status_rank(new), status_rank(old)
    return new_rank is not None and old_rank is not None and new_rank > old_rank


def rank_sql(column: str) -> str:
    """SQL expression giving the rank of a status column (NULL for unknown statuses)."""
    cases = " ".join(f"WHEN '{status}' THEN {rank}" for status, rank in STATUS_RANK.items())
    return f"(CASE {column} {cases} END)"
