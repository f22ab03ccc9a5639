"""The listener's local spill journal: sealed batches that could not go to Redis (DESIGN §3).

A journal is one directory owned by one live publisher (an exclusive `flock` on `LOCK`). It
holds numbered segment files, written append-only and replayed oldest first:

    segment := "KDJ1" record*
    record  := u32 payload length, u32 crc32(payload), payload          (little-endian)
    payload := u16 len, stream, u16 len, publisher id, u16 len, publisher key,
               u64 batch seq, u32 frame count, envelope `d` bytes

Each record is written with a single `write(2)` on an `O_APPEND` descriptor, so a killed
process leaves either whole records or, at worst, one torn record at the very end of its last
segment; the reader stops there and says so. A record whose checksum fails in the middle of a
segment means the disk lied: the reader stops and the replayer renames the segment to
`*.corrupt` (kept for a human, never deleted). The journal is bounded by `max_bytes` and by
the disk; either limit raises `JournalFull` with a message that says which, and the partial
record is cut off again so the segment stays readable.

This module knows files only; it never talks to Redis.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from app.config import FsyncPolicy

MAGIC = b"KDJ1"
SUFFIX = ".seg"
_RECORD_HEAD = struct.Struct("<II")  # payload length, crc32(payload)
_U16 = struct.Struct("<H")
_TAIL = struct.Struct("<QI")  # batch seq, frame count
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class JournalError(Exception):
    """The spill journal cannot be used."""


class JournalFull(JournalError):
    """The journal reached `journal_max_bytes` or the disk is full: nowhere left to spill."""


class JournalLocked(JournalError):
    """Another live publisher owns this journal directory."""


class JournalRecord(NamedTuple):
    """One sealed batch as it waits on disk for Redis."""

    stream: str
    publisher_id: str
    publisher_key: str
    seq: int
    nframes: int
    data: bytes


def encode_record(record: JournalRecord) -> bytes:
    parts = []
    for text in (record.stream, record.publisher_id, record.publisher_key):
        encoded = text.encode()
        parts.append(_U16.pack(len(encoded)))
        parts.append(encoded)
    parts.append(_TAIL.pack(record.seq, record.nframes))
    parts.append(record.data)
    payload = b"".join(parts)
    return _RECORD_HEAD.pack(len(payload), zlib.crc32(payload)) + payload


def decode_payload(payload: bytes) -> JournalRecord:
    offset = 0
    texts = []
    for _ in range(3):
        (length,) = _U16.unpack_from(payload, offset)
        offset += _U16.size
        texts.append(payload[offset : offset + length].decode())
        offset += length
    seq, nframes = _TAIL.unpack_from(payload, offset)
    offset += _TAIL.size
    return JournalRecord(texts[0], texts[1], texts[2], seq, nframes, payload[offset:])


class SegmentReader:
    """Iterates the records of one closed segment; after the loop, `problem` says why it stopped
    early (None when the segment was read to its end) and `corrupt` whether the data is bad
    (as opposed to a torn last record left by a killed writer)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problem: str | None = None
        self.corrupt = False
        self.records = 0
        self.torn_bytes = 0

    def __iter__(self) -> Iterator[JournalRecord]:
        with open(self.path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if file.read(len(MAGIC)) != MAGIC:
                if size == 0:
                    return  # created but never written: an empty segment
                self._fail("not a journal segment (bad magic)", corrupt=True)
                return
            offset = len(MAGIC)
            while offset < size:
                head = file.read(_RECORD_HEAD.size)
                if len(head) < _RECORD_HEAD.size:
                    self._torn(size - offset)
                    return
                length, crc = _RECORD_HEAD.unpack(head)
                payload = file.read(length)
                if len(payload) < length:
                    self._torn(size - offset)
                    return
                if zlib.crc32(payload) != crc:
                    at_end = offset + _RECORD_HEAD.size + length >= size
                    self._fail(f"checksum mismatch at byte {offset}", corrupt=not at_end)
                    if at_end:
                        self.torn_bytes = size - offset
                    return
                try:
                    record = decode_payload(payload)
                except (struct.error, UnicodeDecodeError) as exc:
                    self._fail(f"bad record at byte {offset}: {exc}", corrupt=True)
                    return
                offset += _RECORD_HEAD.size + length
                self.records += 1
                yield record

    def _torn(self, nbytes: int) -> None:
        self.torn_bytes = nbytes
        self.problem = f"torn last record ({nbytes} bytes) discarded"

    def _fail(self, problem: str, *, corrupt: bool) -> None:
        self.problem = problem
        self.corrupt = corrupt


class Journal:
    """Append-only, segment-rotated, size-bounded journal in one locked directory."""

    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int,
        max_bytes: int,
        fsync: FsyncPolicy = "interval",
    ) -> None:
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self.fsync = fsync
        self._lock_fd: int | None = None
        self._active_fd: int | None = None
        self._active_path: Path | None = None
        self._active_size = 0
        self._active_records = 0
        self._closed: list[Path] = []  # oldest first
        self._sizes: dict[Path, int] = {}
        self._next_index = 1
        self._dirty = False
        self.bytes = 0  # every segment file on disk, active included

    # -- lifecycle --------------------------------------------------------------------------

    def open(self) -> None:
        """Take the directory lock and adopt every segment left by an earlier owner."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalLocked(
                f"journal {self.directory} is in use by another publisher (LOCK is held)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd
        segments = sorted(self.directory.glob(f"*{SUFFIX}"), key=_segment_index)
        self._closed = segments
        self._sizes = {path: path.stat().st_size for path in segments}
        self.bytes = sum(self._sizes.values())
        self._next_index = (_segment_index(segments[-1]) + 1) if segments else 1

    def close(self) -> None:
        self.rotate()
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- writing ----------------------------------------------------------------------------

    def append(self, record: JournalRecord) -> int:
        """Write one record; returns its size on disk. Raises JournalFull when out of room."""
        blob = encode_record(record)
        if self.bytes + len(blob) + len(MAGIC) > self.max_bytes:
            raise JournalFull(
                f"journal {self.directory} reached journal_max_bytes={self.max_bytes} "
                f"({self.bytes} bytes held): Redis has been refusing batches for too long"
            )
        if self._active_fd is not None and (
            self._active_size + len(blob) > self.segment_bytes and self._active_records
        ):
            self.rotate()
        if self._active_fd is None:
            self._start_segment()
        assert self._active_fd is not None and self._active_path is not None
        self._write_all(blob)
        self._active_size += len(blob)
        self._active_records += 1
        self._sizes[self._active_path] = self._active_size
        self.bytes += len(blob)
        if self.fsync == "always":
            os.fsync(self._active_fd)
        else:
            self._dirty = True
        return len(blob)

    def _write_all(self, blob: bytes) -> None:
        assert self._active_fd is not None
        view = memoryview(blob)
        written = 0
        try:
            while written < len(blob):
                written += os.write(self._active_fd, view[written:])
        except OSError as exc:
            if written:  # never leave half a record: cut back to the last whole one
                os.ftruncate(self._active_fd, self._active_size)
            if exc.errno in _DISK_FULL:
                raise JournalFull(
                    f"journal {self.directory}: disk full ({os.strerror(exc.errno)}) after "
                    f"{self.bytes} bytes; free space or move journal_dir"
                ) from exc
            raise

    def _start_segment(self) -> None:
        path = self.directory / f"{self._next_index:016d}{SUFFIX}"
        self._next_index += 1
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o644)
        self._active_fd, self._active_path = fd, path
        self._active_size = 0
        self._active_records = 0
        try:
            self._write_all(MAGIC)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            self._active_fd = self._active_path = None
            raise
        self._active_size = len(MAGIC)
        self._sizes[path] = self._active_size
        self.bytes += len(MAGIC)
        if self.fsync != "never":
            _fsync_dir(self.directory)

    def sync(self) -> None:
        """fsync the active segment if it has unsynced writes (the `interval` policy's tick)."""
        if self._dirty and self._active_fd is not None:
            os.fsync(self._active_fd)
        self._dirty = False

    def rotate(self) -> None:
        """Close the active segment so the replayer may read it; an empty one is removed."""
        if self._active_fd is None or self._active_path is None:
            return
        if self.fsync != "never" and self._dirty:
            os.fsync(self._active_fd)
        self._dirty = False
        os.close(self._active_fd)
        path, had_records = self._active_path, self._active_records
        self._active_fd = self._active_path = None
        self._active_size = self._active_records = 0
        if had_records:
            self._closed.append(path)
        else:
            self._forget(path)
            path.unlink(missing_ok=True)

    # -- replay -----------------------------------------------------------------------------

    @property
    def closed_segments(self) -> list[Path]:
        return list(self._closed)

    @property
    def active_records(self) -> int:
        return self._active_records

    @property
    def is_empty(self) -> bool:
        return not self._closed and not self._active_records

    @property
    def segments(self) -> int:
        return len(self._closed) + (1 if self._active_fd is not None else 0)

    def read(self, path: Path) -> SegmentReader:
        return SegmentReader(path)

    def delete(self, path: Path) -> None:
        """Remove a fully replayed closed segment."""
        self._closed.remove(path)
        self._forget(path)
        path.unlink(missing_ok=True)
        if self.fsync != "never":
            _fsync_dir(self.directory)

    def quarantine(self, path: Path) -> Path:
        """Set aside a segment whose data is corrupt (renamed `*.corrupt`, never deleted)."""
        self._closed.remove(path)
        self._forget(path)
        target = path.with_suffix(".corrupt")
        path.rename(target)
        return target

    def _forget(self, path: Path) -> None:
        self.bytes -= self._sizes.pop(path, 0)


def _segment_index(path: Path) -> int:
    try:
        return int(path.stem)
    except ValueError:
        return 0


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
