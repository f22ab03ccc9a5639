"""`kalshi-data sim`: run the local Kalshi exchange simulator (DESIGN §8, docs/simulator.md).

Every flag is generated from a field of `app.simulator.options.SimOptions` (the one description
of the simulator's settings); defaults come from the `simulator` section of the settings, flags
override them. Prints one line, `simulator listening on http://HOST:PORT`, once the socket is
bound, then serves until SIGTERM or SIGINT, on which it closes every connection and flushes the
ground truth.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import click
from pydantic import ValidationError

from app.cli.errors import UserFacingError
from app.cli.group import CliContext, cli, pass_cli_context
from app.kalshi.errors import KeyLoadError
from app.simulator.options import SimOptions, flag_of
from app.simulator.server import SimulatorCrashed, serve

# Hints for the flags whose bad values deserve an example.
_HINTS = {
    "rate_limit": "e.g. --rate-limit basic, --rate-limit 500, --rate-limit off",
}


def _click_type(name: str) -> Any:
    """The click parameter type of a `SimOptions` field (from its annotation)."""
    meta = flag_of(name)
    if meta.text:
        return str
    if meta.kind == "dir":
        return click.Path(path_type=Path, file_okay=False)
    if meta.kind == "file":
        return click.Path(path_type=Path, dir_okay=False)
    annotation = SimOptions.model_fields[name].annotation
    if get_origin(annotation) is not Literal:  # `T | None` -> T
        annotation = next((a for a in get_args(annotation) if a is not type(None)), annotation)
    if get_origin(annotation) is Literal:
        return click.Choice([str(choice) for choice in get_args(annotation)])
    return annotation


def _help(name: str) -> str:
    info = SimOptions.model_fields[name]
    default = info.default
    shown = "unset" if default is None else default
    return f"{info.description} [settings: simulator.{name}; default: {shown}]"


def sim_options(func: Any) -> Any:
    """Add one click option per `SimOptions` field (default None: the settings decide)."""
    for name in reversed(list(SimOptions.model_fields)):
        meta = flag_of(name)
        if SimOptions.model_fields[name].annotation is bool:
            decls = [f"{meta.flag}/--no-{meta.flag[2:]}", name]
            func = click.option(*decls, default=None, help=_help(name))(func)
            continue
        func = click.option(
            meta.flag, name, type=_click_type(name), metavar=meta.metavar, help=_help(name)
        )(func)
    return func


def build_options(settings: SimOptions, given: dict[str, Any]) -> SimOptions:
    """Settings overridden by the flags that were given, validated as one `SimOptions`."""
    values = settings.model_dump()
    values.update({k: v for k, v in given.items() if v is not None})
    try:
        return SimOptions.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]) if error["loc"] else ""
        message = error["msg"].removeprefix("Value error, ")
        if name in SimOptions.model_fields:
            flag = flag_of(name).flag
            if not message.startswith("--") and error["type"] != "value_error":
                message = f"{flag}: {message}"
        raise UserFacingError(
            message, _HINTS.get(name, "run 'kalshi-data sim --help' for the valid ranges")
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
@sim_options
@pass_cli_context
def sim(ctx: CliContext, **given: Any) -> None:
    """Run the local Kalshi exchange simulator (REST, WebSocket, ground truth, faults)."""
    options = build_options(ctx.settings.simulator, given)
    options = options.model_copy(update={"truth_dir": _truth_dir(options.truth_dir)})

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
