"""Reading and redriving rows of the `dead_letters` table (docs/deadletters.md).

A dead letter keeps a frame's exact bytes and where it came from. Once the cause is fixed (a
mapper that now understands the frame, a constraint relaxed), `redrive` normalizes the frame
again with the current mappers and writes its rows, each dead letter in its own transaction:

- the frame is taken from its stored raw batch when there is one (`raw_batches`: exact bytes
  plus every listener flag: gap, resync, repeat, ...); otherwise (a poison entry, stage
  `drain`, whose batch was never stored) from the dead letter itself: bytes, connection,
  receive time, position, sid and seq;
- if the frame still does not normalize, or the database still refuses its rows for their
  values, nothing is written and the dead letter stays as it is (`still_failing`);
- otherwise its rows go in idempotently (`ON CONFLICT DO NOTHING`) and, in the same
  transaction, the dead letter is marked: `stage` becomes `redriven` and the reason gains
  "| redriven <time> from stage <old stage>: <n> new rows". A marked dead letter is not
  selected again, and a second redrive of the same frame would insert nothing anyway.
- stage `envelope` (the entry itself did not decode) cannot be redriven: no frame to read.

Market lifecycle rows are stored but not applied to the registry here; the periodic registry
reconcile catches it up. A database fault (app.ingest.faults) stops the run: it is raised.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.db.copy import write_rows
from app.db.rows import DeadLetterRow, Row
from app.ingest.faults import describe, is_database_fault
from app.ingest.isolation import at_position, frame_rows
from app.normalize import FormatVersion
from app.streams.drain import Entry
from app.streams.envelope import EnvelopeError, Frame, decode_frames

STAGE_REDRIVEN = "redriven"
NOT_REDRIVABLE = frozenset({"envelope", STAGE_REDRIVEN})
ID_PREFIX = "dl-"
_ID_HEX = 12
# How far before a frame its raw batch may start (a batch spans 50 ms; a journal replay keeps
# the original receive times, so this only bounds the index scan).
_BATCH_LOOKBACK = "1 day"

COLUMNS = (
    "gatherer",
    "connection_id",
    "received_ns",
    "received_at",
    "batch_pos",
    "sid",
    "seq",
    "msg_type",
    "stage",
    "reason",
    "stream",
    "entry_id",
    "raw",
)
_ID_SQL = (
    f"'{ID_PREFIX}' || substr(md5(connection_id || '/' || received_ns::text || '/' "
    f"|| batch_pos::text), 1, {_ID_HEX})"
)


def dead_letter_id(connection_id: str, received_ns: int, batch_pos: int) -> str:
    """The short printable id of a `dead_letters` row (the same as `_ID_SQL` computes)."""
    key = f"{connection_id}/{received_ns}/{batch_pos}".encode()
    return ID_PREFIX + hashlib.md5(key, usedforsecurity=False).hexdigest()[:_ID_HEX]


@dataclass(frozen=True)
class StoredDeadLetter:
    id: str
    row: DeadLetterRow


@dataclass(frozen=True)
class Selection:
    """Which dead letters: ids, or filters (all None = every one), newest first."""

    gatherer: str
    ids: tuple[str, ...] = ()
    stage: str | None = None
    reason: str | None = None  # case-insensitive substring
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = 50
    redrivable_only: bool = False


def select_dead_letters(conn: Any, selection: Selection) -> list[StoredDeadLetter]:
    """The `dead_letters` rows of `selection`, newest first."""
    where = ["gatherer = %s"]
    args: list[Any] = [selection.gatherer]
    if selection.ids:
        where.append(f"{_ID_SQL} = ANY(%s)")
        args.append(list(selection.ids))
    if selection.stage is not None:
        where.append("stage = %s")
        args.append(selection.stage)
    if selection.redrivable_only:
        where.append("NOT (stage = ANY(%s))")
        args.append(sorted(NOT_REDRIVABLE))
    if selection.reason is not None:
        where.append("strpos(lower(reason), lower(%s)) > 0")
        args.append(selection.reason)
    if selection.since is not None:
        where.append("received_at >= %s")
        args.append(selection.since)
    if selection.until is not None:
        where.append("received_at < %s")
        args.append(selection.until)
    limit = "" if selection.limit is None else f" LIMIT {int(selection.limit)}"
    sql = (
        f"SELECT {_ID_SQL}, {', '.join(COLUMNS)} FROM dead_letters "
        f"WHERE {' AND '.join(where)} ORDER BY received_at DESC, batch_pos{limit}"
    )
    with conn.cursor() as cur:
        cur.execute(sql, args)
        rows = cur.fetchall()
    return [
        StoredDeadLetter(
            id=str(row[0]),
            row=DeadLetterRow._make((*row[1:-1], bytes(row[-1]))),
        )
        for row in rows
    ]


@dataclass(frozen=True)
class RedriveOutcome:
    id: str
    status: str  # redriven | still_failing | skipped
    rows: dict[str, int]  # new rows per table (redriven), what would be (dry run)
    detail: str = ""
    source: str = ""  # raw_batches | dead_letter: where the frame was read from


def stored_frame(conn: Any, row: DeadLetterRow) -> Frame | None:
    """The frame of `row` from its stored raw batch (all listener flags), if there is one."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT data, frame_count, positions FROM raw_batches "
            "WHERE gatherer = %s AND received_at <= %s "
            f"AND received_at >= %s - INTERVAL '{_BATCH_LOOKBACK}' "
            "AND first_received_ns <= %s AND last_received_ns >= %s",
            (row.gatherer, row.received_at, row.received_at, row.received_ns, row.received_ns),
        )
        batches = cur.fetchall()
    for data, count, positions in batches:
        try:
            frames = decode_frames(bytes(data), int(count))
        except EnvelopeError:
            continue
        for index, frame in enumerate(frames):
            pos = positions[index] if positions else index
            if (frame.conn_id, frame.recv_ns, pos) == (
                row.connection_id,
                row.received_ns,
                row.batch_pos,
            ):
                return frame
    return None


