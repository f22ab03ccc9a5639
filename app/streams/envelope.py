"""The stream entry envelope: one Redis Stream entry carries one batch of raw frames (DESIGN §3).

Entry fields (schema version 1):

| field | value |
|---|---|
| `v` | schema version, ASCII decimal (`1`) |
| `n` | number of frames in `d`, ASCII decimal |
| `p` | publisher id (listener process) that sealed the batch; provenance only |
| `q` | the publisher's batch sequence number, ASCII decimal; provenance only |
| `d` | the frames, binary layout below |

`d` layout, little-endian:

    u32  crc32 of everything after this field (zlib.crc32)
    u16  C = number of connection ids
    C x  ( u16 length, UTF-8 connection id )
    n x  ( i64 recv_ns, i64 sid, i64 seq, u8 flags, u16 connection index, u32 length, raw )

`flags`: bit 0 = sid present, bit 1 = seq present, bit 2 = the listener saw a sequence gap
before this frame, bit 3 = an order book snapshot the listener asked for (`get_snapshot`) to
repair a gap, bit 4 = a repeat: a seq this connection's sid had already delivered (an exchange
resend), which ingest keeps raw only, bit 5 = the frame's subscription was made with
`use_yes_price` (NO-side book prices on the YES scale; the normalizer turns them back). Absent
sid/seq are stored as 0 with the bit clear. Bits 6-7 must be 0 (bits 3-5 came with the same
schema version: readers older than them refuse such entries as corrupt, so upgrade ingest before
listeners).

The raw frame is stored as opaque bytes: invalid UTF-8, malformed JSON or an empty frame
round-trip byte-exact, because the envelope never parses the frame (dead letters are decided
downstream, RTR-1). Decoding checks the checksum, every length and the frame count, and raises
`EnvelopeError` on any mismatch so that the consumer can dead-letter the entry with its bytes.
This module never does I/O.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

SCHEMA_VERSION = 1

F_VERSION = b"v"
F_COUNT = b"n"
F_PUBLISHER = b"p"
F_BATCH_SEQ = b"q"
F_DATA = b"d"

_VERSION_BYTES = str(SCHEMA_VERSION).encode()
_HAS_SID = 1
_HAS_SEQ = 2
_GAP = 4
_RESYNC = 8
_REPEAT = 16
_YES_PRICE = 32
_KNOWN_FLAGS = _HAS_SID | _HAS_SEQ | _GAP | _RESYNC | _REPEAT | _YES_PRICE

_CRC = struct.Struct("<I")
_U16 = struct.Struct("<H")
_FRAME_HEAD = struct.Struct("<qqqBHI")  # recv_ns, sid, seq, flags, connection index, raw length
FRAME_OVERHEAD = _FRAME_HEAD.size  # bytes added to each raw frame (31)
MAX_CONNECTIONS = 0xFFFF  # distinct connection ids in one batch


class Frame(NamedTuple):
    """One WebSocket frame as the listener read it, plus the listener's sequence verdict."""

    raw: bytes  # exactly what the socket delivered, unchanged
    recv_ns: int  # local time.time_ns() read before any parsing
    conn_id: str  # unique per WebSocket session
    sid: int | None = None
    seq: int | None = None
    gap: bool = False  # the listener saw a seq gap on this sid right before this frame
    resync: bool = False  # a book snapshot the listener requested to repair a gap
    repeat: bool = False  # a seq this connection's sid already delivered: kept raw only
    yes_price: bool = False  # its subscription asked `use_yes_price`: NO levels on YES scale


