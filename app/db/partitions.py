"""Native daily range partitions: create ahead, rescue strays from DEFAULT, drop by retention.

Used when TimescaleDB is absent (the default here, design-facts §3). Each time-series table is
`PARTITION BY RANGE (<time column>)` with one partition per UTC day named `<table>_pYYYYMMDD`
and a `<table>_default` partition that must stay empty: a row lands there only when its day has
no partition yet (a replay of old captures, a clock far off), and PostgreSQL refuses to create a
partition whose range already has rows in DEFAULT. So `ensure_partitions` moves such rows into
their proper daily partition, and `default_partition_rows` exposes the count for monitoring.

With TimescaleDB the same functions work on hypertables: chunks are created automatically
(`ensure_partitions` returns nothing), retention calls `drop_chunks`, DEFAULT does not exist.

Every function runs in the caller's transaction and never commits. Creating or dropping a
partition takes a short ACCESS EXCLUSIVE lock on the parent, so the maintenance task should
commit after each call (and may set `lock_timeout`) rather than hold it behind a long batch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from psycopg2 import sql

from app.db.engine import dbapi_connection
from app.db.tables import TIME_SERIES_TABLES, TableSpec, table_spec
from app.db.timescale import drop_chunks_sql, hypertable_names

DEFAULT_DAYS_AHEAD = 7
DEFAULT_DAYS_BACK = 1
# What the migration creates so a fresh database is usable at once (maintenance extends it).
MIGRATION_DAYS_AHEAD = 3
MIGRATION_DAYS_BACK = 1

_PARTITION_NAME = re.compile(r"^(?P<table>[a-z_]+)_p(?P<day>\d{8})$")


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def default_partition_name(table: str) -> str:
    return f"{table}_default"


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def partition_ddl(table: str | TableSpec, day: date) -> str:
    """`CREATE TABLE ... PARTITION OF` for one UTC day (bounds written in UTC explicitly)."""
    spec = table_spec(table)
    start, end = _day_start(day), _day_start(day + timedelta(days=1))
    return (
        f"CREATE TABLE IF NOT EXISTS {partition_name(spec.name, day)} PARTITION OF {spec.name} "
        f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
    )


def default_partition_ddl(table: str | TableSpec) -> str:
    spec = table_spec(table)
    return (
        f"CREATE TABLE IF NOT EXISTS {default_partition_name(spec.name)} "
        f"PARTITION OF {spec.name} DEFAULT"
    )


def days_around(now: datetime, days_back: int, days_ahead: int) -> list[date]:
    today = now.astimezone(UTC).date()
    return [today + timedelta(days=offset) for offset in range(-days_back, days_ahead + 1)]


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now


def _native_tables(cur: Any, tables: Iterable[str | TableSpec] | None) -> list[TableSpec]:
    specs = [table_spec(t) for t in (tables if tables is not None else TIME_SERIES_TABLES)]
    for spec in specs:
        if not spec.partitioned:
            raise ValueError(f"{spec.name} is not a time-series table")
    hypertables = hypertable_names(cur.connection)
    return [spec for spec in specs if spec.name not in hypertables]


def list_partitions(conn: Any, table: str | TableSpec) -> list[date]:
    """The days that have a partition, ascending (DEFAULT excluded)."""
    spec = table_spec(table)
    with dbapi_connection(conn).cursor() as cur:
        return _partition_days(cur, spec)


def _partition_days(cur: Any, spec: TableSpec) -> list[date]:
    cur.execute(
        "SELECT c.relname FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass(%s)",
        (spec.name,),
    )
    days = []
    for (name,) in cur.fetchall():
        match = _PARTITION_NAME.match(name)
        if match and match["table"] == spec.name:
            days.append(datetime.strptime(match["day"], "%Y%m%d").date())
    return sorted(days)


def _has_default(cur: Any, spec: TableSpec) -> bool:
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (default_partition_name(spec.name),))
    return bool(cur.fetchone()[0])


def _create_day(cur: Any, spec: TableSpec, day: date) -> None:
    """Create one day's partition, first moving any rows of that day out of DEFAULT."""
    assert spec.time_column is not None
    start, end = _day_start(day), _day_start(day + timedelta(days=1))
    default = sql.Identifier(default_partition_name(spec.name))
    column = sql.Identifier(spec.time_column)
    strays = False
    if _has_default(cur, spec):
        cur.execute(
            sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE {} >= %s AND {} < %s)").format(
                default, column, column
            ),
            (start, end),
        )
        strays = bool(cur.fetchone()[0])
    if not strays:
        cur.execute(partition_ddl(spec, day))
        return
    moving = sql.Identifier("pg_temp", f"_kd_moving_{spec.name}")
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(moving))
    cur.execute(
        sql.SQL(
            "CREATE TEMP TABLE {} ON COMMIT DROP AS "
            "WITH moved AS (DELETE FROM {} WHERE {} >= %s AND {} < %s RETURNING *) "
            "SELECT * FROM moved"
        ).format(moving, default, column, column),
        (start, end),
    )
    cur.execute(partition_ddl(spec, day))
    cur.execute(
        sql.SQL("INSERT INTO {} SELECT * FROM {}").format(sql.Identifier(spec.name), moving)
    )
    cur.execute(sql.SQL("DROP TABLE {}").format(moving))


