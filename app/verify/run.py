"""`verify_capture`: compare a captured database with the simulator's ground truth.

Orchestration only: stream the truth's frames and the database's tables into partitioned
record files (`app.verify.spill`), compare partition by partition (`app.verify.compare`), then
compare every `orderbook_delta` market's final book (`app.book.book_at` against the exchange's
final book). Reads the database in one read-only transaction; writes nothing there.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.db.engine import connect, describe_url
from app.simulator.recorder import FRAMES_FILE
from app.simulator.truth import TruthError, read_clock
from app.verify.books import (
    DEFAULT_SAMPLES,
    BookSamples,
    book_difference_at,
    check_sampled_books,
)
from app.verify.compare import BookDifference, TableResult, compare_records
from app.verify.database import Tagged, database_records
from app.verify.exchange import check_against_exchange
from app.verify.holes import HoleIndex, read_holes
from app.verify.records import RULE_BY_TABLE, TABLES
from app.verify.report import Report
from app.verify.spill import Spill
from app.verify.truth import OPTIONAL, TruthScan, open_truth, seen_books

# Bytes of frames.tsv per partition: peak memory is roughly 3-4x this (records of one partition
# of both sides, as Python strings in counters).
PARTITION_BYTES = 32 * 1024 * 1024
MAX_LISTED_BOOKS = 1000


class VerifyInputError(Exception):
    """The database cannot be verified (e.g. it has not been migrated)."""


def _check_tables(conn: Any) -> None:
    with conn.cursor() as cur:
        missing = []
        for table in TABLES:
            cur.execute("SELECT to_regclass(%s)", (table,))
            if cur.fetchone()[0] is None:
                missing.append(table)
    if missing:
        raise VerifyInputError(f"the database has no table {', '.join(missing)}; is it migrated?")


def _partitions(truth: Path, partition_bytes: int) -> int:
    size = (truth / FRAMES_FILE).stat().st_size
    return max(1, math.ceil(size / max(1, partition_bytes)))


def _compare_tables(spill: Spill, max_examples: int) -> list[TableResult]:
    totals = {table: TableResult(table) for table in TABLES}
    for partition in spill.partitions_of():
        expected = spill.read("expected", partition)
        found = spill.read("found", partition)
        for table in TABLES:
            rule = RULE_BY_TABLE[table]
            part = compare_records(
                table,
                expected.get(table, ()),
                found.get(table, ()),
                collapse_expected=rule.collapse_expected,
                max_examples=max_examples,
                optional=expected.get(OPTIONAL + table, ()),
            )
            totals[table].merge(part, max_examples)
        del expected, found
    return [totals[table] for table in TABLES]


def _compare_books(
    conn: Any, truth: Path, scan: TruthScan, gatherer: str | None, at: datetime
) -> tuple[int, list[BookDifference], int]:
    """(markets checked, differences, differences explained by a recorded hole)."""
    checked = in_hole = 0
    differences: list[BookDifference] = []
    for ticker, expected in seen_books(truth, scan.meta, scan.last_book):
        checked += 1
        difference = book_difference_at(conn, ticker, at, gatherer, expected)
        if difference is None:
            continue
        if ticker in scan.books_in_hole:
            # Its last sent book frame lies in a recorded hole: the gatherer knows.
            in_hole += 1
        else:
            differences.append(difference)
    return checked, differences, in_hole


def verify_capture(
    truth_dir: Path | str,
    database_url: str,
    *,
    gatherer: str | None = None,
    connections: Collection[int] | None = None,
    max_examples: int = 5,
    partition_bytes: int = PARTITION_BYTES,
    book_samples: int = DEFAULT_SAMPLES,
) -> Report:
    """Compare the database at `database_url` with the truth in `truth_dir`.

    `gatherer` restricts the database side to one gatherer's rows; `connections` restricts the
    truth side to those simulator connection ids (when several gatherers shared a simulator).
    Raises `app.simulator.truth.TruthError` (unreadable truth),
    `app.db.engine.DatabaseUnavailable` (unreachable database), `VerifyInputError`.
    """
    truth = Path(truth_dir)
    meta = open_truth(truth)
    conn = connect(database_url)
    try:
        conn.set_session(readonly=True)
        _check_tables(conn)
        holes = read_holes(conn, gatherer)
        scan = TruthScan(truth, meta, connections, holes=HoleIndex(holes))
        partitions = _partitions(truth, partition_bytes)
        sent_trades: set[str] = set()
        with Spill(partitions) as spill:
            spill.write("expected", _noting_trades(scan.records(), sent_trades))
            found = _sent_trades_only(database_records(conn, TABLES, gatherer), sent_trades)
            spill.write("found", found)
            tables = _compare_tables(spill, max_examples)
        checked, differences, books_in_hole = _compare_books(
            conn, truth, scan, gatherer, datetime.now(UTC)
        )
        exchange = check_against_exchange(conn, truth, gatherer, holes)
        sampled = _sample_books(conn, truth, scan, holes, gatherer, exchange.capture_start_ns,
                                book_samples)  # fmt: skip
    finally:
        conn.rollback()
        conn.close()
    return Report(
        truth=str(truth),
        database=describe_url(database_url),
        gatherer=gatherer,
        frames_sent=scan.frames,
        tables=tables,
        books_checked=checked,
        book_differences=sorted(differences, key=lambda d: d.ticker)[:MAX_LISTED_BOOKS],
        book_differences_total=len(differences),
        books_in_hole=books_in_hole,
        partitions=partitions,
        exchange=exchange,
        sampled_books=sampled,
    )


def _sample_books(
    conn: Any,
    truth: Path,
    scan: TruthScan,
    holes: list[Any],
    gatherer: str | None,
    start_ns: int | None,
    samples: int,
) -> BookSamples | None:
    if start_ns is None or samples <= 0:
        return None
    try:
        clock = read_clock(truth)
    except TruthError:
        return None  # the exchange check already reports the missing clock
    return check_sampled_books(
        conn, truth, scan.meta, clock, HoleIndex(holes), gatherer, start_ns, samples=samples
    )


def _noting_trades(records: Iterator[Tagged], sent: set[str]) -> Iterator[Tagged]:
    for tagged in records:
        if tagged[0] in ("trades", OPTIONAL + "trades"):
            sent.add(tagged[1][0])
        yield tagged


def _sent_trades_only(records: Iterator[Tagged], sent: set[str]) -> Iterator[Tagged]:
    """The frame comparison judges the trades that were sent on our sockets; a trade the REST
    backfill stored without a frame is judged against the exchange (`exchange.py`)."""
    for tagged in records:
        if tagged[0] != "trades" or tagged[1][0] in sent:
            yield tagged
