"""Idempotent bulk writes: a direct COPY, redone through staging + insert-on-conflict on a clash.

`COPY` has no `ON CONFLICT`. The common case, a batch none of whose rows is stored yet, goes
straight in: `COPY <table> FROM STDIN` inside a savepoint, at the bare-COPY rate. When a row
clashes with a unique key (a redelivered batch, a replayed journal, a row repeated within the
batch), the savepoint is rolled back and the same payload goes `COPY _kd_stage_<table> FROM
STDIN` (a session temp table, `ON COMMIT DELETE ROWS`, created once per connection and reused)
then `INSERT INTO <table> SELECT ... FROM _kd_stage_<table> ON CONFLICT DO NOTHING`
(design-facts §3). `ON CONFLICT DO NOTHING` without a target skips a row that collides with
*any* unique constraint, including a row earlier in the same batch, so a redelivered batch
inserts nothing new and the return value counts only new rows either way.

Everything runs in the caller's transaction and nothing commits: the ingest worker commits the
whole stream entry at once and acknowledges it after (DESIGN §3). Rows are the NamedTuples of
`app.db.rows`; each column's COPY text encoding is derived from the field's type hint.
"""

from __future__ import annotations

import io
import types
import typing
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

import orjson
from psycopg2 import errors, sql

from app.db.engine import dbapi_connection
from app.db.rows import Row
from app.db.tables import TABLE_FOR_ROW, TableSpec, table_spec

NULL = "\\N"
_ESCAPE = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})

Encoder = Callable[[Any], str]


class CopyEncodingError(ValueError):
    """A value that PostgreSQL cannot store as given (NUL in text, naive datetime, ...)."""


def _text(value: str) -> str:
    # Fast path: printable text has no NUL, tab, newline or CR; only a backslash needs escaping.
    if type(value) is str and value.isprintable() and "\\" not in value:
        return value
    if "\x00" in value:
        raise CopyEncodingError("text cannot contain NUL characters")
    return value.translate(_ESCAPE)


