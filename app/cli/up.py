"""`kalshi-data up`: the main job, one gatherer (or N and the deduplicator) as supervised child
processes, with a live status line (docs/up.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from app.cli.group import CliContext, cli, pass_cli_context
from app.fleet.members import MAX_GATHERERS
from app.fleet.runner import UpOptions, run_up


@cli.command("up")
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop cleanly after this many seconds (default: run until Ctrl-C).",
)
@click.option(
    "--sim-markets",
    type=click.IntRange(min=1),
    default=None,
    help="Simulator: markets at start (default: simulator.markets).",
)
@click.option(
    "--sim-rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Simulator: order-flow frames per second (default: simulator.rate).",
)
@click.option("--sim-seed", type=int, default=None, help="Simulator: random seed.")
@click.option(
    "--sim-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Simulator port; 0 picks a free one (default: simulator.port).",
)
@click.option(
    "--truth",
    "truth_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Simulator: write ground truth into this directory.",
)
@click.option(
    "--sim-extra",
    default="",
    metavar="FLAGS",
    help='More simulator flags, e.g. "--skip-seq-every 500 --drop-every 30" (faults).',
)
@click.option(
    "--ingest-workers",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Prefork children of the ingest worker.",
)
@click.option(
    "--gatherers",
    type=click.IntRange(1, MAX_GATHERERS),
    default=1,
    show_default=True,
    help="Gatherers to run, each with its own database and Redis keys; more than one adds a "
    "production database and the deduplicator.",
)
@click.option(
    "--dedup-interval",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="With --gatherers > 1: seconds between the deduplicator's runs.",
)
@click.option(
    "--run-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("var"),
    show_default=True,
    help="Where beat keeps its schedule file.",
)
@pass_cli_context
def up(
    ctx: CliContext,
    duration: float | None,
    sim_markets: int | None,
    sim_rate: float | None,
    sim_seed: int | None,
    sim_port: int | None,
    truth_dir: Path | None,
    sim_extra: str,
    ingest_workers: int,
    gatherers: int,
    dedup_interval: float,
    run_dir: Path,
) -> None:
    """Run one whole gatherer: exchange (simulator unless a key is set), listener, ingest, beat.

    With --gatherers N: N gatherers against the one exchange, and the deduplicator merging
    them into a production database."""
    options = UpOptions(
        duration_s=duration,
        sim_markets=sim_markets,
        sim_rate=sim_rate,
        sim_seed=sim_seed,
        sim_port=sim_port,
        truth_dir=truth_dir,
        sim_extra=sim_extra,
        config_path=ctx.config_path,
        ingest_concurrency=ingest_workers,
        run_dir=run_dir,
        gatherers=gatherers,
        dedup_interval_s=dedup_interval,
    )
    code = asyncio.run(run_up(ctx.settings, options))
    if code:
        raise SystemExit(code)
