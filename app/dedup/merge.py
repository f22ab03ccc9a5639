"""Merging one gatherer's new rows into production, per table (DESIGN §5).

Rows travel as COPY text from the gatherer (`read_batch`) into a temporary staging table in the
production transaction, and one INSERT per table merges them:

* **trades**: union by `trade_id` (the table's key `(trade_id, exchange_ts)`), so a trade
  three gatherers saw is one row, from whichever gatherer came first.
* **lifecycle_events**: union by (market, event type, exchange time, payload hash): the same
  message from another gatherer or connection is not stored again.
* **tickers**: a message is identified by its content (market, exchange time, every value), and
  its multiplicity in production is the *maximum* over gatherers, never the sum: two identical
  updates in one millisecond are both kept, the same update seen by three gatherers once.
  The gatherer's side sends every row of each content key its new rows touch, so the count
  per key is the gatherer's whole count, and the insert adds only the shortfall.

Every merge is idempotent: run twice, or after a crash between commit and cursor (impossible:
one transaction), it inserts nothing new. Production rows keep their provenance columns
(gatherer, connection id, receive time) from the gatherer they were taken from.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg2 import sql

from app.db.copy import copy_idempotent
from app.db.engine import dbapi_connection
from app.db.tables import LIFECYCLE_EVENTS, TICKERS, TRADES, TableSpec
from app.dedup.cursors import Cursor

MERGED_TABLES: tuple[TableSpec, ...] = (TRADES, LIFECYCLE_EVENTS, TICKERS)
# A ticker message's content: everything but where and when we received it.
TICKER_CONTENT = tuple(
    c
    for c in TICKERS.columns
    if c not in ("gatherer", "connection_id", "sid", "received_ns", "received_at", "batch_pos")
)


@dataclass(frozen=True)
class Batch:
    """Rows of one gatherer's table as COPY text: those with `cursor.xid <= ingest_xid <
    after.xid`, or, while the cursor's first pass is not done, the next rows (in key order) of
    those stored before `ingest_xid` existed. `after` is the cursor once they are merged."""

    payload: bytes
    rows: int
    after: Cursor


def gatherer_horizon(conn: Any) -> int:
    """The oldest transaction still running on the gatherer's server: every id below it ended."""
    with dbapi_connection(conn).cursor() as cur:
        cur.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::numeric")
        (horizon,) = cur.fetchone()
    return int(horizon)


def _range_filter(cursor: Cursor, upper: int) -> sql.Composable:
    return sql.SQL("(ingest_xid >= {}::text::xid8 AND ingest_xid < {}::text::xid8)").format(
        sql.Literal(str(cursor.xid)), sql.Literal(str(upper))
    )


def _key_after(spec: TableSpec, after: tuple[Any, ...] | None, op: str) -> sql.Composable:
    if after is None:
        return sql.SQL("")
    return sql.SQL(" AND ({}) {} ({})").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in spec.key),
        sql.SQL(op),
        sql.SQL(", ").join(sql.Literal(v) for v in after),
    )


def _legacy_filter(cur: Any, spec: TableSpec, cursor: Cursor, limit: int) -> tuple[Any, Cursor]:
    """The next `limit` rows without `ingest_xid`, in key order, and the cursor after them
    (keyset pagination: a gatherer upgraded with years of rows is read in bounded batches)."""
    keys = sql.SQL(", ").join(sql.Identifier(c) for c in spec.key)
    after = _key_after(spec, cursor.legacy_after, ">")
    cur.execute(
        sql.SQL(
            "SELECT {keys} FROM {table} WHERE ingest_xid IS NULL{after} "
            "ORDER BY {keys} OFFSET {skip} LIMIT 1"
        ).format(
            keys=keys,
            table=sql.Identifier(spec.name),
            after=after,
            skip=sql.Literal(max(limit - 1, 0)),
        )
    )
    last = cur.fetchone()
    if last is None:  # the rest fits in this batch: the first pass ends with it
        where = sql.SQL("ingest_xid IS NULL{}").format(after)
        return where, cursor.legacy_step(None, True)
    bound = tuple(v.isoformat() if isinstance(v, datetime) else v for v in last)
    where = sql.SQL("ingest_xid IS NULL{}{}").format(after, _key_after(spec, bound, "<="))
    return where, cursor.legacy_step(bound, False)


def _upper(cur: Any, spec: TableSpec, cursor: Cursor, horizon: int, limit: int) -> int:
    """Where this batch ends: the horizon, or the id of the row after `limit` rows (a
    transaction's rows are never split; one larger than `limit` is taken whole)."""
    cur.execute(
        sql.SQL(
            "SELECT ingest_xid::text::numeric FROM {} WHERE ingest_xid >= {}::text::xid8 "
            "AND ingest_xid < {}::text::xid8 ORDER BY ingest_xid OFFSET {} LIMIT 1"
        ).format(
            sql.Identifier(spec.name),
            sql.Literal(str(cursor.xid)),
            sql.Literal(str(horizon)),
            sql.Literal(limit),
        )
    )
    found = cur.fetchone()
    if found is None:
        return horizon
    xid = int(found[0])
    return xid if xid > cursor.xid else xid + 1


def read_batch(conn: Any, spec: TableSpec, cursor: Cursor, horizon: int, limit: int) -> Batch:
    """The next batch of `spec` rows of one gatherer after `cursor`, below `horizon`."""
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in spec.columns)
    with dbapi_connection(conn).cursor() as cur:
        if cursor.legacy_done:
            upper = _upper(cur, spec, cursor, horizon, limit)
            where, after = _range_filter(cursor, upper), cursor.advanced(upper)
        else:
            where, after = _legacy_filter(cur, spec, cursor, limit)
        if spec is TICKERS:
            # Every row of each content key the new rows touch: the gatherer's whole count.
            query = sql.SQL(
                "SELECT {cols} FROM tickers t JOIN (SELECT DISTINCT market_ticker, exchange_ts "
                "FROM tickers WHERE {where}) k USING (market_ticker, exchange_ts)"
            ).format(
                cols=sql.SQL(", ").join(sql.Identifier("t", c) for c in spec.columns),
                where=where,
            )
        else:
            query = sql.SQL("SELECT {} FROM {} WHERE {}").format(
                columns, sql.Identifier(spec.name), where
            )
        out = io.BytesIO()
        cur.copy_expert(sql.SQL("COPY ({}) TO STDOUT").format(query).as_string(cur), out)
    payload = out.getvalue()
    return Batch(payload, payload.count(b"\n"), after)


def stage_rows(cur: Any, spec: TableSpec, payload: bytes) -> sql.Identifier:
    """COPY `payload` into a temporary staging table shaped like `spec` (emptied first)."""
    stage = sql.Identifier(f"_kd_dedup_{spec.name}")
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in spec.columns)
    cur.execute(
        sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {} ON COMMIT DELETE ROWS AS "
            "SELECT {} FROM {} WITH NO DATA"
        ).format(stage, columns, sql.Identifier(spec.name))
    )
    cur.execute(sql.SQL("DELETE FROM pg_temp.{}").format(stage))
    cur.copy_expert(
        sql.SQL("COPY pg_temp.{} ({}) FROM STDIN").format(stage, columns).as_string(cur),
        io.BytesIO(payload),
    )
    return stage


def merge_batch(conn: Any, spec: TableSpec, batch: Batch) -> int:
    """Merge a gatherer batch into production (the caller's transaction); rows inserted."""
    if not batch.rows:
        return 0
    if spec is TRADES:  # a union on the key: the ingest write path as it is
        return copy_idempotent(conn, TRADES, TRADES.columns, lambda: io.BytesIO(batch.payload))
    with dbapi_connection(conn).cursor() as cur:
        # A batch's sorts and hashes (50k rows) fit in memory instead of spilling to disk.
        cur.execute("SET LOCAL work_mem = '64MB'")
        stage = stage_rows(cur, spec, batch.payload)
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in spec.columns)
        if spec is LIFECYCLE_EVENTS:
            return _merge_lifecycle(cur, stage, columns)
        if spec is TICKERS:
            return _merge_tickers(cur, stage)
    raise ValueError(f"the deduplicator does not merge {spec.name}")


def _merge_lifecycle(cur: Any, stage: sql.Identifier, columns: sql.Composable) -> int:
    inserted = 0
    # Market messages and event-level messages (no market): two statements keep the content
    # index (market_ticker, event_type, payload_hash) usable for the first.
    for market_match in (
        "p.market_ticker = s.market_ticker",
        "p.market_ticker IS NULL AND s.market_ticker IS NULL",
    ):
        cur.execute(
            sql.SQL(
                "INSERT INTO lifecycle_events ({cols}) "
                "SELECT DISTINCT ON (s.market_ticker, s.event_type, s.exchange_ts, "
                "s.payload_hash) {scols} FROM pg_temp.{stage} s "
                "WHERE ({guard}) AND NOT EXISTS (SELECT 1 FROM lifecycle_events p "
                "WHERE {match} AND p.event_type = s.event_type "
                "AND p.payload_hash = s.payload_hash "
                "AND p.exchange_ts IS NOT DISTINCT FROM s.exchange_ts) "
                "ORDER BY s.market_ticker, s.event_type, s.exchange_ts, s.payload_hash, "
                "s.received_ns, s.connection_id, s.batch_pos "
                "ON CONFLICT DO NOTHING"
            ).format(
                cols=columns,
                scols=sql.SQL(", ").join(sql.Identifier("s", c) for c in LIFECYCLE_EVENTS.columns),
                stage=stage,
                guard=sql.SQL(
                    "s.market_ticker IS NOT NULL"
                    if market_match.startswith("p.market_ticker =")
                    else "s.market_ticker IS NULL"
                ),
                match=sql.SQL(market_match),
            )
        )
        inserted += int(cur.rowcount)
    return inserted


def _content_key(alias: str) -> sql.Composable:
    """A ticker row's content as one text value (NULL and '' stay distinct in a row literal),
    so content keys compare with a hash join instead of column-by-column NULL-safe tests."""
    return sql.SQL('ROW({})::text COLLATE "C"').format(
        sql.SQL(", ").join(sql.Identifier(alias, c) for c in TICKER_CONTENT)
    )


def _merge_tickers(cur: Any, stage: sql.Identifier) -> int:
    """Insert the shortfall per content key: the gatherer's count minus production's.

    The gatherer's rows already in production are ranked first, so the rows picked for the
    shortfall are never ones production holds (which the key would skip)."""
    key = sql.SQL(", ").join(sql.Identifier(c) for c in TICKERS.key)
    cur.execute(
        sql.SQL(
            "WITH keys AS (SELECT DISTINCT market_ticker, exchange_ts FROM pg_temp.{stage}), "
            "have AS (SELECT {pkey} AS ck, count(*) AS c FROM tickers p "
            "JOIN keys k ON p.market_ticker = k.market_ticker AND p.exchange_ts = k.exchange_ts "
            "GROUP BY 1), "
            "present AS (SELECT {key} FROM pg_temp.{stage} JOIN tickers USING ({key})), "
            "ranked AS (SELECT s.*, {skey} AS ck, row_number() OVER (PARTITION BY {skey} "
            "ORDER BY (pr.gatherer IS NOT NULL) DESC, s.received_ns, s.connection_id, "
            "s.batch_pos) AS n FROM pg_temp.{stage} s LEFT JOIN present pr USING ({key})) "
            "INSERT INTO tickers ({cols}) SELECT {rcols} FROM ranked r "
            "LEFT JOIN have h ON h.ck = r.ck WHERE r.n > COALESCE(h.c, 0) "
            "ON CONFLICT DO NOTHING"
        ).format(
            stage=stage,
            key=key,
            pkey=_content_key("p"),
            skey=_content_key("s"),
            cols=sql.SQL(", ").join(sql.Identifier(c) for c in TICKERS.columns),
            rcols=sql.SQL(", ").join(sql.Identifier("r", c) for c in TICKERS.columns),
        )
    )
    return int(cur.rowcount)
