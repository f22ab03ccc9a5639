"""The coverage refresh as a beat job: `refresh_recent_coverage` on a real database with holes
inserted by SQL (window, commit, gauge, skip while another run holds the gatherer), and the
`kd.coverage.refresh` beat entry, route and task as Celery sees them."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg2
import pytest
from prometheus_client import REGISTRY

from app.config import CoverageSettings, Settings
from app.ingest import close_all, job_intervals, refresh_recent_coverage
from tests.conftest import REPO, clean_env
from tests.coverage.conftest import add_hole, add_market, add_session

T0 = datetime(2026, 1, 10, tzinfo=UTC)
NOW = T0 + timedelta(hours=12, minutes=30)  # lookback 3: hours 09, 10, 11 and 12 (so far)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


@pytest.fixture
def gatherer() -> Iterator[str]:
    """A gatherer name of this test's own, so its gauge series are too."""
    yield f"cov{uuid.uuid4().hex[:10]}"
    close_all()  # the job's cached connection, before the database is dropped


def gauge(gatherer: str, status: str) -> float | None:
    return REGISTRY.get_sample_value(
        "kd_coverage_market_hours", {"gatherer": gatherer, "status": status}
    )


def runs(outcome: str) -> float:
    labels = {"job_name": "refresh_coverage", "outcome": outcome}
    return REGISTRY.get_sample_value("kd_job_runs_total", labels) or 0.0


def rows(conn, gatherer: str) -> list[tuple[str, int, str]]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT market_ticker, extract(hour FROM hour AT TIME ZONE 'UTC')::int, status"
            " FROM coverage WHERE %s = ANY (gatherers) ORDER BY 2, 1",
            (gatherer,),
        )
        return cur.fetchall()


def add_trade(conn, ticker: str, when: datetime) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO trades (trade_id, exchange_ts, market_ticker, yes_price, no_price, size,"
            " source, gatherer, connection_id, received_ns, received_at, batch_pos) "
            "VALUES (%s, %s, %s, 560000, 440000, 100, 'ws', 'g1', 'c1', 0, %s, 0)",
            (f"tr-{ticker}-{when.isoformat()}", when, ticker, when),
        )


def test_the_job_refreshes_its_window_commits_and_sets_the_gauge(
    db, migrated_database: str, gatherer: str
) -> None:
    for ticker in ("A", "B", "C"):
        add_market(db, ticker, T0 - timedelta(days=1), T0 + timedelta(days=30))
    add_session(db, at(8), gatherer=gatherer)
    add_hole(db, "old", "ticker", at(5), at(5.2), gatherer=gatherer)  # before the lookback
    add_hole(db, "k1", "ticker", at(10.1), at(10.2), gatherer=gatherer)  # all degraded at 10
    add_hole(db, "b1", "orderbook_delta", at(11), at(12), markets=["B"], gatherer=gatherer)
    add_trade(db, "A", at(12.1))  # A active and complete in the current hour
    with db.cursor() as cur:
        # ours but stale in the window (its hole was removed): deleted by the refresh
        cur.execute(
            "INSERT INTO coverage (market_ticker, hour, status, gatherers)"
            " VALUES ('C', %s, 'missing', %s), ('C', %s, 'missing', %s),"
            " ('A', %s, 'missing', %s)",
            (at(9), [gatherer], at(6), [gatherer], at(11), [gatherer, "g2"]),
        )
    settings = Settings(
        gatherer=gatherer,
        database_url=migrated_database,
        coverage=CoverageSettings(interval_s=120, lookback_hours=3),
    )
    ok_before = runs("ok")

    report = refresh_recent_coverage(settings, now=NOW)

    assert report == {
        "since": at(9).isoformat(),
        "until": NOW.isoformat(),
        "rows": 5,
        "complete": 1,
        "degraded": 3,
        "missing": 1,
    }
    # committed: another connection sees it; the hour before the window and a row another
    # owner shares (A at 11) are left alone and not counted
    assert rows(db, gatherer) == [
        ("C", 6, "missing"),
        ("A", 10, "degraded"),
        ("B", 10, "degraded"),
        ("C", 10, "degraded"),
        ("A", 11, "missing"),
        ("B", 11, "missing"),
        ("A", 12, "complete"),
    ]
    assert [gauge(gatherer, s) for s in ("complete", "degraded", "missing")] == [1, 3, 1]
    assert runs("ok") == ok_before + 1
    assert (
        REGISTRY.get_sample_value("kd_job_interval_seconds", {"job_name": "refresh_coverage"})
        == job_intervals(settings)["refresh_coverage"]
        == 120
    )

    # The book hole goes (say, recorded by mistake and deleted); the next run, an hour later,
    # refreshes hours 10 to 13: B is no longer missing at 11 and the gauge says so.
    with db.cursor() as cur:
        cur.execute("DELETE FROM capture_holes WHERE gatherer = %s AND hole_id = 'b1'", (gatherer,))
    later = refresh_recent_coverage(settings, now=NOW + timedelta(hours=1))
    assert (later["since"], later["rows"]) == (at(10).isoformat(), 4)
    assert (later["complete"], later["degraded"], later["missing"]) == (1, 3, 0)
    assert gauge(gatherer, "missing") == 0  # set to 0, not left at its last value
    assert ("B", 11, "missing") not in rows(db, gatherer)


