"""One `dead_letters` row for one stream frame, keyed like the frame itself would be.

Every ingest stage that gives up on a single frame (a control record that does not parse, a
row the database refuses for its values, a poison batch copied from the dead-letter stream)
stores the frame's exact bytes under its own identity, so copying it twice inserts one row.
"""

from __future__ import annotations

from app.db.rows import DeadLetterRow
from app.normalize import datetime_from_ns
from app.streams import Frame


def frame_dead_letter(
    frame: Frame,
    pos: int,
    *,
    gatherer: str,
    stage: str,
    reason: str,
    stream: str | None,
    entry_id: str | None,
    msg_type: str | None = None,
) -> DeadLetterRow:
    return DeadLetterRow(
        gatherer=gatherer,
        connection_id=frame.conn_id,
        received_ns=frame.recv_ns,
        received_at=datetime_from_ns(frame.recv_ns),
        batch_pos=pos,
        sid=frame.sid,
        seq=frame.seq,
        msg_type=msg_type,
        stage=stage,
        reason=reason,
        stream=stream,
        entry_id=entry_id,
        raw=frame.raw,
    )
