"""Crash and restart end to end (issue #3): injure a running `kalshi-data up`, then prove with
`kalshi-data verify` that the database still holds exactly what the simulator sent.

Every test runs `up --duration` as a subprocess against a private redis-server and a private
PostgreSQL cluster (tests/crash/conftest.py), injures one thing in the middle of the run, lets
`up` stop on its own, and then requires: exit 0, no entry dead-lettered or lost from a pending
list, every stream drained (lag 0 and pending 0, read from Redis directly) and `verify` EXACT.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from contextlib import closing
from pathlib import Path

import psycopg2
import pytest
import redis

from app.streams import StreamNames, stream_stats
from tests.conftest import children_of, run_cli
from tests.crash.conftest import PostgresCluster, RedisServer, UpRun

pytestmark = pytest.mark.timeout(240)

DURATION_S = 22
BOOK_PARTITIONS = 8  # the default `streams.book_partitions`; the crash env does not change it
GROUP = "writers"  # the default `streams.group`


def start_up(up_run, tmp_path: Path, seed: int) -> tuple[UpRun, Path]:
    truth = tmp_path / "truth"
    run = up_run(
        "--duration", str(DURATION_S), "--sim-port", "0", "--sim-markets", "60",
        "--sim-rate", "200", "--sim-seed", str(seed), "--truth", str(truth),
        "--run-dir", str(tmp_path / "run"),
    )  # fmt: skip
    run.wait_for_output("up_started", 90)
    return run, truth


def stream_totals(url: str, gatherer: str) -> tuple[int, int]:
    """(lag, pending) summed over every stream of the gatherer, read from Redis itself."""
    names = StreamNames(gatherer, BOOK_PARTITIONS)
    with closing(redis.Redis.from_url(url, socket_timeout=5)) as client:
        stats = [stream_stats(client, name) for name in names.all_streams]
    groups = [g for s in stats for g in s.groups]
    assert groups, "no consumer group on any stream: nothing was ever drained"
    lags = [g.lag for g in groups]
    assert None not in lags, f"lag unknown on some stream: {stats}"
    return sum(lag or 0 for lag in lags), sum(g.pending for g in groups)


def finish_and_verify(run: UpRun, env: dict[str, str], truth: Path) -> str:
    """Let up stop on its own, then require a clean stop, drained streams and an exact capture.
    Returns up's stderr for test-specific evidence."""
    code = run.wait(DURATION_S + 150)
    stdout, stderr = run.stdout, run.stderr
    where = f"(full logs: {run.directory})"
    assert code == 0, f"up exited {code} {where}\n{stderr[-6000:]}"
    final = [line for line in stdout.splitlines() if line.startswith("stopped after")]
    assert final and "lag 0 pending 0" in final[-1], f"{where}\n{stdout[-2000:]}"
    assert "streams_not_drained" not in stderr, where
    assert "streams_dead_lettered" not in stderr, f"an entry was dead-lettered {where}"
    assert "streams_pending_entries_deleted" not in stderr, where
    assert stream_totals(env["KD_REDIS_URL"], env["KD_GATHERER"]) == (0, 0)
    check = run_cli("verify", "--truth", str(truth), timeout=120, **env)
    assert check.returncode == 0, f"{where}\n{check.stdout[-5000:]}{check.stderr[-2000:]}"
    assert "result: EXACT" in check.stdout
    return stderr


def pending_by_consumer(url: str, gatherer: str) -> dict[str, int]:
    """Entries read but not yet acknowledged, per consumer (`hostname:pid`), over all streams."""
    names = StreamNames(gatherer, BOOK_PARTITIONS)
    found: dict[str, int] = {}
    with closing(redis.Redis.from_url(url, socket_timeout=5)) as client:
        for name in names.all_streams:
            try:
                summary = client.xpending(name, GROUP)
            except redis.ResponseError:  # no group yet
                continue
            for consumer in summary.get("consumers") or []:
                key = consumer["name"].decode()
                found[key] = found.get(key, 0) + int(consumer["pending"])
    return found


def consumer_pid(name: str) -> int | None:
    host, _, pid = name.rpartition(":")
    return int(pid) if host == socket.gethostname() and pid.isdigit() else None


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def ingest_worker(run: UpRun) -> int:
    pid = run.child("worker", "-Q", "ingest")
    assert pid is not None, "no ingest worker under up"
    return pid


def hold_ingest_mid_batch(
    cluster: PostgresCluster, env: dict[str, str], run: UpRun, timeout_s: float = 10
):
    """Lock `raw_batches` (each batch writes it first) against writes so every drain blocks
    inside its transaction, after reading its entries and before committing them; return
    (lock connection, {prefork child pid: entries it holds unacknowledged}) once a prefork
    child of the ingest worker is caught that way. Rolling back the returned connection
    releases the drains."""
    database = env["KD_DATABASE_URL"].rsplit("/", 1)[1]
    lock = cluster.connect(database)
    lock.autocommit = False
    with lock.cursor() as cur:
        cur.execute("LOCK TABLE raw_batches IN EXCLUSIVE MODE")  # reads still go through
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        children = set(children_of(ingest_worker(run)))
        held = {
            pid: count
            for name, count in pending_by_consumer(env["KD_REDIS_URL"], env["KD_GATHERER"]).items()
            if (pid := consumer_pid(name)) in children and count > 0
        }
        if held:
            time.sleep(0.3)  # let the other child block too
            return lock, held
        time.sleep(0.1)
    lock.rollback()
    lock.close()
    raise AssertionError(f"no ingest child caught mid-batch within {timeout_s} s")


