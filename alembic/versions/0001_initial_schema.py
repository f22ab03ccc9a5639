"""Initial schema: time-series tables (partitioned or hypertables) and relational tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-24

DESIGN §4 is the contract; docs/schema.md explains every column, key and partition column.
Units: prices bigint micro-dollars, quantities bigint hundredths of a contract, times
timestamptz plus the exact receive time in ns (bigint).

Branch: with TimescaleDB available (packaged and preloaded) the time-series tables become
hypertables with compression and raw-frame retention (SQL in app/db/timescale.py); otherwise
they are `PARTITION BY RANGE` with daily partitions and an empty-by-design DEFAULT partition
(app/db/partitions.py), and partitions around today are created here so the database is usable
at once. `-x timescaledb=on|off` forces the branch (needed for offline `--sql` output).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from alembic import context, op
from app.db import partitions, timescale
from app.db.tables import (
    COVERAGE,
    DEAD_LETTERS,
    LIFECYCLE_EVENTS,
    ORDERBOOK_DELTAS,
    ORDERBOOK_SNAPSHOTS,
    RAW_FRAMES_0001,
    TICKERS,
    TRADES,
)

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The time-series tables of this revision (frozen: later revisions change the catalogue).
TIME_SERIES_TABLES = (
    RAW_FRAMES_0001,
    DEAD_LETTERS,
    ORDERBOOK_SNAPSHOTS,
    ORDERBOOK_DELTAS,
    TRADES,
    TICKERS,
    LIFECYCLE_EVENTS,
    COVERAGE,
)

# {partitioning} is `PARTITION BY RANGE (<time column>)` natively, empty for hypertables.
TIME_SERIES_DDL: dict[str, str] = {
    "raw_frames": """
CREATE TABLE raw_frames (
    gatherer       text        NOT NULL,
    connection_id  text        NOT NULL,
    received_ns    bigint      NOT NULL,
    received_at    timestamptz NOT NULL,
    batch_pos      integer     NOT NULL,
    sid            bigint,
    seq            bigint,
    gap            boolean     NOT NULL DEFAULT false,
    msg_type       text,
    market_ticker  text,
    raw            bytea       NOT NULL,
    CONSTRAINT raw_frames_pkey
        PRIMARY KEY (gatherer, connection_id, received_ns, batch_pos, received_at)
) {partitioning}""",
    "dead_letters": """
CREATE TABLE dead_letters (
    gatherer       text        NOT NULL,
    connection_id  text        NOT NULL,
    received_ns    bigint      NOT NULL,
    received_at    timestamptz NOT NULL,
    batch_pos      integer     NOT NULL,
    sid            bigint,
    seq            bigint,
    msg_type       text,
    stage          text        NOT NULL,
    reason         text        NOT NULL,
    stream         text,
    entry_id       text,
    raw            bytea       NOT NULL,
    CONSTRAINT dead_letters_pkey
        PRIMARY KEY (gatherer, connection_id, received_ns, batch_pos, received_at)
) {partitioning}""",
    "orderbook_snapshots": """
CREATE TABLE orderbook_snapshots (
    gatherer       text        NOT NULL,
    source         text        NOT NULL CHECK (source IN ('ws', 'rest', 'resync')),
    market_ticker  text        NOT NULL,
    market_id      text,
    connection_id  text        NOT NULL,
    sid            bigint      NOT NULL,
    seq            bigint      NOT NULL,
    received_ns    bigint      NOT NULL,
    received_at    timestamptz NOT NULL,
    batch_pos      integer     NOT NULL,
    exchange_ts    timestamptz,
    yes_prices     bigint[]    NOT NULL,
    yes_sizes      bigint[]    NOT NULL,
    no_prices      bigint[]    NOT NULL,
    no_sizes       bigint[]    NOT NULL,
    best_yes_bid   bigint,
    best_no_bid    bigint,
    CONSTRAINT orderbook_snapshots_levels_check CHECK (
        cardinality(yes_prices) = cardinality(yes_sizes)
        AND cardinality(no_prices) = cardinality(no_sizes)),
    CONSTRAINT orderbook_snapshots_pkey
        PRIMARY KEY (gatherer, connection_id, sid, seq, market_ticker, received_at)
) {partitioning}""",
    "orderbook_deltas": """
