"""Writing `raw_batches`: whole stream entries, byte for byte, in PostgreSQL's binary COPY format.

A batch row carries one entry's `d` field (hundreds of KB); the text COPY format would double
it into hex and make the server decode it again. The binary format ships the bytes as they are
(docs/benchmarks.md: about 3x the text rate for this table). Batches repacked with explicit
frame positions (revision 0003's migration of old rows) go through `app.db.copy.copy_rows`.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from app.db.copy import CopyEncodingError, copy_idempotent
from app.db.rows import RawBatchRow
from app.db.tables import RAW_BATCHES

_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_TRAILER = struct.pack("!h", -1)
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_FIELDS = struct.pack("!h", len(RawBatchRow._fields))
_NULL = struct.pack("!i", -1)
_INT8 = struct.Struct("!iq")  # length 8, value
_INT4 = struct.Struct("!ii")  # length 4, value


def _text(value: str) -> bytes:
    encoded = value.encode()
    if b"\x00" in encoded:
        raise CopyEncodingError("text cannot contain NUL characters")
    return struct.pack("!i", len(encoded)) + encoded


def _timestamptz(value: datetime) -> bytes:
    if value.tzinfo is None:
        raise CopyEncodingError(f"expected a timezone-aware datetime, got {value!r}")
    delta = value - _PG_EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return _INT8.pack(8, micros)


def encode_binary(rows: Sequence[RawBatchRow]) -> bytes:
    """The binary COPY payload of batch rows stored as received (`positions` None)."""
    parts = [_HEADER]
    for row in rows:
        if row.positions is not None:
            raise CopyEncodingError("binary batches have no positions; use the text path")
        parts += (
            _FIELDS,
            _text(row.gatherer),
            _text(row.publisher),
            _INT8.pack(8, row.batch_seq),
            _timestamptz(row.received_at),
            _INT8.pack(8, row.first_received_ns),
            _INT8.pack(8, row.last_received_ns),
            _INT4.pack(4, row.frame_count),
            _NULL if row.stream is None else _text(row.stream),
            _NULL if row.entry_id is None else _text(row.entry_id),
            _NULL,
            struct.pack("!i", len(row.data)),
            bytes(row.data),
        )
    parts.append(_TRAILER)
    return b"".join(parts)


def write_raw_batches(conn: Any, rows: Sequence[RawBatchRow]) -> tuple[int, int]:
    """Store batches idempotently in the caller's transaction; (batches, frames) inserted."""
    if not rows:
        return 0, 0
    try:
        payload = encode_binary(rows)
    except struct.error as exc:
        raise CopyEncodingError(f"raw batch out of range: {exc}") from exc
    staged: list[int] = []
    batches = copy_idempotent(
        conn,
        RAW_BATCHES,
        RAW_BATCHES.columns,
        lambda: io.BytesIO(payload),
        binary=True,
        inserted_values=staged,
        value_column="frame_count",
    )
    if batches == len(rows) and not staged:
        return batches, sum(row.frame_count for row in rows)
    return batches, sum(staged)