def _integer(value: int) -> str:
    if type(value) is int:
        return str(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise CopyEncodingError(f"expected an integer, got {value!r}")
    return str(value)


def _boolean(value: bool) -> str:
    if not isinstance(value, bool):
        raise CopyEncodingError(f"expected a bool, got {value!r}")
    return "t" if value else "f"


def _timestamptz(value: datetime) -> str:
    if type(value) is datetime and value.tzinfo is not None:
        return value.isoformat()
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise CopyEncodingError(f"expected a timezone-aware datetime, got {value!r}")
    return value.isoformat()


def _bytea(value: bytes) -> str:
    # COPY text unescapes `\\x..` to `\x..`, which bytea reads as hex.
    if type(value) is bytes:
        return "\\\\x" + value.hex()
    return "\\\\x" + bytes(value).hex()


def _numeric(value: Decimal) -> str:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise CopyEncodingError(f"expected a finite Decimal, got {value!r}")
    return str(value)


def _jsonb(value: Any) -> str:
    text = orjson.dumps(value).decode()
    if "\\u0000" in text:
        raise CopyEncodingError("jsonb cannot contain \\u0000")
    return text.translate(_ESCAPE)


def _integer_array(values: Sequence[int]) -> str:
    return "{" + ",".join(_integer(v) for v in values) + "}"


def _array_element(value: str | None) -> str:
    if value is None:
        return "NULL"
    if "\x00" in value:
        raise CopyEncodingError("text cannot contain NUL characters")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text_array(values: Sequence[str | None]) -> str:
    return ("{" + ",".join(_array_element(v) for v in values) + "}").translate(_ESCAPE)


def _encoder_for(hint: Any, where: str) -> Encoder:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(options) != 1:
            raise TypeError(f"{where}: unsupported union {hint}")
        return _encoder_for(options[0], where)
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            if args[0] is int:
                return _integer_array
            if args[0] is str:
                return _text_array
        raise TypeError(f"{where}: unsupported tuple type {hint}")
    if origin is dict or hint is dict:
        return _jsonb
    simple: dict[Any, Encoder] = {
        bool: _boolean,
        int: _integer,
        str: _text,
        bytes: _bytea,
        datetime: _timestamptz,
        Decimal: _numeric,
    }
    if hint in simple:
        return simple[hint]
    raise TypeError(f"{where}: no COPY encoding for {hint}")


@cache
def _encoders(row_type: type) -> tuple[Encoder, ...]:
    hints = typing.get_type_hints(row_type)
    return tuple(
        _encoder_for(hints[field], f"{row_type.__name__}.{field}")
        for field in row_type._fields  # type: ignore[attr-defined]
    )


def encode_rows(table: str | TableSpec, rows: Iterable[Sequence[Any]]) -> str:
    """The COPY text-format payload for `rows` (tuples in the table's column order)."""
    spec = table_spec(table)
    if spec.row_type is None:
        raise TypeError(f"table {spec.name} has no row type for bulk writes")
    encoders = _encoders(spec.row_type)
    width = len(encoders)
    lines = []
    for row in rows:
        if len(row) != width:
            raise CopyEncodingError(f"{spec.name}: expected {width} values, got {len(row)}")
        lines.append(
            "\t".join(
                [
                    NULL if value is None else encode(value)
                    for encode, value in zip(encoders, row, strict=True)
                ]
            )
        )
    return "\n".join(lines) + "\n" if lines else ""


def staging_table(table: str | TableSpec) -> str:
    return f"_kd_stage_{table_spec(table).name}"


PayloadOpener = Callable[[], io.IOBase]
COPY_CHUNK = 1 << 16  # bytes psycopg2 reads from a payload per CopyData message
_SAVEPOINT = sql.Identifier("kd_direct_copy")


def copy_idempotent(
    conn: Any,
    table: str | TableSpec,
    columns: Sequence[str],
    open_payload: PayloadOpener,
    *,
    binary: bool = False,
    inserted_values: list[Any] | None = None,
    value_column: str | None = None,
) -> int:
    """COPY a payload into `table` so that rows already stored are skipped; rows inserted.

    `open_payload()` returns a file of COPY data (text, or binary with `binary`) for
    `columns`; it is called a second time, for the staging path, only when the direct COPY
    clashed with a unique key. With `inserted_values` and `value_column`, the list receives
    that column of the rows the staging path inserted, and is left untouched when the direct
    COPY inserted every row. Runs in the caller's transaction; nothing commits.
    """
    spec = table_spec(table)
    names = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    options = sql.SQL(" WITH (FORMAT binary)" if binary else "")
    with dbapi_connection(conn).cursor() as cur:
        cur.execute(sql.SQL("SAVEPOINT {}").format(_SAVEPOINT))
        direct = sql.SQL("COPY {} ({}) FROM STDIN{}").format(
            sql.Identifier(spec.name), names, options
        )
        try:
            cur.copy_expert(direct.as_string(cur), open_payload(), size=COPY_CHUNK)
        except errors.UniqueViolation:
            cur.execute(sql.SQL("ROLLBACK TO SAVEPOINT {}").format(_SAVEPOINT))
            inserted = _copy_staged(cur, spec, names, options, open_payload(), value_column)
            if value_column is not None and inserted_values is not None:
                inserted_values.extend(row[0] for row in cur.fetchall())
            cur.execute(sql.SQL("RELEASE SAVEPOINT {}").format(_SAVEPOINT))
            return inserted
        inserted = int(cur.rowcount)
        cur.execute(sql.SQL("RELEASE SAVEPOINT {}").format(_SAVEPOINT))
        return inserted


def _copy_staged(
    cur: Any,
    spec: TableSpec,
    names: sql.Composable,
    options: sql.Composable,
    payload: io.IOBase,
    value_column: str | None = None,
) -> int:
    stage = sql.Identifier(staging_table(spec))
    every = sql.SQL(", ").join(sql.Identifier(c) for c in spec.columns)
    cur.execute(
        sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {} ON COMMIT DELETE ROWS AS "
            "SELECT {} FROM {} WITH NO DATA"
        ).format(stage, every, sql.Identifier(spec.name))
    )
    # Empty unless an earlier call in this same transaction staged rows for this table.
    cur.execute(sql.SQL("DELETE FROM pg_temp.{}").format(stage))
    copy = sql.SQL("COPY pg_temp.{} ({}) FROM STDIN{}").format(stage, names, options)
    cur.copy_expert(copy.as_string(cur), payload, size=COPY_CHUNK)
    returning = (
        sql.SQL(" RETURNING {}").format(sql.Identifier(value_column))
        if value_column
        else sql.SQL("")
    )
    cur.execute(
        sql.SQL("INSERT INTO {} ({}) SELECT {} FROM pg_temp.{} ON CONFLICT DO NOTHING{}").format(
            sql.Identifier(spec.name), names, names, stage, returning
        )
    )
    return int(cur.rowcount)


def copy_rows(conn: Any, table: str | TableSpec, rows: Sequence[Sequence[Any]]) -> int:
    """Write rows of one table idempotently in the caller's transaction; return rows inserted.

    `conn` is a psycopg2 connection or a SQLAlchemy `Connection` (its driver connection is used).
    Rows that collide with an existing row (or an earlier row of the batch) on any unique key
    are skipped, so writing the same batch twice inserts it once.
    """
    spec = table_spec(table)
    if not rows:
        return 0
    payload = encode_rows(spec, rows)
    return copy_idempotent(conn, spec, spec.columns, lambda: io.StringIO(payload))


def write_rows(conn: Any, rows: Iterable[Row]) -> dict[str, int]:
    """Group mixed rows by table and `copy_rows` each group; returns new rows per table.

    Tables are written in a fixed order (the catalogue's) so concurrent writers take locks in
    the same order.
    """
    groups: dict[TableSpec, list[Row]] = defaultdict(list)
    for row in rows:
        spec = TABLE_FOR_ROW.get(type(row))
        if spec is None:
            raise TypeError(f"no table takes rows of type {type(row).__name__}")
        groups[spec].append(row)
    order = list(TABLE_FOR_ROW.values())
    return {
        spec.name: copy_rows(conn, spec, groups[spec]) for spec in sorted(groups, key=order.index)
    }
