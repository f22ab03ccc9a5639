"""Command line of the metrics exposition for process supervisors and start-up shells.

    export PROMETHEUS_MULTIPROC_DIR=$(python -m app.metrics prepare-dir ingest)
    celery -A workers.celery_app worker -Q ingest ... &
    python -m app.metrics serve ingest --gatherer g1 --redis-url redis://localhost:6379/0

`serve` needs PROMETHEUS_MULTIPROC_DIR in its environment *before* Python starts (the
prometheus_client value class is chosen at import), so it refuses to run without it.

It prints `serving URL` once it listens. With `--busy-port-ok` (what `kalshi-data up` uses) a
port already in use is a warning, not an exit: it prints `not serving ...` and waits for
SIGTERM, so a supervisor neither restarts it in a loop nor fails the whole gatherer for it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import redis

from app.config import PROCESS_KINDS, MetricsSettings
from app.metrics.exposition import (
    MULTIPROC_ENV,
    MetricsConfigError,
    multiprocess_dir,
    prepare_multiproc_dir,
    start_multiprocess_exporter,
)
from app.metrics.streams import StreamGaugeLoop
from app.streams import StreamNames


def _settings(args: argparse.Namespace) -> MetricsSettings:
    values: dict[str, object] = {}
    if getattr(args, "base", None):
        values["multiproc_dir"] = Path(args.base)
    if getattr(args, "host", None):
        values["host"] = args.host
    if getattr(args, "refresh", None):
        values["stream_refresh_s"] = args.refresh
    return MetricsSettings.model_validate(values)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app.metrics")
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare-dir", help="create and wipe <base>/<kind>; print its path")
    prep.add_argument("kind", choices=PROCESS_KINDS)
    prep.add_argument("--base", help="base directory (default: var/metrics)")
    serve = sub.add_parser("serve", help="serve the multiprocess metrics of a worker kind")
    serve.add_argument("kind", choices=PROCESS_KINDS)
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: the kind's port)")
    serve.add_argument("--redis-url", help="refresh stream gauges from this Redis")
    serve.add_argument("--gatherer", help="refresh the gauges of every stream of this gatherer")
    serve.add_argument("--book-partitions", type=int, default=8)
    serve.add_argument("--stream", action="append", default=[], help="an extra stream name")
    serve.add_argument("--refresh", type=float, help="seconds between stream refreshes")
    serve.add_argument(
        "--busy-port-ok",
        action="store_true",
        help="a port in use is a warning: run on without serving until SIGTERM",
    )
    return parser


def _streams(args: argparse.Namespace) -> list[str]:
    streams = list(args.stream)
    if args.gatherer:
        streams += StreamNames(args.gatherer, args.book_partitions).all_streams
    return streams


def serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if multiprocess_dir() is None:
        print(f"error: {MULTIPROC_ENV} must be exported before this starts", file=sys.stderr)
        return 2
    stopped = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        server = start_multiprocess_exporter(settings, args.kind, port=args.port)
    except OSError as exc:
        if not args.busy_port_ok:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"warning: not serving {args.kind} metrics: {exc}", flush=True)
        stopped.wait()
        return 0
    except MetricsConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    loop: StreamGaugeLoop | None = None
    streams = _streams(args)
    if args.redis_url and streams:
        client = redis.Redis.from_url(args.redis_url, socket_timeout=5, socket_connect_timeout=5)
        loop = StreamGaugeLoop(client, lambda: streams, settings.stream_refresh_s).start()
    print(f"serving {server.url}", flush=True)
    stopped.wait()
    if loop is not None:
        loop.stop()
    server.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "prepare-dir":
        print(prepare_multiproc_dir(_settings(args), args.kind))
        return 0
    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
