"""One transaction's writes for a batch of stream entries: raw batches, book deltas, the rest.

The order is fixed (every writer takes its locks in the same order):

1. `raw_batches`: each entry's `d` field as one row, binary COPY (`app.db.raw_batches`);
2. `orderbook_deltas`: streamed. PostgreSQL reads the COPY while we normalize, so the server's
   insert work overlaps ours. Plain current-format deltas become COPY lines directly
   (`app.ingest.fast_delta`); every other frame goes through `app.normalize.normalize_frame`
   and its rows are kept for step 3;
3. the general path's rows (other types, dead letters, deltas the fast path declined) through
   `app.db.copy.write_rows`.

Each COPY is direct, redone through staging + `ON CONFLICT DO NOTHING` only when a row is
already stored (`app.db.copy.copy_idempotent`), so a redelivered batch inserts nothing new.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from app.db.copy import copy_idempotent, write_rows
from app.db.raw_batches import write_raw_batches
from app.db.rows import RawBatchRow, RawFrameRow, Row
from app.db.tables import ORDERBOOK_DELTAS
from app.ingest.fast_delta import COLUMNS, delta_line, is_plain, uses_fast_path
from app.normalize import (
    FormatVersion,
    FrameEnvelope,
    datetime_from_ns,
    frame_facts,
    normalize_frame,
)
from app.streams.drain import Entry
from app.streams.envelope import decode_frames

_DELTA_MARK = b"orderbook_delta"  # cheap pre-check before parsing a frame on the fast path


def batch_frame_facts(
    gatherer: str, frame_count: int, positions: Sequence[int] | None, data: bytes
) -> Iterator[RawFrameRow]:
    """The frames of one stored `raw_batches` row, as per-frame facts (`frame_facts`): what the
    `raw_frames` view shows plus the type and market read from the bytes."""
    for index, frame in enumerate(decode_frames(data, frame_count)):
        envelope = FrameEnvelope(
            received_ns=frame.recv_ns,
            connection_id=frame.conn_id,
            batch_pos=positions[index] if positions else index,
            gatherer=gatherer,
            sid=frame.sid,
            seq=frame.seq,
            gap=frame.gap,
            resync=frame.resync,
            yes_price=frame.yes_price,
        )
        yield frame_facts(frame.raw, envelope)


def raw_batch_row(entry: Entry, *, gatherer: str, stream: str) -> RawBatchRow | None:
    """The `raw_batches` row of one decoded entry (None for an entry without frames).

    The batch identity is the listener's (`p`, `q`), stable when the same batch is published
    again from the spill journal; an entry without them (not from our listener) is identified
    by where it was read.
    """
    frames = entry.frames
    if not frames:
        return None
    publisher = entry.fields.get(b"p")
    batch_seq = entry.fields.get(b"q")
    if publisher and batch_seq is not None and batch_seq.isdigit():
        publisher_id, seq = publisher.decode("utf-8", "replace"), int(batch_seq)
    else:
        publisher_id, seq = f"{stream}#{entry.id}", 0
    times = [frame.recv_ns for frame in frames]
    first = min(times)
    return RawBatchRow(
        gatherer=gatherer,
        publisher=publisher_id,
        batch_seq=seq,
        received_at=datetime_from_ns(first),
        first_received_ns=first,
        last_received_ns=max(times),
        frame_count=len(frames),
        stream=stream,
        entry_id=entry.id,
        positions=None,
        data=bytes(entry.fields[b"d"]),
    )


class _Lines(io.TextIOBase):
    """A read-only text file over a line iterator, for psycopg2's `copy_expert`."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> str:
        limit = size if size is not None and size >= 0 else 1 << 62
        chunk: list[str] = []
        length = 0
        for line in self._lines:
            chunk.append(line)
            length += len(line)
            if length >= limit:
                break
        return "".join(chunk)


