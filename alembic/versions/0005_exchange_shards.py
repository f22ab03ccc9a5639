"""Registry columns for Kalshi's exchange sharding and the 2026-H2 metadata fields.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

kalshi-api.md §9: since 2026-07-30 some series (Crypto, Tennis, Baseball) live on dedicated
exchange instances; `exchange_index` is on every Market and on Events and Series. Series and
events also carry `last_updated_ts`. All columns are nullable: objects fetched before the change
(and old captures replayed through the registry) do not have them. The full objects stay in
`metadata`, so nothing else needs a column to be kept.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPGRADE_DDL = """
ALTER TABLE markets ADD COLUMN IF NOT EXISTS exchange_index integer;
ALTER TABLE events ADD COLUMN IF NOT EXISTS exchange_index integer;
ALTER TABLE events ADD COLUMN IF NOT EXISTS last_updated_ts timestamptz;
ALTER TABLE series ADD COLUMN IF NOT EXISTS exchange_index integer;
ALTER TABLE series ADD COLUMN IF NOT EXISTS last_updated_ts timestamptz;
COMMENT ON COLUMN markets.exchange_index IS
    'Kalshi exchange instance (shard) the market trades on; NULL before 2026-07-30.';
"""

DOWNGRADE_DDL = """
ALTER TABLE series DROP COLUMN IF EXISTS last_updated_ts;
ALTER TABLE series DROP COLUMN IF EXISTS exchange_index;
ALTER TABLE events DROP COLUMN IF EXISTS last_updated_ts;
ALTER TABLE events DROP COLUMN IF EXISTS exchange_index;
ALTER TABLE markets DROP COLUMN IF EXISTS exchange_index;
"""


def upgrade() -> None:
    op.execute(UPGRADE_DDL)


def downgrade() -> None:
    op.execute(DOWNGRADE_DDL)
