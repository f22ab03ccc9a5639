"""The spill journal: ordered records, bounded size, torn tails, corruption, exclusive lock."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from app.streams import Journal, JournalFull, JournalLocked
from app.streams.journal import JournalRecord


def record(seq: int, size: int = 100) -> JournalRecord:
    return JournalRecord("kd:g:trade", "pub-1", "kd:g:pub:pub-1", seq, 3, bytes([seq % 256]) * size)


def open_journal(path: Path, **kw) -> Journal:
    options = {"segment_bytes": 1000, "max_bytes": 100_000, "fsync": "always"} | kw
    journal = Journal(path, **options)
    journal.open()
    return journal


def read_all(journal: Journal) -> list[JournalRecord]:
    journal.rotate()
    out = []
    for path in journal.closed_segments:
        out.extend(journal.read(path))
    return out


def test_records_come_back_in_order_across_segments(tmp_path: Path) -> None:
    journal = open_journal(tmp_path)
    written = [record(i) for i in range(1, 40)]
    for r in written:
        journal.append(r)
    assert journal.bytes > 1000
    journal.rotate()
    assert len(journal.closed_segments) > 3  # rotated at segment_bytes
    assert read_all(journal) == written
    for path in journal.closed_segments:
        journal.delete(path)
    assert journal.is_empty and journal.bytes == 0
    journal.close()
    assert not list(tmp_path.glob("*.seg"))


def test_a_new_owner_adopts_segments_left_behind(tmp_path: Path) -> None:
    first = open_journal(tmp_path)
    for i in range(1, 6):
        first.append(record(i))
    first.close()
    second = open_journal(tmp_path)
    assert not second.is_empty
    second.append(record(6))  # goes to a new segment after the adopted ones
    assert [r.seq for r in read_all(second)] == [1, 2, 3, 4, 5, 6]
    second.close()


def test_lock_refuses_a_second_live_owner(tmp_path: Path) -> None:
    first = open_journal(tmp_path)
    with pytest.raises(JournalLocked):
        open_journal(tmp_path)
    first.close()
    open_journal(tmp_path).close()


def test_max_bytes_raises_journal_full_and_keeps_the_segment_valid(tmp_path: Path) -> None:
    journal = open_journal(tmp_path, max_bytes=1000, segment_bytes=10_000)
    accepted = []
    with pytest.raises(JournalFull, match="journal_max_bytes"):
        for i in range(1, 100):
            journal.append(record(i))
            accepted.append(i)
    assert accepted and journal.bytes <= 1000
    assert [r.seq for r in read_all(journal)] == accepted
    journal.close()


def test_torn_last_record_is_discarded_with_a_reason(tmp_path: Path) -> None:
    journal = open_journal(tmp_path, segment_bytes=10_000)
    for i in range(1, 4):
        journal.append(record(i))
    journal.close()
    (segment,) = tmp_path.glob("*.seg")
    with open(segment, "ab") as file:  # a writer killed mid-record
        file.write(b"\x50\x00\x00\x00\x12\x34")
    journal = open_journal(tmp_path)
    reader = journal.read(journal.closed_segments[0])
    assert [r.seq for r in reader] == [1, 2, 3]
    assert reader.problem and "torn" in reader.problem and not reader.corrupt
    journal.close()


def test_corruption_in_the_middle_is_reported_as_corrupt(tmp_path: Path) -> None:
    journal = open_journal(tmp_path, segment_bytes=10_000)
    for i in range(1, 4):
        journal.append(record(i))
    journal.close()
    (segment,) = tmp_path.glob("*.seg")
    blob = bytearray(segment.read_bytes())
    blob[200] ^= 0xFF  # inside the second record
    segment.write_bytes(bytes(blob))
    journal = open_journal(tmp_path)
    path = journal.closed_segments[0]
    reader = journal.read(path)
    assert [r.seq for r in reader] == [1]
    assert reader.corrupt
    kept = journal.quarantine(path)
    assert kept.suffix == ".corrupt" and kept.exists() and journal.is_empty
    journal.close()


def test_disk_full_is_a_clear_journal_full(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes write(2) fail with EFBIG exactly like a full disk fails with ENOSPC."""
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))
        from app.streams.journal import Journal, JournalFull, JournalRecord
        j = Journal({str(tmp_path)!r}, segment_bytes=10**9, max_bytes=10**9, fsync="never")
        j.open()
        n = 0
        try:
            for i in range(1, 1000):
                j.append(JournalRecord("s", "p", "k", i, 1, b"x" * 500))
                n = i
        except JournalFull as exc:
            print(n, exc)
            j.close()
            j2 = Journal({str(tmp_path)!r}, segment_bytes=10**9, max_bytes=10**9)
            j2.open(); j2.rotate()
            seqs = [r.seq for p in j2.closed_segments for r in j2.read(p)]
            print(seqs == list(range(1, n + 1)))
            sys.exit(0)
        sys.exit(3)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.strip().splitlines()
    assert "disk full" in first and int(first.split()[0]) >= 4
    assert second == "True"  # the half-written record was cut off again