def ensure_partitions(
    conn: Any,
    days_ahead: int = DEFAULT_DAYS_AHEAD,
    days_back: int = DEFAULT_DAYS_BACK,
    *,
    now: datetime | None = None,
    tables: Iterable[str | TableSpec] | None = None,
    rescue: bool = True,
) -> list[str]:
    """Create the daily partitions from `days_back` days ago to `days_ahead` days ahead.

    Idempotent: existing partitions are left alone. With `rescue` (the default) rows found in a
    DEFAULT partition are then moved into partitions of their own days. Returns the names of
    the partitions created. Hypertables are skipped (TimescaleDB creates chunks itself).
    """
    wanted = days_around(_now(now), days_back, days_ahead)
    created: list[str] = []
    with dbapi_connection(conn).cursor() as cur:
        for spec in _native_tables(cur, tables):
            existing = set(_partition_days(cur, spec))
            for day in wanted:
                if day not in existing:
                    _create_day(cur, spec, day)
                    created.append(partition_name(spec.name, day))
            if rescue:
                created.extend(_rescue(cur, spec, existing | set(wanted)))
    return created


def ensure_partitions_for_range(
    conn: Any, table: str | TableSpec, start: datetime, end: datetime
) -> list[str]:
    """Create partitions covering [start, end) for one table (backfills and replays)."""
    spec = table_spec(table)
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    first, last = start.astimezone(UTC).date(), end.astimezone(UTC).date()
    if _day_start(last) == end.astimezone(UTC):
        last -= timedelta(days=1)
    created: list[str] = []
    with dbapi_connection(conn).cursor() as cur:
        if not _native_tables(cur, [spec]):
            return created
        existing = set(_partition_days(cur, spec))
        day = first
        while day <= last:
            if day not in existing:
                _create_day(cur, spec, day)
                created.append(partition_name(spec.name, day))
            day += timedelta(days=1)
    return created


def _rescue(cur: Any, spec: TableSpec, existing: set[date]) -> list[str]:
    if spec.time_column is None or not _has_default(cur, spec):
        return []
    cur.execute(
        sql.SQL("SELECT DISTINCT ({} AT TIME ZONE 'UTC')::date FROM {}").format(
            sql.Identifier(spec.time_column),
            sql.Identifier(default_partition_name(spec.name)),
        )
    )
    created = []
    for (day,) in sorted(cur.fetchall()):
        if day not in existing:
            _create_day(cur, spec, day)
            created.append(partition_name(spec.name, day))
    return created


def rescue_default_rows(conn: Any, tables: Iterable[str | TableSpec] | None = None) -> list[str]:
    """Move every row found in a DEFAULT partition into a partition of its own day."""
    created: list[str] = []
    with dbapi_connection(conn).cursor() as cur:
        for spec in _native_tables(cur, tables):
            created.extend(_rescue(cur, spec, set(_partition_days(cur, spec))))
    return created


def default_partition_rows(
    conn: Any, tables: Iterable[str | TableSpec] | None = None
) -> dict[str, int]:
    """Rows sitting in each table's DEFAULT partition (should be 0; alert otherwise)."""
    counts: dict[str, int] = {}
    with dbapi_connection(conn).cursor() as cur:
        for spec in _native_tables(cur, tables):
            if _has_default(cur, spec):
                cur.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(
                        sql.Identifier(default_partition_name(spec.name))
                    )
                )
                counts[spec.name] = int(cur.fetchone()[0])
    return counts


def drop_expired_partitions(
    conn: Any,
    retention_days_by_table: Mapping[str, int | None],
    *,
    now: datetime | None = None,
) -> list[str]:
    """Drop whole partitions (or chunks) entirely older than each table's retention.

    A daily partition [D, D+1) goes once D+1 <= now - retention: nothing younger than the
    retention window is ever dropped. Tables absent from the mapping or mapped to None are
    kept forever. Returns the dropped partition (or chunk) names.
    """
    current = _now(now)
    dropped: list[str] = []
    with dbapi_connection(conn).cursor() as cur:
        hypertables = hypertable_names(cur.connection)
        for name, days in retention_days_by_table.items():
            if days is None:
                continue
            if days < 0:
                raise ValueError(f"retention for {name} must be >= 0 days, got {days}")
            spec = table_spec(name)
            if not spec.partitioned:
                raise ValueError(f"{name} is not a time-series table")
            cutoff = current - timedelta(days=days)
            if spec.name in hypertables:
                cur.execute(drop_chunks_sql(spec), (cutoff,))
                dropped.extend(str(row[0]) for row in cur.fetchall())
                continue
            for day in _partition_days(cur, spec):
                if _day_start(day + timedelta(days=1)) <= cutoff:
                    cur.execute(
                        sql.SQL("DROP TABLE {}").format(
                            sql.Identifier(partition_name(spec.name, day))
                        )
                    )
                    dropped.append(partition_name(spec.name, day))
    return dropped
