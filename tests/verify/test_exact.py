"""verify_capture on a real exact capture, then on copies broken one way at a time."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg2

from app.db.migrations import upgrade
from app.verify import Report, TableResult, verify_capture
from tests.verify.conftest import Capture, create_database, drop_database


def _execute(url: str, statement: str) -> int:
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute(statement)
        count = cur.rowcount
    conn.close()
    return int(count)


def _counts(report: Report, table: str) -> TableResult:
    return next(t for t in report.tables if t.table == table)


def test_exact_capture_is_exact(capture: Capture, capture_db: str) -> None:
    report = verify_capture(capture.truth, capture_db)
    lines = [t.as_dict() for t in report.tables]
    assert report.exact, (lines, report.book_differences)
    for table in report.tables:
        assert (table.missing, table.duplicated, table.mismatched, table.unexpected) == (0,) * 4
        assert table.found == table.expected
    counts = {t.table: t.expected for t in report.tables}
    for table in ("raw_frames", "orderbook_snapshots", "orderbook_deltas", "trades", "tickers"):
        assert counts[table] > 0, counts
    assert counts["lifecycle_events"] > 0
    assert counts["connection_sessions"] == 2
    assert report.books_checked == len(capture.markets)
    assert report.book_differences == []
    # Against the exchange's own log: every trade and ticker change since the clients
    # connected is stored with the exchange's values or lies in a recorded hole.
    assert report.exchange is not None and report.exchange.exact, report.exchange.as_dict()
    exchange = {t.table: t for t in report.exchange.tables}
    assert exchange["trades"].captured == counts["trades"] > 0
    assert exchange["trades"].exchange == exchange["trades"].captured + exchange["trades"].in_hole
    assert exchange["tickers"].captured > 0
    assert exchange["lifecycle_events"].captured > 0
    # Books at instants during the capture equal the exchange's own books.
    sampled = report.sampled_books
    assert sampled is not None and sampled.exact and sampled.checked > 0, sampled.as_dict()


def test_skipped_seq_is_a_gap_not_missing(capture: Capture, capture_db: str) -> None:
    faults = [
        json.loads(line) for line in (capture.truth / "faults.jsonl").read_text().splitlines()
    ]
    skipped = [f for f in faults if f["fault"] == "skip_seq"]
    assert len(skipped) == 1
    report = verify_capture(capture.truth, capture_db)
    deltas = _counts(report, "orderbook_deltas")
    assert deltas.missing == 0
    gaps = _counts(report, "sequence_gaps")
    assert (gaps.expected, gaps.found) == (1, 1)
    # The frame that was never sent is not expected anywhere.
    assert skipped[0]["frame"] not in (capture.truth / "frames.tsv").read_text()


def test_deleted_trade_is_missing(capture: Capture, capture_db: str) -> None:
    assert (
        _execute(
            capture_db,
            "DELETE FROM trades WHERE trade_id = (SELECT trade_id FROM trades ORDER BY 1 LIMIT 1)",
        )
        == 1
    )
    report = verify_capture(capture.truth, capture_db)
    trades = _counts(report, "trades")
    assert (trades.missing, trades.duplicated, trades.mismatched, trades.unexpected) == (1, 0, 0, 0)
    assert trades.examples[0].kind == "missing"
    assert not report.exact


def test_delta_under_another_connection_is_duplicated(capture: Capture, capture_db: str) -> None:
    _execute(
        capture_db,
        "INSERT INTO orderbook_deltas SELECT gatherer, market_ticker, market_id, 'g1-other', sid,"
        " seq, received_ns, received_at, batch_pos, exchange_ts, side, price, delta"
        " FROM orderbook_deltas ORDER BY received_ns LIMIT 1",
    )
    report = verify_capture(capture.truth, capture_db)
    deltas = _counts(report, "orderbook_deltas")
    assert (deltas.missing, deltas.duplicated, deltas.mismatched) == (0, 1, 0)
    assert not report.exact
    assert report.book_differences == []  # books replay one subscription only


def test_altered_ticker_is_mismatched(capture: Capture, capture_db: str) -> None:
    _execute(
        capture_db,
        "UPDATE tickers SET volume = coalesce(volume, 0) + 100 WHERE (connection_id, received_ns,"
        " batch_pos) = (SELECT connection_id, received_ns, batch_pos FROM tickers"
        " ORDER BY received_ns LIMIT 1)",
    )
    report = verify_capture(capture.truth, capture_db)
    tickers = _counts(report, "tickers")
    assert (tickers.missing, tickers.duplicated, tickers.mismatched, tickers.unexpected) == (
        0,
        0,
        1,
        0,
    )
    example = tickers.examples[0]
    assert example.kind == "mismatched" and example.expected != example.found


def test_corrupt_book_level_lists_the_market(capture: Capture, capture_db: str) -> None:
    conn = psycopg2.connect(capture_db)
    with conn, conn.cursor() as cur:
        # The newest snapshot of a market with YES levels is its book's base; grow one level.
        cur.execute(
            "WITH latest AS (SELECT DISTINCT ON (market_ticker) market_ticker, connection_id, sid,"
            " seq, yes_sizes FROM orderbook_snapshots ORDER BY market_ticker, received_ns DESC)"
            " SELECT market_ticker, connection_id, sid, seq FROM latest"
            " WHERE cardinality(yes_sizes) > 0 ORDER BY market_ticker LIMIT 1"
        )
        market, connection_id, sid, seq = cur.fetchone()
        cur.execute(
            "UPDATE orderbook_snapshots SET yes_sizes[1] = yes_sizes[1] + 700"
            " WHERE connection_id = %s AND sid = %s AND seq = %s",
            (connection_id, sid, seq),
        )
        assert cur.rowcount == 1
    conn.close()
    report = verify_capture(capture.truth, capture_db)
    assert [d.ticker for d in report.book_differences] == [market]
    difference = report.book_differences[0]
    assert difference.side == "yes" and difference.expected_size is not None
    assert difference.found_size == difference.expected_size + 700
    assert _counts(report, "orderbook_snapshots").mismatched == 1
    assert not report.exact


def test_cli_exact_broken_and_missing_truth(capture: Capture, capture_db: str) -> None:
    from tests.conftest import run_cli

    exact = run_cli("verify", "--truth", str(capture.truth), "--database-url", capture_db)
    assert exact.returncode == 0, exact.stdout + exact.stderr
    assert "result: EXACT" in exact.stdout
    print(exact.stdout)

    _execute(capture_db, "DELETE FROM trades WHERE trade_id = (SELECT min(trade_id) FROM trades)")
    broken = run_cli("verify", "--truth", str(capture.truth), "--database-url", capture_db)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    row = next(line for line in broken.stdout.splitlines() if line.startswith("trades "))
    assert row.split()[1:7] == [row.split()[1], str(int(row.split()[1]) - 1), "1", "0", "0", "0"]
    assert "trades missing" in broken.stdout and "result: NOT EXACT" in broken.stdout
    print(broken.stdout)

    as_json = run_cli(
        "verify", "--truth", str(capture.truth), "--database-url", capture_db, "--json"
    )
    assert as_json.returncode == 1
    document = json.loads(as_json.stdout)
    assert document["exact"] is False and document["tables"]["trades"]["missing"] == 1

    absent = run_cli("verify", "--truth", str(capture.truth / "nope"), "--database-url", capture_db)
    assert absent.returncode == 2
    errors = [line for line in absent.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "does not exist" in errors[0]
    assert "Traceback" not in absent.stderr and absent.stdout == ""


def test_cli_unreachable_database_is_a_usage_error(capture: Capture) -> None:
    from tests.conftest import free_port, run_cli

    result = run_cli(
        "verify",
        "--truth",
        str(capture.truth),
        "--database-url",
        f"postgresql://postgres@127.0.0.1:{free_port()}/nothing",
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot connect") and "Traceback" not in result.stderr


def test_partitioned_comparison_gives_the_same_result(capture: Capture, capture_db: str) -> None:
    _execute(capture_db, "DELETE FROM trades WHERE trade_id = (SELECT min(trade_id) FROM trades)")
    report = verify_capture(capture.truth, capture_db, partition_bytes=64 * 1024)
    assert report.partitions > 10
    trades = _counts(report, "trades")
    assert (trades.missing, trades.duplicated, trades.mismatched, trades.unexpected) == (1, 0, 0, 0)
    assert all(t.exact for t in report.tables if t.table != "trades")


def _exchange(report: Report, table: str) -> Any:
    assert report.exchange is not None
    return next(t for t in report.exchange.tables if t.table == table)


def test_an_empty_database_is_not_a_capture(capture: Capture, postgres_admin_url: str) -> None:
    name = f"kd_test_verify_{uuid.uuid4().hex[:10]}"
    create_database(postgres_admin_url, name)
    try:
        upgrade(capture.url(name))
        report = verify_capture(capture.truth, capture.url(name))
        assert not report.exact and report.exchange is not None
        assert report.exchange.problems and "nothing was captured" in report.exchange.problems[0]
        assert _exchange(report, "trades").unexplained > 0
    finally:
        drop_database(postgres_admin_url, name)


def test_a_swapped_trade_side_is_unexplained(capture: Capture, capture_db: str) -> None:
    _execute(capture_db, "UPDATE trades SET taker_side = CASE taker_side WHEN 'yes' THEN 'no'"
             " ELSE 'yes' END WHERE trade_id = (SELECT min(trade_id) FROM trades)")  # fmt: skip
    report = verify_capture(capture.truth, capture_db)
    trades = _exchange(report, "trades")
    assert trades.unexplained == 1 and "exchange" in trades.examples[0] and not report.exact


def test_a_duplicated_ticker_row_is_unexplained(capture: Capture, capture_db: str) -> None:
    columns = ("gatherer, connection_id, sid, received_ns, received_at, batch_pos, market_ticker,"
               " market_id, exchange_ts, price, yes_bid, yes_ask, yes_bid_size, yes_ask_size,"
               " last_trade_size, volume, open_interest, dollar_volume, dollar_open_interest,"
               " clock")  # fmt: skip
    copied = columns.replace("received_ns,", "received_ns + 1,")
    assert _execute(capture_db, f"INSERT INTO tickers ({columns}) SELECT {copied} FROM tickers"
                    " ORDER BY received_ns LIMIT 1") == 1  # fmt: skip
    report = verify_capture(capture.truth, capture_db)
    tickers = _exchange(report, "tickers")
    assert tickers.unexplained == 1 and "stored 2x" in tickers.examples[0] and not report.exact


def test_a_dropped_market_is_unexplained(capture: Capture, capture_db: str) -> None:
    market = capture.markets[0]
    for table in ("trades", "tickers"):
        _execute(capture_db, f"DELETE FROM {table} WHERE market_ticker = '{market}'")
    report = verify_capture(capture.truth, capture_db)
    for table in ("trades", "tickers"):
        result = _exchange(report, table)
        assert result.unexplained > 0 and all(market in e for e in result.examples)
    assert not report.exact


def test_a_lost_lifecycle_event_is_unexplained(capture: Capture, capture_db: str) -> None:
    statement = ("DELETE FROM lifecycle_events WHERE ctid = (SELECT ctid FROM lifecycle_events"
                 " WHERE msg_type = 'market_lifecycle_v2' LIMIT 1)")  # fmt: skip
    assert _execute(capture_db, statement) == 1
    report = verify_capture(capture.truth, capture_db)
    lifecycle = _exchange(report, "lifecycle_events")
    assert lifecycle.unexplained == 1 and "missing, in no recorded hole" in lifecycle.examples[0]
