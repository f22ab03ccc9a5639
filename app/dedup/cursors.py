"""Per-(gatherer, table) positions of the deduplicator, kept in production (`dedup_cursors`).

A position is a transaction id of the gatherer's database (`xid8`), not a time: every row a
gatherer stores carries `ingest_xid`, the id of the transaction that wrote it, and every
transaction below the gatherer's *horizon* (`pg_snapshot_xmin(pg_current_snapshot())`) has
ended. So the rows with `cursor <= ingest_xid < horizon` are a final set: nothing can still
commit into it, unlike a `received_at > cursor` poll, which misses rows committed late with an
older time (SEED-SPEC DED-2 [design-flaw]). Rows stored before revision 0006 have no
`ingest_xid` (NULL): a cursor starts by taking them once (`legacy_done`).

The cursor row is updated in the same production transaction as the rows it covers (DED-2), so
a crash anywhere leaves production and cursors consistent, and a rerun repeats nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg2.extras import Json

from app.db.engine import dbapi_connection


@dataclass(frozen=True)
class Cursor:
    gatherer: str
    table: str
    xid: int = 0  # every row with ingest_xid below this is merged
    legacy_done: bool = False  # rows without ingest_xid (stored before 0006) are merged
    # While they are not: the table key of the last such row merged (they go in key order).
    legacy_after: tuple[Any, ...] | None = None

    def advanced(self, xid: int) -> Cursor:
        return Cursor(self.gatherer, self.table, max(self.xid, xid), True)

    def legacy_step(self, after: tuple[Any, ...] | None, done: bool) -> Cursor:
        return Cursor(self.gatherer, self.table, self.xid, done, None if done else after)

    def position(self) -> dict[str, Any]:
        out: dict[str, Any] = {"xid": self.xid, "legacy_done": self.legacy_done}
        if self.legacy_after is not None:
            out["legacy_after"] = list(self.legacy_after)
        return out


def load_cursor(conn: Any, gatherer: str, table: str, *, lock: bool = True) -> Cursor:
    """The cursor of (gatherer, table); with `lock` the row is locked for this transaction,
    so two deduplicators never merge the same rows at once."""
    with dbapi_connection(conn).cursor() as cur:
        cur.execute(
            "INSERT INTO dedup_cursors (gatherer, table_name, position) VALUES (%s, %s, %s) "
            "ON CONFLICT (gatherer, table_name) DO NOTHING",
            (gatherer, table, Json({"xid": 0, "legacy_done": False})),
        )
        cur.execute(
            "SELECT position FROM dedup_cursors WHERE gatherer = %s AND table_name = %s"
            + (" FOR UPDATE" if lock else ""),
            (gatherer, table),
        )
        (position,) = cur.fetchone()
    position = position or {}
    after = position.get("legacy_after")
    return Cursor(
        gatherer,
        table,
        int(position.get("xid", 0)),
        bool(position.get("legacy_done")),
        tuple(after) if after is not None else None,
    )


def save_cursor(conn: Any, cursor: Cursor) -> None:
    with dbapi_connection(conn).cursor() as cur:
        cur.execute(
            "UPDATE dedup_cursors SET position = %s, updated_at = now() "
            "WHERE gatherer = %s AND table_name = %s",
            (
                Json(cursor.position()),
                cursor.gatherer,
                cursor.table,
            ),
        )