class EntryBatch:
    """Splits the frames of some entries into delta COPY lines and general-path rows."""

    def __init__(
        self,
        entries: Sequence[Entry],
        *,
        gatherer: str,
        stream: str,
        version: FormatVersion | None = None,
    ) -> None:
        self.entries = entries
        self.gatherer = gatherer
        self.stream = stream
        self.version = version
        self.delta_lines: list[str] = []
        self.rows: list[Row] = []  # general path: typed rows and dead letters, in frame order
        self._done = False

    def _general(self, entry: Entry, pos: int) -> None:
        frame = entry.frames[pos]
        envelope = FrameEnvelope(
            received_ns=frame.recv_ns,
            connection_id=frame.conn_id,
            batch_pos=pos,
            gatherer=self.gatherer,
            sid=frame.sid,
            seq=frame.seq,
            gap=frame.gap,
            resync=frame.resync,
            yes_price=frame.yes_price,
            stream=self.stream,
            entry_id=entry.id,
        )
        self.rows.extend(normalize_frame(frame.raw, envelope, version=self.version).all_rows())

    def lines(self) -> Iterator[str]:
        """Delta COPY lines, normalizing frames as they are asked for (once only)."""
        if self._done:
            return
        gatherer_plain = is_plain(self.gatherer)
        prefixes: dict[str, str | None] = {}
        version = self.version
        out = self.delta_lines
        for entry in self.entries:
            for pos, frame in enumerate(entry.frames):
                if frame.repeat:
                    continue  # an exchange resend of a stored seq: its raw batch keeps it
                line = None
                # A yes-price frame's NO prices need turning back: the general mapper does it.
                if gatherer_plain and not frame.yes_price and _DELTA_MARK in frame.raw:
                    prefix = prefixes.get(frame.conn_id, "")
                    if prefix == "":
                        prefix = (
                            f"{self.gatherer}\t{frame.conn_id}\t"
                            if is_plain(frame.conn_id)
                            else None
                        )
                        prefixes[frame.conn_id] = prefix
                    if prefix is not None and uses_fast_path(frame.recv_ns, version):
                        try:
                            parsed = orjson.loads(frame.raw)
                        except orjson.JSONDecodeError:
                            parsed = None
                        line = delta_line(
                            parsed,
                            prefix=prefix,
                            received_ns=frame.recv_ns,
                            batch_pos=pos,
                            listener_sid=frame.sid,
                            listener_seq=frame.seq,
                        )
                if line is None:
                    self._general(entry, pos)
                else:
                    out.append(line)
                    yield line
        self._done = True

    def finish(self) -> None:
        """Normalize whatever `lines()` has not reached yet."""
        for _ in self.lines():
            pass


def write_batch(conn: Any, batch: EntryBatch) -> dict[str, int]:
    """Steps 1-3 of the module docstring in the caller's transaction; new rows per table.

    `raw_frames` in the result counts the frames of the raw batches newly stored.
    """
    raw_rows = [
        row
        for entry in batch.entries
        if (row := raw_batch_row(entry, gatherer=batch.gatherer, stream=batch.stream))
    ]
    batches, frames = write_raw_batches(conn, raw_rows)
    counts = {"raw_batches": batches, "raw_frames": frames}
    if not any(_DELTA_MARK in frame.raw for entry in batch.entries for frame in entry.frames):
        batch.finish()  # no book delta here: the general path only
        counts.update(write_rows(conn, batch.rows))
        return counts
    stream = batch.lines()
    first = True

    def open_deltas() -> io.TextIOBase:
        nonlocal first
        if first:
            first = False
            return _Lines(stream)
        batch.finish()  # the staging retry needs every line, including those not yet read
        return io.StringIO("".join(batch.delta_lines))

    deltas = copy_idempotent(conn, ORDERBOOK_DELTAS, COLUMNS, open_deltas)
    batch.finish()
    counts.update(write_rows(conn, batch.rows))
    counts[ORDERBOOK_DELTAS.name] = counts.get(ORDERBOOK_DELTAS.name, 0) + deltas
    return counts
