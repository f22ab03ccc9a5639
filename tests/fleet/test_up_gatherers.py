"""`kalshi-data up --gatherers 3`: three whole gatherers and the deduplicator, one simulator.

Real processes against real PostgreSQL and Redis: every gatherer stores trades in its own
database and only its own (its Celery tasks never ran in another gatherer's workers), and
production, after `up` exits, holds every trade any gatherer stored exactly once.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
import redis

from app.config import DedupSettings, GathererDatabase, Settings
from app.dedup import run_dedup
from app.fleet.deduplicator import dedup_settings
from app.fleet.members import PORT_STEP, gatherer_members
from app.verify.production import verify_production
from tests.conftest import REPO, children_of, clean_env, run_cli
from tests.crash.conftest import UpRun, cmdline

pytestmark = pytest.mark.timeout(300)

SUFFIXES = ("_g1", "_g2", "_g3", "_prod")


@dataclass(frozen=True)
class FleetRun:
    env: dict[str, str]
    gatherer: str
    database_urls: dict[str, str]  # by suffix

    def members(self) -> dict[str, str]:
        return {f"{self.gatherer}-{i}": self.database_urls[f"_g{i}"] for i in (1, 2, 3)}


@pytest.fixture
def fleet_run(postgres_admin_url: str, redis_test_url: str) -> Iterator[FleetRun]:
    """Names nobody uses yet (up creates the four databases); afterwards every Redis key of
    the run and every database are gone."""
    name = f"kd_test_upg_{uuid.uuid4().hex[:10]}"
    gatherer = f"t{uuid.uuid4().hex[:8]}"
    server = postgres_admin_url.rsplit("/", 1)[0]
    env = {
        "KD_DATABASE_URL": f"{server}/{name}",
        "KD_REDIS_URL": redis_test_url,
        "KD_GATHERER": gatherer,
        "KD_METRICS__ENABLED": "false",  # offset ports are checked below, without binding
    }
    yield FleetRun(env, gatherer, {s: f"{server}/{name}{s}" for s in SUFFIXES})
    client = redis.Redis.from_url(redis_test_url)
    pattern = f"kd:{gatherer}*"  # kd:<g>-1:..., kd:<g>-2:..., kd:<g>-dedup:celery:...
    keys = list(client.scan_iter(pattern, count=1000))
    if keys:
        client.delete(*keys)
    left = list(client.scan_iter(pattern, count=1000))
    client.close()
    admin = psycopg2.connect(postgres_admin_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        for suffix in ("", *SUFFIXES):
            cur.execute(f'DROP DATABASE IF EXISTS "{name}{suffix}" WITH (FORCE)')
        cur.execute("SELECT count(*) FROM pg_database WHERE datname LIKE %s", (f"{name}%",))
        (databases,) = cur.fetchone()
    admin.close()
    assert not left and databases == 0, (left, databases)


def _trade_ids(url: str) -> list[str]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT trade_id FROM trades")
        ids = [row[0] for row in cur.fetchall()]
    conn.close()
    return ids


def _foreign_rows(url: str, gatherer: str) -> int:
    """Trades this database holds from another gatherer or another gatherer's connections (its
    WebSocket conn ids start with the gatherer's name; REST backfills have their own)."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM trades WHERE gatherer <> %s "
            "OR (source = 'ws' AND connection_id NOT LIKE %s)",
            (gatherer, f"{gatherer}-%"),
        )
        (count,) = cur.fetchone()
    conn.close()
    return int(count)


def _listener_of(run: UpRun, gatherer: str) -> int:
    """The PID of one gatherer's listener (every listener has the same command line)."""
    for pid in children_of(run.proc.pid):
        if "listener" not in cmdline(pid):
            continue
        with contextlib.suppress(OSError):
            if f"KD_GATHERER={gatherer}".encode() in Path(f"/proc/{pid}/environ").read_bytes():
                return pid
    raise AssertionError(f"no listener of {gatherer} under up")


