"""The Celery app of a gatherer host: ingest drains and maintenance jobs (DESIGN §2, §3, §6).

    celery -A workers.celery_app worker -Q ingest -c 2      # drains
    celery -A workers.celery_app worker -Q jobs -c 1        # maintenance
    celery -A workers.celery_app worker -Q dedup -c 1       # the deduplicator host only
    celery -A workers.celery_app beat -s var/celerybeat-schedule

Settings are read once, at import, with `load_settings(KD_CONFIG)` (YAML file named by the
`KD_CONFIG` environment variable, overridden by `KD_*` variables). The broker is the gatherer's
Redis (`redis_url`) unless `KD_CELERY_BROKER_URL` names another; every broker key is prefixed
`kd:{gatherer}:celery:` so the broker shares the streams' Redis database without touching a
stream key, and two gatherers on one Redis do not share queues. docs/ingest.md explains the
choices; the Celery message is only a trigger, the streams' pending lists carry delivery.

Metrics (docs/metrics.md): the tasks record into prometheus_client; started with
PROMETHEUS_MULTIPROC_DIR in the environment (`kalshi-data up` sets it per worker kind), every
prefork child writes its values there and `python -m app.metrics serve KIND` sums them.
`install_celery_hooks()` removes an exiting child's live-gauge files. The jobs record their own
runs (`app.ingest.jobs`); the beat schedule takes every job period from the settings through
`app.ingest.job_intervals`; `beat.entries` selects which entries one beat runs (a gatherer's, the
deduplicator's, or both), so `kalshi-data up --gatherers N` runs one beat per role.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import worker_process_shutdown

from app.config import Settings, load_settings
from app.ingest import close_all, job_intervals, stream_names
from app.metrics import install_celery_hooks

settings = load_settings(os.environ.get("KD_CONFIG") or None)

# A drain stops itself after `drain_budget_s`; the soft limit only catches a stuck database.
DRAIN_SOFT_LIMIT_S = settings.streams.drain_budget_s + 30
DRAIN_HARD_LIMIT_S = DRAIN_SOFT_LIMIT_S + 30
JOB_SOFT_LIMIT_S = 300
JOB_HARD_LIMIT_S = 360


# beat entry -> (task, job); each job's period is a setting, read through `job_intervals`
JOB_ENTRIES: tuple[tuple[str, str, str], ...] = (
    ("trim streams", "kd.maintenance.trim_streams", "trim_streams"),
    ("reap idle consumers", "kd.maintenance.reap_consumers", "reap_consumers"),
    ("ensure partitions", "kd.maintenance.ensure_partitions", "ensure_partitions"),
    (
        "drop expired partitions",
        "kd.maintenance.drop_expired_partitions",
        "drop_expired_partitions",
    ),
    ("reconcile registry", "kd.registry.reconcile", "reconcile_registry"),
    ("refresh subscriptions", "kd.registry.refresh_subscriptions", "refresh_subscriptions"),
    ("backfill trades", "kd.backfill.trades", "backfill_trades"),
    ("refresh coverage", "kd.coverage.refresh", "refresh_coverage"),
)


def beat_schedule(config: Settings) -> dict[str, dict[str, Any]]:
    """The entries `beat.entries` selects: a gatherer's drains and jobs, the deduplicator's
    run, or (auto) the gatherer's plus the deduplicator's where production is configured."""
    entries = config.beat.entries
    schedule: dict[str, dict[str, Any]] = {}
    if entries in ("auto", "gatherer"):
        schedule.update(gatherer_entries(config))
    if entries == "dedup" or (entries == "auto" and config.dedup.production_url):
        schedule.update(dedup_entries(config))
    return schedule


def gatherer_entries(config: Settings) -> dict[str, dict[str, Any]]:
    """A drain per data stream every `streams.drain_interval_s` (1 s), the dead letters every
    `streams.dead_letter_interval_s` (10 s), the jobs at their configured periods. A drain
    message expires after a few periods: a later one does the same work."""
    names = stream_names(config)
    drain_every = config.streams.drain_interval_s
    dead_every = config.streams.dead_letter_interval_s
    schedule: dict[str, dict[str, Any]] = {
        f"drain {stream}": {
            "task": "kd.ingest.drain",
            "schedule": drain_every,
            "args": (stream,),
            "options": {"queue": "ingest", "expires": max(5.0, 5 * drain_every)},
        }
        for stream in (*names.data_streams, names.control)
    }
    schedule[f"drain {names.dead}"] = {
        "task": "kd.ingest.drain",
        "schedule": dead_every,
        "args": (names.dead,),
        "options": {"queue": "ingest", "expires": max(5.0, dead_every / 2)},
    }
    intervals = job_intervals(config)
    for name, task, job in JOB_ENTRIES:
        every = intervals[job]
        schedule[name] = {
            "task": task,
            "schedule": every,
            "options": {"queue": "jobs", "expires": every / 2},
        }
    return schedule


def dedup_entries(config: Settings) -> dict[str, dict[str, Any]]:
    """The deduplicator host's one entry (DESIGN §2), on its own queue."""
    every = job_intervals(config)["dedup"]
    return {
        "dedup": {
            "task": "kd.dedup.run",
            "schedule": every,
            "options": {"queue": "dedup", "expires": every / 2},
        }
    }


app = Celery(
    "kalshi_data",
    include=[
        "tasks.ingest",
        "tasks.maintenance",
        "tasks.backfill",
        "tasks.coverage",
        "tasks.dedup",
    ],
)
app.conf.update(
    # stock PersistentScheduler can exit 1 on SIGTERM (closes its shelf twice)
    beat_scheduler="workers.beat_scheduler:ShutdownSafeScheduler",
    broker_url=os.environ.get("KD_CELERY_BROKER_URL") or settings.redis_url,
    broker_transport_options={
        "global_keyprefix": f"kd:{settings.gatherer}:celery:",
        "visibility_timeout": 3600,
    },
    broker_connection_retry_on_startup=True,
    task_acks_late=True,
    task_reject_on_worker_lost=False,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_default_queue="jobs",
    task_routes={
        "kd.ingest.*": {"queue": "ingest"},
        "kd.maintenance.*": {"queue": "jobs"},
        "kd.registry.*": {"queue": "jobs"},
        "kd.backfill.*": {"queue": "jobs"},
        "kd.coverage.*": {"queue": "jobs"},
        "kd.dedup.*": {"queue": "dedup"},
    },
    task_serializer="json",
    accept_content=["json"],
    timezone="UTC",
    enable_utc=True,
    beat_schedule=beat_schedule(settings),
)


install_celery_hooks()


@worker_process_shutdown.connect
def _close_connections(**_: Any) -> None:
    close_all()
