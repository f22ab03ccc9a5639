"""The processes of one gatherer (DESIGN §2), as child specs for the supervisor.

Order matters: ingest and job workers and beat start before the listener so that the first
batches are drained at once; on the way down the listener stops first (it flushes what it holds
to Redis), the streams are drained, then beat and the workers stop.

Metrics (docs/metrics.md): with `metrics.enabled`, each Celery worker kind (ingest, jobs) gets
its own PROMETHEUS_MULTIPROC_DIR, created and wiped here, before the worker starts, and an
exporter child (`python -m app.metrics serve KIND`) that sums the kind's prefork children on
the kind's port; the ingest exporter also refreshes the Redis stream gauges. The listener
serves its own /metrics (app/listener/metrics.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

from app.config import ProcessKind, Settings
from app.fleet.supervisor import ChildSpec, python_command
from app.metrics import MULTIPROC_ENV, prepare_multiproc_dir

CELERY_APP = "workers.celery_app"


def celery_command(*args: str) -> list[str]:
    """argv of `celery -A workers.celery_app ARGS...` with this interpreter."""
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


EXPORTER_READY_TEXT = "serving"  # "serving URL", or "not serving ..." on a busy port


def exporter_spec(
    settings: Settings, kind: ProcessKind, env: dict[str, str], suffix: str = ""
) -> ChildSpec:
    """`python -m app.metrics serve KIND` for one Celery worker kind (its directory in `env`);
    `suffix` tells one gatherer's exporter from another's in `up --gatherers N`."""
    m = settings.metrics
    argv = [
        sys.executable, "-m", "app.metrics", "serve", kind, "--busy-port-ok",
        "--host", m.host, "--port", str(m.port_for(kind)),
    ]  # fmt: skip
    if kind == "ingest":
        argv += [
            "--redis-url", settings.redis_url, "--gatherer", settings.gatherer,
            "--book-partitions", str(settings.streams.book_partitions),
            "--refresh", str(m.stream_refresh_s),
        ]  # fmt: skip
    return ChildSpec(
        name=f"{kind}-metrics{suffix}", argv=argv, env=env, ready_text=EXPORTER_READY_TEXT
    )


def worker_metrics_env(
    settings: Settings, kind: ProcessKind, env: dict[str, str]
) -> dict[str, str]:
    """`env` plus PROMETHEUS_MULTIPROC_DIR for one worker kind, its directory wiped now
    (before the worker starts: prometheus_client reads it at import, design-facts §6)."""
    path = prepare_multiproc_dir(settings.metrics, kind)
    return {**env, MULTIPROC_ENV: str(path)}


def gatherer_specs(
    settings: Settings,
    env: dict[str, str],
    run_dir: Path,
    ingest_concurrency: int = 2,
    suffix: str = "",
) -> list[ChildSpec]:
    """Ingest workers, the jobs worker (each followed by its metrics exporter when metrics are
    enabled), beat and the listener, in start order; every child's name ends in `suffix`
    (empty for a lone gatherer, `@<gatherer>` in a fleet)."""
    g = settings.gatherer
    metrics = settings.metrics.enabled
    ingest_env = worker_metrics_env(settings, "ingest", env) if metrics else env
    jobs_env = worker_metrics_env(settings, "jobs", env) if metrics else env
    workers = [
        ChildSpec(
            name=f"ingest{suffix}",
            argv=celery_command(
                "worker", "-Q", "ingest", "-c", str(ingest_concurrency), "--pool", "prefork",
                "-n", f"ingest-{g}@%h", "--without-gossip", "--without-mingle", "-l", "INFO",
            ),
            env=ingest_env,
            ready_text="ready.",
        ),
        *([exporter_spec(settings, "ingest", ingest_env, suffix)] if metrics else []),
        ChildSpec(
            name=f"jobs{suffix}",
            argv=celery_command(
                "worker", "-Q", "jobs", "-c", "1", "--pool", "prefork",
                "-n", f"jobs-{g}@%h", "--without-gossip", "--without-mingle", "-l", "INFO",
            ),
            env=jobs_env,
            ready_text="ready.",
        ),
        *([exporter_spec(settings, "jobs", jobs_env, suffix)] if metrics else []),
    ]  # fmt: skip
    return [
        *workers,
        ChildSpec(
            name=f"beat{suffix}",
            argv=celery_command(
                "beat", "-s", str(run_dir / f"celerybeat-{g}"), "--pidfile=", "-l", "INFO",
            ),
            env=env,
        ),
        ChildSpec(
            name=f"listener{suffix}",
            argv=python_command("listener"),
            env=env,
            # Its own shutdown is bounded by two shutdown_timeout_s waits (connections, then
            # the publisher flush); a SIGKILL before that would cut a clean stop short.
            stop_timeout_s=2 * settings.listener.shutdown_timeout_s + 10.0,
        ),
    ]  # fmt: skip
