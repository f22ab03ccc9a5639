"""Capture holes: every stretch a gatherer knows it may have missed.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

DESIGN §1 guarantee 2 (known gaps): the listener records, per channel and market set, the time
before its first subscription, every disconnect until resubscribed, every sequence gap until
recovered and every stretch a dead listener left behind (docs/holes.md). The trade backfill
reads the trade-channel holes and marks them done; coverage and `verify` read all of them.
A relational table: a gatherer has at most a few holes a minute, never a time series.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CAPTURE_HOLES_DDL = """
CREATE TABLE capture_holes (
    gatherer           text        NOT NULL,
    hole_id            text        NOT NULL,
    connection_id      text,
    channel            text        NOT NULL,
    market_tickers     text[],
    cause              text        NOT NULL CHECK (cause IN (
        'not_subscribed', 'disconnect', 'seq_gap', 'listener_died', 'listener_down',
        'journal_loss', 'subscribe_failed')),
    from_at            timestamptz NOT NULL,
    to_at              timestamptz,
    detail             text,
    backfill_status    text        CHECK (backfill_status IN ('pending', 'done', 'failed')),
    backfilled_at      timestamptz,
    backfilled_trades  integer,
    backfill_attempts  integer     NOT NULL DEFAULT 0,
    backfill_error     text,
    recorded_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT capture_holes_pkey PRIMARY KEY (gatherer, hole_id),
    CONSTRAINT capture_holes_order_check CHECK (to_at IS NULL OR to_at >= from_at)
);
CREATE INDEX capture_holes_time_idx ON capture_holes (gatherer, from_at);
CREATE INDEX capture_holes_backfill_idx ON capture_holes (gatherer, from_at)
    WHERE backfill_status = 'pending';
COMMENT ON TABLE capture_holes IS
    'Stretches a gatherer may have missed: channel, markets (NULL = all), from/to, cause; '
    'trade holes carry their REST backfill state.';
"""


def upgrade() -> None:
    op.execute(CAPTURE_HOLES_DDL)


def downgrade() -> None:
    op.execute("DROP TABLE capture_holes")
