"""Writes the ground truth directory while the simulator runs (format: docs/simulator.md).

Everything goes through large write buffers so recording costs a memory copy per frame, not a
system call; buffers are flushed on shutdown, on `POST /admin/dump`, and when they fill. The
reader is `truth.py`; the file names below are the contract between the two.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import orjson

META_FILE = "meta.json"
EXCHANGE_FILE = "exchange.jsonl"
FRAMES_FILE = "frames.tsv"
CONNECTIONS_FILE = "connections.jsonl"
FAULTS_FILE = "faults.jsonl"
STATE_FILE = "state.jsonl"
CLOCK_FILE = "clock.tsv"
# 2: `clock.tsv` and `ticker` records in `exchange.jsonl`. Readers accept every version listed
# in truth.READABLE_TRUTH_FORMATS.
TRUTH_FORMAT_VERSION = 2
# Bumped whenever catalog, initial books or order flow change what a seed produces.
# 2: the $0.0001 grid, exchange_index, metadata/structure/fee updates (kalshi-api.md §9).
GENERATOR_VERSION = "kalshi-data-sim/2"

_BUFFER = 4 << 20


class Recorder:
    """Append-only writers for one truth directory; a no-op when `directory` is None."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.enabled = directory is not None
        self._files: dict[str, BinaryIO] = {}
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            # A state left by an earlier run would describe the wrong exchange.
            for stale in (STATE_FILE, STATE_FILE + ".tmp", META_FILE):
                (directory / stale).unlink(missing_ok=True)
            for name in (EXCHANGE_FILE, FRAMES_FILE, CONNECTIONS_FILE, FAULTS_FILE, CLOCK_FILE):
                self._files[name] = open(directory / name, "wb", buffering=_BUFFER)  # noqa: SIM115
            self._exchange = self._files[EXCHANGE_FILE]
            self._frames = self._files[FRAMES_FILE]
        self._clock_wall_ns = 0

    def exchange(self, line: bytes) -> None:
        """One deterministic exchange event (a complete JSON line)."""
        self._exchange.write(line)

    def frames(self, lines: bytes) -> None:
        """Already formatted `frames.tsv` lines."""
        self._frames.write(lines)

    def clock(self, steps_done: int) -> None:
        """One `clock.tsv` line: `steps_done` steps had run by now (wall clock, ns).

        Called by the pump after each batch and before that batch's frames are flushed, so a
        verifier can place exchange steps in wall-clock time. The wall time never decreases
        (a system clock stepped back repeats the previous value) so readers can bisect it.
        """
        if self.enabled:
            wall_ns = max(time.time_ns(), self._clock_wall_ns)
            self._clock_wall_ns = wall_ns
            self._files[CLOCK_FILE].write(b"%d\t%d\n" % (wall_ns, steps_done))

    def fault(self, record: dict[str, Any]) -> None:
        if self.enabled:
            record = {"wall_ns": time.time_ns(), **record}
            self._files[FAULTS_FILE].write(orjson.dumps(record) + b"\n")

    def connection(self, record: dict[str, Any]) -> None:
        if self.enabled:
            record = {"wall_ns": time.time_ns(), **record}
            self._files[CONNECTIONS_FILE].write(orjson.dumps(record) + b"\n")

    def write_meta(self, meta: dict[str, Any]) -> None:
        if self.directory is not None:
            self._replace(META_FILE, [orjson.dumps(meta, option=orjson.OPT_INDENT_2) + b"\n"])

    def write_state(self, lines: Iterable[bytes]) -> Path | None:
        """Replace `state.jsonl` atomically (readers never see half a state)."""
        if self.directory is None:
            return None
        self.flush()
        return self._replace(STATE_FILE, lines)

    def _replace(self, name: str, lines: Iterable[bytes]) -> Path:
        assert self.directory is not None
        target = self.directory / name
        temporary = target.with_name(name + ".tmp")
        with open(temporary, "wb", buffering=_BUFFER) as handle:
            for line in lines:
                handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(target)
        return target

    def flush(self) -> None:
        for handle in self._files.values():
            handle.flush()

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()
        self.enabled = False
