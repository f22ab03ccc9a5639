"""The deduplicator: every gatherer's database merged into production (DESIGN §5, docs/dedup.md).

`run_dedup(settings.dedup, production_url)` merges what each gatherer stored since its cursor:
trades by `trade_id`, lifecycle events by content, tickers by content with the maximum
multiplicity over gatherers. Order books (one gap-free gatherer per window, stitched at
snapshots) and production coverage are later slices.
"""

from app.dedup.cursors import Cursor, load_cursor, save_cursor
from app.dedup.merge import MERGED_TABLES, Batch, gatherer_horizon, merge_batch, read_batch
from app.dedup.runner import DedupReport, run_dedup

__all__ = [
    "MERGED_TABLES",
    "Batch",
    "Cursor",
    "DedupReport",
    "gatherer_horizon",
    "load_cursor",
    "merge_batch",
    "read_batch",
    "run_dedup",
    "save_cursor",
]