def test_redis_restart_mid_run_loses_nothing(
    tmp_path: Path,
    up_run,
    crash_env: dict[str, str],
    own_redis: RedisServer,
    own_postgres: PostgresCluster,
) -> None:
    """Redis stops (SIGTERM, AOF on) ~8 s into the run and stays down ~4 s. Drains are caught
    mid-batch first, so they commit while Redis is gone and cannot acknowledge: the one window
    where work is repeated. The listener spills to its journal and replays it, workers and beat
    reconnect, the unacknowledged entries come back from the AOF and are re-written as 0 new
    rows."""
    run, truth = start_up(up_run, tmp_path, seed=21)
    run.sleep_until(8)
    lock, _ = hold_ingest_mid_batch(own_postgres, crash_env, run)
    try:
        own_redis.stop()
    finally:
        lock.rollback()  # the caught drains commit now, and their XACK fails
        lock.close()
    time.sleep(4)
    own_redis.start()
    stderr = finish_and_verify(run, crash_env, truth)
    assert "streams_spill_started" in stderr, "the listener never spilled: Redis was not missed"
    assert "streams_spill_recovered" in stderr, "the spill journal was never replayed"
    ingest = [x for x in stderr.splitlines() if x.startswith("[ingest]")]
    assert any("redis.exceptions.ConnectionError" in x for x in ingest), "no drain lost Redis"
    after = pending_by_consumer(crash_env["KD_REDIS_URL"], crash_env["KD_GATHERER"])
    assert not any(after.values()), after


def test_postgres_restart_mid_run_loses_nothing(
    tmp_path: Path, up_run, crash_env: dict[str, str], own_postgres: PostgresCluster
) -> None:
    """PostgreSQL stops (fast shutdown) ~8 s into the run while drains are caught inside their
    transactions, and stays down ~4 s: the server aborts those transactions, the drains fail
    retryably (entries stay pending, delivery counts restored), later drains cannot connect,
    then everything resumes; verify is exact, so nothing was lost, dead-lettered or written
    twice."""
    run, truth = start_up(up_run, tmp_path, seed=22)
    run.sleep_until(8)
    lock, _ = hold_ingest_mid_batch(own_postgres, crash_env, run)
    try:
        own_postgres.stop("fast")  # terminates every session, the lock's included
    finally:
        lock.close()
    time.sleep(4)
    own_postgres.start()
    stderr = finish_and_verify(run, crash_env, truth)
    ingest = [x for x in stderr.splitlines() if x.startswith("[ingest]")]
    assert any("streams_handler_failed" in x for x in ingest), "no batch was caught mid-commit"
    assert any("OperationalError" in x for x in ingest), "no drain saw the server go away"
    assert any("DatabaseUnavailable" in x for x in ingest), "no drain found the database down"


def test_kill_9_ingest_prefork_child_mid_batch(
    tmp_path: Path, up_run, crash_env: dict[str, str], own_postgres: PostgresCluster
) -> None:
    """A prefork child of the ingest worker is SIGKILLed while it holds read, uncommitted
    entries: PostgreSQL rolls its transaction back, Celery replaces the child, and another
    consumer reclaims the entries after `min_idle_ms` (3 s here) and writes them once."""
    run, truth = start_up(up_run, tmp_path, seed=23)
    run.sleep_until(8)
    lock, held = hold_ingest_mid_batch(own_postgres, crash_env, run)
    try:
        victim = next(iter(held))
        os.kill(victim, signal.SIGKILL)
    finally:
        lock.rollback()
        lock.close()
    victim_name = f"{socket.gethostname()}:{victim}"
    stderr = finish_and_verify(run, crash_env, truth)
    after = pending_by_consumer(crash_env["KD_REDIS_URL"], crash_env["KD_GATHERER"])
    assert after.get(victim_name, 0) == 0, f"entries of the killed child never reclaimed: {after}"
    assert "signal 9" in stderr or "SIGKILL" in stderr, "Celery never saw its child die"


