"""Connections to PostgreSQL: URL handling, engines, raw psycopg2 connections, database creation.

Every function takes the URL from the caller (normally `Settings.database_url`); nothing here
reads the environment. Errors a person can fix (server down, wrong password, no such host) are
raised as `DatabaseUnavailable` with a one-line message that never contains the password.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2 import sql
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError

MAINTENANCE_DATABASE = "postgres"
CONNECT_TIMEOUT_S = 5


class DatabaseUnavailable(Exception):
    """The database server cannot be reached or refuses us; the message is one clear line."""


def parse_url(url: str) -> URL:
    """Parse a PostgreSQL URL (`postgresql://` or `postgresql+psycopg2://`)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseUnavailable(f"invalid database URL: {exc}") from exc
    if parsed.get_backend_name() != "postgresql":
        raise DatabaseUnavailable(
            f"database URL must start with postgresql://, got {parsed.drivername}://"
        )
    return parsed


def describe_url(url: str | URL) -> str:
    """The URL as safe to print: password replaced by `***`."""
    parsed = url if isinstance(url, URL) else parse_url(url)
    return parsed.render_as_string(hide_password=True)


def sqlalchemy_url(url: str | URL) -> URL:
    """The URL with the psycopg2 driver named, as SQLAlchemy and alembic want it."""
    parsed = url if isinstance(url, URL) else parse_url(url)
    return parsed.set(drivername="postgresql+psycopg2")


def libpq_dsn(url: str | URL) -> str:
    """The URL as libpq (psycopg2.connect) accepts it: no `+driver` part."""
    parsed = url if isinstance(url, URL) else parse_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def database_name(url: str | URL) -> str:
    parsed = url if isinstance(url, URL) else parse_url(url)
    if not parsed.database:
        raise DatabaseUnavailable(f"database URL names no database: {describe_url(parsed)}")
    return parsed.database


def create_db_engine(url: str, **kwargs: Any) -> Engine:
    """A SQLAlchemy engine (psycopg2 driver, pre-ping on checkout, short connect timeout)."""
    options: dict[str, Any] = {
        "pool_pre_ping": True,
        "connect_args": {"connect_timeout": CONNECT_TIMEOUT_S},
    }
    options.update(kwargs)
    return create_engine(sqlalchemy_url(url), **options)


def first_line(exc: BaseException) -> str:
    """The first non-empty line of a driver error (libpq messages span several lines)."""
    for line in str(exc).splitlines():
        line = line.strip()
        if line:
            return line
    return type(exc).__name__


@dataclass(frozen=True)
class SessionLimits:
    """What keeps a session from hanging forever on a dead or stuck server.

    TCP keepalives (libpq `keepalives*`): a peer that vanished without a FIN (host down,
    network cut) is detected after about idle + interval x count seconds instead of the
    kernel's two hours. `statement_timeout_ms` (0 = none): a statement waiting on a lock or on
    a hung server is cancelled (SQLSTATE 57014), which the ingest treats as a database fault
    and retries (docs/ingest.md "Database faults").
    """

    statement_timeout_ms: int = 0
    keepalives_idle_s: int = 30
    keepalives_interval_s: int = 10
    keepalives_count: int = 3

    def connect_kwargs(self) -> dict[str, Any]:
        """libpq connection parameters for these limits."""
        kwargs: dict[str, Any] = {
            "keepalives": 1,
            "keepalives_idle": self.keepalives_idle_s,
            "keepalives_interval": self.keepalives_interval_s,
            "keepalives_count": self.keepalives_count,
        }
        if self.statement_timeout_ms > 0:
            kwargs["options"] = f"-c statement_timeout={int(self.statement_timeout_ms)}"
        return kwargs


def connect(
    url: str, *, autocommit: bool = False, limits: SessionLimits | None = None
) -> psycopg2.extensions.connection:
    """A raw psycopg2 connection (what `app.db.copy` needs for COPY); `limits` sets TCP
    keepalives and a statement timeout on the session."""
    extra = limits.connect_kwargs() if limits is not None else {}
    try:
        conn = psycopg2.connect(libpq_dsn(url), connect_timeout=CONNECT_TIMEOUT_S, **extra)
    except psycopg2.OperationalError as exc:
        raise DatabaseUnavailable(
            f"cannot connect to {describe_url(url)}: {first_line(exc)}"
        ) from exc
    conn.autocommit = autocommit
    return conn


def ensure_database(url: str, *, maintenance_database: str = MAINTENANCE_DATABASE) -> bool:
    """Create the database the URL names if it does not exist; True when it was created.

    Connects to the target first; only if that fails does it connect to the maintenance
    database of the same server (same user and password) to look the name up and create it.
    """
    name = database_name(url)
    try:
        psycopg2.connect(libpq_dsn(url), connect_timeout=CONNECT_TIMEOUT_S).close()
        return False
    except psycopg2.OperationalError as exc:
        target_error = exc
    admin_url = parse_url(url).set(database=maintenance_database)
    try:
        admin = psycopg2.connect(libpq_dsn(admin_url), connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg2.OperationalError:
        raise DatabaseUnavailable(
            f"cannot connect to {describe_url(url)}: {first_line(target_error)}"
        ) from target_error
    try:
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is not None:
                raise DatabaseUnavailable(
                    f"cannot connect to {describe_url(url)}: {first_line(target_error)}"
                ) from target_error
            try:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except psycopg2.errors.DuplicateDatabase:
                return False  # created concurrently by someone else: fine
            except psycopg2.Error as exc:
                raise DatabaseUnavailable(
                    f"cannot create database {name!r} on {describe_url(admin_url)}: "
                    f"{first_line(exc)}"
                ) from exc
    finally:
        admin.close()
    return True


def dbapi_connection(conn: Any) -> psycopg2.extensions.connection:
    """The psycopg2 connection behind `conn` (a psycopg2 or SQLAlchemy connection).

    Functions in `app.db` accept either, run in the caller's transaction and never commit, so
    an alembic migration (SQLAlchemy) and a Celery task (psycopg2) share the same code.
    """
    if isinstance(conn, psycopg2.extensions.connection):
        return conn
    driver = getattr(getattr(conn, "connection", None), "driver_connection", None)
    if isinstance(driver, psycopg2.extensions.connection):
        return driver
    raise TypeError(f"expected a psycopg2 or SQLAlchemy connection, got {type(conn).__name__}")
