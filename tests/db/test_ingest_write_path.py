"""`write_entries`' storage path against real PostgreSQL: raw batches, the streamed delta COPY
and its fallback, all equal to what the general mappers would store."""

from __future__ import annotations

import time
from typing import Any

import orjson
import psycopg2.extensions

from app.db.copy import COPY_CHUNK
from app.db.raw_batches import write_raw_batches
from app.db.tables import ORDERBOOK_DELTAS
from app.ingest.batch_writer import raw_batch_row
from app.ingest.handler import entry_rows, write_entries
from app.streams import Entry, Frame, decode_entry, encode_entry
from app.streams.envelope import decode_frames
from tests.normalize import examples

GATHERER = "g1"
STREAM = "kd:g1:book:0"


def _delta(seq: int, ticker: str = "KX-A", price: str = "0.5600", size: str = "12.00") -> bytes:
    return orjson.dumps(
        {
            "type": "orderbook_delta",
            "sid": 7,
            "seq": seq,
            "msg": {
                "market_ticker": ticker,
                "market_id": "m-1",
                "price_dollars": price,
                "delta_fp": size,
                "side": "yes" if seq % 2 else "no",
                "ts_ms": 1_790_000_000_000 + seq,
            },
        }
    )


def _entry(frames: list[Frame], number: int) -> Entry:
    fields = encode_entry(frames)
    fields[b"p"], fields[b"q"] = b"pub-1", str(number).encode()
    return Entry(f"{number}-0", fields, decode_entry(fields), 1)


def _entries(count: int, per_entry: int, first_seq: int = 1) -> list[Entry]:
    now = time.time_ns()
    entries = []
    for number in range(count):
        frames = [
            Frame(_delta(seq), now + seq, "conn-b", 7, seq)
            for seq in range(first_seq + number * per_entry, first_seq + (number + 1) * per_entry)
        ]
        entries.append(_entry(frames, number))
    return entries


def _all(conn: Any, query: str) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(query)
        return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in cur]


def _stored_deltas(conn: Any) -> list[tuple[Any, ...]]:
    columns = ", ".join(ORDERBOOK_DELTAS.columns)
    return _all(conn, f"SELECT {columns} FROM orderbook_deltas ORDER BY connection_id, seq")


def test_mixed_batch_stores_what_the_general_path_gives(
    fresh_pg: psycopg2.extensions.connection,
) -> None:
    now = time.time_ns()
    raws = [
        _delta(1),
        examples.DELTA.encode(),  # newest format with client_order_id/subaccount: fast path
        examples.DELTA.replace('"ts_ms": 1669149841000,', "").encode(),  # `ts` only: general
        examples.DELTA_AUG_2025.encode(),  # legacy fields in the current era: dead letter
        examples.TRADE.encode(),
        b'{"type": "orderbook_delta", "sid": 7, "msg": {',  # malformed: dead letter
        _delta(9, ticker="KX\tTAB"),  # needs escaping: general
        _delta(10, price="0.5"),
    ]
    frames = [Frame(raw, now + i, f"conn-{i}", None, None) for i, raw in enumerate(raws)]
    entries = [_entry(frames, 1)]
    counts = write_entries(fresh_pg, entries, gatherer=GATHERER, stream=STREAM)
    expected = [
        r for r in entry_rows(entries, gatherer=GATHERER, stream=STREAM)
        if type(r).__name__ == "OrderbookDeltaRow"
    ]  # fmt: skip
    assert counts["orderbook_deltas"] == len(expected) == 5
    assert counts["dead_letters"] == 2 and counts["trades"] == 1
    assert (counts["raw_batches"], counts["raw_frames"]) == (1, len(raws))
    assert _stored_deltas(fresh_pg) == sorted(
        (tuple(r) for r in expected), key=lambda r: (r[3], r[5])
    )
    stored = _all(fresh_pg, "SELECT connection_id, batch_pos, raw FROM raw_frames ORDER BY 2")
    assert stored == [(f.conn_id, i, f.raw) for i, f in enumerate(frames)]


