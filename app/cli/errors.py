"""Turning expected failures into one clear error line, a hint and an exit code."""

from __future__ import annotations

import sys

import click

from app.config import ConfigError
from app.kalshi.errors import KalshiError, KeyLoadError

EXIT_RUNTIME = 1
EXIT_USAGE = 2


class UserFacingError(Exception):
    """An error whose message is already written for the person at the terminal."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int = 1) -> None:
        super().__init__(message)
        self.hint = hint
        self.exit_code = exit_code


def _hint_for(exc: BaseException) -> str | None:
    if isinstance(exc, UserFacingError):
        return exc.hint
    if isinstance(exc, ConfigError):
        return "check the file given with --config and any KD_* variables; see configs/example.yaml"
    if isinstance(exc, KeyLoadError):
        return "kalshi.private_key_path must name a readable RSA PEM file (PKCS#1 or PKCS#8)"
    if isinstance(exc, KalshiError):
        return "check kalshi.rest_url / kalshi.ws_url and that the exchange (or simulator) is up"
    if isinstance(exc, OSError):
        return "check the host, port and paths named above"
    return None


def fail(message: str, hint: str | None, code: int) -> int:
    click.echo(f"error: {message}", err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)
    return code


def run_guarded(command: click.Command, argv: list[str] | None) -> int:
    """Run the click command; map every expected failure to `error:`/`hint:` lines."""
    try:
        command.main(args=argv, prog_name="kalshi-data", standalone_mode=False)
    except click.exceptions.Abort:
        return fail("aborted", None, EXIT_RUNTIME)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code or 0)
    except click.ClickException as exc:
        hint = "run 'kalshi-data --help' or 'kalshi-data COMMAND --help'"
        return fail(exc.format_message(), hint, EXIT_USAGE)
    except (ConfigError, KalshiError, UserFacingError, OSError) as exc:
        code = EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_RUNTIME
        if isinstance(exc, UserFacingError):
            code = exc.exit_code
        return fail(str(exc), _hint_for(exc), code)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    return 0
