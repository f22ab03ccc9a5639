"""Serving `/metrics`: one HTTP server per single process, one exporter per Celery worker kind.

Single process (listener, beat): `start_metrics_server(settings, "listener")` serves the default
registry on `settings.host:port_for(kind)` (127.0.0.1 unless configured).

Celery prefork (ingest, jobs; design-facts §6, prometheus_client multiprocess docs):
1. before the worker starts, `prepare_multiproc_dir(settings, kind)` creates and wipes
   `<multiproc_dir>/<kind>`, and the start-up shell exports it as PROMETHEUS_MULTIPROC_DIR so
   every forked child writes its values there (`python -m app.metrics prepare-dir KIND`);
2. `install_celery_hooks()` in the Celery app connects `worker_process_shutdown` to
   `mark_process_dead`, which removes the dead child's live-gauge files;
3. `start_multiprocess_exporter(settings, kind)` (a separate process:
   `python -m app.metrics serve KIND`, or a thread in the worker's MainProcess) serves a
   fresh registry holding only `MultiProcessCollector`, which sums every child's files.
Never bind 0.0.0.0 by default; never wipe anything but prometheus_client's `*.db` files.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server

from app.config import MetricsSettings, ProcessKind

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class MetricsConfigError(Exception):
    """Multiprocess exposition asked for without PROMETHEUS_MULTIPROC_DIR, or a bad directory."""


@dataclass
class MetricsServer:
    """A running `/metrics` HTTP server; `close()` stops it and frees the port."""

    host: str
    port: int
    server: WSGIServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def _serve(host: str, port: int, registry: CollectorRegistry) -> MetricsServer:
    server, thread = start_http_server(port, addr=host, registry=registry)
    bound_port = int(server.server_address[1])
    return MetricsServer(host=host, port=bound_port, server=server, thread=thread)


def start_metrics_server(
    settings: MetricsSettings,
    kind: ProcessKind,
    *,
    port: int | None = None,
    registry: CollectorRegistry = REGISTRY,
) -> MetricsServer:
    """Serve this process's metrics on `settings.host` and the kind's port (0 = any free)."""
    if multiprocess_dir() is not None and registry is REGISTRY:
        raise MetricsConfigError(
            f"{MULTIPROC_ENV} is set: serve the worker kind with start_multiprocess_exporter"
        )
    return _serve(settings.host, settings.port_for(kind) if port is None else port, registry)


def multiprocess_dir() -> Path | None:
    """PROMETHEUS_MULTIPROC_DIR of this process (prometheus_client reads it at import)."""
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def prepare_multiproc_dir(settings: MetricsSettings, kind: ProcessKind) -> Path:
    """Create `<multiproc_dir>/<kind>` and delete the previous run's `*.db` files in it.

    Call before the Celery worker starts (its children inherit the environment), then export
    the returned path as PROMETHEUS_MULTIPROC_DIR for the worker and the exporter only.
    """
    path = settings.multiproc_dir_for(kind).resolve()
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    return path


def multiproc_environ(path: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default: os.environ) with PROMETHEUS_MULTIPROC_DIR set, for a child process."""
    env = dict(os.environ if base is None else base)
    env[MULTIPROC_ENV] = str(path)
    return env


def mark_child_dead(pid: int | None = None, **_: Any) -> None:
    """`worker_process_shutdown` receiver: drop the exiting child's live-gauge files."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(pid if pid is not None else os.getpid())


def _mark_main_dead(**_: Any) -> None:
    mark_child_dead(os.getpid())


def install_celery_hooks() -> None:
    """Connect `mark_child_dead` to Celery's `worker_process_shutdown` (each pool child) and
    `worker_shutdown` (the MainProcess, whose import-time unlabeled gauges also own files).
    Idempotent."""
    from celery.signals import worker_process_shutdown, worker_shutdown

    worker_process_shutdown.connect(mark_child_dead, weak=False, dispatch_uid="kd-metrics")
    worker_shutdown.connect(_mark_main_dead, weak=False, dispatch_uid="kd-metrics-main")


def multiprocess_registry(path: Path | None = None) -> CollectorRegistry:
    """A fresh registry whose only collector sums every process's files in the directory."""
    directory = path or multiprocess_dir()
    if directory is None or not directory.is_dir():
        raise MetricsConfigError(
            f"{MULTIPROC_ENV} must name an existing directory (got {directory}); "
            "run prepare_multiproc_dir before the worker starts"
        )
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))
    return registry


def start_multiprocess_exporter(
    settings: MetricsSettings,
    kind: ProcessKind,
    *,
    port: int | None = None,
    path: Path | None = None,
) -> MetricsServer:
    """Serve the sum of all of a worker kind's processes (the directory's files)."""
    registry = multiprocess_registry(path)
    return _serve(settings.host, settings.port_for(kind) if port is None else port, registry)
