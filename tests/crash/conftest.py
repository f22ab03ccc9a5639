"""Fixtures for the crash tests: a private redis-server and a private PostgreSQL cluster that a
test may stop, kill and restart without disturbing the machine's shared services, plus a
helper that runs `kalshi-data up` as a subprocess against them.

The shared Redis keeps nothing on disk and the shared PostgreSQL serves every other test, so
neither may be restarted. Each server here runs on a free port with its files in a temporary
directory, and is torn down (and its directory removed) even when the test fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
import redis

from tests.conftest import KALSHI_DATA, REPO, children_of, clean_env, free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def _pg_bin() -> Path:
    """KD_TEST_PG_BIN, else the newest /usr/lib/postgresql/<version>/bin with an initdb."""
    if "KD_TEST_PG_BIN" in os.environ:
        return Path(os.environ["KD_TEST_PG_BIN"])
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
PG_USER = "postgres"  # initdb refuses to run as root; the cluster belongs to this account


def _as_cluster_owner(argv: list[str]) -> list[str]:
    """initdb and pg_ctl must not run as root: run them as `postgres` when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", PG_USER, "--", *argv]
    return argv


def _wait(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return
        except Exception:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready within {timeout_s} s")
        time.sleep(0.05)


class RedisServer:
    """A redis-server child on a free port, AOF on (fsync every second), no RDB snapshots.

    `stop()` is SIGTERM (Redis flushes its AOF and exits), `kill()` is SIGKILL; `start()` again
    reuses the same port and directory, so the data comes back from the AOF.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
                "--dir", str(self.directory), "--daemonize", "no", "--loglevel", "warning",
                "--logfile", str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        probe = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        try:
            _wait(probe.ping, 15, "redis-server")
        finally:
            probe.close()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


class PostgresCluster:
    """A PostgreSQL 15 cluster of its own: initdb into a temporary directory, trust auth,
    listening on 127.0.0.1 and a free port, its socket in the same directory."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.data = base / "data"
        self.port = free_port()
        self.log = base / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str, timeout: float = 60) -> None:
        subprocess.run(
            _as_cluster_owner(list(argv)),
            check=True,
            timeout=timeout,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def init(self) -> None:
        self._run(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-U", PG_USER, "--auth=trust",
            "--no-sync", "-E", "UTF8", "--locale=C.UTF-8",
        )  # fmt: skip

    def start(self) -> None:
        # fsync off: these tests restart the server, never the machine, so a clean or fast
        # shutdown loses nothing and the shared disk is spared.
        options = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c full_page_writes=off -c max_connections=100 -c shared_buffers=32MB"
        )
        self._run(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
            "-o", options, "-w", "-t", "30", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def connect(self, database: str = "postgres"):
        conn = psycopg2.connect(self.url(database), connect_timeout=5)
        conn.autocommit = True
        return conn


@pytest.fixture(scope="session")
def own_postgres() -> Iterator[PostgresCluster]:
    """One private cluster for the crash tests (a test may stop and start it)."""
    base = Path(tempfile.mkdtemp(prefix="kd-crash-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, PG_USER, PG_USER)
    os.chmod(base, 0o700)
    cluster = PostgresCluster(base)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        if cluster.running():
            with contextlib.suppress(Exception):
                cluster.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server for one test."""
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def crash_env(tmp_path: Path, own_postgres: PostgresCluster, own_redis: RedisServer):
    """Environment of one `up` run on the private servers: a fresh database (up creates it),
    a unique gatherer, reclaim after 3 s (so a dead worker's entries come back within the
    run), the spill journal in the test's directory, metrics off (no shared ports or
    directories with tests running next to us)."""
    name = f"kd_crash_{uuid.uuid4().hex[:10]}"
    env = {
        "KD_DATABASE_URL": own_postgres.url(name),
        "KD_REDIS_URL": own_redis.url,
        "KD_GATHERER": f"c{uuid.uuid4().hex[:8]}",
        "KD_STREAMS__MIN_IDLE_MS": "3000",
        "KD_STREAMS__JOURNAL_DIR": str(tmp_path / "journal"),
        "KD_METRICS__ENABLED": "false",
    }
    yield env
    if not own_postgres.running():
        own_postgres.start()
    admin = own_postgres.connect()
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


class UpRun:
    """`kalshi-data up` as a subprocess; its output goes to files (no pipe can fill up)."""

    def __init__(self, directory: Path, env: dict[str, str], *args: str) -> None:
        self.directory = directory
        self.stdout_path = directory / "up.stdout"
        self.stderr_path = directory / "up.stderr"
        self._stdout = self.stdout_path.open("w")
        self._stderr = self.stderr_path.open("w")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [KALSHI_DATA, "up", *args],
            stdout=self._stdout,
            stderr=self._stderr,
            env=clean_env(**env),
            cwd=REPO,
        )

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def wait_for_output(self, text: str, timeout_s: float) -> None:
        """Until `text` appears in up's stderr (or up exits, or time runs out)."""
        deadline = time.monotonic() + timeout_s
        while text not in self.stderr:
            if self.proc.poll() is not None:
                raise AssertionError(f"up exited early:\n{self.stderr[-4000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} within {timeout_s} s:\n{self.stderr[-4000:]}")
            time.sleep(0.2)

    def sleep_until(self, seconds_into_run: float) -> None:
        time.sleep(max(0.0, seconds_into_run - self.elapsed()))

    def child(self, *needle: str) -> int | None:
        """The PID of up's child whose command line contains every string of `needle`."""
        for pid in children_of(self.proc.pid):
            line = cmdline(pid)
            if all(part in line for part in needle):
                return pid
        return None

    def wait(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout_s)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            # Normally never reached: up stops on its own at --duration. SIGTERM makes it stop
            # its children in order; SIGKILL its whole tree is the last resort.
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                for pid in children_of(self.proc.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
                self.proc.kill()
                self.proc.wait(10)
        self._stdout.close()
        self._stderr.close()


@pytest.fixture
def up_run(tmp_path: Path, crash_env: dict[str, str]):
    """Start `kalshi-data up` with the crash env: `up_run(*args)`; always stopped afterwards."""
    runs: list[UpRun] = []

    def start(*args: str) -> UpRun:
        run = UpRun(tmp_path, crash_env, *args)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.close()