def test_three_faulted_gatherers_leave_production_equal_to_the_exchange(
    tmp_path: Path, fleet_run: FleetRun
) -> None:
    """Issue 10's proof. Every connection gets seq gaps, malformed frames and periodic drops
    (which all three gatherers lose at once: their trades come back through each gatherer's
    REST backfill); gatherer 1's listener is killed -9, gatherer 2's stopped and restarted.
    Production must hold every trade, ticker change and lifecycle event the exchange made
    exactly once and rebuild its books at sampled instants, excused only where every gatherer
    recorded a hole; a second deduplication changes nothing."""
    truth = tmp_path / "truth"
    env = {
        **fleet_run.env,
        "KD_BACKFILL__INTERVAL_S": "1",
        "KD_BACKFILL__SETTLE_S": "0",
        "KD_BACKFILL__MARGIN_S": "1",
    }
    run = UpRun(
        tmp_path, env, "--gatherers", "3", "--duration", "22", "--sim-port", "0",
        "--sim-markets", "40", "--sim-rate", "150", "--sim-seed", "5", "--truth", str(truth),
        "--sim-extra", "--skip-seq-every 1000 --malformed-every 5 --drop-every 10",
        "--dedup-interval", "2", "--run-dir", str(tmp_path / "run"),
    )  # fmt: skip
    try:
        run.wait_for_output("up_started", 90)
        members = list(fleet_run.members())
        # A listener killed before its first heartbeat leaves nothing to settle: wait for
        # sessions (every listener opens its own within a second of the first).
        run.wait_for_output("listener_session_opened", 60)
        run.sleep_until(run.elapsed() + 4)
        os.kill(_listener_of(run, members[0]), signal.SIGKILL)
        run.sleep_until(run.elapsed() + 4)
        os.kill(_listener_of(run, members[1]), signal.SIGTERM)
        code = run.wait(150)
    finally:
        run.close()
    stderr = run.stderr
    own_lines = [line for line in stderr.splitlines() if not line.startswith("[")]
    assert code == 0, "\n".join(own_lines[-40:]) + stderr[-3000:]
    assert not [line for line in own_lines if "Traceback" in line], stderr[-3000:]
    summary = run.stdout[run.stdout.index("stopped after") :]
    assert "3 gatherers" in summary, summary
    assert "listener_predecessor" in stderr  # the killed listener's successor settled it

    union: set[str] = set()
    for name, url in fleet_run.members().items():
        ids = _trade_ids(url)
        assert ids, f"{name} stored no trades\n{summary}"
        assert _foreign_rows(url, name) == 0, f"{name} holds another gatherer's trades"
        assert re.search(rf"^  {name}: .*\btrades {len(ids)}\b", summary, re.M), summary
        union.update(ids)
    production = _trade_ids(fleet_run.database_urls["_prod"])
    assert len(production) == len(set(production)), "a trade is in production twice"
    assert set(production) == union, (len(production), len(union))
    assert re.search(rf"production: .*\btrades {len(union)}\b", summary), summary

    # Production against what the exchange did (kalshi-data verify --gatherer-db ...).
    urls = list(fleet_run.members().values())
    report = verify_production(truth, fleet_run.database_urls["_prod"], urls, book_samples=30)
    assert report.exact, json.dumps(report.as_dict(), indent=1, default=str)[:6000]
    tables = {t.table: t for t in report.exchange.tables}
    assert tables["trades"].captured > 100 and report.books.checked >= 30, report.as_dict()
    check = run_cli(
        "verify", "--truth", str(truth), "--database-url", fleet_run.database_urls["_prod"],
        *[arg for url in urls for arg in ("--gatherer-db", url)], timeout=120, **fleet_run.env,
    )  # fmt: skip
    assert check.returncode == 0 and "production: EXACT" in check.stdout, check.stdout[-3000:]

    # Deduplicating again changes nothing.
    names = fleet_run.members()
    again = run_dedup(
        DedupSettings(
            production_url=fleet_run.database_urls["_prod"],
            gatherers=tuple(GathererDatabase(name=n, database_url=u) for n, u in names.items()),
            book_lateness_s=0,
        ),
        fleet_run.database_urls["_prod"],
    )
    assert not again.inserted and not again.unreachable, again.as_dict()
    with psycopg2.connect(fleet_run.database_urls["_prod"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT status, count(*) FROM coverage GROUP BY 1")
        coverage = dict(cur.fetchall())
    conn.close()
    assert coverage and set(coverage) <= {"complete", "degraded"}, coverage

    # The deduplicator ran while up did, scheduled by its own beat only: gatherer beats send
    # drains and jobs, never kd.dedup.run; the dedup beat sends nothing else.
    sent = [line for line in stderr.splitlines() if "Sending due task" in line]
    assert not [line for line in sent if line.startswith("[beat@") and "kd.dedup.run" in line]
    dedup_sent = [line for line in sent if line.startswith("[dedup-beat]")]
    assert dedup_sent and all("(kd.dedup.run)" in line for line in dedup_sent), dedup_sent
    assert re.search(r"^\[dedup\] .*Task kd\.dedup\.run\[.*\] succeeded", stderr, re.M)


@pytest.mark.parametrize("count", ["0", "-1", "10", "three"])
def test_a_bad_gatherer_count_is_a_usage_error(count: str, fleet_run: FleetRun) -> None:
    result = run_cli("up", "--gatherers", count, "--duration", "1", timeout=30, **fleet_run.env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--gatherers" in errors[0], result.stderr


def test_each_gatherer_gets_its_own_name_database_ports_and_beat() -> None:
    settings = Settings.model_validate(
        {
            "gatherer": "gx",
            "database_url": "postgresql://u:p%40ss@db:5433/kalshi?sslmode=disable",
            "metrics": {"ports": {"listener": 9400, "ingest": 9401, "jobs": 0}},
        }
    )
    assert [m.name for m in gatherer_members(settings, 1)] == ["gx"]  # a lone gatherer as is
    members = gatherer_members(settings, 3)
    third = members[2].settings
    assert [m.name for m in members] == ["gx-1", "gx-2", "gx-3"]
    assert members[2].child("listener") == "listener@gx-3"
    assert third.database_url == "postgresql://u:p%40ss@db:5433/kalshi_g3?sslmode=disable"
    assert third.metrics.port_for("listener") == 9400 + 2 * PORT_STEP
    assert third.metrics.port_for("jobs") == 0  # "any free port" stays so
    assert third.metrics.multiproc_dir.name == "gx-3"
    assert third.beat.entries == "gatherer"
    dedup = dedup_settings(settings, members, interval_s=7)
    assert dedup.gatherer == "gx-dedup" and dedup.beat.entries == "dedup"
    assert dedup.dedup.production_url == dedup.database_url
    assert dedup.database_url.endswith("/kalshi_prod?sslmode=disable")
    assert [g.name for g in dedup.dedup.gatherers] == ["gx-1", "gx-2", "gx-3"]
    assert dedup.dedup.interval_s == 7


SCHEDULE_SCRIPT = """
import json
from app.config import Settings
from workers.celery_app import beat_schedule
production = {"production_url": "postgresql://p/prod"}
print(json.dumps({
    entries: sorted(beat_schedule(Settings.model_validate(
        {"beat": {"entries": entries}, "dedup": production})))
    for entries in ("auto", "gatherer", "dedup")
}))
"""


def test_beat_entries_select_the_gatherer_or_the_deduplicator_schedule() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCHEDULE_SCRIPT],
        cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    schedules = json.loads(done.stdout.strip().splitlines()[-1])
    assert schedules["dedup"] == ["dedup"]
    assert "dedup" not in schedules["gatherer"] and "drain kd:g1:trade" in schedules["gatherer"]
    assert sorted([*schedules["gatherer"], "dedup"]) == schedules["auto"]