def test_kill_9_ingest_main_process_mid_batch(
    tmp_path: Path, up_run, crash_env: dict[str, str], own_postgres: PostgresCluster
) -> None:
    """The whole ingest worker (main process; its prefork children die with it) is SIGKILLed
    while its children hold read, uncommitted entries: up's supervisor restarts it with
    backoff, and the new worker's children reclaim the dead consumers' entries after
    `min_idle_ms` and write them once."""
    run, truth = start_up(up_run, tmp_path, seed=24)
    run.sleep_until(8)
    main = ingest_worker(run)
    lock, held = hold_ingest_mid_batch(own_postgres, crash_env, run)
    try:
        os.kill(main, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in held) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        lock.rollback()
        lock.close()
    survivors = [pid for pid in held if alive(pid)]
    assert not survivors, f"prefork children outlived their killed parent: {survivors}"
    stderr = finish_and_verify(run, crash_env, truth)
    assert f"child_exited child=ingest code={-signal.SIGKILL}" in stderr, stderr[-3000:]
    assert stderr.count("child_started child=ingest") == 2, "the supervisor did not restart it"
    after = pending_by_consumer(crash_env["KD_REDIS_URL"], crash_env["KD_GATHERER"])
    dead = {f"{socket.gethostname()}:{pid}" for pid in held}
    assert not {name for name in dead if after.get(name)}, f"never reclaimed: {after}"


def test_kill_9_listener_leaves_a_recorded_hole_that_the_backfill_fills(
    tmp_path: Path, up_run, crash_env: dict[str, str]
) -> None:
    """Issue 8: the listener is SIGKILLed mid-run (under drops and seq skips): up restarts it,
    the successor closes the dead sessions and records a `listener_died` hole per channel, the
    trade backfill fetches the hole's trades from REST, and verify finds every trade the
    exchange made since capture started stored exactly once or inside a recorded hole, every
    frame the exchange sent stored or inside a recorded hole: EXACT."""
    crash_env.update(KD_BACKFILL__INTERVAL_S="1", KD_BACKFILL__SETTLE_S="0",
                     KD_BACKFILL__MARGIN_S="1")  # fmt: skip
    truth = tmp_path / "truth"
    run = up_run(
        "--duration", str(DURATION_S), "--sim-port", "0", "--sim-markets", "60",
        "--sim-rate", "200", "--sim-seed", "25", "--truth", str(truth),
        "--run-dir", str(tmp_path / "run"),
        "--sim-extra",
        "--drop-every 7 --skip-seq-every 1500 --stall-every 5 --stall-seconds 0.5"
        " --market-lifetime 12",
    )  # fmt: skip
    run.wait_for_output("up_started", 90)
    # Killed before it wrote its first heartbeat, a listener leaves nothing for a successor to
    # settle (no session, no hole): wait until it is connected and frames flow.
    run.wait_for_output("listener_session_opened", 60)
    run.sleep_until(max(6.0, run.elapsed() + 2.0))
    listener = run.child("listener")
    assert listener is not None, "no listener under up"
    os.kill(listener, signal.SIGKILL)
    killed_ns = time.time_ns()
    finish_and_verify(run, crash_env, truth)
    report = run_cli("verify", "--truth", str(truth), "--json", timeout=120, **crash_env)
    document = json.loads(report.stdout)
    exchange = document["exchange"]
    # Frames the dead listener had read but not published (none, when the kill lands right
    # after a flush or in a simulator stall) are explained by its hole, never missing.
    frames = document["tables"]["raw_frames"]
    assert frames["missing"] == 0 and frames["expected"] > 0, frames
    trades = exchange["tables"]["trades"]
    # Trades still in a hole can only be in one closed too late for a backfill before the stop.
    assert trades["exchange"] > 0 and trades["unexplained"] == 0, exchange
    assert trades["captured"] >= trades["exchange"] - trades["in_hole"] > 0
    with closing(psycopg2.connect(crash_env["KD_DATABASE_URL"])) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT channel, extract(epoch FROM from_at), extract(epoch FROM to_at)"
            " FROM capture_holes WHERE cause = 'listener_died'"
        )
        died = cur.fetchall()
        cur.execute(
            "SELECT count(*) FILTER (WHERE backfill_status = 'done'), count(*) FROM capture_holes"
            " WHERE channel = 'trade' AND to_at IS NOT NULL"
        )
        backfilled, closed = cur.fetchone()
        cur.execute("SELECT count(*) FROM trades WHERE source = 'rest'")
        rest_only = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM connection_sessions WHERE closed_at IS NULL")
        still_open = cur.fetchone()[0]
    assert {c for c, _, _ in died} == {
        "trade",
        "ticker",
        "market_lifecycle_v2",
        "multivariate_market_lifecycle",
        "orderbook_delta",
    }
    assert all(float(f) * 1e9 <= killed_ns <= float(t) * 1e9 for _, f, t in died), died
    assert closed >= 2 and backfilled >= 2, (backfilled, closed)
    assert rest_only > 0, "the backfill stored no trade the WebSocket missed"
    assert still_open == 0, "sessions of the dead listener were never closed"
    # Coverage shows the kill on the market-hours it touched (a market that lived only inside
    # holes, as markets with a 12 s life can, is `missing`: that is the truth).
    coverage = run_cli("coverage", "--since", "2h", "--json", timeout=60, **crash_env)
    assert coverage.returncode == 0, coverage.stderr
    rows = json.loads(coverage.stdout)["rows"]
    assert any("listener_died" in row["causes"] and row["status"] == "degraded" for row in rows)
