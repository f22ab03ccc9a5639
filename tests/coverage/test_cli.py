"""`kalshi-data coverage` as a user runs it: the table, --json, --market/--status, errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest

from app.coverage import floor_hour
from tests.conftest import free_port, run_cli
from tests.coverage.conftest import add_hole, add_market, add_session

BASE = floor_hour(datetime.now(UTC)) - timedelta(hours=6)  # five whole past hours from here


def stamp(hours: float) -> str:
    return (BASE + timedelta(hours=hours)).isoformat().replace("+00:00", "Z")


def hour_label(hours: int) -> str:
    return (BASE + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%MZ")


RANGE = ("--since", stamp(0), "--until", stamp(5))


@pytest.fixture
def stored(migrated_database: str) -> str:
    conn = psycopg2.connect(migrated_database)
    conn.autocommit = True
    try:
        for ticker in ("KXA-1", "KXB-22"):
            add_market(conn, ticker, BASE - timedelta(days=1), BASE + timedelta(days=30))
        add_session(conn, BASE)
        add_hole(conn, "k1", "ticker", BASE + timedelta(minutes=70), BASE + timedelta(minutes=80))
        add_hole(
            conn,
            "b1",
            "orderbook_delta",
            BASE + timedelta(hours=2),
            BASE + timedelta(hours=3),
            markets=["KXB-22"],
            cause="seq_gap",
        )
        add_hole(
            conn,
            "t1",
            "trade",
            BASE + timedelta(hours=3),
            BASE + timedelta(hours=4),
            backfill="done",
        )
    finally:
        conn.close()
    return migrated_database


def test_table_oldest_hour_first_with_summary(stored: str) -> None:
    done = run_cli("coverage", *RANGE, KD_DATABASE_URL=stored)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == [
        "market",
        "hour",
        "(UTC)",
        "status",
        "holes",
        "backfilled",
        "causes",
    ]
    rows = [line.split() for line in lines[1:-1]]
    assert rows == [
        ["KXA-1", hour_label(0), "complete", "0", "-", "-"],
        ["KXB-22", hour_label(0), "complete", "0", "-", "-"],
        ["KXA-1", hour_label(1), "degraded", "1", "-", "disconnect"],
        ["KXB-22", hour_label(1), "degraded", "1", "-", "disconnect"],
        ["KXA-1", hour_label(2), "complete", "0", "-", "-"],
        ["KXB-22", hour_label(2), "missing", "1", "-", "seq_gap"],
        ["KXA-1", hour_label(3), "degraded", "1", "1/1", "disconnect"],
        ["KXB-22", hour_label(3), "degraded", "1", "1/1", "disconnect"],
        ["KXA-1", hour_label(4), "complete", "0", "-", "-"],
        ["KXB-22", hour_label(4), "complete", "0", "-", "-"],
    ]
    assert lines[-1] == "market-hours: 5 complete, 4 degraded, 1 missing"


def test_json_document(stored: str) -> None:
    done = run_cli("coverage", *RANGE, "--json", "--gatherer", "g1", KD_DATABASE_URL=stored)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["gatherer"] == "g1" and doc["capture_start"] == stamp(0)
    assert doc["summary"] == {"complete": 5, "degraded": 4, "missing": 1, "shown": 10}
    missing = [row for row in doc["rows"] if row["status"] == "missing"]
    assert missing == [
        {
            "market": "KXB-22",
            "hour": stamp(2),
            "window": [stamp(2), stamp(3)],
            "status": "missing",
            "holes": 1,
            "trade_holes": 0,
            "trade_holes_backfilled": 0,
            "causes": ["seq_gap"],
            "hole_seconds": {"orderbook_delta": 3600.0},
            "missing_channels": ["orderbook_delta"],
            "hole_ids": ["b1"],
        }
    ]
    empty = run_cli("coverage", *RANGE, "--json", "--status", "missing", "--market", "KXA-1",
                    KD_DATABASE_URL=stored)  # fmt: skip
    assert empty.returncode == 0, empty.stderr
    assert json.loads(empty.stdout)["rows"] == []


def test_one_market_and_one_status(stored: str) -> None:
    done = run_cli(
        "coverage", *RANGE, "--market", "KXB-22", "--status", "missing", KD_DATABASE_URL=stored
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[:3] for line in lines[1:-1]] == [["KXB-22", hour_label(2), "missing"]]
    assert lines[-1] == "market-hours: 2 complete, 2 degraded, 1 missing (showing missing only)"


def test_relative_times_and_the_settings_gatherer(stored: str) -> None:
    done = run_cli("coverage", "--since", "7h", "--until", "now-1h", KD_DATABASE_URL=stored)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("market-hours: ")
    other = run_cli("coverage", KD_DATABASE_URL=stored, KD_GATHERER="g2")
    assert other.returncode == 0, other.stderr
    assert other.stdout.splitlines() == [
        "no capture recorded for gatherer g2: no connection session or hole",
        "market-hours: 0 complete, 0 degraded, 0 missing",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--since", "yesterday-ish"), "--since 'yesterday-ish' is not a time"),
        (("--since", stamp(3), "--until", stamp(2)), "is not before --until"),
        (("--since", "1h", "--until", "1h"), "is not before --until"),
        (("--market", "NOPE-1"), "unknown market NOPE-1"),
    ],
)
def test_bad_inputs_give_one_error_and_one_hint(stored: str, args, message) -> None:
    done = run_cli("coverage", *args, KD_DATABASE_URL=stored)
    assert_one_error(done, message)


def test_unreachable_and_unmigrated_databases(scratch_database: str) -> None:
    down = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    for url, message in ((down, "cannot connect to"), (scratch_database, "lacks the coverage")):
        done = run_cli("coverage", KD_DATABASE_URL=url)
        assert_one_error(done, message)
    hint = run_cli("coverage", KD_DATABASE_URL=scratch_database).stderr
    assert "kalshi-data migrate" in hint


def assert_one_error(done, message: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.splitlines()
    assert [line.split(":")[0] for line in lines] == ["error", "hint"], done.stderr
    assert message in lines[0], done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