def _mark(conn: Any, letter: StoredDeadLetter, note: str) -> None:
    row = letter.row
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE dead_letters SET stage = %s, reason = reason || %s "
            "WHERE gatherer = %s AND connection_id = %s AND received_ns = %s "
            "AND batch_pos = %s AND received_at = %s",
            (
                STAGE_REDRIVEN,
                note,
                row.gatherer,
                row.connection_id,
                row.received_ns,
                row.batch_pos,
                row.received_at,
            ),
        )


def redrive_one(
    conn: Any,
    letter: StoredDeadLetter,
    *,
    version: FormatVersion | None = None,
    dry_run: bool = False,
) -> RedriveOutcome:
    """Redrive one dead letter in its own transaction (module docstring); commits unless
    `dry_run` (then everything is rolled back and the outcome says what would happen)."""
    row = letter.row
    if row.stage in NOT_REDRIVABLE:
        why = "the entry did not decode" if row.stage == "envelope" else "already redriven"
        return RedriveOutcome(letter.id, "skipped", {}, f"stage {row.stage}: {why}")
    try:
        frame = stored_frame(conn, row)
        source = "raw_batches"
        if frame is None:
            source = "dead_letter"
            frame = Frame(row.raw, row.received_ns, row.connection_id, row.sid, row.seq)
        entry = Entry(row.entry_id or "", {}, [frame], 1)
        try:
            rows: Sequence[Row] = frame_rows(
                entry, 0, gatherer=row.gatherer, stream=row.stream or "", version=version
            )
        except Exception as exc:  # a mapper bug on this frame: still the frame's problem
            conn.rollback()
            return RedriveOutcome(letter.id, "still_failing", {}, describe(exc), source)
        rows = [at_position(r, row.batch_pos) for r in rows]
        dead = [r for r in rows if isinstance(r, DeadLetterRow)]
        if dead:
            conn.rollback()
            return RedriveOutcome(letter.id, "still_failing", {}, dead[0].reason, source)
        with conn.cursor() as cur:
            cur.execute("SAVEPOINT kd_redrive")
            try:
                counts = write_rows(conn, rows)
            except Exception as exc:
                if is_database_fault(exc):
                    raise
                cur.execute("ROLLBACK TO SAVEPOINT kd_redrive")
                conn.rollback()
                return RedriveOutcome(letter.id, "still_failing", {}, describe(exc), source)
        counts = {table: n for table, n in counts.items() if n}
        stamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        total = sum(counts.values())
        _mark(conn, letter, f" | redriven {stamp} from stage {row.stage}: {total} new rows")
        if dry_run:
            conn.rollback()
        else:
            conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return RedriveOutcome(letter.id, "redriven", counts, "", source)
