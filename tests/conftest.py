"""Shared fixtures: real services only (PostgreSQL, Redis, sockets), never mocks of them.

Area-specific fixtures live in `tests/<area>/conftest.py`; what several areas need lives here.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

REPO = Path(__file__).resolve().parents[1]
KALSHI_DATA = str(Path(sys.executable).with_name("kalshi-data"))


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children_of(pid: int) -> list[int]:
    """PIDs whose parent is `pid` (from /proc, so no extra dependency)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


@dataclass(frozen=True)
class KeyPair:
    """An RSA key pair generated for one test session, written as PEM files."""

    private_key: rsa.RSAPrivateKey
    pkcs8_path: Path
    pkcs1_path: Path
    public_path: Path
    key_id: str = "0b7e5c1d-5f0a-4a37-9d7e-6a2f0e6d9c11"


@pytest.fixture(scope="session")
def rsa_keypair(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    """Keys are generated at run time; no key material is ever committed."""
    folder = tmp_path_factory.mktemp("keys")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pkcs8 = folder / "pkcs8.pem"
    pkcs8.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pkcs1 = folder / "pkcs1.pem"
    pkcs1.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    public = folder / "public.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return KeyPair(private_key=key, pkcs8_path=pkcs8, pkcs1_path=pkcs1, public_path=public)


def clean_env(**overrides: str) -> dict[str, str]:
    """The process environment without KD_* settings, plus `overrides`, for CLI subprocesses."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KD_")}
    env.update(overrides)
    return env


def run_cli(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the installed `kalshi-data` entry point as a user would."""
    return subprocess.run(
        [KALSHI_DATA, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(**env),
        cwd=REPO,
        check=False,
    )


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """Superuser URL of the PostgreSQL server the tests use (KD_TEST_POSTGRES_URL overrides)."""
    return os.environ.get("KD_TEST_POSTGRES_URL", "postgresql://postgres@localhost:5432/postgres")


@pytest.fixture(scope="session")
def redis_test_url() -> str:
    return os.environ.get("KD_TEST_REDIS_URL", "redis://localhost:6379/15")


@pytest.fixture
def scratch_database(postgres_admin_url: str) -> Iterator[str]:
    """A freshly created, empty PostgreSQL database for one test, dropped afterwards."""
    import uuid

    import psycopg2

    name = f"kd_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(postgres_admin_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    base = postgres_admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
