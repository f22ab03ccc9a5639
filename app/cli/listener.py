"""`kalshi-data listener`: run the WebSocket listener until SIGTERM/SIGINT (docs/listener.md).

Settings come from the usual config (`kalshi`, `streams`, `registry`, `redis_url`,
`gatherer`); listener knobs from the `listener` settings section, overridden by the flags below.
Bad values end as one `error:` line plus a `hint:`.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from urllib.parse import urlsplit

import click
from pydantic import ValidationError

from app.cli.errors import UserFacingError
from app.cli.group import CliContext, cli, pass_cli_context
from app.config import ListenerSettings
from app.listener.runner import Listener
from app.streams import JournalFull, JournalLocked


@cli.command("listener")
@click.option("--ws-url", help="Kalshi WebSocket URL (default: kalshi.ws_url).")
@click.option(
    "--rest-url", help="REST URL for the fallback market list (default: kalshi.rest_url)."
)
@click.option("--markets-per-connection", type=int, help="Orderbook markets per connection (250).")
@click.option(
    "--staleness-timeout", type=float, help="Seconds without a frame before a probe (30)."
)
@click.option("--backoff-base", type=float, help="First reconnect delay in seconds (1).")
@click.option("--backoff-max", type=float, help="Reconnect delay cap in seconds (60).")
@click.option(
    "--journal-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Spill journal base directory (default: streams.journal_dir).",
)
@click.option("--no-rest-fallback", is_flag=True, help="Never list markets over REST.")
@pass_cli_context
def listener(
    ctx: CliContext,
    ws_url: str | None,
    rest_url: str | None,
    markets_per_connection: int | None,
    staleness_timeout: float | None,
    backoff_base: float | None,
    backoff_max: float | None,
    journal_dir: Path | None,
    no_rest_fallback: bool,
) -> None:
    """Capture every WebSocket frame into the gatherer's Redis streams."""
    settings = ctx.settings
    overrides = {
        "ws_url": ws_url,
        "rest_url": rest_url,
        "markets_per_connection": markets_per_connection,
        "staleness_timeout_s": staleness_timeout,
        "backoff_base_s": backoff_base,
        "backoff_max_s": backoff_max,
    }
    try:
        config = ListenerSettings.model_validate(
            {
                **settings.listener.model_dump(),
                **{k: v for k, v in overrides.items() if v is not None},
                "use_rest_fallback": settings.listener.use_rest_fallback and not no_rest_fallback,
            }
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UserFacingError(
            f"invalid listener option {where}: {first['msg']}", "see 'kalshi-data listener -h'", 2
        ) from exc
    url = config.ws_url or settings.kalshi.ws_url
    if urlsplit(url).scheme not in ("ws", "wss"):
        raise UserFacingError(
            f"invalid WebSocket URL {url!r}", "use ws://HOST:PORT/trade-api/ws/v2 or wss://...", 2
        )
    if journal_dir is not None:
        settings = settings.model_copy(
            update={"streams": settings.streams.model_copy(update={"journal_dir": journal_dir})}
        )
    runner = Listener(settings, config)
    try:
        asyncio.run(_run(runner))
    except JournalLocked as exc:
        raise UserFacingError(
            str(exc), "another listener of this gatherer runs here; stop it or use --journal-dir"
        ) from exc
    except JournalFull as exc:
        raise UserFacingError(
            f"spill journal full: {exc}", "free disk or raise streams.journal_max_bytes"
        ) from exc


async def _run(runner: Listener) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await runner.run(stop)
