"""Running the alembic migrations from code (`kalshi-data migrate`, tests, the fleet runner).

The alembic environment lives in the repository's `alembic/` folder (with its own
`alembic/alembic.ini`); `alembic_config` points a Config at it and hands the database URL over
in `config.attributes`, so URLs with `%` or passwords never pass through ini interpolation.
Direct use still works: `alembic -c alembic/alembic.ini upgrade head` reads the URL from the
settings (`KD_DATABASE_URL` / `--config` file) inside `alembic/env.py`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import alembic.command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from app.db.engine import (
    DatabaseUnavailable,
    create_db_engine,
    describe_url,
    ensure_database,
    first_line,
)

ALEMBIC_DIR = Path(__file__).resolve().parents[2] / "alembic"
ALEMBIC_INI = ALEMBIC_DIR / "alembic.ini"


class _QuietContextLines(logging.Filter):
    """Drop alembic's per-connection chatter; keep the "Running upgrade ..." lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not message.startswith(("Context impl", "Will assume"))


logging.getLogger("alembic.runtime.migration").addFilter(_QuietContextLines())


class MigrationError(Exception):
    """A migration could not run (unknown revision, SQL error); one line for the user."""


@dataclass(frozen=True)
class MigrationResult:
    database: str
    created_database: bool
    before: str | None
    after: str | None


def alembic_config(database_url: str) -> Config:
    """An alembic Config for this repository's migrations and the given database."""
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    config.attributes["database_url"] = database_url
    config.attributes["embedded"] = True
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("postgresql:///unused")).get_current_head()
    if head is None:
        raise MigrationError("no migrations found in " + str(ALEMBIC_DIR))
    return head


def current_revision(database_url: str) -> str | None:
    """The revision the database is at (None = empty / base)."""
    engine = create_db_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except OperationalError as exc:
        raise DatabaseUnavailable(
            f"cannot connect to {describe_url(database_url)}: {first_line(exc.orig or exc)}"
        ) from exc
    finally:
        engine.dispose()


def _run(database_url: str, action: str, revision: str) -> None:
    config = alembic_config(database_url)
    try:
        if action == "upgrade":
            alembic.command.upgrade(config, revision)
        else:
            alembic.command.downgrade(config, revision)
    except CommandError as exc:
        raise MigrationError(f"{action} to {revision!r} failed: {first_line(exc)}") from exc
    except OperationalError as exc:
        reason = first_line(exc.orig or exc)
        raise DatabaseUnavailable(f"database {describe_url(database_url)}: {reason}") from exc
    except DBAPIError as exc:
        reason = first_line(exc.orig or exc)
        raise MigrationError(f"{action} to {revision!r} failed: {reason}") from exc


def upgrade(database_url: str, revision: str = "head", *, create: bool = True) -> MigrationResult:
    """Bring the database up to `revision`, creating the database first if it is missing."""
    created = ensure_database(database_url) if create else False
    before = current_revision(database_url)
    _run(database_url, "upgrade", revision)
    return MigrationResult(
        describe_url(database_url), created, before, current_revision(database_url)
    )


def downgrade(database_url: str, revision: str) -> MigrationResult:
    """Take the database down to `revision` (`base` removes every table and view)."""
    before = current_revision(database_url)
    _run(database_url, "downgrade", revision)
    return MigrationResult(
        describe_url(database_url), False, before, current_revision(database_url)
    )
