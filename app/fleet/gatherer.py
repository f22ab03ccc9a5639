"""The processes of one gatherer (DESIGN §2), as child specs for the supervisor.

Order matters: ingest and job workers and beat start before the listener so that the first
batches are drained at once; on the way down the listener stops first (it flushes what it holds
to Redis), the streams are drained, then beat and the workers stop.
"""

from __future__ import annotations

import sys
from pathlib import Path

from app.config import Settings
from app.fleet.supervisor import ChildSpec, python_command

CELERY_APP = "workers.celery_app"


def _celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", CELERY_APP, *args]


def gatherer_env(settings: Settings, rest_url: str, ws_url: str, config: Path | None) -> dict:
    """Environment every gatherer child gets: where the exchange is, which settings file."""
    env = {
        "KD_KALSHI__REST_URL": rest_url,
        "KD_KALSHI__WS_URL": ws_url,
        "KD_DATABASE_URL": settings.database_url,
        "KD_REDIS_URL": settings.redis_url,
        "KD_GATHERER": settings.gatherer,
    }
    if config is not None:
        env["KD_CONFIG"] = str(config)
    return env


def gatherer_specs(
    settings: Settings, env: dict[str, str], run_dir: Path, ingest_concurrency: int = 2
) -> list[ChildSpec]:
    """Ingest workers, the jobs worker, beat and the listener, in start order."""
    g = settings.gatherer
    return [
        ChildSpec(
            name="ingest",
            argv=_celery(
                "worker", "-Q", "ingest", "-c", str(ingest_concurrency), "--pool", "prefork",
                "-n", f"ingest-{g}@%h", "--without-gossip", "--without-mingle", "-l", "INFO",
            ),
            env=env,
            ready_text="ready.",
        ),
        ChildSpec(
            name="jobs",
            argv=_celery(
                "worker", "-Q", "jobs", "-c", "1", "--pool", "prefork",
                "-n", f"jobs-{g}@%h", "--without-gossip", "--without-mingle", "-l", "INFO",
            ),
            env=env,
            ready_text="ready.",
        ),
        ChildSpec(
            name="beat",
            argv=_celery(
                "beat", "-s", str(run_dir / f"celerybeat-{g}"), "--pidfile=", "-l", "INFO",
            ),
            env=env,
        ),
        ChildSpec(name="listener", argv=python_command("listener"), env=env),
    ]  # fmt: skip
