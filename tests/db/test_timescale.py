"""The TimescaleDB branch: exact generated SQL, and detection on this plain PostgreSQL.

TimescaleDB cannot be installed here, so its statements are checked as strings, and the
PL/pgSQL blocks are additionally compiled by this server (PL/pgSQL parses every statement of a
block before running it), which proves their syntax without the extension.
"""

from __future__ import annotations

import logging

import psycopg2.extensions
import pytest
from sqlalchemy import text

from app.db import partitions, timescale
from app.db.engine import create_db_engine
from app.db.tables import DEAD_LETTERS, TIME_SERIES_TABLES, TRADES


def test_hypertable_statement() -> None:
    assert timescale.hypertable_sql(TRADES) == (
        "SELECT create_hypertable('trades', by_range('exchange_ts', INTERVAL '1 day'), "
        "create_default_indexes => false, if_not_exists => true)"
    )


def test_compression_statements() -> None:
    assert timescale.compression_sql(TRADES) == [
        "ALTER TABLE trades SET (timescaledb.compress, "
        "timescaledb.compress_segmentby = 'market_ticker', "
        "timescaledb.compress_orderby = 'exchange_ts DESC')",
        "PERFORM add_compression_policy('trades', compress_after => INTERVAL '7 days', "
        "if_not_exists => true)",
    ]
    with pytest.raises(ValueError, match="not configured for compression"):
        timescale.compression_sql(DEAD_LETTERS)


def test_policy_block_checks_the_license_and_covers_every_table() -> None:
    block = timescale.licensed_policies_sql()
    assert block.startswith("DO $kd$")
    assert "IF current_setting('timescaledb.license', true) = 'timescale' THEN" in block
    compressed = [t for t in TIME_SERIES_TABLES if t.compress]
    assert {t.name for t in compressed} == {
        "raw_batches",
        "orderbook_snapshots",
        "orderbook_deltas",
        "trades",
        "tickers",
        "lifecycle_events",
    }
    for table in compressed:
        segment = "gatherer" if table.name == "raw_batches" else "market_ticker"
        assert f"timescaledb.compress_segmentby = '{segment}'" in block
        assert f"timescaledb.compress_orderby = '{table.time_column} DESC'" in block
        assert f"PERFORM add_compression_policy('{table.name}'," in block
    assert block.count("add_retention_policy") == 1
    assert (
        "PERFORM add_retention_policy('raw_batches', drop_after => INTERVAL '7 days', "
        "if_not_exists => true);" in block
    )
    assert "RAISE NOTICE" in block.split("ELSE", 1)[1]


def test_setup_order() -> None:
    statements = timescale.setup_sql()
    assert statements[0] == "CREATE EXTENSION IF NOT EXISTS timescaledb"
    hypertables = statements[1:-1]
    assert [s.split("'")[1] for s in hypertables] == [t.name for t in TIME_SERIES_TABLES]
    assert statements[-1].startswith("DO $kd$")


def test_drop_chunks_statement() -> None:
    assert timescale.drop_chunks_sql(TRADES) == (
        "SELECT drop_chunks('trades', older_than => %s::timestamptz)"
    )


def test_detection_on_plain_postgres(pg: psycopg2.extensions.connection) -> None:
    assert timescale.timescaledb_available(pg) is False
    assert timescale.timescaledb_installed(pg) is False
    assert timescale.timescaledb_license(pg) is None
    assert timescale.hypertable_names(pg) == set()
    # so partition maintenance works natively here
    assert partitions.default_partition_rows(pg).keys() == {t.name for t in TIME_SERIES_TABLES}


def test_policy_block_compiles_and_takes_the_unlicensed_branch(
    shared_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_db_engine(shared_database)
    try:
        # Through SQLAlchemy text(), as alembic's op.execute runs it; SQLAlchemy's psycopg2
        # dialect logs server notices at INFO.
        with (
            caplog.at_level(logging.INFO, logger="sqlalchemy.dialects.postgresql"),
            engine.begin() as conn,
        ):
            conn.execute(text(timescale.licensed_policies_sql()))
    finally:
        engine.dispose()
    assert "timescaledb.license is unset, not timescale" in caplog.text


def test_every_timescale_statement_is_valid_sql(pg: psycopg2.extensions.connection) -> None:
    # Wrap the SELECTs as PERFORMs in a branch that never runs: PL/pgSQL still parses them.
    body = "\n".join(
        "    " + statement.replace("SELECT ", "PERFORM ", 1) + ";"
        for statement in timescale.setup_sql()[1:-1]
    )
    drops = "\n".join(
        "    "
        + timescale.drop_chunks_sql(t).replace("SELECT ", "PERFORM ", 1).replace("%s", "now()")
        + ";"
        for t in TIME_SERIES_TABLES
    )
    with pg.cursor() as cur:
        cur.execute(f"DO $t$ BEGIN IF false THEN\n{body}\n{drops}\nEND IF; END $t$")
    broken = "DO $t$ BEGIN IF false THEN PERFORM create_hypertable('x',, 1); END IF; END $t$"
    with pg.cursor() as cur, pytest.raises(psycopg2.errors.SyntaxError):
        cur.execute(broken)