CREATE TABLE orderbook_deltas (
    gatherer       text        NOT NULL,
    market_ticker  text        NOT NULL,
    market_id      text,
    connection_id  text        NOT NULL,
    sid            bigint      NOT NULL,
    seq            bigint      NOT NULL,
    received_ns    bigint      NOT NULL,
    received_at    timestamptz NOT NULL,
    batch_pos      integer     NOT NULL,
    exchange_ts    timestamptz,
    side           text        NOT NULL CHECK (side IN ('yes', 'no')),
    price          bigint      NOT NULL,
    delta          bigint      NOT NULL,
    CONSTRAINT orderbook_deltas_pkey
        PRIMARY KEY (gatherer, connection_id, sid, seq, received_at)
) {partitioning}""",
    "trades": """
CREATE TABLE trades (
    trade_id         text        NOT NULL,
    exchange_ts      timestamptz NOT NULL,
    exchange_ms      bigint,
    market_ticker    text        NOT NULL,
    yes_price        bigint      NOT NULL,
    no_price         bigint      NOT NULL,
    size             bigint      NOT NULL,
    taker_side       text        CHECK (taker_side IN ('yes', 'no')),
    taker_book_side  text        CHECK (taker_book_side IN ('bid', 'ask')),
    is_block_trade   boolean,
    source           text        NOT NULL CHECK (source IN ('ws', 'rest')),
    gatherer         text        NOT NULL,
    connection_id    text        NOT NULL,
    sid              bigint,
    seq              bigint,
    received_ns      bigint      NOT NULL,
    received_at      timestamptz NOT NULL,
    batch_pos        integer     NOT NULL,
    CONSTRAINT trades_whole_second_check
        CHECK (exchange_ts = date_trunc('second', exchange_ts)),
    CONSTRAINT trades_exchange_ms_check
        CHECK (exchange_ms IS NULL OR exchange_ms / 1000 = extract(epoch FROM exchange_ts)),
    CONSTRAINT trades_pkey PRIMARY KEY (trade_id, exchange_ts)
) {partitioning}""",
    "tickers": """
CREATE TABLE tickers (
    gatherer              text        NOT NULL,
    connection_id         text        NOT NULL,
    sid                   bigint,
    received_ns           bigint      NOT NULL,
    received_at           timestamptz NOT NULL,
    batch_pos             integer     NOT NULL,
    market_ticker         text        NOT NULL,
    market_id             text,
    exchange_ts           timestamptz NOT NULL,
    price                 bigint,
    yes_bid               bigint,
    yes_ask               bigint,
    yes_bid_size          bigint,
    yes_ask_size          bigint,
    last_trade_size       bigint,
    volume                bigint,
    open_interest         bigint,
    dollar_volume         bigint,
    dollar_open_interest  bigint,
    clock                 bigint,
    CONSTRAINT tickers_pkey
        PRIMARY KEY (gatherer, connection_id, received_ns, batch_pos, exchange_ts)
) {partitioning}""",
    "lifecycle_events": """
CREATE TABLE lifecycle_events (
    gatherer          text        NOT NULL,
    connection_id     text        NOT NULL,
    sid               bigint,
    received_ns       bigint      NOT NULL,
    received_at       timestamptz NOT NULL,
    batch_pos         integer     NOT NULL,
    msg_type          text        NOT NULL,
    event_type        text        NOT NULL,
    market_ticker     text,
    event_ticker      text,
    exchange_ts       timestamptz,
    result            text,
    settlement_value  bigint,
    is_deactivated    boolean,
    open_ts           timestamptz,
    close_ts          timestamptz,
    determination_ts  timestamptz,
    settled_ts        timestamptz,
    payload           jsonb       NOT NULL,
    payload_hash      bytea       NOT NULL,
    CONSTRAINT lifecycle_events_pkey
        PRIMARY KEY (gatherer, connection_id, received_ns, batch_pos, received_at)
) {partitioning}""",
    "coverage": """
