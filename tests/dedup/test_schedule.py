"""The deduplicator as a Celery job: beat entry on the `dedup` queue only where production is
configured, the task runs `run_dedup` with the environment's settings and records its run."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO, clean_env
from tests.dedup.conftest import Fleet, settled, store, trade

SCRIPT = """
import json
from prometheus_client import REGISTRY
from workers.celery_app import app
import tasks.dedup
configured = "dedup" in app.conf.beat_schedule
result = tasks.dedup.run_dedup.apply().get() if configured else None
print(json.dumps({
    "entry": app.conf.beat_schedule.get("dedup"),
    "route": app.conf.task_routes["kd.dedup.*"],
    "registered": "kd.dedup.run" in app.tasks,
    "result": result,
    "runs": REGISTRY.get_sample_value(
        "kd_job_runs_total", {"job_name": "dedup", "outcome": "ok"}),
    "inserted": REGISTRY.get_sample_value("kd_dedup_rows_inserted_total", {"table": "trades"}),
}))
"""


def _run(**env: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=REPO, env=clean_env(KD_REDIS_URL="redis://127.0.0.1:6379/12", **env),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_beat_runs_dedup_on_its_queue_only_where_production_is_configured(fleet: Fleet) -> None:
    for name, url in fleet.gatherers.items():
        store(url, name, [trade(i) for i in range(1, 4)])
    settled(fleet)
    gatherers = [{"name": n, "database_url": u} for n, u in fleet.gatherers.items()]
    report = _run(
        KD_DEDUP__PRODUCTION_URL=fleet.production,
        KD_DEDUP__GATHERERS=json.dumps(gatherers),
        KD_DEDUP__INTERVAL_S="30",
    )
    assert report["entry"] == {
        "task": "kd.dedup.run",
        "schedule": 30,
        "options": {"queue": "dedup", "expires": 15},
    }
    assert report["route"] == {"queue": "dedup"} and report["registered"]
    assert report["result"]["inserted"] == {"trades": 3}
    assert report["runs"] == 1 and report["inserted"] == 3
    # A gatherer host (no production configured) schedules no dedup at all.
    plain = _run()
    assert plain["entry"] is None and plain["result"] is None
