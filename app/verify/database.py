"""The found side: records of what a gatherer (or production) database stored.

Every table is read through a server-side cursor (`ITERSIZE` rows per round trip), so memory is
one batch of rows whatever the table's size. Dead letters' bytes are not shipped at all —
PostgreSQL computes their MD5 (`md5(bytea)`) and a preview; received frames are read as the
stored stream entries (`raw_batches`, a few at a time) and unpacked here, exactly as the
`raw_frames` view does. Read-only: one transaction, rolled back.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from psycopg2 import sql

from app.db.tables import table_spec
from app.ingest.batch_writer import batch_frame_facts
from app.verify.records import (
    PREVIEW_BYTES,
    RULE_BY_TABLE,
    dump_values,
    frame_identity_of,
    gap_record,
    raw_frame_record,
    session_record,
)
from app.verify.spill import Tagged

ITERSIZE = 5_000
_cursor_names = itertools.count()

# Frames are compared by bytes: ship their MD5 and a preview, never the frame.
_FRAME_QUERIES = {
    "dead_letters": "msg_type, stage, reason",
}
BATCHES_PER_FETCH = 20  # raw_batches rows per round trip (each holds hundreds of frames)


def raw_frame_records(conn: Any, gatherer: str | None) -> Iterator[Tagged]:
    """One `raw_frames` record per frame of every stored batch (verify's per-frame view)."""
    where, params = _where(gatherer)
    query = sql.SQL("SELECT gatherer, frame_count, positions, data FROM raw_batches") + where
    with conn.cursor(name=f"kd_verify_{next(_cursor_names)}") as cur:
        cur.itersize = BATCHES_PER_FETCH
        cur.execute(query, params)
        for batch_gatherer, count, positions, data in cur:
            for facts in batch_frame_facts(batch_gatherer, count, positions, bytes(data)):
                yield "raw_frames", raw_frame_record(facts)


def _stream(conn: Any, query: sql.Composable, params: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
    with conn.cursor(name=f"kd_verify_{next(_cursor_names)}") as cur:
        cur.itersize = ITERSIZE
        cur.execute(query, params)
        yield from cur


def _where(gatherer: str | None) -> tuple[sql.Composable, tuple[Any, ...]]:
    if gatherer is None:
        return sql.SQL(""), ()
    return sql.SQL(" WHERE gatherer = %s"), (gatherer,)


def table_records(conn: Any, table: str, gatherer: str | None = None) -> Iterator[Tagged]:
    """Records of every stored row of `table` (one gatherer's rows when `gatherer` is set)."""
    if table == "raw_frames":
        yield from raw_frame_records(conn, gatherer)
        return
    where, params = _where(gatherer)
    name = sql.Identifier(table)
    if table in _FRAME_QUERIES:
        query = (
            sql.SQL(
                "SELECT md5(raw), substring(raw from 1 for {}), "
                + _FRAME_QUERIES[table]
                + " FROM {}"
            ).format(sql.Literal(PREVIEW_BYTES), name)
            + where
        )
        for digest, preview, *values in _stream(conn, query, params):
            yield table, (frame_identity_of(digest, preview), dump_values(tuple(values)))
        return
    if table == "sequence_gaps":
        query = sql.SQL("SELECT sid, expected_seq, got_seq FROM {}").format(name) + where
        for sid, expected_seq, got_seq in _stream(conn, query, params):
            yield table, gap_record(sid, expected_seq, got_seq)
        return
    if table == "connection_sessions":
        query = sql.SQL("SELECT 1 FROM {}").format(name) + where
        for _ in _stream(conn, query, params):
            yield table, session_record()
        return
    rule = RULE_BY_TABLE[table]
    spec = table_spec(table)
    row_type: Any = spec.row_type
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in spec.columns)
    if rule.per_subscription:
        # One row per (connection, sid, seq, market): a seq repeated on one subscription is one
        # exchange message however often it was delivered and stored.
        identity = sql.SQL("connection_id, sid, seq, market_ticker")
        query = (
            sql.SQL("SELECT DISTINCT ON ({}) {} FROM {}").format(identity, columns, name)
            + where
            + sql.SQL(" ORDER BY {}").format(identity)
        )
    else:
        query = sql.SQL("SELECT {} FROM {}").format(columns, name) + where
    for stored in _stream(conn, query, params):
        yield table, rule.record(row_type(*stored))


def database_records(conn: Any, tables: tuple[str, ...], gatherer: str | None) -> Iterator[Tagged]:
    for table in tables:
        yield from table_records(conn, table, gatherer)
