"""Migrations: up and down on empty and populated databases, and `kalshi-data migrate`."""

from __future__ import annotations

import argparse
import io
import uuid

import psycopg2
import pytest

from app.db import migrations
from app.db.copy import write_rows
from app.db.engine import DatabaseUnavailable
from app.db.tables import ALL_TABLES, TIME_SERIES_TABLES, VIEWS
from tests.conftest import free_port, run_cli
from tests.db.conftest import database_url
from tests.db.samples import frame_rows, insert_relational, now_utc, table_counts


def _relations(url: str) -> dict[str, str]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT relname, relkind FROM pg_class "
            "WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p', 'v')"
        )
        rows = dict(cur.fetchall())
    conn.close()
    return rows


def _columns(url: str, table: str) -> set[str]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = %s",
            (table,),
        )
        rows = {name for (name,) in cur.fetchall()}
    conn.close()
    return rows


def _frames(url: str) -> list[tuple[object, ...]]:
    """Every frame the `raw_frames` relation holds (a view since 0003, a table before).

    sid/seq are left out: the view shows the listener's verdict stored with the frame, the old
    table the frame's own values where it has them (the downgrade fills them so).
    """
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT gatherer, connection_id, received_ns, received_at, batch_pos, gap, "
            "md5(raw) FROM raw_frames ORDER BY connection_id, received_ns, batch_pos"
        )
        rows = cur.fetchall()
    conn.close()
    return rows


