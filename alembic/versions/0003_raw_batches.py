"""Raw frames stored per stream entry: table `raw_batches`, view `raw_frames`.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

One row per stream entry (the listener's sealed batch, `d` field byte for byte) instead of one
row per frame: the raw store was half of every frame's write cost, and per-frame rows cannot
reach the ingest target (docs/schema.md "Raw frames", docs/benchmarks.md). `raw_frames` stays
queryable as a view that unpacks the batches (`kd_unpack_frames`). Rows of the old per-frame
table are repacked into batches that keep every frame's original position; downgrade unpacks
them again. The batch bytes use lz4 TOAST compression when the server has it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from alembic import context, op
from app.db import partitions, timescale
from app.db.copy import copy_rows
from app.db.engine import dbapi_connection
from app.db.rows import RawBatchRow, RawFrameRow
from app.db.tables import RAW_BATCHES, RAW_FRAMES_0001
from app.ingest.batch_writer import batch_frame_facts
from app.normalize import datetime_from_ns
from app.streams.envelope import Frame, encode_frames

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REPACK_PUBLISHER = "0003-repack"  # publisher id of batches made from old per-frame rows
REPACK_FRAMES = 500  # frames per repacked batch (the listener's usual batch size)

RAW_BATCHES_DDL = """
CREATE TABLE raw_batches (
    gatherer           text        NOT NULL,
    publisher          text        NOT NULL,
    batch_seq          bigint      NOT NULL,
    received_at        timestamptz NOT NULL,
    first_received_ns  bigint      NOT NULL,
    last_received_ns   bigint      NOT NULL,
    frame_count        integer     NOT NULL CHECK (frame_count > 0),
    stream             text,
    entry_id           text,
    positions          integer[]   CHECK (cardinality(positions) = frame_count),
    data               bytea       {compression} NOT NULL,
    CONSTRAINT raw_batches_pkey PRIMARY KEY (gatherer, publisher, batch_seq, received_at)
) {partitioning}"""

RAW_BATCHES_INDEX = (
    "CREATE INDEX raw_batches_gatherer_time_idx ON raw_batches (gatherer, received_at)"
)

# Little-endian readers for the `d` layout (app/streams/envelope.py); PostgreSQL's `|` and `<<`
# share one precedence level, hence the parentheses.
UNPACK_FUNCTIONS = """
CREATE FUNCTION kd_u16le(b bytea, o integer) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN get_byte(b, o) | (get_byte(b, o + 1) << 8);

CREATE FUNCTION kd_i64le(b bytea, o integer) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN (get_byte(b, o)::bigint) | (get_byte(b, o + 1)::bigint << 8)
     | (get_byte(b, o + 2)::bigint << 16) | (get_byte(b, o + 3)::bigint << 24)
     | (get_byte(b, o + 4)::bigint << 32) | (get_byte(b, o + 5)::bigint << 40)
     | (get_byte(b, o + 6)::bigint << 48) | (get_byte(b, o + 7)::bigint << 56);

CREATE FUNCTION kd_unpack_frames(data bytea, positions integer[] DEFAULT NULL)
RETURNS TABLE (batch_pos integer, connection_id text, received_ns bigint, sid bigint,
               seq bigint, gap boolean, resync boolean, raw bytea)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $kd$
DECLARE
    buf bytea := data;
    total integer := length(data);
    off integer := 6;
    conns text[] := ARRAY[]::text[];
    len integer;
    flags integer;
    i integer := 0;
BEGIN
    IF buf IS NULL THEN
        RETURN;
    END IF;
    FOR k IN 1 .. kd_u16le(buf, 4) LOOP
        len := kd_u16le(buf, off);
        conns := conns || convert_from(substring(buf FROM off + 3 FOR len), 'UTF8');
        off := off + 2 + len;
    END LOOP;
    WHILE off < total LOOP
        received_ns := kd_i64le(buf, off);
        sid := kd_i64le(buf, off + 8);
        seq := kd_i64le(buf, off + 16);
        flags := get_byte(buf, off + 24);
        connection_id := conns[kd_u16le(buf, off + 25) + 1];
        len := kd_u16le(buf, off + 27) | (kd_u16le(buf, off + 29) << 16);
        raw := substring(buf FROM off + 32 FOR len);
        off := off + 31 + len;
        IF (flags & 1) = 0 THEN
            sid := NULL;
        END IF;
        IF (flags & 2) = 0 THEN
            seq := NULL;
        END IF;
        gap := (flags & 4) <> 0;
        resync := (flags & 8) <> 0;
        batch_pos := coalesce(positions[i + 1], i);
        i := i + 1;
        RETURN NEXT;
    END LOOP;
