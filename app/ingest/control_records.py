"""Writing the listener's control records (gaps, connection sessions) into the database.

The listener never touches SQL (STYLE §1): it publishes `kd_control` frames onto
`kd:{g}:control` with the same delivery guarantees as exchange frames (journal, PEL, reclaim).
Here they become `sequence_gaps`, `connection_sessions` and `capture_holes` rows. Each record
repeats every field of the earlier record about the same gap, session or hole, so the writes
are upserts that only ever fill in what was missing (recovered_at, closed_at, to_at):
replaying an entry changes nothing.
A record that does not parse is dead-lettered with its raw bytes, never dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg2.extras import execute_values

from app.db.copy import write_rows
from app.db.rows import DeadLetterRow, SequenceGapRow
from app.ingest.dead_rows import frame_dead_letter
from app.listener.control import (
    GAP_EVENTS,
    HOLE_EVENTS,
    SESSION_EVENTS,
    ControlRecordError,
    gap_row,
    hole_row,
    parse_control,
    session_row,
)
from app.streams import Entry

STAGE_CONTROL = "control"

_GAPS_SQL = """
INSERT INTO sequence_gaps (gatherer, connection_id, sid, market_tickers, expected_seq, got_seq,
                           detected_at, recovered_at, recovery)
VALUES %s
ON CONFLICT ON CONSTRAINT sequence_gaps_key DO UPDATE SET
    recovered_at = COALESCE(sequence_gaps.recovered_at, EXCLUDED.recovered_at),
    recovery = COALESCE(sequence_gaps.recovery, EXCLUDED.recovery)
"""

_SESSIONS_SQL = """
INSERT INTO connection_sessions (gatherer, connection_id, role, shard, url, opened_at,
                                 closed_at, close_reason, market_count)
VALUES %s
ON CONFLICT ON CONSTRAINT connection_sessions_pkey DO UPDATE SET
    closed_at = COALESCE(connection_sessions.closed_at, EXCLUDED.closed_at),
    close_reason = COALESCE(connection_sessions.close_reason, EXCLUDED.close_reason),
    market_count = COALESCE(EXCLUDED.market_count, connection_sessions.market_count)
"""

# A hole's end only ever gets filled in; its start can only move earlier (two records about
# one hole never disagree today, but a replay must never shrink a recorded hole).
_HOLES_SQL = """
INSERT INTO capture_holes (gatherer, hole_id, connection_id, channel, market_tickers, cause,
                           from_at, to_at, detail, backfill_status)
VALUES %s
ON CONFLICT ON CONSTRAINT capture_holes_pkey DO UPDATE SET
    from_at = LEAST(capture_holes.from_at, EXCLUDED.from_at),
    to_at = COALESCE(capture_holes.to_at, EXCLUDED.to_at),
    detail = COALESCE(capture_holes.detail, EXCLUDED.detail)
"""

_HOLE_COLUMNS = (
    "gatherer", "hole_id", "connection_id", "channel", "market_tickers", "cause", "from_at",
    "to_at", "detail", "backfill_status",
)  # fmt: skip

_SESSION_COLUMNS = (
    "gatherer", "connection_id", "role", "shard", "url", "opened_at", "closed_at",
    "close_reason", "market_count",
)  # fmt: skip


def _merge_gaps(rows: list[SequenceGapRow]) -> list[SequenceGapRow]:
    """One row per key (a batch can hold both the detection and the recovery of a gap)."""
    merged: dict[tuple[str, str, int, int], SequenceGapRow] = {}
    for row in rows:
        key = (row.gatherer, row.connection_id, row.sid, row.expected_seq)
        seen = merged.get(key)
        if seen is None or (seen.recovered_at is None and row.recovered_at is not None):
            merged[key] = row
    return list(merged.values())


def _merge_sessions(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["gatherer"], row["connection_id"])
        seen = merged.get(key)
        if seen is None or (seen["closed_at"] is None and row["closed_at"] is not None):
            merged[key] = row
    return list(merged.values())


def _merge_holes(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["gatherer"], row["hole_id"])
        seen = merged.get(key)
        if seen is None or (seen["to_at"] is None and row["to_at"] is not None):
            merged[key] = row
    return list(merged.values())


def write_control_entries(
    conn: Any, entries: Sequence[Entry], *, gatherer: str, stream: str
) -> dict[str, int]:
    """Upsert the gap, session and hole records of `entries` in one transaction and commit."""
    gaps: list[SequenceGapRow] = []
    sessions: list[dict[str, Any]] = []
    holes: list[dict[str, Any]] = []
    dead: list[DeadLetterRow] = []
    for entry in entries:
        for pos, frame in enumerate(entry.frames):
            try:
                record = parse_control(frame.raw)
                if record.get("event") in GAP_EVENTS:
                    gaps.append(gap_row(record))
                elif record.get("event") in SESSION_EVENTS:
                    sessions.append(session_row(record))
                elif record.get("event") in HOLE_EVENTS:
                    holes.append(hole_row(record))
                else:
                    raise ControlRecordError(f"unknown control event {record.get('event')!r}")
            except ControlRecordError as exc:
                dead.append(
                    frame_dead_letter(
                        frame,
                        pos,
                        gatherer=gatherer,
                        stage=STAGE_CONTROL,
                        reason=str(exc),
                        stream=stream,
                        entry_id=entry.id,
                        msg_type="kd_control",
                    )
                )
    gaps, sessions = _merge_gaps(gaps), _merge_sessions(sessions)
    holes = _merge_holes(holes)
    try:
        with conn.cursor() as cur:
            if gaps:
                execute_values(
                    cur, _GAPS_SQL, [(*g[:3], list(g.market_tickers), *g[4:]) for g in gaps]
                )
            if sessions:
                execute_values(
                    cur, _SESSIONS_SQL, [tuple(s[c] for c in _SESSION_COLUMNS) for s in sessions]
                )
            if holes:
                execute_values(cur, _HOLES_SQL, [tuple(h[c] for c in _HOLE_COLUMNS) for h in holes])
        counts = write_rows(conn, dead) if dead else {}
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    counts["sequence_gaps"] = len(gaps)
    counts["connection_sessions"] = len(sessions)
    counts["capture_holes"] = len(holes)
    return counts