class EnvelopeError(Exception):
    """A stream entry that is not a valid envelope (corrupt, truncated, unknown version)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BatchBuilder:
    """Accumulates frames into the `d` layout; each frame is packed once, when added."""

    __slots__ = ("_body", "_conns", "count")

    def __init__(self) -> None:
        self._conns: dict[str, int] = {}
        self._body = bytearray()
        self.count = 0

    def add(self, frame: Frame) -> int:
        """Append one frame; returns the bytes it added. Raises ValueError/TypeError if invalid.

        A refused frame leaves the batch unchanged, so one bad frame never spoils its batch.
        """
        raw = frame.raw
        if type(raw) is not bytes:
            raise TypeError(f"frame.raw must be bytes, not {type(raw).__name__}")
        index = self._conns.get(frame.conn_id)
        new_conn = index is None
        if index is None:
            index = self._connection_index(frame.conn_id)
        flags = 0
        sid = frame.sid
        if sid is None:
            sid = 0
        else:
            flags = _HAS_SID
        seq = frame.seq
        if seq is None:
            seq = 0
        else:
            flags |= _HAS_SEQ
        if frame.gap:
            flags |= _GAP
        if frame.resync:
            flags |= _RESYNC
        if frame.repeat:
            flags |= _REPEAT
        if frame.yes_price:
            flags |= _YES_PRICE
        try:
            head = _FRAME_HEAD.pack(frame.recv_ns, sid, seq, flags, index, len(raw))
        except struct.error as exc:
            if new_conn:
                del self._conns[frame.conn_id]
            raise ValueError(f"frame cannot be encoded: {exc}") from exc
        self._body += head
        self._body += raw
        self.count += 1
        return len(head) + len(raw)

    def _connection_index(self, conn_id: str) -> int:
        if not isinstance(conn_id, str):
            raise TypeError(f"frame.conn_id must be str, not {type(conn_id).__name__}")
        if len(self._conns) >= MAX_CONNECTIONS:
            raise ValueError(f"more than {MAX_CONNECTIONS} connection ids in one batch")
        encoded = conn_id.encode()  # a lone surrogate raises UnicodeEncodeError (a ValueError)
        if len(encoded) > 0xFFFF:
            raise ValueError("connection id longer than 65535 bytes")
        index = len(self._conns)
        self._conns[conn_id] = index
        return index

    def finish(self) -> bytes:
        """The `d` field for the frames added so far."""
        table = [_U16.pack(len(self._conns))]
        for conn_id in self._conns:  # dicts keep insertion order = index order
            encoded = conn_id.encode()
            table.append(_U16.pack(len(encoded)))
            table.append(encoded)
        head = b"".join(table)
        crc = zlib.crc32(self._body, zlib.crc32(head))
        return b"".join((_CRC.pack(crc), head, self._body))


def encode_frames(frames: Iterable[Frame]) -> tuple[int, bytes]:
    """(frame count, `d` field) for `frames`."""
    builder = BatchBuilder()
    for frame in frames:
        builder.add(frame)
    return builder.count, builder.finish()


def encode_entry(frames: Iterable[Frame]) -> dict[bytes, bytes]:
    """The `v`, `n` and `d` fields of an entry holding `frames` (the publisher adds `p`, `q`)."""
    count, data = encode_frames(frames)
    return {F_VERSION: _VERSION_BYTES, F_COUNT: str(count).encode(), F_DATA: data}


def _field(fields: Mapping[Any, Any], name: bytes) -> Any:
    value = fields.get(name)
    if value is None:
        value = fields.get(name.decode())
    if value is None:
        raise EnvelopeError(f"missing field {name.decode()!r}")
    return value


def decode_entry(fields: Mapping[Any, Any]) -> list[Frame]:
    """The frames of one stream entry. Raises EnvelopeError for anything but a valid envelope."""
    version = _field(fields, F_VERSION)
    if version not in (_VERSION_BYTES, str(SCHEMA_VERSION)):
        raise EnvelopeError(f"unsupported schema version {version!r}")
    count_field = _field(fields, F_COUNT)
    try:
        count = int(count_field)
    except (TypeError, ValueError):
        raise EnvelopeError(f"frame count is not an integer: {count_field!r}") from None
    data = _field(fields, F_DATA)
    if not isinstance(data, bytes):
        raise EnvelopeError("data field is not bytes (the Redis client must not decode responses)")
    return decode_frames(data, count)


def decode_frames(data: bytes, count: int) -> list[Frame]:
    """Parse a `d` field that must hold exactly `count` frames."""
    end = len(data)
    if end < _CRC.size + _U16.size:
        raise EnvelopeError(f"data too short ({end} bytes)")
    (crc,) = _CRC.unpack_from(data, 0)
    if zlib.crc32(memoryview(data)[_CRC.size :]) != crc:
        raise EnvelopeError("checksum mismatch")
    offset = _CRC.size
    (conn_count,) = _U16.unpack_from(data, offset)
    offset += _U16.size
    conns: list[str] = []
    try:
        for _ in range(conn_count):
            (length,) = _U16.unpack_from(data, offset)
            offset += _U16.size
            if offset + length > end:
                raise EnvelopeError("connection table runs past the end")
            conns.append(data[offset : offset + length].decode())
            offset += length
    except (struct.error, UnicodeDecodeError) as exc:
        raise EnvelopeError(f"bad connection table: {exc}") from None
    frames: list[Frame] = []
    append = frames.append
    unpack = _FRAME_HEAD.unpack_from
    head_size = _FRAME_HEAD.size
    while offset < end:
        if offset + head_size > end:
            raise EnvelopeError(f"truncated frame header at byte {offset}")
        recv_ns, sid, seq, flags, index, length = unpack(data, offset)
        offset += head_size
        stop = offset + length
        if stop > end:
            raise EnvelopeError(f"frame at byte {offset} runs past the end")
        if flags & ~_KNOWN_FLAGS:
            raise EnvelopeError(f"unknown frame flags {flags:#x}")
        if index >= conn_count:
            raise EnvelopeError(f"connection index {index} out of range")
        append(
            Frame(
                data[offset:stop],
                recv_ns,
                conns[index],
                sid if flags & _HAS_SID else None,
                seq if flags & _HAS_SEQ else None,
                bool(flags & _GAP),
                bool(flags & _RESYNC),
                bool(flags & _REPEAT),
                bool(flags & _YES_PRICE),
            )
        )
        offset = stop
    if len(frames) != count:
        raise EnvelopeError(f"entry says {count} frames, data holds {len(frames)}")
    return frames
