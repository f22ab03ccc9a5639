"""`kalshi-data sim`: run the local Kalshi exchange simulator (DESIGN §8, docs/simulator.md).

Defaults come from the `simulator` section of the settings; flags override them. Prints one line,
`simulator listening on http://HOST:PORT`, once the socket is bound, then serves until SIGTERM or
SIGINT, on which it closes every connection and flushes the ground truth.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from app.cli.errors import UserFacingError
from app.cli.group import CliContext, cli, pass_cli_context
from app.kalshi.errors import KeyLoadError
from app.simulator.faults import PeriodicFaults
from app.simulator.options import REST_AUTH_MODES, WS_AUTH_MODES, SimOptions
from app.simulator.ratelimit import GENEROUS, TIERS, parse_budget
from app.simulator.server import SimulatorCrashed, serve


def _rate_limit(value: str | None) -> int | None:
    if value is None:
        return GENEROUS
    try:
        return parse_budget(value)
    except ValueError as exc:
        raise UserFacingError(
            str(exc), "e.g. --rate-limit basic, --rate-limit 500, --rate-limit off"
        ) from exc


def _truth_dir(path: Path | None) -> Path | None:
    if path is None:
        return None
    if path.exists() and not path.is_dir():
        raise UserFacingError(f"--truth {path} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserFacingError(
            f"--truth {path} is not a writable directory: {exc.strerror or exc}"
        ) from exc
    return path


@cli.command("sim")
@click.option("--host", help="Interface to listen on [settings: simulator.host].")
@click.option("--port", type=int, help="TCP port, 0 = any free port [simulator.port].")
@click.option("--markets", type=int, help="Markets that exist at start [simulator.markets].")
@click.option("--seed", type=int, help="Seed of the order flow and catalog [simulator.seed].")
@click.option("--rate", type=float, help="Order-flow events per second [simulator.rate].")
@click.option(
    "--truth",
    "truth",
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory for the ground truth (omit to record nothing) [simulator.truth_dir].",
)
@click.option(
    "--auth-public-key",
    type=click.Path(path_type=Path, dir_okay=False),
    help="RSA public key (PEM); when given, signatures are checked (401 when bad).",
)
@click.option(
    "--format",
    "wire_format",
    type=click.Choice(["current", "legacy"]),
    help="Field format: newest, or the late-2025 dual format [simulator.format].",
)
@click.option("--epoch-ms", type=int, help="Virtual start instant (Unix ms); default: now.")
@click.option("--max-events", type=int, help="Stop the order flow after N events.")
@click.option(
    "--ping-interval", type=float, help="Seconds between pings [simulator.ping_interval_s]."
)
@click.option(
    "--market-lifetime",
    type=float,
    default=3600.0,
    show_default=True,
    help="Virtual seconds from a market's open to its close (drives the lifecycle pace).",
)
@click.option(
    "--historical-cutoff-s",
    type=float,
    help="Trades older than S virtual seconds before the virtual now move to "
    "/historical/trades (default: the cutoff stays at the epoch, every trade is live).",
)
@click.option(
    "--ws-auth",
    type=click.Choice(WS_AUTH_MODES),
    default="required",
    show_default=True,
    help="With --auth-public-key: must the WebSocket upgrade be signed?",
)
@click.option(
    "--rest-auth",
    type=click.Choice(REST_AUTH_MODES),
    default="optional",
    show_default=True,
    help="With --auth-public-key: strict = unsigned REST requests get 401.",
)
@click.option(
    "--rate-limit",
    help=f"REST read budget: off, a tier ({', '.join(TIERS)}) or tokens/s [default {GENEROUS}].",
)
@click.option(
    "--max-buffer-mb",
    type=float,
    default=256.0,
    show_default=True,
    help="Per-connection send buffer before error 25 and a disconnect.",
)
@click.option("--drop-every", type=float, default=0.0, help="Drop every connection every S s.")
@click.option("--stall-every", type=float, default=0.0, help="Stall every connection every S s.")
@click.option("--stall-seconds", type=float, default=1.0, show_default=True, help="Stall length.")
@click.option("--skip-seq-every", type=int, default=0, help="Never send every Nth delta per sid.")
@click.option("--repeat-seq-every", type=int, default=0, help="Send every Nth delta per sid twice.")
@click.option("--malformed-every", type=float, default=0.0, help="Malformed JSON every S s.")
@click.option("--unknown-type-every", type=float, default=0.0, help="Unknown type every S s.")
@click.option("--rest-429-every", type=int, default=0, help="Answer every Nth REST call 429.")
@click.option("--rest-5xx-every", type=int, default=0, help="Answer every Nth REST call 503.")
@pass_cli_context
def sim(
    ctx: CliContext,
    host: str | None,
    port: int | None,
    markets: int | None,
    seed: int | None,
    rate: float | None,
    truth: Path | None,
    auth_public_key: Path | None,
    wire_format: str | None,
    epoch_ms: int | None,
    max_events: int | None,
    ping_interval: float | None,
    market_lifetime: float,
    historical_cutoff_s: float | None,
    ws_auth: str,
    rest_auth: str,
    rate_limit: str | None,
    max_buffer_mb: float,
    drop_every: float,
    stall_every: float,
    stall_seconds: float,
    skip_seq_every: int,
    repeat_seq_every: int,
    malformed_every: float,
    unknown_type_every: float,
    rest_429_every: int,
    rest_5xx_every: int,
) -> None:
    """Run the local Kalshi exchange simulator (REST, WebSocket, ground truth, faults)."""
    settings = ctx.settings.simulator
    periodic = {
        "drop-every": drop_every,
        "stall-every": stall_every,
        "stall-seconds": stall_seconds,
        "skip-seq-every": skip_seq_every,
        "repeat-seq-every": repeat_seq_every,
        "malformed-every": malformed_every,
        "unknown-type-every": unknown_type_every,
        "rest-429-every": rest_429_every,
        "rest-5xx-every": rest_5xx_every,
    }
    for name, value in periodic.items():
        if value < 0 or (name == "stall-seconds" and value == 0):
            raise UserFacingError(f"--{name} must be positive (0 disables the periodic fault)")
    options = SimOptions(
        host=host if host is not None else settings.host,
        port=port if port is not None else settings.port,
        markets=markets if markets is not None else settings.markets,
        seed=seed if seed is not None else settings.seed,
        rate=rate if rate is not None else settings.rate,
        truth_dir=truth if truth is not None else settings.truth_dir,
        legacy=(wire_format or settings.format) == "legacy",
        epoch_ms=epoch_ms,
        max_events=max_events,
        ping_interval_s=ping_interval if ping_interval is not None else settings.ping_interval_s,
        market_lifetime_s=market_lifetime,
        historical_cutoff_s=historical_cutoff_s,
        public_key_path=auth_public_key,
        ws_auth=ws_auth,
        rest_auth=rest_auth,
        rate_limit=_rate_limit(rate_limit),
        max_buffer_bytes=int(max_buffer_mb * (1 << 20)),
        faults=PeriodicFaults(
            drop_every_s=drop_every,
            stall_every_s=stall_every,
            stall_seconds=stall_seconds,
            skip_seq_every=skip_seq_every,
            repeat_seq_every=repeat_seq_every,
            malformed_every_s=malformed_every,
            unknown_type_every_s=unknown_type_every,
            rest_429_every=rest_429_every,
            rest_5xx_every=rest_5xx_every,
        ),
    )
    problems = options.problems()
    if problems:
        raise UserFacingError(problems[0], "run 'kalshi-data sim --help' for the valid ranges")
    options = SimOptions(**{**options.__dict__, "truth_dir": _truth_dir(options.truth_dir)})

    def announce(line: str) -> None:
        click.echo(line)

    try:
        asyncio.run(serve(options, announce))
    except SimulatorCrashed as exc:
        raise UserFacingError(
            f"simulator stopped after an internal error: {exc}",
            "the traceback is in the log above; the truth written so far was flushed",
        ) from exc
    except KeyLoadError as exc:
        raise UserFacingError(
            f"--auth-public-key: {exc}", "give an RSA public key in PEM (SubjectPublicKeyInfo)"
        ) from exc
    except OSError as exc:
        raise UserFacingError(
            f"cannot listen on {options.host}:{options.port}: {exc.strerror or exc}",
            "choose another --port (0 picks a free one) or stop what is using it",
        ) from exc
