"""Fixtures for simulator tests: the simulator always runs as a real `kalshi-data sim` process.

`sim_factory(*flags, truth=True)` starts one on a free port (`--port 0`, the port is read from
its `simulator listening on` line) and stops it with SIGTERM at the end of the test, checking
that it exits cleanly. Clients talk to it over real loopback sockets.
"""

from __future__ import annotations

import asyncio
import json
import select
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import websockets

from tests.conftest import KALSHI_DATA, REPO, clean_env

EPOCH_MS = 1_770_000_000_000  # 2026-02-02T02:40:00Z: fixed so runs are comparable


class Sim:
    """A running simulator process and small helpers to talk to it."""

    def __init__(
        self,
        args: list[str],
        truth: Path | None,
        log: Path,
        env: dict[str, str] | None = None,
        global_args: list[str] | None = None,
    ) -> None:
        self.truth = truth
        self.log_path = log
        command = [KALSHI_DATA, *(global_args or []), "sim", "--port", "0", *args]
        if truth is not None:
            command += ["--truth", str(truth)]
        self._log = open(log, "w")  # noqa: SIM115  (closed in stop)
        self.process = subprocess.Popen(
            command,
            cwd=REPO,
            env=clean_env(**(env or {})),
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.line = self._read_line(timeout=20)
        if not self.line.startswith("simulator listening on http://"):
            self.process.kill()
            raise AssertionError(f"simulator did not start: {self.line!r}\n{log.read_text()}")
        self.port = urlsplit(self.line.split()[-1]).port
        self.base = f"http://127.0.0.1:{self.port}"
        self.api = f"{self.base}/trade-api/v2"
        self.ws_url = f"ws://127.0.0.1:{self.port}/trade-api/ws/v2"
        self.http = requests.Session()

    def _read_line(self, timeout: float) -> str:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            return ""
        return self.process.stdout.readline().strip()

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.http.get(f"{self.api}{path}", params=params, timeout=30)

    def state(self) -> dict[str, Any]:
        return self.http.get(f"{self.base}/admin/state", timeout=30).json()

    def fault(self, **request: Any) -> dict[str, Any]:
        response = self.http.post(f"{self.base}/admin/faults", data=json.dumps(request), timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def dump(self) -> dict[str, Any]:
        return self.http.post(f"{self.base}/admin/dump", timeout=60).json()

    def wait_finished(self, timeout: float = 30) -> dict[str, Any]:
        """Wait for `--max-events` to be reached."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state()
            if state["finished"]:
                return state
            time.sleep(0.05)
        raise AssertionError(f"simulator did not finish: {self.state()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.http.close()
        self._log.close()
        return self.process.returncode


@pytest.fixture
def sim_factory(tmp_path: Path) -> Iterator[Callable[..., Sim]]:
    started: list[Sim] = []

    def start(
        *flags: str,
        truth: bool = True,
        name: str | None = None,
        env: dict[str, str] | None = None,
        global_args: list[str] | None = None,
    ) -> Sim:
        label = name or f"sim{len(started)}"
        folder = tmp_path / f"{label}-truth" if truth else None
        sim = Sim(list(flags), folder, tmp_path / f"{label}.log", env, global_args)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        code = sim.stop()
        assert code == 0, f"simulator exited with {code}:\n{sim.log_path.read_text()[-2000:]}"


def ws_connect(url: str, **options: Any) -> Any:
    """`websockets.connect` that keeps reading while the test is busy elsewhere.

    With the library's default bounded queue, a client that stops calling recv() stops reading
    the socket, so its close handshake waits behind unread frames for close_timeout.
    """
    return websockets.connect(url, max_queue=None, max_size=None, **options)


class WsClient:
    """A `websockets` client that keeps every text frame it receives, in order."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.texts: list[str] = []
        self.messages: list[Any] = []  # parsed JSON, or None for frames that are not JSON
        self._next_id = 1

    @property
    def conn_id(self) -> int:
        return int(self.ws.response.headers["X-Simulator-Connection"])

    async def send(self, command: dict[str, Any] | str) -> int | None:
        if isinstance(command, str):
            await self.ws.send(command)
            return None
        if "id" not in command:
            command = {"id": self._next_id, **command}
            self._next_id += 1
        await self.ws.send(json.dumps(command))
        return command["id"]

    async def recv(self, timeout: float = 5.0) -> Any:
        text = await asyncio.wait_for(self.ws.recv(), timeout)
        self.texts.append(text)
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        self.messages.append(message)
        return message

    async def until(self, predicate: Callable[[Any], bool], timeout: float = 5.0) -> Any:
        """Receive until a frame satisfies `predicate`; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out waiting for a frame")
            message = await self.recv(left)
            if predicate(message):
                return message

    async def reply(self, command_id: int | None, timeout: float = 5.0) -> Any:
        return await self.until(
            lambda m: isinstance(m, dict) and m.get("id") == command_id, timeout
        )

    async def collect(self, seconds: float) -> None:
        """Receive everything for `seconds`."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                await self.recv(left)
            except TimeoutError:
                return

    async def drain_until_closed(self, timeout: float = 10.0) -> None:
        """Receive until the server closes the connection."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                await self.recv(deadline - time.monotonic())
            except websockets.ConnectionClosed:
                return
        raise AssertionError("connection did not close")


def of_type(kind: str) -> Callable[[Any], bool]:
    return lambda m: isinstance(m, dict) and m.get("type") == kind
