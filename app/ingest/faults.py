"""Whose fault is a failed ingest write: the frame's, or the database's (docs/ingest.md).

Only a frame's own fault may dead-letter it. A row PostgreSQL refuses for its *values* (SQLSTATE
class 22 "data exception": out of range, bad encoding, NUL; class 23 "integrity constraint":
a CHECK, NOT NULL or foreign key) or one our COPY encoder refuses (`CopyEncodingError`) is the
frame's fault: the handler isolates that frame and dead-letters it alone. Everything else the
database says is about the database, not about the rows: it is down or unreachable, read-only,
refuses us a privilege, misses a table or column, cancelled a statement past
`statement_timeout`, is out of disk or connections, or rejects our SQL (a deploy mismatch).
Such a fault keeps the entries pending, retried with backoff, counted and alerted on; no number
of deliveries ever turns it into a dead letter, because the same batch would be written fine
once the database is healthy.

This module only classifies; it never touches the database, Redis or metrics.
"""

from __future__ import annotations

import psycopg2
from celery.exceptions import SoftTimeLimitExceeded

from app.db.engine import DatabaseUnavailable, first_line

# `kind` label values of kd_ingest_db_errors_total (app.metrics.definitions.DB_FAULT_KINDS).
CONNECTION = "connection"  # cannot connect, connection lost, server shutting down
READ_ONLY = "read_only"  # read-only transaction / hot standby (25006)
PERMISSION = "permission"  # insufficient privilege (42501), authentication (class 28)
MISSING_OBJECT = "missing_object"  # table, column, function, schema or database not there
TIMEOUT = "timeout"  # statement_timeout or lock_timeout fired, worker's soft time limit
RESOURCES = "resources"  # disk full, out of memory, too many connections (class 53, 58)
OTHER = "other"  # any other SQLSTATE outside classes 22/23: not the rows' fault
FAULT_KINDS = (CONNECTION, READ_ONLY, PERMISSION, MISSING_OBJECT, TIMEOUT, RESOURCES, OTHER)

# SQLSTATE classes that describe the row being written (PostgreSQL Appendix A).
_ROW_CLASSES = frozenset({"22", "23"})
_MISSING = frozenset({"42P01", "42703", "42883", "42704", "3F000", "3D000", "42P02"})
_TIMEOUTS = frozenset({"57014", "55P03"})  # query_canceled, lock_not_available


class DatabaseFault(Exception):
    """A write failed because of the database, not the entries (retry, never dead-letter)."""

    def __init__(self, kind: str, error: BaseException) -> None:
        super().__init__(f"{kind}: {describe(error)}")
        self.kind = kind
        self.error = error


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a psycopg2 error (None for anything else or a connection loss)."""
    code = getattr(exc, "pgcode", None) if isinstance(exc, psycopg2.Error) else None
    return code or None


def fault_kind(exc: BaseException) -> str | None:
    """The kind of database fault `exc` is, or None when it is the rows' own fault (or not a
    database error at all: the caller's code or the frame's content)."""
    if isinstance(exc, DatabaseFault):
        return exc.kind
    if isinstance(exc, DatabaseUnavailable):
        return CONNECTION
    if isinstance(exc, SoftTimeLimitExceeded):
        return TIMEOUT  # a call stuck past the drain's soft time limit
    if not isinstance(exc, psycopg2.Error):
        return None
    code = sqlstate(exc)
    if code is None:
        # No SQLSTATE: libpq lost or never had the connection (OperationalError,
        # InterfaceError "connection already closed"); any other driver error is ours.
        if isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError):
            return CONNECTION
        return OTHER
    group = code[:2]
    if group in _ROW_CLASSES:
        return None
    if code == "25006":
        return READ_ONLY
    if code == "42501" or group == "28":
        return PERMISSION
    if code in _MISSING:
        return MISSING_OBJECT
    if code in _TIMEOUTS:
        return TIMEOUT
    if group == "08" or code.startswith("57P"):
        return CONNECTION
    if group in ("53", "58"):
        return RESOURCES
    return OTHER


def is_database_fault(exc: BaseException) -> bool:
    return fault_kind(exc) is not None


def describe(exc: BaseException) -> str:
    """One line: the exception type, SQLSTATE when there is one, and the first message line."""
    code = sqlstate(exc)
    name = type(exc).__name__
    return f"{name} [{code}]: {first_line(exc)}" if code else f"{name}: {first_line(exc)}"
