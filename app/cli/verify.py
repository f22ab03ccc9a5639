"""`kalshi-data verify --truth DIR`: prove a capture exact against the simulator's truth.

Exit 0 when every table and every final book is exact, 1 when anything differs, 2 when the
input is unusable (missing or unreadable truth, unreachable or unmigrated database): then one
`error:` line and a `hint:` line, never a traceback. docs/verify.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import psycopg2

from app.cli.errors import EXIT_RUNTIME, EXIT_USAGE, UserFacingError
from app.cli.group import CliContext, cli, pass_cli_context
from app.db.engine import DatabaseUnavailable, first_line
from app.simulator.truth import TruthError
from app.verify import Report, VerifyInputError, render_text, verify_capture

_DB_HINT = "check --database-url (or KD_DATABASE_URL / database_url) and that PostgreSQL is running"
_TRUTH_HINT = "pass the directory given to 'kalshi-data sim --truth DIR' (after the simulator ran)"


def _run(
    truth: Path,
    url: str,
    gatherer: str | None,
    connections: tuple[int, ...],
    examples: int,
    book_samples: int,
) -> Report:
    try:
        return verify_capture(
            truth,
            url,
            gatherer=gatherer,
            connections=set(connections) or None,
            max_examples=examples,
            book_samples=book_samples,
        )
    except TruthError as exc:
        raise UserFacingError(str(exc), _TRUTH_HINT, exit_code=EXIT_USAGE) from exc
    except DatabaseUnavailable as exc:
        raise UserFacingError(str(exc), _DB_HINT, exit_code=EXIT_USAGE) from exc
    except VerifyInputError as exc:
        raise UserFacingError(
            str(exc), "run 'kalshi-data migrate' on that database", exit_code=EXIT_USAGE
        ) from exc
    except psycopg2.Error as exc:
        raise UserFacingError(
            f"database error: {first_line(exc)}", _DB_HINT, exit_code=EXIT_USAGE
        ) from exc
    except OSError as exc:
        raise UserFacingError(
            f"cannot read the truth: {exc}", _TRUTH_HINT, exit_code=EXIT_USAGE
        ) from exc


@cli.command("verify")
@click.option(
    "--truth",
    "truth",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="The simulator's ground-truth directory (sim --truth DIR).",
)
@click.option("--database-url", metavar="URL", help="Database to verify (default: settings).")
@click.option("--gatherer", metavar="G", help="Verify only this gatherer's rows.")
@click.option(
    "--connection",
    "connections",
    type=int,
    multiple=True,
    metavar="ID",
    help="Expect only these simulator connections (repeatable; default: all).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option(
    "--examples",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Example discrepancies to show per table.",
)
@click.option(
    "--book-samples",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Instants at which every captured book is compared with the exchange's (0: none).",
)
@pass_cli_context
def verify(
    ctx: CliContext,
    truth: Path,
    database_url: str | None,
    gatherer: str | None,
    connections: tuple[int, ...],
    as_json: bool,
    examples: int,
    book_samples: int,
) -> None:
    """Compare a captured database with the simulator's ground truth; exit 0 only when exact."""
    url = database_url or ctx.settings.database_url
    # Unusable input exits 2 (usage): 1 is reserved for "the capture is not exact".
    report = _run(truth, url, gatherer, connections, examples, book_samples)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo("\n".join(render_text(report, examples)))
    if not report.exact:
        raise SystemExit(EXIT_RUNTIME)
