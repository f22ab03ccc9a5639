"""The `kalshi-data` command line (DESIGN §9): one entry point, one module per subcommand.

Every failure a user can cause (bad config, unreadable key, unreachable host, bad arguments)
ends as one `error:` line plus a `hint:` line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import sys

# Subcommand modules register themselves on `cli` when imported.
from app.cli import book as _book  # noqa: F401
from app.cli import coverage as _coverage  # noqa: F401
from app.cli import deadletters as _deadletters  # noqa: F401
from app.cli import dedup as _dedup  # noqa: F401
from app.cli import listener as _listener  # noqa: F401
from app.cli import migrate as _migrate  # noqa: F401
from app.cli import registry as _registry  # noqa: F401
from app.cli import sim as _sim  # noqa: F401  (registers `sim`)
from app.cli import status as _status  # noqa: F401  (registers `status`)
from app.cli import up as _up  # noqa: F401  (registers `up`)
from app.cli import verify as _verify  # noqa: F401
from app.cli.errors import run_guarded
from app.cli.group import cli


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    sys.exit(run_guarded(cli, argv))


__all__ = ["cli", "main"]
