"""`kalshi-data verify --truth DIR`: prove a capture exact against the simulator's truth.

With `--gatherer-db URL` (repeated, one per gatherer) the database is a *production* database
the deduplicator filled: it is checked against what the exchange did, excusing only what every
gatherer lost (app/verify/production.py).

Exit 0 when every table and every final book is exact, 1 when anything differs, 2 when the
input is unusable (missing or unreadable truth, unreachable or unmigrated database): then one
`error:` line and a `hint:` line, never a traceback. docs/verify.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click
import psycopg2

from app.cli.errors import EXIT_RUNTIME, EXIT_USAGE, UserFacingError
from app.cli.group import CliContext, cli, pass_cli_context
from app.db.engine import DatabaseUnavailable, first_line
from app.simulator.truth import TruthError
from app.verify import VerifyInputError, render_text, verify_capture
from app.verify.production import ProductionReport, verify_production

T = TypeVar("T")

_DB_HINT = "check --database-url (or KD_DATABASE_URL / database_url) and that PostgreSQL is running"
_TRUTH_HINT = "pass the directory given to 'kalshi-data sim --truth DIR' (after the simulator ran)"


def _guarded(call: Callable[[], T]) -> T:
    """Unusable input exits 2 (usage) with one error line and a hint: 1 means "not exact"."""
    try:
        return call()
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
@click.option(
    "--gatherer-db",
    "gatherer_dbs",
    multiple=True,
    metavar="URL",
    help="The database is production: verify it against the exchange, excusing only what "
    "every one of these gatherer databases lost (repeat per gatherer).",
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
    gatherer_dbs: tuple[str, ...],
    as_json: bool,
    examples: int,
    book_samples: int,
) -> None:
    """Compare a captured database with the simulator's ground truth; exit 0 only when exact."""
    url = database_url or ctx.settings.database_url
    if gatherer_dbs:
        production = _guarded(
            lambda: verify_production(truth, url, list(gatherer_dbs), book_samples=book_samples)
        )
        if as_json:
            click.echo(json.dumps(production.as_dict(), indent=2))
        else:
            click.echo("\n".join(_production_text(production)))
        if not production.exact:
            raise SystemExit(EXIT_RUNTIME)
        return
    report = _guarded(
        lambda: verify_capture(
            truth,
            url,
            gatherer=gatherer,
            connections=set(connections) or None,
            max_examples=examples,
            book_samples=book_samples,
        )
    )
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo("\n".join(render_text(report, examples)))
    if not report.exact:
        raise SystemExit(EXIT_RUNTIME)


def _production_text(report: ProductionReport) -> list[str]:
    lines = [f"production: {'EXACT' if report.exact else 'NOT EXACT'}"]
    for table in report.exchange.tables:
        lines.append(
            f"  {table.table}: exchange {table.exchange}, captured {table.captured}, "
            f"lost by every gatherer {table.in_hole}, unexplained {table.unexplained}"
        )
        lines.extend(f"    e.g. {example}" for example in table.examples)
    lines.extend(f"  problem: {problem}" for problem in report.exchange.problems)
    books = report.books
    lines.append(
        f"  books: {books.checked} compared at {books.samples} instants, "
        f"{books.differing} differ, {books.in_hole} lost by every gatherer"
    )
    return lines
