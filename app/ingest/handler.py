"""The batch handler of the ingest path: stream entries -> normalized rows -> one transaction.

`write_entries` is what a drain hands every batch of entries to (DESIGN §3): each entry is
stored whole in `raw_batches`, each of its frames is normalized (typed rows for data frames, a
dead letter with the raw bytes and the reason for a frame that cannot be normalized; see
`app.ingest.batch_writer` for the write order and the book-delta fast path), and the
transaction commits once for the whole batch. The drain acknowledges the entries only after
this returns, so a crash anywhere before the commit leaves them pending, and a crash between
the commit and the XACK replays them: the writes are idempotent (the tables' unique keys plus
`ON CONFLICT DO NOTHING`), so the replay inserts nothing new.

`write_dead_letter_entries` copies entries of the dead-letter *stream* (whole entries the drain
gave up on: corrupt envelopes, poison batches) into the `dead_letters` table, with the same
one-transaction rule.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg2
import redis

from app.config import RegistrySettings
from app.db.copy import write_rows
from app.db.rows import DeadLetterRow, LifecycleEventRow, Row
from app.ingest.batch_writer import EntryBatch, write_batch
from app.ingest.dead_rows import frame_dead_letter
from app.ingest.faults import describe, is_database_fault
from app.ingest.isolation import STAGE_WRITE, write_isolated
from app.logs import log_event
from app.metrics import classify_dead_letter, record_dead_letters
from app.normalize import FormatVersion, FrameEnvelope, datetime_from_ns, normalize_frame
from app.normalize.frames import DEAD_LETTER_STAGE
from app.registry import (
    ChangeFeed,
    EventUpdate,
    LifecycleEvent,
    apply_event_updates,
    apply_lifecycle_events,
)
from app.streams import DeadLetter, EnvelopeError, decode_entry, parse_dead_letter
from app.streams.drain import Entry

log = logging.getLogger(__name__)


class EntryRefused(Exception):
    """Entries the database refuses whole (their raw batch or dead letter), id -> reason."""

    def __init__(self, refused: dict[str, str]) -> None:
        super().__init__("; ".join(f"{key}: {why}" for key, why in refused.items()))
        self.refused = refused


# `dead_letters.stage` of rows copied from the dead-letter stream.
STAGE_ENVELOPE = "envelope"  # the entry itself did not decode (corrupt, unknown version)
STAGE_DRAIN = "drain"  # the entry decoded but its batch kept failing (poison)
# Normalizer reasons (app/normalize/frames.py) of a frame that is not a JSON message object.
UNPARSEABLE_REASONS = ("malformed JSON", "frame is not a JSON object", "frame has no 'type'")


def entry_rows(
    entries: Iterable[Entry],
    *,
    gatherer: str,
    stream: str,
    version: FormatVersion | None = None,
) -> list[Row]:
    """Every normalized row of `entries`, in order, all through the general mappers (the
    reference `write_entries`' fast path is tested against): per frame typed rows, dead letter.

    The batch position is the frame's index within its entry, so (connection id, receive ns,
    position) is stable across redeliveries of the same entry. `version` None selects each
    frame's mapper by capture time (docs/normalize.md).
    """
    rows: list[Row] = []
    for entry in entries:
        for pos, frame in enumerate(entry.frames):
            if frame.repeat:
                continue  # an exchange resend of a stored seq: kept raw only
            envelope = FrameEnvelope(
                received_ns=frame.recv_ns,
                connection_id=frame.conn_id,
                batch_pos=pos,
                gatherer=gatherer,
                sid=frame.sid,
                seq=frame.seq,
                gap=frame.gap,
                resync=frame.resync,
                yes_price=frame.yes_price,
                stream=stream,
                entry_id=entry.id,
            )
            rows.extend(normalize_frame(frame.raw, envelope, version=version).all_rows())
    return rows


def rollback(conn: Any) -> None:
    """Roll back after a failed write; a connection that cannot even do that is closed (the
    runner then opens a new one). A lost connection has nothing to roll back."""
    if conn.closed:
        return
    try:
        conn.rollback()
    except psycopg2.Error:
        conn.close()


def dead_letter_class(row: DeadLetterRow) -> str:
    """The `reason_class` label of a dead_letters row (docs/metrics.md)."""
    if row.stage == STAGE_ENVELOPE:
        return "corrupt_envelope"
    if row.stage == STAGE_WRITE:
        return "rejected_row"  # the database refused the frame's rows (app.ingest.isolation)
    if row.stage == DEAD_LETTER_STAGE:
        reason = row.reason
        if reason.startswith(UNPARSEABLE_REASONS) or row.msg_type is None:
            return "unparseable_frame"  # not a JSON message object with a type
        return "invalid_row"  # parsed, but not a row we can write (fields, unknown type)
    return classify_dead_letter(row.reason)


def record_dead_letter_rows(rows: Sequence[Row], inserted: int) -> None:
    """Count the dead_letters rows of a committed transaction by reason class.

    `inserted` is how many of them were new (`write_rows` skips rows already present); a
    batch is new or a replay as a whole, so the first `inserted` dead letters are counted.
    """
    if inserted <= 0:
        return
    classes: dict[str, int] = {}
    for row in rows:
        if isinstance(row, DeadLetterRow):
            reason_class = dead_letter_class(row)
            classes[reason_class] = classes.get(reason_class, 0) + 1
            inserted -= 1
            if inserted == 0:
                break
    for reason_class, count in classes.items():
        record_dead_letters(reason_class, count)


def commit_rows(conn: Any, rows: Sequence[Row]) -> dict[str, int]:
    """`write_rows` in one transaction and commit; roll back (and re-raise) on any error."""
    try:
        counts = write_rows(conn, rows)
        conn.commit()
    except BaseException:
        rollback(conn)
        raise
    record_dead_letter_rows(rows, counts.get("dead_letters", 0))
    return counts


def write_entries(
    conn: Any,
    entries: Sequence[Entry],
    *,
    gatherer: str,
    stream: str,
    version: FormatVersion | None = None,
    registry: RegistrySettings | None = None,
    feed: ChangeFeed | None = None,
    rejected: dict[str, str] | None = None,
) -> dict[str, int]:
    """Normalize and write `entries` in one transaction, commit; returns new rows per table.

    A database fault (app.ingest.faults) is raised untouched: nothing is written and the
    entries are not to blame. A row refused for its values makes the batch go again step by
    step (`app.ingest.isolation.write_isolated`): the refused frame becomes a `dead_letters`
    row (stage `write`), everything else is stored. An entry that cannot be stored at all is
    left out and put in `rejected` (id -> reason) for the drain to dead-letter; without a
    `rejected` dict that raises `EntryRefused` and nothing commits.

    The entries' raw batches, their book deltas and every other row go in as
    `app.ingest.batch_writer` describes. With `registry`, market lifecycle rows are also applied
    to the market registry in the same transaction (`apply_lifecycle_events`, no REST fetch:
    the periodic reconcile completes what the event lacks), and after the commit the
    subscription changes go to `feed`.
    """
    batch = EntryBatch(entries, gatherer=gatherer, stream=stream, version=version)
    report = None
    refused: dict[str, str] = {} if rejected is None else rejected
    try:
        try:
            counts = write_batch(conn, batch)
            written = batch.rows
        except Exception as exc:
            if is_database_fault(exc):
                raise  # not the entries' fault: the drain keeps them pending and retries
            # A row of this batch was refused for its values: find it, dead-letter it alone.
            log_event(
                log,
                "ingest.batch_isolating",
                logging.WARNING,
                stream=stream,
                entries=len(entries),
                first_id=entries[0].id if entries else None,
                error=describe(exc),
            )
            rollback(conn)
            counts, written = write_isolated(
                conn, entries, gatherer=gatherer, stream=stream, version=version, rejected=refused
            )
            if refused and rejected is None:
                raise EntryRefused(refused) from exc
        if registry is not None:
            events = [
                event
                for row in written
                if isinstance(row, LifecycleEventRow) and (event := LifecycleEvent.from_row(row))
            ]
            if events:
                report = apply_lifecycle_events(conn, events, settings=registry)
            updates = [
                update
                for row in written
                if isinstance(row, LifecycleEventRow) and (update := EventUpdate.from_row(row))
            ]
            if updates:
                apply_event_updates(conn, updates)
        conn.commit()
    except BaseException:
        rollback(conn)
        raise
    record_dead_letter_rows(written, counts.get("dead_letters", 0))
    if report is not None:
        counts["registry_status_changes"] = report.status_changes
        if feed is not None and (report.added or report.removed):
            try:
                feed.publish(report.added, report.removed)
            except redis.RedisError as exc:
                # committed already; `ChangeFeed.refresh` (beat) publishes the difference later
                log_event(log, "ingest.feed_publish_failed", logging.WARNING, error=str(exc))
    return counts


def dead_letter_rows(letter: DeadLetter, *, gatherer: str, dead_stream: str) -> list[DeadLetterRow]:
    """`dead_letters` rows for one entry of the dead-letter stream.

    An entry whose envelope still decodes (a poison batch) gives one row per frame, keyed like
    the frame itself would be. One that does not decode gives a single row keyed by the source
    entry (`connection_id` = "<stream>/<entry id>", `received_ns` = when it was dead-lettered,
    position 0) holding the envelope's binary `d` field (or, without one, every field as
    `name=value` lines). Both keys are fixed once the dead letter exists, so copying the same
    dead letter twice inserts one row.
    """
    reason = f"{letter.reason} (deliveries {letter.deliveries}, consumer {letter.consumer})"
    try:
        frames = decode_entry(letter.fields)
    except EnvelopeError:
        frames = None
    if frames:
        return [
            frame_dead_letter(
                frame,
                pos,
                gatherer=gatherer,
                stage=STAGE_DRAIN,
                reason=reason,
                stream=letter.source_stream,
                entry_id=letter.source_id,
            )
            for pos, frame in enumerate(frames)
        ]
    raw = letter.fields.get(b"d")
    if raw is None:
        raw = b"\n".join(name + b"=" + value for name, value in sorted(letter.fields.items()))
    return [
        DeadLetterRow(
            gatherer=gatherer,
            connection_id=f"{letter.source_stream or dead_stream}/{letter.source_id}",
            received_ns=letter.at_ns,
            received_at=datetime_from_ns(letter.at_ns),
            batch_pos=0,
            sid=None,
            seq=None,
            msg_type=None,
            stage=STAGE_ENVELOPE if frames is None else STAGE_DRAIN,
            reason=reason,
            stream=letter.source_stream,
            entry_id=letter.source_id,
            raw=raw,
        )
    ]


def write_dead_letter_entries(
    conn: Any, entries: Sequence[Entry], *, gatherer: str, dead_stream: str
) -> dict[str, int]:
    """Copy entries of the dead-letter stream into `dead_letters`, one transaction, commit."""
    rows: list[Row] = []
    for entry in entries:
        letter = parse_dead_letter(entry.fields)
        rows.extend(dead_letter_rows(letter, gatherer=gatherer, dead_stream=dead_stream))
    return commit_rows(conn, rows)
