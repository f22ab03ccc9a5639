"""Finding the frame a batch failed on, so that only that frame is dead-lettered.

`write_entries` first writes a batch the fast way (app.ingest.batch_writer). When PostgreSQL
(or our COPY encoder) refuses a row for its values (app.ingest.faults: the frame's own fault),
the transaction is rolled back and the batch is written again here, in the same transaction
style but step by step, each step in a savepoint:

1. each entry whole, the fast way: most entries of a failing batch are innocent;
2. for an entry that still fails: its raw batch (exact bytes, always kept), then each frame's
   rows alone. A frame whose rows are refused gets a `dead_letters` row instead (stage
   `write`, the database's reason, its raw bytes, keyed like the frame), so the refusal is
   kept, the rest of the entry is stored and `kalshi-data deadletters redrive` can retry it
   once the cause is fixed;
3. an entry whose raw batch or dead letter is itself refused cannot be stored at all: it is
   reported back (`rejected`) and the drain moves it, bytes unchanged, to the dead-letter
   stream.

A database fault at any step (connection lost, read-only, statement timeout, ...) is raised
as is: the whole transaction rolls back and the batch is retried later, never dead-lettered.
Savepoints cost a round trip each; this path runs only for a batch that already failed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, cast

import psycopg2

from app.db.copy import CopyEncodingError, write_rows
from app.db.engine import dbapi_connection
from app.db.raw_batches import write_raw_batches
from app.db.rows import Row
from app.ingest.batch_writer import EntryBatch, raw_batch_row, write_batch
from app.ingest.dead_rows import frame_dead_letter
from app.ingest.faults import describe, is_database_fault
from app.logs import log_event
from app.normalize import FormatVersion
from app.streams.drain import Entry

log = logging.getLogger(__name__)

STAGE_WRITE = "write"  # dead_letters.stage of a frame whose rows the database refused
_MAX_REASON = 500


def frame_rows(
    entry: Entry, pos: int, *, gatherer: str, stream: str, version: FormatVersion | None
) -> list[Row]:
    """The normalized rows of frame `pos` of `entry`, exactly as in a whole-entry write."""
    from app.ingest.handler import entry_rows  # handler imports this module

    alone = Entry(entry.id, entry.fields, [entry.frames[pos]], entry.deliveries)
    rows = entry_rows([alone], gatherer=gatherer, stream=stream, version=version)
    # entry_rows numbers the lone frame 0; every frame row carries its position in the entry
    return [at_position(row, pos) for row in rows]


def at_position(row: Row, pos: int) -> Row:
    """`row` with its batch position set to `pos` (rows that carry one)."""
    if "batch_pos" not in row._fields:
        return row
    moved: Row = cast(Any, row)._replace(batch_pos=pos)
    return moved


def _refusal(exc: BaseException) -> str:
    if isinstance(exc, psycopg2.Error):
        return "refused by the database"
    if isinstance(exc, CopyEncodingError):
        return "refused by the COPY encoder"
    return "failed to normalize or write"


def _merge(total: dict[str, int], counts: dict[str, int]) -> None:
    for table, count in counts.items():
        total[table] = total.get(table, 0) + count


class _Savepoint:
    """`with _Savepoint(cur, name):` commits the step on success, undoes it on any error."""

    def __init__(self, cursor: Any, name: str) -> None:
        self.cursor = cursor
        self.name = name

    def __enter__(self) -> None:
        self.cursor.execute(f"SAVEPOINT {self.name}")

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self.cursor.execute(f"RELEASE SAVEPOINT {self.name}")
        elif isinstance(exc, Exception) and not is_database_fault(exc):
            self.cursor.execute(f"ROLLBACK TO SAVEPOINT {self.name}")
        # a database fault (or BaseException) propagates; the caller rolls everything back


def write_isolated(
    conn: Any,
    entries: Sequence[Entry],
    *,
    gatherer: str,
    stream: str,
    version: FormatVersion | None,
    rejected: dict[str, str],
) -> tuple[dict[str, int], list[Row]]:
    """Write `entries` step by step in the caller's transaction (module docstring).

    Returns new rows per table and every row written (for the registry); entries that could
    not be stored at all are added to `rejected` (entry id -> reason). Raises on a database
    fault. Nothing commits.
    """
    counts: dict[str, int] = {}
    written: list[Row] = []
    with dbapi_connection(conn).cursor() as cur:
        for entry in entries:
            batch = EntryBatch([entry], gatherer=gatherer, stream=stream, version=version)
            try:
                with _Savepoint(cur, "kd_entry"):
                    _merge(counts, write_batch(conn, batch))
                written.extend(batch.rows)
                continue
            except Exception as exc:
                if is_database_fault(exc):
                    raise
            rows: list[Row] = []
            try:
                with _Savepoint(cur, "kd_entry"):
                    entry_counts = _write_frames(conn, cur, entry, gatherer, stream, version, rows)
                _merge(counts, entry_counts)
                written.extend(rows)
            except Exception as exc:
                if is_database_fault(exc):
                    raise
                reason = f"entry refused by the database: {describe(exc)}"[:_MAX_REASON]
                rejected[entry.id] = reason
                log_event(
                    log,
                    "ingest.entry_rejected",
                    logging.ERROR,
                    stream=stream,
                    entry_id=entry.id,
                    reason=reason,
                )
    return counts, written


def _write_frames(
    conn: Any,
    cur: Any,
    entry: Entry,
    gatherer: str,
    stream: str,
    version: FormatVersion | None,
    written: list[Row],
) -> dict[str, int]:
    counts: dict[str, int] = {}
    raw = raw_batch_row(entry, gatherer=gatherer, stream=stream)
    if raw is not None:
        batches, frames = write_raw_batches(conn, [raw])
        _merge(counts, {"raw_batches": batches, "raw_frames": frames})
    for pos, frame in enumerate(entry.frames):
        if frame.repeat:
            continue  # an exchange resend: kept raw only, as in the fast path
        try:
            with _Savepoint(cur, "kd_frame"):
                rows = frame_rows(entry, pos, gatherer=gatherer, stream=stream, version=version)
                _merge(counts, write_rows(conn, rows))
            written.extend(rows)
            continue
        except Exception as exc:
            if is_database_fault(exc):
                raise
            error = exc
        dead = frame_dead_letter(
            frame,
            pos,
            gatherer=gatherer,
            stage=STAGE_WRITE,
            reason=f"{_refusal(error)}: {describe(error)}"[:_MAX_REASON],
            stream=stream,
            entry_id=entry.id,
        )
        log_event(
            log,
            "ingest.frame_rejected",
            logging.WARNING,
            stream=stream,
            entry_id=entry.id,
            batch_pos=pos,
            reason=dead.reason,
        )
        with _Savepoint(cur, "kd_frame"):
            _merge(counts, write_rows(conn, [dead]))
        written.append(dead)
    return counts
