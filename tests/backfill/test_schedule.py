"""The backfill as Celery sees it: a beat entry at the configured period on the jobs queue,
and the `kd.backfill.trades` task running the job with the worker's settings."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.backfill.conftest import add_hole
from tests.conftest import REPO, clean_env, free_port

SCRIPT = """
import json
from workers.celery_app import JOB_ENTRIES, app
import tasks.backfill
print(json.dumps({
    "entry": app.conf.beat_schedule["backfill trades"],
    "entries": [entry for entry, _, _ in JOB_ENTRIES],
    "route": app.conf.task_routes["kd.backfill.*"],
    "include": list(app.conf.include),
    "registered": "kd.backfill.trades" in app.tasks,
    "result": tasks.backfill.backfill_trades.apply().get(),
}))
"""


def test_beat_runs_the_backfill_on_the_jobs_queue_at_its_interval(
    conn: Any, database: str, gatherer: str
) -> None:
    add_hole(conn, gatherer, "h1", start=0.6, end=1.4)
    env = clean_env(
        KD_DATABASE_URL=database,
        KD_REDIS_URL="redis://127.0.0.1:6379/12",
        KD_GATHERER=gatherer,
        KD_BACKFILL__INTERVAL_S="45",
        KD_BACKFILL__SETTLE_S="0",
        KD_KALSHI__REST_URL=f"http://127.0.0.1:{free_port()}/trade-api/v2",
        KD_KALSHI__MAX_RETRIES="0",
    )
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["entry"] == {
        "task": "kd.backfill.trades",
        "schedule": 45,
        "options": {"queue": "jobs", "expires": 22.5},
    }
    assert "backfill trades" in report["entries"]
    assert report["route"] == {"queue": "jobs"}
    assert "tasks.backfill" in report["include"] and report["registered"]
    # the task ran the job with the environment's settings: the exchange is unreachable, so
    # the hole was charged one attempt and the task still returned its report
    result = report["result"]
    assert (result["done"], result["retry"], result["pending"]) == (0, 1, 1)
    assert "connection refused" in result["stopped"]