END
$kd$;
"""

RAW_FRAMES_VIEW = """
CREATE VIEW raw_frames AS
SELECT b.gatherer,
       f.connection_id,
       f.received_ns,
       to_timestamp(f.received_ns / 1000000000)
           + (mod(f.received_ns, 1000000000) / 1000) * INTERVAL '1 microsecond' AS received_at,
       f.batch_pos,
       f.sid,
       f.seq,
       f.gap,
       f.resync,
       f.raw,
       b.publisher,
       b.batch_seq,
       b.received_at AS batch_received_at,
       b.stream,
       b.entry_id
FROM raw_batches b
CROSS JOIN LATERAL kd_unpack_frames(b.data, b.positions) f"""

COMMENTS = """
COMMENT ON TABLE raw_batches IS
    'Every received WebSocket frame, exact bytes, one row per stream entry (its d field as '
    'the listener sealed it); key = batch identity + received_at of its first frame.';
COMMENT ON VIEW raw_frames IS
    'raw_batches unpacked: one row per frame (connection, receive ns, batch position, '
    'sid, seq, gap, resync, exact bytes).';
"""

# Revision 0001's per-frame table, for the downgrade.
RAW_FRAMES_DDL = """
CREATE TABLE raw_frames (
    gatherer       text        NOT NULL,
    connection_id  text        NOT NULL,
    received_ns    bigint      NOT NULL,
    received_at    timestamptz NOT NULL,
    batch_pos      integer     NOT NULL,
    sid            bigint,
    seq            bigint,
    gap            boolean     NOT NULL DEFAULT false,
    msg_type       text,
    market_ticker  text,
    raw            bytea       NOT NULL,
    CONSTRAINT raw_frames_pkey
        PRIMARY KEY (gatherer, connection_id, received_ns, batch_pos, received_at)
) {partitioning}"""


def _use_timescaledb() -> bool:
    choice = context.get_x_argument(as_dictionary=True).get("timescaledb", "auto")
    offline = context.is_offline_mode()
    return timescale.migration_wants_timescaledb(
        choice, offline=offline, conn=None if offline else op.get_bind()
    )


def _lz4_clause() -> str:
    """`COMPRESSION lz4` when this server was built with lz4 (PostgreSQL 14+), else nothing."""
    if context.is_offline_mode():
        return ""
    with dbapi_connection(op.get_bind()).cursor() as cur:
        cur.execute(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        )
        found = cur.fetchone()
    return "COMPRESSION lz4" if found and found[0] else ""


def _create_time_series(ddl: str, spec: Any, hypertables: bool) -> None:
    op.execute(
        ddl.format(partitioning="" if hypertables else f"PARTITION BY RANGE ({spec.time_column})")
    )
    if hypertables:
        op.execute(timescale.hypertable_sql(spec))
        op.execute(timescale.licensed_policies_sql((spec,)))
        return
    op.execute(partitions.default_partition_ddl(spec))
    if context.is_offline_mode():
        days = partitions.days_around(
            datetime.now(UTC), partitions.MIGRATION_DAYS_BACK, partitions.MIGRATION_DAYS_AHEAD
        )
        for day in days:
            op.execute(partitions.partition_ddl(spec, day))
    else:
        partitions.ensure_partitions(
            op.get_bind(),
            days_ahead=partitions.MIGRATION_DAYS_AHEAD,
            days_back=partitions.MIGRATION_DAYS_BACK,
            tables=(spec,),
        )


def _stream_rows(query: str, size: int = 5_000) -> Iterator[tuple[Any, ...]]:
    with dbapi_connection(op.get_bind()).cursor(name="kd_0003_read") as cur:
        cur.itersize = size
        cur.execute(query)
        yield from cur


def _repack_old_frames() -> int:
    """Old per-frame rows -> batches of up to REPACK_FRAMES frames per gatherer, positions kept."""
    conn = op.get_bind()
    sequence: dict[str, int] = {}
    pending: list[RawBatchRow] = []
    stored = 0

    def seal(gatherer: str, frames: list[Frame], positions: list[int]) -> None:
        nonlocal stored
        count, data = encode_frames(frames)
        first = min(frame.recv_ns for frame in frames)
        batch_seq = sequence.get(gatherer, 0)
        sequence[gatherer] = batch_seq + 1
        pending.append(
            RawBatchRow(
                gatherer=gatherer,
                publisher=REPACK_PUBLISHER,
                batch_seq=batch_seq,
                received_at=datetime_from_ns(first),
                first_received_ns=first,
                last_received_ns=max(frame.recv_ns for frame in frames),
                frame_count=count,
                stream=None,
                entry_id=None,
                positions=tuple(positions),
                data=data,
            )
        )
        if len(pending) >= 20:
            stored += copy_rows(conn, RAW_BATCHES, pending)
            pending.clear()

    current: str | None = None
    frames: list[Frame] = []
    positions: list[int] = []
    for gatherer, connection_id, received_ns, batch_pos, sid, seq, gap, raw in _stream_rows(
        "SELECT gatherer, connection_id, received_ns, batch_pos, sid, seq, gap, raw "
        "FROM raw_frames ORDER BY gatherer, received_ns, connection_id, batch_pos"
    ):
        if frames and (gatherer != current or len(frames) >= REPACK_FRAMES):
            seal(current or "", frames, positions)
            frames, positions = [], []
        current = gatherer
        frames.append(Frame(bytes(raw), received_ns, connection_id, sid, seq, gap))
        positions.append(batch_pos)
    if frames:
        seal(current or "", frames, positions)
    if pending:
        stored += copy_rows(conn, RAW_BATCHES, pending)
    return stored


def upgrade() -> None:
    hypertables = _use_timescaledb()
    ddl = RAW_BATCHES_DDL.replace("{compression}", _lz4_clause())
    _create_time_series(ddl, RAW_BATCHES, hypertables)
    op.execute(RAW_BATCHES_INDEX)
    op.execute(UNPACK_FUNCTIONS)
    if context.is_offline_mode():
        op.execute(
            "DO $kd$ BEGIN IF EXISTS (SELECT 1 FROM raw_frames) THEN RAISE EXCEPTION "
            "'raw_frames holds rows: run revision 0003 online (kalshi-data migrate) so they "
            "are repacked into raw_batches'; END IF; END $kd$"
        )
    else:
        _repack_old_frames()
    op.execute("DROP TABLE raw_frames")
    op.execute(RAW_FRAMES_VIEW)
    op.execute(COMMENTS)


def _unpacked_frames() -> Iterator[RawFrameRow]:
    for gatherer, count, positions, data in _stream_rows(
        "SELECT gatherer, frame_count, positions, data FROM raw_batches "
        "ORDER BY gatherer, received_at, publisher, batch_seq",
        size=50,
    ):
        yield from batch_frame_facts(gatherer, count, positions, bytes(data))


def downgrade() -> None:
    if context.is_offline_mode():
        raise RuntimeError("revision 0003 downgrades online only (its batches are unpacked)")
    op.execute("DROP VIEW raw_frames")
    _create_time_series(RAW_FRAMES_DDL, RAW_FRAMES_0001, _use_timescaledb())
    conn = op.get_bind()
    chunk: list[RawFrameRow] = []
    for row in _unpacked_frames():
        chunk.append(row)
        if len(chunk) >= 5_000:
            copy_rows(conn, RAW_FRAMES_0001, chunk)
            chunk.clear()
    if chunk:
        copy_rows(conn, RAW_FRAMES_0001, chunk)
    op.execute("DROP TABLE raw_batches")
    op.execute("DROP FUNCTION kd_unpack_frames(bytea, integer[])")
    op.execute("DROP FUNCTION kd_i64le(bytea, integer)")
    op.execute("DROP FUNCTION kd_u16le(bytea, integer)")
