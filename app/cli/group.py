"""The root `kalshi-data` click group and the per-process context it builds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from app import __version__
from app.config import Settings, load_settings
from app.logs import configure_logging


@dataclass
class CliContext:
    """What every subcommand receives: the settings, read once at start."""

    settings: Settings
    config_path: Path | None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="KD_CONFIG",
    help="YAML settings file (KD_* environment variables override it).",
)
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]))
@click.version_option(__version__, prog_name="kalshi-data")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, log_level: str | None) -> None:
    """Capture Kalshi market data completely, deduplicated and queryable."""
    settings = load_settings(config_path)
    if log_level:
        settings.logging.level = log_level  # type: ignore[assignment]
    configure_logging(settings.logging.level, settings.logging.format)
    ctx.obj = CliContext(settings=settings, config_path=config_path)


pass_cli_context = click.make_pass_decorator(CliContext)
