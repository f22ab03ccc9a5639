"""What `kalshi-data up` runs: one whole gatherer against the simulator or the real exchange.

Steps (DESIGN §2): start the exchange (the simulator as a supervised child unless a Kalshi key is
configured), migrate the database, sync the market registry once, then start the ingest workers,
the jobs worker, beat and the listener as supervised children, and show a live status line read
from Redis and PostgreSQL. On Ctrl-C, SIGTERM or `--duration`: the jobs worker stops first (its
REST calls need the exchange), then the simulator, then the listener (it flushes everything it
holds to Redis), the streams are drained into the database, then beat and the ingest workers
stop. Nothing the listener received is lost on a clean stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shlex
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2

from app.cli.errors import UserFacingError
from app.config import Settings
from app.db.engine import DatabaseUnavailable
from app.db.migrations import MigrationError, upgrade
from app.fleet.gatherer import gatherer_env, gatherer_specs
from app.fleet.pipeline import PipelineReader, PipelineSnapshot, PipelineStatusLine
from app.fleet.supervisor import ChildFailed, ChildSpec, Supervisor, python_command
from app.kalshi.auth import Signer, signer_from_settings
from app.kalshi.errors import KalshiError
from app.kalshi.rest import KalshiRest
from app.logs import log_event
from app.registry import full_sync
from app.streams import StreamNames

log = logging.getLogger("kalshi_data.up")

SIM_READY_TEXT = "simulator listening on"
_URL = re.compile(r"https?://[^\s/]+")


@dataclass(frozen=True)
class UpOptions:
    """Command-line choices of `kalshi-data up`; None means "use the settings"."""

    duration_s: float | None = None
    sim_markets: int | None = None
    sim_rate: float | None = None
    sim_seed: int | None = None
    sim_port: int | None = None
    truth_dir: Path | None = None
    sim_extra: str = ""
    config_path: Path | None = None
    ingest_concurrency: int = 2
    drain_timeout_s: float = 60.0
    run_dir: Path = Path("var")


@dataclass(frozen=True)
class ExchangeTarget:
    """Where the exchange is, and how to sign for it (no signer = unsigned requests)."""

    label: str
    rest_url: str
    ws_url: str
    signer: Signer | None = None


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def simulator_spec(settings: Settings, options: UpOptions) -> ChildSpec:
    """The `kalshi-data sim` child for this run, settings overridden by `up`'s options."""
    sim = settings.simulator
    args = [
        "sim",
        "--host", sim.host,
        "--port", str(_pick(options.sim_port, sim.port)),
        "--markets", str(_pick(options.sim_markets, sim.markets)),
        "--seed", str(_pick(options.sim_seed, sim.seed)),
        "--rate", str(_pick(options.sim_rate, sim.rate)),
        "--format", sim.format,
        "--ping-interval", str(sim.ping_interval_s),
    ]  # fmt: skip
    truth = _pick(options.truth_dir, sim.truth_dir)
    if truth is not None:
        args += ["--truth", str(truth)]
    args += shlex.split(options.sim_extra)
    return ChildSpec(name="simulator", argv=python_command(*args), ready_text=SIM_READY_TEXT)


async def start_exchange(
    settings: Settings, options: UpOptions, supervisor: Supervisor
) -> ExchangeTarget:
    """The real exchange when a key is configured, else a freshly started simulator."""
    kalshi = settings.kalshi
    signer = signer_from_settings(kalshi)
    if signer is not None:
        return ExchangeTarget("kalshi", kalshi.rest_url, kalshi.ws_url, signer)
    try:
        line = await supervisor.start(simulator_spec(settings, options))
    except ChildFailed as exc:
        raise UserFacingError(
            str(exc), "is the simulator port free? choose another with --sim-port (0 = any)"
        ) from exc
    match = _URL.search(line)
    if match is None:
        raise UserFacingError(f"simulator said it was ready but gave no URL: {line!r}")
    base = match.group(0)
    ws_base = base.replace("http", "ws", 1)
    return ExchangeTarget(f"sim {base}", f"{base}/trade-api/v2", f"{ws_base}/trade-api/ws/v2")


def prepare_database(settings: Settings) -> None:
    """Create and migrate the gatherer database (idempotent)."""
    try:
        result = upgrade(settings.database_url)
    except (DatabaseUnavailable, MigrationError) as exc:
        raise UserFacingError(
            f"cannot prepare the database: {exc}",
            "is PostgreSQL running? set KD_DATABASE_URL (make up starts it for you)",
        ) from exc
    log_event(log, "database_ready", database=result.database, revision=result.after)


def sync_registry(settings: Settings, target: ExchangeTarget) -> None:
    """One full registry sync so the listener starts with every market (REG, DESIGN §6)."""
    with (
        KalshiRest.from_settings(
            settings.kalshi, rest_url=target.rest_url, signer=target.signer
        ) as client,
        contextlib.closing(psycopg2.connect(settings.database_url)) as conn,
    ):
        report = full_sync(conn, client, settings.registry)
    log_event(log, "registry_synced", **report.summary())


def _forward_child_output(name: str, line: str) -> None:
    print(f"[{name}] {line}", file=sys.stderr, flush=True)


def _drained(snapshot: PipelineSnapshot) -> bool:
    return snapshot.lag == 0 and snapshot.pending == 0


async def drain_streams(reader: PipelineReader, timeout_s: float) -> PipelineSnapshot:
    """Wait until every stream entry is in the database (lag and pending 0) or time runs out."""
    deadline = time.monotonic() + timeout_s
    snapshot = await asyncio.to_thread(reader.read)
    while not _drained(snapshot) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        snapshot = await asyncio.to_thread(reader.read)
    return snapshot


async def run_up(settings: Settings, options: UpOptions) -> int:
    """Run until Ctrl-C, SIGTERM or `--duration`; stop every child cleanly. Returns exit code."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    supervisor = Supervisor(on_output=_forward_child_output)
    interactive = sys.stdout.isatty()
    started = time.monotonic()
    names = StreamNames(settings.gatherer, settings.streams.book_partitions)
    reader = PipelineReader(settings.redis_url, settings.database_url, names, settings.gatherer)
    code = 0
    try:
        target = await start_exchange(settings, options, supervisor)
        await asyncio.to_thread(prepare_database, settings)
        try:
            await asyncio.to_thread(sync_registry, settings, target)
        except KalshiError as exc:
            raise UserFacingError(
                f"cannot sync the registry from {target.rest_url}: {exc}"
            ) from exc
        options.run_dir.mkdir(parents=True, exist_ok=True)
        env = gatherer_env(settings, target.rest_url, target.ws_url, options.config_path)
        for spec in gatherer_specs(settings, env, options.run_dir, options.ingest_concurrency):
            try:
                await supervisor.start(spec)
            except ChildFailed as exc:
                raise UserFacingError(str(exc)) from exc
        log_event(log, "up_started", exchange=target.label, gatherer=settings.gatherer)
        status = PipelineStatusLine(f"{target.label} {settings.gatherer}")
        deadline = None if options.duration_s is None else started + options.duration_s
        last_print = 0.0
        while not stop.is_set():
            timeout = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
            waiters: set[asyncio.Future[Any]] = {
                asyncio.ensure_future(stop.wait()),
                supervisor.failure,
            }
            done, pending = await asyncio.wait(
                waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending - {supervisor.failure}:
                task.cancel()
            if supervisor.failure in done:
                raise UserFacingError(str(supervisor.failure.result()))
            now = time.monotonic()
            line = status.render(await asyncio.to_thread(reader.read), now)
            if interactive:
                print(f"\r\x1b[2K{line}", end="", flush=True)
            elif now - last_print >= 5:
                print(line, flush=True)
                last_print = now
            if deadline is not None and now >= deadline:
                stop.set()
        if interactive:
            print()
        if supervisor.pid("jobs") is not None:
            # Jobs talk to the exchange's REST API (backfill, registry): stopped while it still
            # answers, a job in flight finishes instead of retrying against a closed port.
            await supervisor.stop_child("jobs")
        if supervisor.pid("simulator") is not None:
            # The exchange stops first, so the listener has received everything it sent and the
            # simulator's final books are exactly what the capture can rebuild.
            await supervisor.stop_child("simulator")
            await asyncio.sleep(1.0)
        # The listener flushes into Redis on SIGTERM; then everything in Redis is drained.
        await supervisor.stop_child("listener")
        final = await drain_streams(reader, options.drain_timeout_s)
        if not _drained(final):
            log_event(
                log, "streams_not_drained", logging.WARNING, lag=final.lag, pending=final.pending
            )
            print(
                "warning: streams still hold entries; they stay in Redis and are "
                "drained on the next start",
                file=sys.stderr,
            )
        elapsed = time.monotonic() - started
        print(
            f"stopped after {elapsed:.1f} s: {status.render(final, time.monotonic())}", flush=True
        )
    finally:
        stop.set()
        codes = await supervisor.stop()
        reader.close()
        for name, child_code in codes.items():
            if child_code not in (0, None, -signal.SIGTERM):
                log_event(log, "child_unclean_exit", logging.WARNING, child=name, code=child_code)
                code = 1
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
    return code
