"""Normalizers: raw Kalshi WebSocket frames (and REST objects) -> typed rows. Pure, no I/O.

    from app.normalize import FrameEnvelope, normalize_frame
    result = normalize_frame(raw_text, FrameEnvelope(received_ns, connection_id, pos, gatherer,
                                                     sid=sid, seq=seq))
    result.verdict        # rows | control | dead
    result.all_rows()     # typed rows, DeadLetterRow -> app.db.copy.write_rows
    result.raw_frame      # the frame's facts (its bytes are stored per stream entry)

This package knows the wire formats; it knows nothing about SQL, Redis or sockets (STYLE §1).
docs/normalize.md describes every mapper, the version selection and the dead-letter reasons.
"""

from app.normalize.book import rest_snapshot_row, snapshot_row_from_orderbook
from app.normalize.envelope import FrameEnvelope, ParsedFrame, datetime_from_ns
from app.normalize.fields import FrameError
from app.normalize.frames import (
    CONTROL_TYPES,
    MAPPERS,
    Normalized,
    Verdict,
    batch_rows,
    frame_facts,
    normalize_frame,
)
from app.normalize.lifecycle import payload_hash
from app.normalize.trades import rest_trade_row
from app.normalize.versions import FormatVersion, parse_version, version_for_capture_time

__all__ = [
    "CONTROL_TYPES",
    "MAPPERS",
    "FormatVersion",
    "FrameEnvelope",
    "FrameError",
    "Normalized",
    "ParsedFrame",
    "Verdict",
    "batch_rows",
    "datetime_from_ns",
    "frame_facts",
    "normalize_frame",
    "parse_version",
    "payload_hash",
    "rest_snapshot_row",
    "rest_trade_row",
    "snapshot_row_from_orderbook",
    "version_for_capture_time",
]