def _brin_indexes(url: str) -> set[str]:
    """The BRIN indexes of the parent tables (alembic 0007)."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_am a ON a.oid = c.relam "
            "JOIN pg_index i ON i.indexrelid = c.oid "
            "JOIN pg_class t ON t.oid = i.indrelid "
            "WHERE a.amname = 'brin' AND t.relname IN ('orderbook_deltas', 'orderbook_snapshots')"
        )
        found = {row[0] for row in cur.fetchall()}
    conn.close()
    return found


def test_up_and_down_on_an_empty_database(scratch_database: str) -> None:
    result = migrations.upgrade(scratch_database)
    assert (result.created_database, result.before) == (False, None)
    assert result.after == migrations.head_revision() == "0007"
    relations = _relations(scratch_database)
    for table in ALL_TABLES:
        assert relations[table.name] == ("p" if table.partitioned else "r"), table.name
    for view in (*VIEWS, "raw_frames"):
        assert relations[view] == "v"

    assert _brin_indexes(scratch_database) == {
        "orderbook_deltas_received_brin",
        "orderbook_snapshots_received_brin",
    }
    down = migrations.downgrade(scratch_database, "0006")
    assert (down.before, down.after) == ("0007", "0006")
    assert _brin_indexes(scratch_database) == set()
    merged = ("trades", "tickers", "lifecycle_events", "orderbook_snapshots", "orderbook_deltas")
    for table in merged:
        assert "ingest_xid" in _columns(scratch_database, table), table
    down = migrations.downgrade(scratch_database, "0005")
    assert (down.before, down.after) == ("0006", "0005")
    for table in merged:
        assert "ingest_xid" not in _columns(scratch_database, table), table

    assert {"exchange_index", "last_updated_ts"} <= _columns(scratch_database, "series")
    down = migrations.downgrade(scratch_database, "0004")
    assert (down.before, down.after) == ("0005", "0004")
    for table in ("markets", "events", "series"):
        assert not {"exchange_index", "last_updated_ts"} & _columns(scratch_database, table)

    down = migrations.downgrade(scratch_database, "0003")
    assert (down.before, down.after) == ("0004", "0003")
    assert "capture_holes" not in _relations(scratch_database)

    down = migrations.downgrade(scratch_database, "0002")
    assert (down.before, down.after) == ("0003", "0002")
    relations = _relations(scratch_database)
    assert relations["raw_frames"] == "p" and "raw_batches" not in relations

    down = migrations.downgrade(scratch_database, "0001")
    assert (down.before, down.after) == ("0002", "0001")
    assert not set(VIEWS) & set(_relations(scratch_database))

    migrations.downgrade(scratch_database, "base")
    assert set(_relations(scratch_database)) == {"alembic_version"}
    assert migrations.current_revision(scratch_database) is None


def test_round_trip_on_a_populated_database(scratch_database: str) -> None:
    migrations.upgrade(scratch_database)
    moment = now_utc()
    with psycopg2.connect(scratch_database) as conn, conn.cursor() as cur:
        written = write_rows(conn, frame_rows(moment))
        insert_relational(cur, moment)
        counts = table_counts(cur)
    conn.close()
    assert all(counts[t.name] > 0 for t in ALL_TABLES), counts
    assert written["dead_letters"] == 1
    frames = _frames(scratch_database)
    assert len(frames) == 16

    # 0006 down drops ingest_xid, 0005 registry columns only; 0004 down drops the holes only.
    migrations.downgrade(scratch_database, "0005")
    assert _frames(scratch_database) == frames
    migrations.downgrade(scratch_database, "0004")
    assert _frames(scratch_database) == frames
    migrations.downgrade(scratch_database, "0003")
    assert _frames(scratch_database) == frames
    counts.pop("capture_holes")

    # 0003 down: batches unpacked into the per-frame table; up again: repacked; nothing lost
    migrations.downgrade(scratch_database, "0002")
    assert _frames(scratch_database) == frames
    with psycopg2.connect(scratch_database) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM raw_frames WHERE msg_type IS NOT NULL")
        assert cur.fetchone()[0] == 15  # every frame but the one that is not JSON
    conn.close()
    migrations.upgrade(scratch_database)
    assert _frames(scratch_database) == frames
    with psycopg2.connect(scratch_database) as conn, conn.cursor() as cur:
        cur.execute("SELECT publisher, frame_count FROM raw_batches")
        assert cur.fetchall() == [("0003-repack", 16)]
        assert table_counts(cur) == {**counts, "capture_holes": 0}
    conn.close()

    migrations.downgrade(scratch_database, "0001")  # views only: data survives
    assert _frames(scratch_database) == frames
    with psycopg2.connect(scratch_database) as conn, conn.cursor() as cur:
        for table, count in counts.items():
            if table != "raw_batches":
                cur.execute(f"SELECT count(*) FROM {table}")
                assert cur.fetchone()[0] == count, table
    conn.close()

    migrations.downgrade(scratch_database, "base")  # every table, partition and row goes
    assert set(_relations(scratch_database)) == {"alembic_version"}

    migrations.upgrade(scratch_database)
    with psycopg2.connect(scratch_database) as conn, conn.cursor() as cur:
        assert set(table_counts(cur).values()) == {0}
        again = write_rows(conn, frame_rows(moment))
    conn.close()
    assert again == written


def test_upgrade_creates_a_missing_database(postgres_admin_url: str) -> None:
    name = f"kd_test_{uuid.uuid4().hex[:12]}"
    url = database_url(postgres_admin_url, name)
    try:
        result = migrations.upgrade(url)
        assert result.created_database and result.after == "0007"
        again = migrations.upgrade(url)
        assert not again.created_database and again.before == again.after == "0007"
    finally:
        admin = psycopg2.connect(postgres_admin_url)
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_unknown_revision_and_unreachable_server(scratch_database: str) -> None:
    with pytest.raises(migrations.MigrationError, match="Can't locate revision"):
        migrations.upgrade(scratch_database, "nope")
    with pytest.raises(DatabaseUnavailable, match="Connection refused"):
        migrations.upgrade(f"postgresql://postgres@127.0.0.1:{free_port()}/x")


def test_cli_creates_the_database_and_migrates(postgres_admin_url: str) -> None:
    name = f"kd_test_{uuid.uuid4().hex[:12]}"
    url = database_url(postgres_admin_url, name)
    try:
        first = run_cli("migrate", KD_DATABASE_URL=url)
        assert first.returncode == 0, first.stderr
        assert f"created database {url}" in first.stdout
        assert "base -> 0007" in first.stdout
        assert migrations.current_revision(url) == "0007"

        second = run_cli("migrate", "--database-url", url)
        assert second.returncode == 0 and "already at revision 0007" in second.stdout

        down = run_cli("migrate", "--database-url", url, "--downgrade", "0001")
        assert down.returncode == 0 and "0007 -> 0001" in down.stdout
        assert migrations.current_revision(url) == "0001"
    finally:
        admin = psycopg2.connect(postgres_admin_url)
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def test_cli_unreachable_database_is_one_clear_error() -> None:
    url = f"postgresql://postgres:s3cret@127.0.0.1:{free_port()}/kd_nowhere"
    result = run_cli("migrate", KD_DATABASE_URL=url)
    assert result.returncode != 0
    line = _one_error_line(result.stderr)
    assert "cannot connect" in line and "Connection refused" in line
    assert "s3cret" not in result.stderr + result.stdout


def test_cli_bad_revision_and_conflicting_options(scratch_database: str) -> None:
    bad = run_cli("migrate", "--database-url", scratch_database, "--revision", "zz")
    assert bad.returncode != 0 and "zz" in _one_error_line(bad.stderr)
    both = run_cli(
        "migrate",
        "--database-url",
        scratch_database,
        "--revision",
        "0001",
        "--downgrade",
        "base",
    )
    assert both.returncode == 2 and "not both" in _one_error_line(both.stderr)


def _offline_sql(timescaledb: str) -> str:
    config = migrations.alembic_config("postgresql://postgres@localhost/offline")
    config.output_buffer = io.StringIO()
    config.cmd_opts = argparse.Namespace(x=[f"timescaledb={timescaledb}"])
    import alembic.command

    alembic.command.upgrade(config, "head", sql=True)
    return config.output_buffer.getvalue()


def test_offline_sql_for_both_branches() -> None:
    native = _offline_sql("off")
    timescale = _offline_sql("on")
    for table in TIME_SERIES_TABLES:
        assert f"PARTITION BY RANGE ({table.time_column})" in native
        assert f"CREATE TABLE IF NOT EXISTS {table.name}_default PARTITION OF" in native
        assert f"SELECT create_hypertable('{table.name}', by_range('{table.time_column}'" in (
            timescale
        )
    assert "PARTITION BY" not in timescale and "_default PARTITION OF" not in timescale
    assert "create_hypertable" not in native and "CREATE EXTENSION" not in native
    assert "CREATE EXTENSION IF NOT EXISTS timescaledb" in timescale
    # Verbatim SQL for psql: no driver-escaped %% anywhere.
    assert "%" not in native and "%" not in timescale
    assert "current_setting('timescaledb.license', true) = 'timescale'" in timescale
