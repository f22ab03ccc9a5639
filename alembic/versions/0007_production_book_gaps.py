"""`capture_holes` cause `no_whole_stream`: where production's order book has no gatherer's
whole stream (the deduplicator's chain gaps, docs/dedup.md).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03

A gatherer records the stretches it may have missed; production records, under gatherer `*`,
the stretches its chain of order book pieces could not cover from any gatherer (DESIGN §5:
"mark windows no gatherer covers"). `verify` reads them as holes like any other.

Also a BRIN index on `received_at` of both book tables: the deduplicator reads the book rows
of a time window from every gatherer (app/dedup/books.py), and the only index there leads with
the market. BRIN suits rows appended in receive-time order, costs almost nothing to keep and
works on native partitions and TimescaleDB chunks alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CAUSES = (
    "not_subscribed", "disconnect", "seq_gap", "listener_died", "listener_down", "journal_loss",
    "subscribe_failed",
)  # fmt: skip


def _check(causes: Sequence[str]) -> str:
    listed = ", ".join(f"'{c}'" for c in causes)
    return (
        "ALTER TABLE capture_holes DROP CONSTRAINT capture_holes_cause_check, "
        f"ADD CONSTRAINT capture_holes_cause_check CHECK (cause IN ({listed}))"
    )


BOOK_TABLES = ("orderbook_snapshots", "orderbook_deltas")


def upgrade() -> None:
    op.execute(_check((*CAUSES, "no_whole_stream")))
    for table in BOOK_TABLES:
        op.execute(
            f"CREATE INDEX IF NOT EXISTS {table}_received_brin ON {table} USING brin (received_at)"
        )


def downgrade() -> None:
    for table in BOOK_TABLES:
        op.execute(f"DROP INDEX IF EXISTS {table}_received_brin")
    op.execute("DELETE FROM capture_holes WHERE cause = 'no_whole_stream'")
    op.execute(_check(CAUSES))
