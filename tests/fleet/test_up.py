"""`kalshi-data up` end to end: simulator, listener, Celery ingest and beat as real processes.

The proof is `kalshi-data verify`: after `up --duration` stops cleanly, the database holds
exactly what the simulator's ground truth says it sent, with faults injected along the way.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import psycopg2
import pytest
import redis

from tests.conftest import KALSHI_DATA, REPO, children_of, clean_env, run_cli

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def gatherer_env(postgres_admin_url: str, redis_test_url: str):
    """A database name nobody uses yet (up creates it), a unique gatherer, cleanup after."""
    name = f"kd_test_up_{uuid.uuid4().hex[:10]}"
    gatherer = f"t{uuid.uuid4().hex[:8]}"
    url = f"{postgres_admin_url.rsplit('/', 1)[0]}/{name}"
    env = {
        "KD_DATABASE_URL": url,
        "KD_REDIS_URL": redis_test_url,
        "KD_GATHERER": gatherer,
        # Metrics have their own test (test_metrics_up.py); here they would bind fixed ports.
        "KD_METRICS__ENABLED": "false",
    }
    yield env
    client = redis.Redis.from_url(redis_test_url)
    keys = list(client.scan_iter(f"kd:{gatherer}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
    admin = psycopg2.connect(postgres_admin_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def _failure(stderr: str) -> str:
    """The listener's own last lines (it is the child most often slow to stop), then the tail."""
    listener = [line for line in stderr.splitlines() if line.startswith("[listener]")]
    return "\n".join(listener[-30:]) + "\n...\n" + stderr[-2500:]


@pytest.mark.parametrize("late_2026", [False, True], ids=["default", "acks-and-yes-price"])
def test_up_captures_exactly_what_the_exchange_sent(
    tmp_path: Path, gatherer_env, late_2026: bool
) -> None:
    """With `late_2026`, the exchange's command acks consume a seq and the listener asks for
    NO levels on the YES scale (issue 9 items 3 and 4): the capture is still exact."""
    truth = tmp_path / "truth"
    # Drops can land in the last seconds: the exchange then changes books nobody receives,
    # which verify must not count against the capture (it compares what was sent).
    faults = "--skip-seq-every 300 --drop-every 8 --malformed-every 4 --market-lifetime 15"
    env = dict(gatherer_env)
    if late_2026:
        faults += " --ack-consumes-seq"
        env["KD_LISTENER__USE_YES_PRICE"] = "true"
    result = run_cli(
        "up", "--duration", "21", "--sim-port", "0", "--sim-markets", "120",
        "--sim-rate", "300", "--sim-seed", "11", "--truth", str(truth),
        "--sim-extra", faults, "--run-dir", str(tmp_path / "run"),
        timeout=240, **env,
    )  # fmt: skip
    assert result.returncode == 0, _failure(result.stderr)
    assert "Traceback" not in result.stderr
    assert "stopped after" in result.stdout
    # the final status line counts the frames stored (not '?')
    final = next(line for line in result.stdout.splitlines() if "stopped after" in line)
    stored = re.search(r"rows: frames (\d+) ", final)
    assert stored is not None and int(stored.group(1)) > 1000, final
    if late_2026:  # the listener did subscribe that way, and the acks did consume seqs
        subscriptions = (truth / "connections.jsonl").read_text()
        assert '"use_yes_price":true' in subscriptions
        assert json.loads((truth / "meta.json").read_text())["ack_consumes_seq"] is True
    check = run_cli("verify", "--truth", str(truth), timeout=120, **gatherer_env)
    assert check.returncode == 0, check.stdout[-4000:] + check.stderr[-2000:]
    conn = psycopg2.connect(gatherer_env["KD_DATABASE_URL"])
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*), count(recovered_at), count(*) FILTER "
            "(WHERE recovery = 'get_snapshot') FROM sequence_gaps"
        )
        gaps, recovered, by_snapshot = cur.fetchone()
        cur.execute("SELECT count(*) FROM orderbook_snapshots WHERE source = 'resync'")
        (resyncs,) = cur.fetchone()
        cur.execute("SELECT count(*) FROM dead_letters")
        (dead,) = cur.fetchone()
        cur.execute("SELECT count(DISTINCT connection_id) FROM connection_sessions")
        (sessions,) = cur.fetchone()
    conn.close()
    assert gaps > 0 and recovered == gaps, (gaps, recovered)
    # a gap repaired by get_snapshot left the snapshots it asked for, marked as such
    assert (resyncs > 0) == (by_snapshot > 0), (resyncs, by_snapshot)
    assert dead > 0, "the simulator's malformed frames must be dead-lettered, not dropped"
    assert sessions > 2, "dropped connections must reconnect as new sessions"


def test_up_stops_cleanly_on_ctrl_c_and_leaves_no_children(tmp_path: Path, gatherer_env) -> None:
    process = subprocess.Popen(
        [KALSHI_DATA, "up", "--sim-port", "0", "--sim-markets", "20", "--sim-rate", "100",
         "--run-dir", str(tmp_path / "run")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=clean_env(**gatherer_env), cwd=REPO,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        children: list[int] = []
        while time.monotonic() < deadline and len(children) < 5:
            time.sleep(0.5)
            children = children_of(process.pid)
        assert len(children) == 5, f"expected sim, ingest, jobs, beat, listener: {children}"
        time.sleep(3)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr[-4000:]
    assert "stopped after" in stdout
    assert "Traceback" not in stderr
    time.sleep(1)
    survivors = [pid for pid in children if Path(f"/proc/{pid}").exists()]
    assert not survivors, f"children still running after up stopped: {survivors}"


def test_up_with_a_busy_port_fails_with_one_clear_error(gatherer_env) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(
            "up", "--sim-port", str(port), "--duration", "5", timeout=60, **gatherer_env
        )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "simulator" in errors[0]


def test_up_with_an_unreadable_key_fails_clearly(tmp_path: Path, gatherer_env) -> None:
    env = {
        **gatherer_env,
        "KD_KALSHI__KEY_ID": "abc",
        "KD_KALSHI__PRIVATE_KEY_PATH": str(tmp_path / "missing.pem"),
    }
    result = run_cli("up", "--duration", "2", timeout=30, **env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "missing.pem" in result.stderr


def test_up_with_an_unreachable_database_fails_clearly(gatherer_env) -> None:
    env = {**gatherer_env, "KD_DATABASE_URL": "postgresql://postgres@127.0.0.1:9/x"}
    result = run_cli("up", "--duration", "2", "--sim-port", "0", timeout=60, **env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and "database" in errors[0], result.stderr
