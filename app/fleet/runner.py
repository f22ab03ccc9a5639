"""What `kalshi-data up` runs: the exchange (simulator unless a key is configured) and a live view.

The simulator runs as a supervised child process, exactly as a user would start it, so the demo
exercises the same sockets and protocol as production. With issue 3 the gatherer processes
(listener, ingest and job workers, beat) join the same supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.cli.errors import UserFacingError
from app.config import Settings
from app.fleet.live_view import ExchangeTarget, LiveView, StatusLine
from app.fleet.supervisor import ChildFailed, ChildSpec, Supervisor, python_command
from app.kalshi.auth import signer_from_settings
from app.kalshi.errors import KalshiError
from app.kalshi.rest import KalshiRest
from app.logs import log_event

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
    book_markets: int = 50


def simulator_spec(settings: Settings, options: UpOptions) -> ChildSpec:
    """The `kalshi-data sim` child for this run, settings overridden by `up`'s options."""
    sim = settings.simulator
    pick = lambda value, default: default if value is None else value  # noqa: E731
    args = [
        "sim",
        "--host", sim.host,
        "--port", str(pick(options.sim_port, sim.port)),
        "--markets", str(pick(options.sim_markets, sim.markets)),
        "--seed", str(pick(options.sim_seed, sim.seed)),
        "--rate", str(pick(options.sim_rate, sim.rate)),
        "--format", sim.format,
        "--ping-interval", str(sim.ping_interval_s),
    ]  # fmt: skip
    truth = pick(options.truth_dir, sim.truth_dir)
    if truth is not None:
        args += ["--truth", str(truth)]
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


def open_market_tickers(settings: Settings, target: ExchangeTarget, limit: int) -> list[str]:
    """Up to `limit` tickers of open markets, for the live view's order-book subscription."""
    if limit == 0:
        return []
    with KalshiRest.from_settings(
        settings.kalshi, rest_url=target.rest_url, signer=target.signer
    ) as rest:
        page = next(rest.market_pages(limit=min(limit, 1000), status="open"), None)
    return [str(market["ticker"]) for market in (page.items if page else [])][:limit]


def _forward_child_output(name: str, line: str) -> None:
    print(f"[{name}] {line}", file=sys.stderr, flush=True)


async def run_up(settings: Settings, options: UpOptions) -> int:
    """Run until Ctrl-C, SIGTERM or `--duration`; stop every child cleanly. Returns exit code."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    supervisor = Supervisor(on_output=_forward_child_output)
    interactive = sys.stdout.isatty()
    started = time.monotonic()
    code = 0
    try:
        target = await start_exchange(settings, options, supervisor)
        try:
            tickers = await asyncio.to_thread(
                open_market_tickers, settings, target, options.book_markets
            )
        except KalshiError as exc:
            raise UserFacingError(f"cannot list markets at {target.rest_url}: {exc}") from exc
        view = LiveView(target, tickers)
        status = StatusLine(view, interactive)
        log_event(log, "up_started", exchange=target.label, book_markets=len(tickers))
        watch = asyncio.create_task(view.run(stop))
        deadline = None if options.duration_s is None else started + options.duration_s
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
            line = status.tick()
            if line is not None:
                end = "" if interactive else "\n"
                print(f"\r\x1b[2K{line}" if interactive else line, end=end, flush=True)
            if deadline is not None and time.monotonic() >= deadline:
                stop.set()
        stop.set()
        await watch
        if interactive:
            print()
        elapsed = time.monotonic() - started
        print(f"stopped after {elapsed:.1f} s: {status.summary(elapsed)}", flush=True)
    finally:
        stop.set()
        codes = await supervisor.stop()
        for name, child_code in codes.items():
            if child_code not in (0, None, -signal.SIGTERM):
                log_event(log, "child_unclean_exit", logging.WARNING, child=name, code=child_code)
                code = 1
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
    return code