CREATE TABLE coverage (
    market_ticker          text        NOT NULL,
    hour                   timestamptz NOT NULL,
    status                 text        NOT NULL
        CHECK (status IN ('complete', 'degraded', 'missing')),
    gatherers              text[]      NOT NULL DEFAULT '{{}}',
    book_source            text,
    gap_count              integer     NOT NULL DEFAULT 0,
    reconciliation         text
        CHECK (reconciliation IN ('match', 'mismatch', 'not_checked')),
    reconciliation_detail  jsonb,
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT coverage_whole_hour_check CHECK (hour = date_trunc('hour', hour, 'UTC')),
    CONSTRAINT coverage_pkey PRIMARY KEY (market_ticker, hour)
) {partitioning}""",
}

TIME_SERIES_INDEXES = """
CREATE INDEX orderbook_snapshots_market_time_idx
    ON orderbook_snapshots (market_ticker, received_at DESC);
CREATE INDEX orderbook_deltas_market_time_idx ON orderbook_deltas (market_ticker, received_at);
CREATE INDEX trades_market_time_idx ON trades (market_ticker, exchange_ts);
CREATE INDEX tickers_market_time_idx ON tickers (market_ticker, exchange_ts);
CREATE INDEX lifecycle_events_market_time_idx ON lifecycle_events (market_ticker, received_at);
CREATE INDEX lifecycle_events_event_time_idx ON lifecycle_events (event_ticker, received_at);
CREATE INDEX lifecycle_events_content_idx
    ON lifecycle_events (market_ticker, event_type, payload_hash);
