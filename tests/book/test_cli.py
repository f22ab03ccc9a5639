"""`kalshi-data book` as a user runs it: the printed book, JSON, and one-line errors."""

from __future__ import annotations

import json
from datetime import timedelta

import psycopg2
import pytest

from app.db.copy import write_rows
from tests.book.capture import Exchange, Gatherer, Stream, delta_frame
from tests.conftest import free_port, run_cli

TICKER = "FED-23DEC-T3.00"


@pytest.fixture
def stored(migrated_database: str) -> tuple[str, Gatherer]:
    exchange = Exchange([TICKER], seed=2)
    # kalshi-api.md §3.5's snapshot example, then a delta removing one level and one adding.
    exchange.books[TICKER] = {
        "yes": {80_000: 30_000, 220_000: 33_300},
        "no": {540_000: 2_000, 560_000: 14_600},
    }
    g = Gatherer(exchange)
    stream = Stream("c1", 2, seq=1)
    g.snapshot(stream, TICKER)
    for seq, side, price, delta in ((3, "yes", 80_000, -30_000), (4, "no", 10_500, 1)):
        stream.seq = seq
        g._store(stream, seq, delta_frame(2, seq, TICKER, side, price, delta, 1_790_000_000_000))
    conn = psycopg2.connect(migrated_database)
    try:
        write_rows(conn, g.rows)
        conn.commit()
    finally:
        conn.close()
    return migrated_database, g


def test_prints_both_sides_best_first_with_exact_decimals(stored) -> None:
    url, g = stored
    done = run_cli("book", TICKER, "--at", g.now.isoformat(), KD_DATABASE_URL=url)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"{TICKER} order book at" in out
    lines = out.splitlines()
    yes_rows = lines[lines.index(next(x for x in lines if x.startswith("YES"))) + 1].split()
    assert yes_rows == ["0.2200", "333.00", "0.4400", "146.00"]  # yes bid, its size, yes ask
    assert "0.0105" in out and "0.01" in out  # subpenny NO level of 0.01 contract, exact
    assert "best yes bid 0.2200 x 333.00, ask 0.4400 x 146.00" in out
    assert "best no  bid 0.5600 x 146.00, ask 0.7800 x 333.00" in out
    assert "spread (yes ask - yes bid): 0.2200" in out
    assert "snapshot: ws from gatherer g1, connection c1, sid 2, seq 2" in out
    assert "deltas applied: 2 (last seq 4" in out
    assert "0.0800" not in out.split("best yes")[0].split("YES")[1].split("NO")[0]  # removed


def test_json_with_depth_and_provenance(stored) -> None:
    url, g = stored
    at = (g.now + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    done = run_cli("book", TICKER, "--at", at, "--json", "--depth", "1", KD_DATABASE_URL=url)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["yes"]["bids"] == [{"price": "0.2200", "size": "333.00"}]
    assert doc["no"]["bids"] == [{"price": "0.5600", "size": "146.00"}]
    assert doc["yes"]["asks"] == [{"price": "0.4400", "size": "146.00"}]
    assert doc["no"]["best_ask"] == {"price": "0.7800", "size": "333.00"}
    assert doc["levels"] == {"yes": 1, "no": 3}
    assert doc["spread"] == "0.2200"
    assert doc["provenance"]["snapshot"]["source"] == "ws"
    assert doc["provenance"]["deltas_applied"] == 2
    assert doc["complete"] is True and doc["warnings"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--at", "yesterday-ish"), "is not an ISO 8601 time"),
        (("--at", "2020-01-01T00:00:00Z"), "no order book snapshot of FED-23DEC-T3.00"),
        (("--at", "now", "--gatherer", "g9"), "unknown market FED-23DEC-T3.00"),
    ],
)
def test_bad_inputs_give_one_error_line(stored, args, message) -> None:
    url, _ = stored
    done = run_cli("book", TICKER, *args, KD_DATABASE_URL=url)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_unreachable_database_and_missing_tables(scratch_database: str) -> None:
    down = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    for url, message in ((down, "cannot connect to"), (scratch_database, "kalshi-data migrate")):
        done = run_cli("book", TICKER, "--at", "now", KD_DATABASE_URL=url)
        assert done.returncode != 0
        assert done.stderr.startswith("error:"), done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr
