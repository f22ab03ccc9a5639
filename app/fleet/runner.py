"""What `kalshi-data up` runs: whole gatherers against the simulator or the real exchange.

Steps (DESIGN §2): start the exchange (the simulator as a supervised child unless a Kalshi key is
configured), migrate the database, sync the market registry once, then start the ingest workers,
the jobs worker, beat and the listener as supervised children, and show a live status line read
from Redis and PostgreSQL. On Ctrl-C, SIGTERM or `--duration`: the jobs worker stops first (its
REST calls need the exchange), then the simulator, then the listener (it flushes everything it
holds to Redis), the streams are drained into the database, then beat and the ingest workers
stop. Nothing the listener received is lost on a clean stop.

With `--gatherers N` (N > 1) every step runs for each of N gatherers (app/fleet/members.py:
own name, database, metrics ports), all against the one exchange, plus a production database
and the deduplicator's worker and beat (app/fleet/deduplicator.py). On the way down every
gatherer stops and drains as above, the deduplicator stops, and `up` runs the last dedup pass
itself, so production is complete when it exits.
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

from app.cli.errors import EXIT_USAGE, UserFacingError
from app.config import Settings
from app.db.engine import DatabaseUnavailable
from app.db.migrations import MigrationError, upgrade
from app.dedup import MERGED_TABLES, DedupReport
from app.fleet.deduplicator import (
    DEDUP_BEAT,
    DEDUP_EXPORTER,
    DEDUP_WORKER,
    dedup_env,
    dedup_settings,
    dedup_specs,
    final_dedup,
)
from app.fleet.gatherer import gatherer_env, gatherer_specs
from app.fleet.members import FleetSettingsError, Member, fleet_env, gatherer_members
from app.fleet.pipeline import (
    FleetStatusLine,
    PipelineReader,
    PipelineSnapshot,
    PipelineStatusLine,
    count_rows,
    render_counts,
    render_member_summary,
)
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
    gatherers: int = 1
    dedup_interval_s: float = 10.0
    final_dedup_timeout_s: float = 120.0


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
    """Create and migrate the settings' database (idempotent): a gatherer's or production."""
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


async def _start_children(supervisor: Supervisor, specs: list[ChildSpec]) -> None:
    """Start children in order; one that fails before it is ready is one error line."""
    for spec in specs:
        try:
            await supervisor.start(spec)
        except ChildFailed as exc:
            raise UserFacingError(str(exc)) from exc


async def _stop_children(supervisor: Supervisor, names: list[str]) -> None:
    """Stop these children at once (one per gatherer of the same kind, say); absent ones are
    skipped."""
    running = [name for name in names if supervisor.pid(name) is not None]
    await asyncio.gather(*(supervisor.stop_child(name) for name in running))


def sync_member_registry(settings: Settings, target: ExchangeTarget) -> None:
    """`sync_registry`, a failure of the exchange being one error line."""
    try:
        sync_registry(settings, target)
    except KalshiError as exc:
        raise UserFacingError(f"cannot sync the registry from {target.rest_url}: {exc}") from exc


async def prepare_databases(
    members: list[Member], dedup: Settings | None, target: ExchangeTarget
) -> None:
    """Migrate every database (one after another: alembic's context is process-global), then
    sync each gatherer's registry (at once)."""
    for member in members:
        await asyncio.to_thread(prepare_database, member.settings)
    if dedup is not None:
        await asyncio.to_thread(prepare_database, dedup)
    await asyncio.gather(
        *(asyncio.to_thread(sync_member_registry, m.settings, target) for m in members)
    )


async def start_children(supervisor: Supervisor, groups: list[list[ChildSpec]]) -> None:
    """Each group's children in order, the groups (gatherers, the deduplicator) side by side:
    a worker takes seconds to be ready, and N of them waited for in turn would eat into
    `--duration`."""
    try:
        async with asyncio.TaskGroup() as group:
            for specs in groups:
                group.create_task(_start_children(supervisor, specs))
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None  # the first child's error, as one error line


def _member_specs(member: Member, target: ExchangeTarget, options: UpOptions) -> list[ChildSpec]:
    """One gatherer's children; a fleet member's also learn their beat entries and metrics."""
    env = gatherer_env(member.settings, target.rest_url, target.ws_url, options.config_path)
    if member.suffix:
        env.update(fleet_env(member.settings))
    return gatherer_specs(
        member.settings, env, options.run_dir, options.ingest_concurrency, member.suffix
    )


class StatusBoard:
    """What the live line reads and shows: one gatherer's full line, or with several gatherers
    a short segment each and production's trades."""

    def __init__(self, label: str, members: list[Member], dedup: Settings | None) -> None:
        self.readers = {m.name: _reader(m.settings) for m in members}
        self.production = None if dedup is None else _reader(dedup, streams=False)
        self.single = PipelineStatusLine(label)
        self.fleet = FleetStatusLine(label, self.readers)

    def read(self) -> tuple[dict[str, PipelineSnapshot], PipelineSnapshot | None]:
        snapshots = {name: reader.read() for name, reader in self.readers.items()}
        return snapshots, None if self.production is None else self.production.read()

    async def line(self, now: float) -> str:
        snapshots, production = await asyncio.to_thread(self.read)
        if production is None:
            (snapshot,) = snapshots.values()
            return self.single.render(snapshot, now)
        return self.fleet.render(snapshots, production, now)

    def close(self) -> None:
        for reader in [*self.readers.values(), *([self.production] if self.production else [])]:
            reader.close()


def _reader(settings: Settings, streams: bool = True) -> PipelineReader:
    names = StreamNames(settings.gatherer, settings.streams.book_partitions) if streams else None
    return PipelineReader(settings.redis_url, settings.database_url, names, settings.gatherer)


async def watch(
    stop: asyncio.Event, supervisor: Supervisor, board: StatusBoard, deadline: float | None
) -> None:
    """Show the live line until Ctrl-C, SIGTERM or the deadline; a child failed for good
    ends the run with its error."""
    interactive = sys.stdout.isatty()
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
        line = await board.line(now)
        if interactive:
            print(f"\r\x1b[2K{line}", end="", flush=True)
        elif now - last_print >= 5:
            print(line, flush=True)
            last_print = now
        if deadline is not None and now >= deadline:
            stop.set()
    if interactive:
        print()


async def stop_gatherers(
    supervisor: Supervisor, members: list[Member], board: StatusBoard, options: UpOptions
) -> dict[str, PipelineSnapshot]:
    """Jobs, the exchange, the listeners, then every stream drained; the final readings."""
    # Jobs talk to the exchange's REST API (backfill, registry): stopped while it still
    # answers, a job in flight finishes instead of retrying against a closed port.
    await _stop_children(supervisor, [m.child("jobs") for m in members])
    if supervisor.pid("simulator") is not None:
        # The exchange stops first, so the listener has received everything it sent and the
        # simulator's final books are exactly what the capture can rebuild.
        await supervisor.stop_child("simulator")
        await asyncio.sleep(1.0)
    # The listener flushes into Redis on SIGTERM; then everything in Redis is drained.
    await _stop_children(supervisor, [m.child("listener") for m in members])
    drained = await asyncio.gather(
        *(drain_streams(board.readers[m.name], options.drain_timeout_s) for m in members)
    )
    finals = {}
    for member, final in zip(members, drained, strict=True):
        finals[member.name] = final
        if not _drained(final):
            log_event(
                log, "streams_not_drained", logging.WARNING,
                gatherer=member.name, lag=final.lag, pending=final.pending,
            )  # fmt: skip
            whose = f" of {member.name}" if member.suffix else ""
            print(
                f"warning: streams{whose} still hold entries; they stay in Redis and are "
                "drained on the next start",
                file=sys.stderr,
            )
    return finals


async def finish_deduplicator(
    supervisor: Supervisor, members: list[Member], dedup: Settings, options: UpOptions
) -> DedupReport | None:
    """Every other child stopped, then `up`'s own last pass: production complete at exit.

    The gatherers' beats and workers and the deduplicator's stop first, so the last pass is
    the only writer left (no run of the worker to wait for on a cursor lock). None when the
    pass failed (production unreachable), reported on stderr.
    """
    await _stop_children(supervisor, [m.child("beat") for m in members] + [DEDUP_BEAT])
    await _stop_children(
        supervisor,
        [m.child(kind) for m in members for kind in ("ingest", "ingest-metrics", "jobs-metrics")]
        + [DEDUP_WORKER, DEDUP_EXPORTER],
    )
    try:
        return await asyncio.to_thread(final_dedup, dedup, options.final_dedup_timeout_s)
    except (DatabaseUnavailable, psycopg2.Error) as exc:
        log_event(log, "dedup_final_pass_failed", logging.ERROR, error=str(exc).strip())
        print(f"error: the last dedup pass failed: {str(exc).strip()}", file=sys.stderr)
        return None


def fleet_summary(
    label: str,
    board: StatusBoard,
    members: list[Member],
    dedup: Settings,
    report: DedupReport | None,
) -> str:
    """The final report of a fleet, once everything stopped: production's rows, then each
    gatherer's (exact counts of the merged tables, so the union can be checked by eye)."""
    tables = [spec.name for spec in MERGED_TABLES]
    production = count_rows(dedup.dedup.production_url or "", tables)
    snapshots, _ = board.read()
    lines = [f"{label} | {len(members)} gatherers | production: {render_counts(production)}"]
    for member in members:
        counts = count_rows(member.settings.database_url, tables)
        lines.append(f"  {render_member_summary(member.name, counts, snapshots[member.name])}")
    if not _production_complete(report):
        skipped = ",".join(report.unreachable) if report else "?"
        lines.append(f"  production may be incomplete: last pass failed or skipped {skipped}")
    return "\n".join(lines)


def _production_complete(report: DedupReport | None) -> bool:
    return report is not None and report.complete and not report.unreachable


async def run_up(settings: Settings, options: UpOptions) -> int:
    """Run until Ctrl-C, SIGTERM or `--duration`; stop every child cleanly. Returns exit code."""
    try:
        members = gatherer_members(settings, options.gatherers)
        fleet = len(members) > 1
        dedup = dedup_settings(settings, members, options.dedup_interval_s) if fleet else None
    except FleetSettingsError as exc:
        raise UserFacingError(str(exc), exc.hint, EXIT_USAGE) from None
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    supervisor = Supervisor(on_output=_forward_child_output)
    started = time.monotonic()
    board: StatusBoard | None = None
    code = 0
    try:
        target = await start_exchange(settings, options, supervisor)
        label = target.label if fleet else f"{target.label} {settings.gatherer}"
        board = StatusBoard(label, members, dedup)
        await prepare_databases(members, dedup, target)
        options.run_dir.mkdir(parents=True, exist_ok=True)
        groups = [_member_specs(member, target, options) for member in members]
        if dedup is not None:
            env = dedup_env(dedup, options.config_path)
            groups.append(dedup_specs(dedup, env, options.run_dir))
        await start_children(supervisor, groups)
        log_event(
            log, "up_started", exchange=target.label, gatherer=",".join(m.name for m in members)
        )
        deadline = None if options.duration_s is None else started + options.duration_s
        await watch(stop, supervisor, board, deadline)
        finals = await stop_gatherers(supervisor, members, board, options)
        if dedup is None:
            summary = board.single.render(finals[settings.gatherer], time.monotonic())
        else:
            report = await finish_deduplicator(supervisor, members, dedup, options)
            summary = await asyncio.to_thread(fleet_summary, label, board, members, dedup, report)
            code = 0 if _production_complete(report) else 1
        elapsed = time.monotonic() - started
        print(f"stopped after {elapsed:.1f} s: {summary}", flush=True)
    finally:
        stop.set()
        codes = await supervisor.stop()
        if board is not None:
            board.close()
        for name, child_code in codes.items():
            if child_code not in (0, None, -signal.SIGTERM):
                log_event(log, "child_unclean_exit", logging.WARNING, child=name, code=child_code)
                code = 1
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
    return code
