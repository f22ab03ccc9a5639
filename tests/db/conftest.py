"""Database fixtures: real PostgreSQL, migrated once per session and cloned from there.

- `pg`: a connection to a migrated database shared by the session; the test's transaction is
  rolled back at the end, so tests using it must not commit.
- `fresh_pg` / `migrated_database`: a database of its own, cloned from the session template
  (`CREATE DATABASE ... TEMPLATE`), for tests that commit or open their own connections.
Tests of the migrations themselves use the shared `scratch_database` (an empty database).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg2
import psycopg2.extensions
import pytest

from app.db import migrations


def _admin(postgres_admin_url: str) -> psycopg2.extensions.connection:
    conn = psycopg2.connect(postgres_admin_url)
    conn.autocommit = True
    return conn


def database_url(postgres_admin_url: str, name: str) -> str:
    return f"{postgres_admin_url.rsplit('/', 1)[0]}/{name}"


@pytest.fixture(scope="session")
def migrated_template(postgres_admin_url: str) -> Iterator[str]:
    name = f"kd_tmpl_{uuid.uuid4().hex[:12]}"
    migrations.upgrade(database_url(postgres_admin_url, name))
    admin = _admin(postgres_admin_url)
    try:
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def migrated_database(postgres_admin_url: str, migrated_template: str) -> Iterator[str]:
    name = f"kd_test_{uuid.uuid4().hex[:12]}"
    admin = _admin(postgres_admin_url)
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}" TEMPLATE "{migrated_template}"')
    try:
        yield database_url(postgres_admin_url, name)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="session")
def shared_database(postgres_admin_url: str, migrated_template: str) -> Iterator[str]:
    name = f"kd_shared_{uuid.uuid4().hex[:12]}"
    admin = _admin(postgres_admin_url)
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}" TEMPLATE "{migrated_template}"')
    try:
        yield database_url(postgres_admin_url, name)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def pg(shared_database: str) -> Iterator[psycopg2.extensions.connection]:
    """A connection to the shared migrated database; everything is rolled back afterwards."""
    conn = psycopg2.connect(shared_database)
    try:
        yield conn
    finally:
        conn.rollback()
        conn.close()


@pytest.fixture
def fresh_pg(migrated_database: str) -> Iterator[psycopg2.extensions.connection]:
    """A connection to a database of this test's own (commits are fine)."""
    conn = psycopg2.connect(migrated_database)
    try:
        yield conn
    finally:
        conn.rollback()
        conn.close()