CREATE INDEX coverage_incomplete_idx ON coverage (hour) WHERE status <> 'complete';
"""

RELATIONAL_DDL = """
CREATE TABLE series (
    ticker         text        PRIMARY KEY,
    title          text,
    category       text,
    frequency      text,
    fee_type       text,
    tags           text[]      NOT NULL DEFAULT '{}',
    metadata       jsonb       NOT NULL,
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX series_category_idx ON series (category);

CREATE TABLE events (
    event_ticker            text        PRIMARY KEY,
    series_ticker           text,
    title                   text,
    sub_title               text,
    category                text,
    mutually_exclusive      boolean,
    collateral_return_type  text,
    strike_date             timestamptz,
    strike_period           text,
    metadata                jsonb       NOT NULL,
    first_seen_at           timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_series_idx ON events (series_ticker);

CREATE TABLE markets (
    ticker                    text        PRIMARY KEY,
    event_ticker              text        NOT NULL,
    series_ticker             text,
    market_type               text,
    status                    text        NOT NULL,
    result                    text,
    title                     text,
    yes_sub_title             text,
    no_sub_title              text,
    open_time                 timestamptz,
    close_time                timestamptz,
    expected_expiration_time  timestamptz,
    expiration_time           timestamptz,
    latest_expiration_time    timestamptz,
    settlement_ts             timestamptz,
    settlement_value          bigint,
    price_level_structure     text,
    strike_type               text,
    floor_strike              numeric,
    cap_strike                numeric,
    is_provisional            boolean,
    mve_collection_ticker     text,
    created_time              timestamptz,
    updated_time              timestamptz,
    metadata                  jsonb       NOT NULL,
    first_seen_at             timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX markets_event_idx ON markets (event_ticker);
CREATE INDEX markets_series_idx ON markets (series_ticker);
CREATE INDEX markets_status_idx ON markets (status);
CREATE INDEX markets_close_time_idx ON markets (close_time);

CREATE TABLE market_status_history (
    market_ticker    text        NOT NULL,
    status           text        NOT NULL,
    previous_status  text,
    observed_at      timestamptz NOT NULL,
    source           text        NOT NULL CHECK (source IN ('rest', 'ws')),
    event_type       text,
    CONSTRAINT market_status_history_pkey PRIMARY KEY (market_ticker, observed_at, status)
);

CREATE TABLE sequence_gaps (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    gatherer        text        NOT NULL,
    connection_id   text        NOT NULL,
    sid             bigint      NOT NULL,
    market_tickers  text[]      NOT NULL DEFAULT '{}',
    expected_seq    bigint      NOT NULL,
    got_seq         bigint      NOT NULL,
    detected_at     timestamptz NOT NULL,
    recovered_at    timestamptz,
    recovery        text,
    CONSTRAINT sequence_gaps_key UNIQUE (gatherer, connection_id, sid, expected_seq)
);
CREATE INDEX sequence_gaps_detected_idx ON sequence_gaps (detected_at);
CREATE INDEX sequence_gaps_open_idx ON sequence_gaps (gatherer) WHERE recovered_at IS NULL;

CREATE TABLE connection_sessions (
    gatherer       text        NOT NULL,
    connection_id  text        NOT NULL,
    role           text        NOT NULL,
    shard          text,
    url            text,
    opened_at      timestamptz NOT NULL,
    closed_at      timestamptz,
    close_reason   text,
    market_count   integer,
    CONSTRAINT connection_sessions_pkey PRIMARY KEY (gatherer, connection_id)
);
CREATE INDEX connection_sessions_opened_idx ON connection_sessions (opened_at);

CREATE TABLE dedup_cursors (
    gatherer       text        NOT NULL,
    table_name     text        NOT NULL,
    watermark      timestamptz,
    window_end     timestamptz,
    position       jsonb,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT dedup_cursors_pkey PRIMARY KEY (gatherer, table_name)
);
"""

COMMENTS = """
COMMENT ON TABLE raw_frames IS
    'Every received WebSocket frame, exact bytes; key = frame identity + received_at.';
COMMENT ON TABLE dead_letters IS
    'Frames that could not be normalized: raw bytes, reason, gatherer/connection/stream origin.';
COMMENT ON TABLE orderbook_snapshots IS
    'Full books (all levels, both sides, bids only). Prices micro-dollars, sizes hundredths.';
COMMENT ON TABLE orderbook_deltas IS
    'Signed level changes: price micro-dollars, delta hundredths of a contract.';
COMMENT ON TABLE trades IS
    'Public trades. exchange_ts = whole second (key), exchange_ms = exact ms when known.';
COMMENT ON TABLE tickers IS
    'Ticker updates: prices micro-dollars, sizes/volume hundredths, dollar_* whole dollars.';
COMMENT ON TABLE lifecycle_events IS
    'Market/event lifecycle messages; payload = msg as received, payload_hash = sha256.';
COMMENT ON TABLE coverage IS
    'Production: per market per hour, complete/degraded/missing and reconciliation result.';
COMMENT ON TABLE dedup_cursors IS
    'Production: per gatherer and table, how far the deduplicator has read and processed.';
"""

DROP_ORDER = (
    "dedup_cursors",
    "connection_sessions",
    "sequence_gaps",
    "market_status_history",
    "markets",
    "events",
    "series",
    "coverage",
    "lifecycle_events",
    "tickers",
    "trades",
    "orderbook_deltas",
    "orderbook_snapshots",
    "dead_letters",
    "raw_frames",
)


def _use_timescaledb() -> bool:
    choice = context.get_x_argument(as_dictionary=True).get("timescaledb", "auto")
    offline = context.is_offline_mode()
    return timescale.migration_wants_timescaledb(
        choice, offline=offline, conn=None if offline else op.get_bind()
    )


def upgrade() -> None:
    hypertables = _use_timescaledb()
    for table in TIME_SERIES_TABLES:
        clause = "" if hypertables else f"PARTITION BY RANGE ({table.time_column})"
        op.execute(TIME_SERIES_DDL[table.name].format(partitioning=clause))
    op.execute(TIME_SERIES_INDEXES)
    if hypertables:
        for statement in timescale.setup_sql(TIME_SERIES_TABLES):
            op.execute(statement)
    else:
        for table in TIME_SERIES_TABLES:
            op.execute(partitions.default_partition_ddl(table))
        if context.is_offline_mode():
            days = partitions.days_around(
                datetime.now(UTC), partitions.MIGRATION_DAYS_BACK, partitions.MIGRATION_DAYS_AHEAD
            )
            for table in TIME_SERIES_TABLES:
                for day in days:
                    op.execute(partitions.partition_ddl(table, day))
        else:
            partitions.ensure_partitions(
                op.get_bind(),
                days_ahead=partitions.MIGRATION_DAYS_AHEAD,
                days_back=partitions.MIGRATION_DAYS_BACK,
                tables=TIME_SERIES_TABLES,
            )
    op.execute(RELATIONAL_DDL)
    op.execute(COMMENTS)


def downgrade() -> None:
    # Dropping a parent drops its partitions (or a hypertable's chunks and policies); the
    # timescaledb extension itself is left installed, as other databases may rely on it.
    for name in DROP_ORDER:
        op.execute(f"DROP TABLE IF EXISTS {name}")
