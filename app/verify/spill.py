"""Grace-hash partitioning of records on disk, so a comparison never holds a whole capture.

Both sides are streamed once into `partitions` files each (a record goes to the partition of a
stable hash of its identity, so all copies of one identity meet in one partition); then the
partitions are compared one at a time. Peak memory is one partition of both sides, about
(captured bytes / partitions) of records. Files live in a private temporary directory that is
removed on close. Never use this for anything but records of `app.verify.records`.
"""

from __future__ import annotations

import shutil
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import orjson

from app.verify.records import Record

Tagged = tuple[str, Record]  # (table, record)


class Spill:
    """Partitioned record files for the two sides, `expected` and `found`."""

    SIDES = ("expected", "found")

    def __init__(self, partitions: int, directory: Path | None = None) -> None:
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        self.partitions = partitions
        self.directory = Path(tempfile.mkdtemp(prefix="kd-verify-", dir=directory))

    def _path(self, side: str, partition: int) -> Path:
        return self.directory / f"{side}.{partition}.jsonl"

    def write(self, side: str, records: Iterable[Tagged]) -> None:
        if side not in self.SIDES:
            raise ValueError(f"unknown side {side!r}")
        handles: list[IO[bytes]] = [
            open(self._path(side, p), "ab")  # noqa: SIM115  (closed below)
            for p in range(self.partitions)
        ]
        try:
            for table, (identity, values) in records:
                partition = zlib.crc32(identity.encode()) % self.partitions
                handles[partition].write(orjson.dumps([table, identity, values]) + b"\n")
        finally:
            for handle in handles:
                handle.close()

    def read(self, side: str, partition: int) -> dict[str, list[Record]]:
        """One partition of one side, grouped by table."""
        out: dict[str, list[Record]] = {}
        path = self._path(side, partition)
        if not path.exists():
            return out
        with open(path, "rb") as handle:
            for line in handle:
                table, identity, values = orjson.loads(line)
                out.setdefault(table, []).append((identity, values))
        return out

    def partitions_of(self) -> Iterator[int]:
        yield from range(self.partitions)

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Spill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