def test_a_run_in_progress_makes_another_a_no_op(db, migrated_database: str, gatherer: str) -> None:
    add_market(db, "A", T0 - timedelta(days=1), None)
    add_session(db, at(11), gatherer=gatherer)  # capture starts with the listener
    add_hole(db, "k1", "ticker", at(11), None, gatherer=gatherer)  # open: every hour missing
    settings = Settings(gatherer=gatherer, database_url=migrated_database)
    holder = psycopg2.connect(migrated_database)
    try:
        with holder.cursor() as cur:  # what a concurrent run holds for its transaction
            cur.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"kd.coverage.refresh:{gatherer}",)
            )
        skipped = refresh_recent_coverage(settings, now=NOW)
        assert skipped == {"since": at(9).isoformat(), "until": NOW.isoformat(), "skipped": True}
        assert rows(db, gatherer) == [] and gauge(gatherer, "missing") is None
    finally:
        holder.rollback()
        holder.close()
    done = refresh_recent_coverage(settings, now=NOW)
    assert (done["rows"], done["missing"]) == (2, 2)  # hours 11 and 12
    assert gauge(gatherer, "missing") == 2


SCHEDULE_SCRIPT = """
import json
from prometheus_client import REGISTRY
from workers.celery_app import JOB_ENTRIES, app, settings
import tasks.coverage
result = tasks.coverage.refresh_coverage.apply().get()
print(json.dumps({
    "entry": app.conf.beat_schedule["refresh coverage"],
    "entries": [entry for entry, _, _ in JOB_ENTRIES],
    "route": app.conf.task_routes["kd.coverage.*"],
    "include": list(app.conf.include),
    "registered": "kd.coverage.refresh" in app.tasks,
    "result": result,
    "gauge": REGISTRY.get_sample_value(
        "kd_coverage_market_hours", {"gatherer": settings.gatherer, "status": "missing"}),
}))
"""


def test_beat_runs_the_refresh_on_the_jobs_queue_at_its_interval(
    db, migrated_database: str, gatherer: str
) -> None:
    now = datetime.now(UTC)
    add_market(db, "A", now - timedelta(days=1), None)
    add_session(db, now - timedelta(hours=5), gatherer=gatherer)
    add_hole(db, "k1", "ticker", now - timedelta(hours=5), None, gatherer=gatherer)
    env = clean_env(
        KD_DATABASE_URL=migrated_database,
        KD_REDIS_URL="redis://127.0.0.1:6379/12",
        KD_GATHERER=gatherer,
        KD_COVERAGE__INTERVAL_S="120",
        KD_COVERAGE__LOOKBACK_HOURS="2",
    )
    done = subprocess.run(
        [sys.executable, "-c", SCHEDULE_SCRIPT],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["entry"] == {
        "task": "kd.coverage.refresh",
        "schedule": 120,
        "options": {"queue": "jobs", "expires": 60},
    }
    assert "refresh coverage" in report["entries"]
    assert report["route"] == {"queue": "jobs"}
    assert "tasks.coverage" in report["include"] and report["registered"]
    # the task ran the job with the environment's settings: the open ticker hole makes the
    # current hour and the two before it missing for the one market
    result = report["result"]
    assert (result["rows"], result["missing"], result["degraded"]) == (3, 3, 0)
    assert report["gauge"] == 3
    assert len(rows(db, gatherer)) == 3