def test_clash_late_in_a_streamed_copy_falls_back_with_every_line(
    fresh_pg: psycopg2.extensions.connection,
) -> None:
    entries = _entries(12, 500)
    # the last entry is already stored: its clash comes after many COPY chunks were sent
    assert (
        write_entries(fresh_pg, entries[-1:], gatherer=GATHERER, stream=STREAM)["orderbook_deltas"]
        == 500
    )
    assert 3 * COPY_CHUNK < 11 * 500 * 100  # the delta lines span several chunks
    counts = write_entries(fresh_pg, entries, gatherer=GATHERER, stream=STREAM)
    assert counts["orderbook_deltas"] == 11 * 500
    assert (counts["raw_batches"], counts["raw_frames"]) == (11, 11 * 500)
    seqs = _all(fresh_pg, "SELECT seq FROM orderbook_deltas ORDER BY seq")
    assert [s for (s,) in seqs] == list(range(1, 12 * 500 + 1))
    again = write_entries(fresh_pg, entries, gatherer=GATHERER, stream=STREAM)
    assert again == {"raw_batches": 0, "raw_frames": 0, "orderbook_deltas": 0}


def test_raw_frames_view_unpacks_binary_batches_exactly(
    fresh_pg: psycopg2.extensions.connection,
) -> None:
    now = time.time_ns()
    frames = [
        Frame(b'{"type":"ticker"}', now, "conn-a", 3, None, False),
        Frame(b"\x00\xff not json \\ \t", now + 5, "conn-\u00fc", None, 9, True),
        Frame(b"", now + 7, "conn-a", -1, 2**62, False),
        Frame(_delta(4), now - 3, "conn-c", 2**40, 5, True),
        Frame(examples.SNAPSHOT.encode(), now + 9, "conn-c", 2, 2, False, True),
    ]
    row = raw_batch_row(_entry(frames, 3), gatherer=GATHERER, stream=STREAM)
    assert row is not None and row.first_received_ns == now - 3
    assert write_raw_batches(fresh_pg, [row]) == (1, 5)
    assert write_raw_batches(fresh_pg, [row]) == (0, 0)
    stored = _all(
        fresh_pg,
        "SELECT batch_pos, connection_id, received_ns, sid, seq, gap, resync, raw, publisher, "
        "batch_seq FROM raw_frames ORDER BY batch_pos",
    )
    assert stored == [
        (i, f.conn_id, f.recv_ns, f.sid, f.seq, f.gap, f.resync, f.raw, "pub-1", 3)
        for i, f in enumerate(frames)
    ]
    (data,) = _all(fresh_pg, "SELECT data FROM raw_batches")[0]
    assert decode_frames(data, 5) == frames


def test_requested_snapshots_are_stored_as_resync(
    fresh_pg: psycopg2.extensions.connection,
) -> None:
    now = time.time_ns()
    snapshot = examples.SNAPSHOT.encode()
    frames = [
        Frame(snapshot, now, "conn-s", 2, 2),  # the subscribe snapshot
        Frame(snapshot.replace(b'"seq": 2', b'"seq": 9'), now + 1, "conn-s", 2, 9, True, True),
    ]
    counts = write_entries(fresh_pg, [_entry(frames, 1)], gatherer=GATHERER, stream=STREAM)
    assert counts["orderbook_snapshots"] == 2
    stored = _all(fresh_pg, "SELECT seq, source FROM orderbook_snapshots ORDER BY seq")
    assert stored == [(2, "ws"), (9, "resync")]


def test_an_exchange_resend_is_stored_once(fresh_pg: psycopg2.extensions.connection) -> None:
    """The listener flags a seq its sid already delivered (issue 9 item 5): the resend is kept
    in the raw batches, but no second delta row is written at its later receive time."""
    now = time.time_ns()
    first = [Frame(_delta(seq), now + seq, "conn-r", 7, seq) for seq in (1, 2, 3)]
    resend = [Frame(_delta(2), now + 50, "conn-r", 7, 2, False, False, True)]
    entries = [_entry(first, 1), _entry(resend, 2)]
    counts = write_entries(fresh_pg, entries, gatherer=GATHERER, stream=STREAM)
    assert counts["orderbook_deltas"] == 3 and counts["raw_frames"] == 4
    seqs = _all(fresh_pg, "SELECT seq FROM orderbook_deltas ORDER BY 1")
    assert [seq for (seq,) in seqs] == [1, 2, 3]
    (data,) = _all(fresh_pg, "SELECT data FROM raw_batches WHERE batch_seq = 2")[0]
    assert decode_frames(data, 1) == resend  # the repeat flag survives the envelope
    # The reference path (general mappers only) agrees.
    assert len([r for r in entry_rows(entries, gatherer=GATHERER, stream=STREAM)
                if type(r).__name__ == "OrderbookDeltaRow"]) == 3  # fmt: skip
