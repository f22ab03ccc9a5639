"""The TimescaleDB branch: detection and every TimescaleDB-specific SQL statement we issue.

All TimescaleDB SQL lives here so it can be reviewed (and string-tested) in one place; it cannot
run on this project's CI, which has plain PostgreSQL 15 (design-facts §4). Names and signatures
follow the TimescaleDB 2.13+ API reference:

- `create_hypertable(relation, by_range(column, interval), create_default_indexes, if_not_exists)`
  (the generalized interface introduced in 2.13; the table must not be declaratively partitioned);
- `ALTER TABLE t SET (timescaledb.compress, timescaledb.compress_segmentby = '...',
  timescaledb.compress_orderby = '... DESC')` then
  `add_compression_policy(hypertable, compress_after => INTERVAL, if_not_exists => true)`
  (superseded by the columnstore names in 2.18, still supported);
- `add_retention_policy(relation, drop_after => INTERVAL, if_not_exists => true)`;
- `drop_chunks(relation, older_than => timestamptz)` for retention run by our maintenance task.

Compression and the policies are TSL ("Community") features missing from the Apache-2 build, so
they run only when `current_setting('timescaledb.license', true) = 'timescale'`; the check is
inside the generated SQL so the same script is right on either build.
This module never creates or drops the extension on its own; the migration decides.
"""

from __future__ import annotations

from typing import Any

from app.db.engine import dbapi_connection
from app.db.tables import TIME_SERIES_TABLES, TableSpec

EXTENSION = "timescaledb"
TSL_LICENSE = "timescale"
CHUNK_INTERVAL = "1 day"
COMPRESS_AFTER = "7 days"
RAW_FRAMES_RETENTION = "7 days"
# The raw-frame store: `raw_frames` in revision 0001, `raw_batches` since 0003.
RAW_TABLES = frozenset({"raw_frames", "raw_batches"})


def timescaledb_installed(conn: Any) -> bool:
    """True when the extension is created in this database."""
    with dbapi_connection(conn).cursor() as cur:
        cur.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = %s)", (EXTENSION,))
        return bool(cur.fetchone()[0])


def timescaledb_available(conn: Any) -> bool:
    """True when TimescaleDB is installed here or can be: packaged *and* preloaded.

    `pg_available_extensions` alone is not enough: `CREATE EXTENSION timescaledb` fails unless
    the library is in `shared_preload_libraries` (it hooks the planner at server start).
    """
    if timescaledb_installed(conn):
        return True
    with dbapi_connection(conn).cursor() as cur:
        cur.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = %s), "
            "current_setting('shared_preload_libraries', true)",
            (EXTENSION,),
        )
        packaged, preload = cur.fetchone()
    libraries = {part.strip().strip('"') for part in (preload or "").split(",")}
    return bool(packaged) and EXTENSION in libraries


def timescaledb_license(conn: Any) -> str | None:
    """The `timescaledb.license` setting (`timescale` or `apache`), None without TimescaleDB."""
    with dbapi_connection(conn).cursor() as cur:
        cur.execute("SELECT current_setting('timescaledb.license', true)")
        value = cur.fetchone()[0]
    return value or None


def hypertable_names(conn: Any) -> set[str]:
    """Names of the hypertables in this database (empty without TimescaleDB)."""
    with dbapi_connection(conn).cursor() as cur:
        cur.execute("SELECT to_regclass('timescaledb_information.hypertables') IS NOT NULL")
        if not cur.fetchone()[0]:
            return set()
        cur.execute("SELECT hypertable_name FROM timescaledb_information.hypertables")
        return {row[0] for row in cur.fetchall()}


def migration_wants_timescaledb(choice: str, *, offline: bool, conn: Any) -> bool:
    """A revision's branch from `-x timescaledb=auto|on|off` (auto: use it when available;
    offline `--sql` output cannot ask the server, so auto means off there)."""
    choice = choice.lower()
    if choice in ("on", "true", "1"):
        return True
    if choice in ("off", "false", "0"):
        return False
    if choice != "auto":
        raise ValueError(f"-x timescaledb must be auto, on or off, not {choice!r}")
    if offline:
        return False
    return timescaledb_available(conn)


def create_extension_sql() -> str:
    return f"CREATE EXTENSION IF NOT EXISTS {EXTENSION}"


def hypertable_sql(table: TableSpec, chunk_interval: str = CHUNK_INTERVAL) -> str:
    """Turn the (empty, plain) table into a hypertable on its time column.

    Default indexes are off: both branches create the same explicit indexes in the migration.
    """
    if table.time_column is None:
        raise ValueError(f"{table.name} has no time column")
    return (
        f"SELECT create_hypertable('{table.name}', "
        f"by_range('{table.time_column}', INTERVAL '{chunk_interval}'), "
        "create_default_indexes => false, if_not_exists => true)"
    )


def compression_sql(table: TableSpec, compress_after: str = COMPRESS_AFTER) -> list[str]:
    """Enable compression (segment by the market, newest first) and schedule it."""
    if table.time_column is None or not table.compress or table.segment_by is None:
        raise ValueError(f"{table.name} is not configured for compression")
    return [
        f"ALTER TABLE {table.name} SET (timescaledb.compress, "
        f"timescaledb.compress_segmentby = '{table.segment_by}', "
        f"timescaledb.compress_orderby = '{table.time_column} DESC')",
        f"PERFORM add_compression_policy('{table.name}', "
        f"compress_after => INTERVAL '{compress_after}', if_not_exists => true)",
    ]


def retention_sql(table: TableSpec, drop_after: str) -> str:
    return (
        f"PERFORM add_retention_policy('{table.name}', "
        f"drop_after => INTERVAL '{drop_after}', if_not_exists => true)"
    )


def licensed_policies_sql(
    tables: tuple[TableSpec, ...] = TIME_SERIES_TABLES,
    *,
    compress_after: str = COMPRESS_AFTER,
    raw_frames_retention: str = RAW_FRAMES_RETENTION,
) -> str:
    """One DO block: compression + policies when the TSL license is active, a NOTICE otherwise.

    The block contains no `%` so the offline script (`alembic upgrade --sql`) is verbatim SQL.
    """
    body: list[str] = []
    for table in tables:
        if table.compress:
            body.extend(compression_sql(table, compress_after))
    for table in tables:
        if table.name in RAW_TABLES:
            body.append(retention_sql(table, raw_frames_retention))
    statements = "\n".join(f"        {statement};" for statement in body)
    return (
        "DO $kd$\n"
        "BEGIN\n"
        f"    IF current_setting('timescaledb.license', true) = '{TSL_LICENSE}' THEN\n"
        f"{statements}\n"
        "    ELSE\n"
        "        RAISE NOTICE USING MESSAGE = 'timescaledb.license is '\n"
        "            || coalesce(current_setting('timescaledb.license', true), 'unset')\n"
        "            || ', not timescale: compression and retention policies skipped; '\n"
        "            || 'partition maintenance drops old chunks instead';\n"
        "    END IF;\n"
        "END\n"
        "$kd$"
    )


def setup_sql(tables: tuple[TableSpec, ...] = TIME_SERIES_TABLES) -> list[str]:
    """Everything the migration runs after creating the plain tables and their indexes."""
    return (
        [create_extension_sql()]
        + [hypertable_sql(t) for t in tables]
        + [licensed_policies_sql(tables)]
    )


def drop_chunks_sql(table: TableSpec) -> str:
    """Retention by our maintenance task (Apache-licensed; works without the TSL policies)."""
    return f"SELECT drop_chunks('{table.name}', older_than => %s::timestamptz)"
