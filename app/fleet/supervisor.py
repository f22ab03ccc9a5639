"""Supervised child processes for `kalshi-data up` (DESIGN §2).

Each child runs as its own OS process. Its output is forwarded line by line into our log with
the child's name; a child that exits unexpectedly is restarted with exponential backoff, and a
child that keeps failing makes the whole run fail loudly rather than limp on. Stopping sends
SIGTERM, waits, and only then SIGKILLs, so children get to flush what they hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.logs import log_event

log = logging.getLogger("kalshi_data.supervisor")


class ChildFailed(Exception):
    """A supervised child exited too often, or never became ready."""


@dataclass
class ChildSpec:
    """How to run one child process."""

    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    ready_text: str | None = None  # an output substring (stdout or stderr) that marks it ready
    max_restarts: int = 5
    stop_timeout_s: float = 15.0


def python_command(*args: str) -> list[str]:
    """argv that runs `kalshi-data ARGS...` with this interpreter (no PATH lookup needed)."""
    return [sys.executable, "-m", "app", *args]


@dataclass
class _Child:
    spec: ChildSpec
    process: asyncio.subprocess.Process | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    ready_line: str = ""
    last_errors: deque[str] = field(default_factory=lambda: deque(maxlen=3))
    restarts: int = 0
    pumps: list[asyncio.Task[None]] = field(default_factory=list)
    stopping: bool = False


class Supervisor:
    """Starts, watches, restarts and stops child processes from inside one asyncio loop."""

    def __init__(self, on_output: Callable[[str, str], None] | None = None) -> None:
        self._children: dict[str, _Child] = {}
        self._watchers: list[asyncio.Task[None]] = []
        self._stopping = False
        self._failure: asyncio.Future[ChildFailed] | None = None
        self._on_output = on_output

    @property
    def failure(self) -> asyncio.Future[ChildFailed]:
        """Resolves with the error when a child has failed for good."""
        if self._failure is None:
            self._failure = asyncio.get_running_loop().create_future()
        return self._failure

    async def start(self, spec: ChildSpec, ready_timeout_s: float = 60.0) -> str:
        """Start a child and wait until it prints its ready text (when it declares one).

        Returns the stdout line that carried the ready text ("" when none is declared).
        """
        child = _Child(spec)
        self._children[spec.name] = child
        await self._spawn(child)
        self._watchers.append(asyncio.create_task(self._watch(child), name=f"watch-{spec.name}"))
        if spec.ready_text is None:
            return ""
        ready: asyncio.Future[Any] = asyncio.ensure_future(child.ready.wait())
        waiters: set[asyncio.Future[Any]] = {ready, self.failure}
        done, _ = await asyncio.wait(
            waiters, timeout=ready_timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if ready not in done:
            ready.cancel()
            if self.failure.done():
                raise self.failure.result()
            raise ChildFailed(f"{spec.name} did not become ready within {ready_timeout_s:.0f} s")
        return child.ready_line

    def pid(self, name: str) -> int | None:
        child = self._children.get(name)
        return child.process.pid if child and child.process else None

    async def _spawn(self, child: _Child) -> None:
        env = {**os.environ, **(child.spec.env or {})}
        child.process = await asyncio.create_subprocess_exec(
            *child.spec.argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
        )
        log_event(log, "child_started", child=child.spec.name, pid=child.process.pid)
        assert child.process.stdout is not None and child.process.stderr is not None
        child.pumps = [
            asyncio.create_task(self._pump(child, child.process.stdout, "stdout")),
            asyncio.create_task(self._pump(child, child.process.stderr, "stderr")),
        ]

    async def _pump(self, child: _Child, stream: asyncio.StreamReader, which: str) -> None:
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip()
            if child.spec.ready_text and child.spec.ready_text in text:
                child.ready_line = text
                child.ready.set()
            if which == "stderr" and text.strip():
                child.last_errors.append(text.strip())
            if self._on_output is not None:
                self._on_output(child.spec.name, text)

    async def _watch(self, child: _Child) -> None:
        while True:
            assert child.process is not None
            code = await child.process.wait()
            await asyncio.gather(*child.pumps, return_exceptions=True)
            if self._stopping or child.stopping:
                return
            log_event(log, "child_exited", logging.WARNING, child=child.spec.name, code=code)
            never_ready = child.spec.ready_text is not None and not child.ready.is_set()
            if never_ready or child.restarts >= child.spec.max_restarts:
                why = " / ".join(child.last_errors) or f"exit code {code}"
                when = "before it was ready" if never_ready else f"after {child.restarts} restarts"
                if not self.failure.done():
                    self.failure.set_result(ChildFailed(f"{child.spec.name} exited {when}: {why}"))
                return
            delay = min(0.5 * 2**child.restarts, 15.0)
            child.restarts += 1
            await asyncio.sleep(delay)
            if self._stopping:
                return
            child.ready.clear()
            await self._spawn(child)

    async def stop_child(self, name: str) -> int | None:
        """Stop one child now (it is not restarted); returns its exit code."""
        child = self._children[name]
        child.stopping = True
        return await self._stop_child(child)

    async def stop(self) -> dict[str, int | None]:
        """SIGTERM every child (newest first), wait, SIGKILL stragglers; returns exit codes."""
        self._stopping = True
        codes: dict[str, int | None] = {}
        for name, child in reversed(list(self._children.items())):
            codes[name] = await self._stop_child(child)
        for watcher in self._watchers:
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        return codes

    async def _stop_child(self, child: _Child) -> int | None:
        process = child.process
        if process is None or process.returncode is not None:
            return process.returncode if process else None
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(process.wait(), child.spec.stop_timeout_s)
        except TimeoutError:
            log_event(log, "child_killed", logging.WARNING, child=child.spec.name)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            code = await process.wait()
        await asyncio.gather(*child.pumps, return_exceptions=True)
        log_event(log, "child_stopped", child=child.spec.name, code=code)
        return code
