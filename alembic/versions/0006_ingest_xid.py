"""`ingest_xid`: the id of the transaction that stored each row, the deduplicator's cursor.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

DESIGN §5 / SEED-SPEC DED-2: a deduplicator polling `received_at > cursor` misses rows that
commit late with an older time (parallel writers). Every row the deduplicator merges now
records the writing transaction (`pg_current_xact_id()`, an `xid8` that never wraps); below a
database's horizon (`pg_snapshot_xmin(pg_current_snapshot())`) every transaction has ended, so
`cursor <= ingest_xid < horizon` is a set that can no longer grow (docs/dedup.md).

The column is added nullable, then given its default, so that it is a catalogue-only change
on plain PostgreSQL and allowed on compressed TimescaleDB hypertables; rows stored before this
revision keep NULL, and the deduplicator takes those once, on its first pass.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("trades", "tickers", "lifecycle_events", "orderbook_snapshots", "orderbook_deltas")


def upgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS ingest_xid xid8")
        op.execute(f"ALTER TABLE {table} ALTER COLUMN ingest_xid SET DEFAULT pg_current_xact_id()")
        op.execute(f"CREATE INDEX IF NOT EXISTS {table}_ingest_xid_idx ON {table} (ingest_xid)")
        op.execute(
            f"COMMENT ON COLUMN {table}.ingest_xid IS "
            "'Transaction that stored the row (pg_current_xact_id()); the deduplicator cursor.'"
        )


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP INDEX IF EXISTS {table}_ingest_xid_idx")
        op.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS ingest_xid")
