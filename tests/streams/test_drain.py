"""The drain against real Redis: ack after handling, reclaim, redelivery, poison, dead letters."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis

from app.streams import Entry, Frame, decode_entry, drain, encode_entry, parse_dead_letter
from app.streams.drain import Handled
from tests.conftest import REPO

GROUP = "writers"


def add_entries(client: redis.Redis, stream: str, n: int, tag: str = "e") -> list[str]:
    ids = []
    for i in range(n):
        frames = [Frame(f"{tag}{i}/{k}".encode(), i, "c", 1, k) for k in range(3)]
        ids.append(client.xadd(stream, encode_entry(frames)).decode())
    return ids


def pending(client: redis.Redis, stream: str) -> int:
    return int(client.xpending(stream, GROUP)["pending"])


class Recorder:
    """A handler that remembers what it committed (stands in for the DB transaction)."""

    def __init__(self, fail_when=None) -> None:
        self.calls: list[list[str]] = []
        self.committed: list[str] = []
        self.fail_when = fail_when

    def __call__(self, entries: list[Entry]) -> None:
        self.calls.append([e.id for e in entries])
        if self.fail_when is not None and self.fail_when(entries):
            raise ValueError("handler refused the batch")
        self.committed.extend(e.id for e in entries)


def test_entries_are_handled_once_and_acked(client, names) -> None:
    ids = add_entries(client, names.trade, 25)
    handler = Recorder()
    result = drain(client, names.trade, GROUP, "w:1", handler, budget_s=5, count=10)
    assert handler.committed == ids
    assert [len(c) for c in handler.calls] == [10, 10, 5]
    assert (result.handled, result.acked, result.frames, result.failed) == (25, 25, 75, 0)
    assert result.exhausted and result.error is None
    assert pending(client, names.trade) == 0
    again = drain(client, names.trade, GROUP, "w:1", handler, budget_s=5, count=10)
    assert again.handled == 0 and again.exhausted


def test_handler_gets_decoded_frames(client, names) -> None:
    frames = [Frame(b"\xff not json", 7, "conn-a", None, None, True), Frame(b"", 8, "conn-b", 3, 4)]
    client.xadd(names.book(0), encode_entry(frames))
    seen: list[Entry] = []
    drain(client, names.book(0), GROUP, "w:1", seen.extend, budget_s=5, count=10)
    assert seen[0].frames == frames and seen[0].deliveries == 1


def test_failed_handler_leaves_entries_pending_for_another_consumer(client, names) -> None:
    ids = add_entries(client, names.trade, 25)
    failing = Recorder(fail_when=lambda entries: True)
    first = drain(client, names.trade, GROUP, "w:a", failing, budget_s=5, count=10, min_idle_ms=500)
    assert first.failed == 10 and first.handled == 0 and "handler refused" in (first.error or "")
    assert pending(client, names.trade) == 10

    other = Recorder()
    soon = drain(client, names.trade, GROUP, "w:b", other, budget_s=5, count=10, min_idle_ms=500)
    assert soon.reclaimed == 0 and other.committed == ids[10:]  # too fresh to reclaim yet
    time.sleep(0.55)
    later = drain(client, names.trade, GROUP, "w:b", other, budget_s=5, count=10, min_idle_ms=500)
    assert later.reclaimed == 10 and later.handled == 10
    assert sorted(other.committed) == sorted(ids)  # every entry committed exactly once
    assert len(set(other.committed)) == 25
    assert pending(client, names.trade) == 0


def test_crash_between_commit_and_ack_redelivers(client, names, redis_test_url, tmp_path) -> None:
    ids = add_entries(client, names.trade, 4)
    log = tmp_path / "committed.txt"
    script = textwrap.dedent(
        f"""
        import os, redis
        from app.streams import drain
        def handler(entries):
            with open({str(log)!r}, "a") as f:       # the "DB commit"
                f.write("".join(e.id + "\\n" for e in entries))
            os._exit(1)                              # killed before XACK
        drain(redis.Redis.from_url({redis_test_url!r}), {names.trade!r}, "writers",
              "crasher:1", handler, budget_s=5, count=10, min_idle_ms=100)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, timeout=30, check=False)
    assert proc.returncode == 1
    assert log.read_text().split() == ids
    assert pending(client, names.trade) == 4

    time.sleep(0.15)
    replay = Recorder()
    result = drain(client, names.trade, GROUP, "w:2", replay, budget_s=5, count=10, min_idle_ms=100)
    assert replay.committed == ids  # the same entries a second time: writes must be idempotent
    assert result.reclaimed == 4 and all(len(c) == 4 for c in replay.calls)
    assert pending(client, names.trade) == 0


def test_poison_entry_is_isolated_and_dead_lettered(client, names) -> None:
    ids = add_entries(client, names.trade, 6)
    poison_id = ids[3]
    handler = Recorder(fail_when=lambda entries: any(e.id == poison_id for e in entries))
    runs = 0
    while runs == 0 or pending(client, names.trade):
        drain(
            client, names.trade, GROUP, "w:1", handler, count=10, min_idle_ms=30, max_deliveries=3
        )
        runs += 1
        assert runs < 50
        time.sleep(0.04)
    # delivered 1, 2 (as a batch, failing), 3 (alone, failing), then 4 > 3: dead-lettered
    assert sorted(handler.committed) == sorted(i for i in ids if i != poison_id)
    assert len(handler.committed) == 5
    ((_dead_id, fields),) = client.xrange(names.dead)
    letter = parse_dead_letter(fields)
    assert (letter.source_stream, letter.source_id) == (names.trade, poison_id)
    assert letter.deliveries == 4 and "delivered 4 times" in letter.reason
    original = client.xrange(names.trade, poison_id, poison_id)[0][1]
    assert letter.fields == original  # bytes unchanged
    assert [f.raw for f in decode_entry(letter.fields)] == [b"e3/0", b"e3/1", b"e3/2"]


def test_corrupt_entry_goes_to_dead_letters_without_blocking_its_batch(client, names) -> None:
    good = add_entries(client, names.ticker, 2)
    fields = encode_entry([Frame(b"x", 1, "c")])
    fields[b"d"] = fields[b"d"][:-1] + b"?"
    bad = client.xadd(names.ticker, fields).decode()
    more = add_entries(client, names.ticker, 1, tag="f")
    handler = Recorder()
    result = drain(client, names.ticker, GROUP, "w:1", handler, count=10)
    assert handler.committed == good + more
    assert result.dead_lettered == 1 and result.acked == 4
    (_, dead_fields), *_ = client.xrange(names.dead)
    letter = parse_dead_letter(dead_fields)
    assert letter.source_id == bad and letter.reason == "corrupt envelope: checksum mismatch"
    assert letter.fields[b"d"] == fields[b"d"]
    assert pending(client, names.ticker) == 0


def test_transient_failures_do_not_make_entries_poison(client, names) -> None:
    ids = add_entries(client, names.trade, 3)
    outage = {"left": 6}

    def handler(entries: list[Entry]) -> None:
        if outage["left"]:
            outage["left"] -= 1
            raise ConnectionRefusedError("database is down")

    for _ in range(40):
        result = drain(
            client, names.trade, GROUP, "w:1", handler, count=10, min_idle_ms=20, max_deliveries=2
        )
        if result.handled:
            break
        time.sleep(0.03)
    assert result.handled == 3 and result.dead_lettered == 0
    assert client.xlen(names.dead) == 0
    assert client.xack(names.trade, GROUP, *ids) == 0  # all acked already


def test_budget_bounds_a_run(client, names) -> None:
    add_entries(client, names.trade, 50)
    result = drain(
        client, names.trade, GROUP, "w:1", lambda e: time.sleep(0.05), budget_s=0.12, count=5
    )
    assert not result.exhausted and 5 <= result.handled <= 20
    assert pending(client, names.trade) == 0  # it stopped between batches, not inside one


def test_refuses_a_client_that_decodes_responses(redis_test_url: str, names) -> None:
    text_client = redis.Redis.from_url(redis_test_url, decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses"):
        drain(text_client, names.trade, GROUP, "w:1", lambda e: None)
    text_client.close()


def test_dead_letter_stream_can_be_drained_raw(client, names, tmp_path: Path) -> None:
    fields = encode_entry([Frame(b"x", 1, "c")])
    fields[b"v"] = b"99"
    client.xadd(names.other, fields)
    drain(client, names.other, GROUP, "w:1", lambda e: None)
    rows: list[Entry] = []
    result = drain(client, names.dead, GROUP, "w:1", rows.extend, decode=False, max_deliveries=None)
    assert result.handled == 1 and rows[0].frames == []
    assert "unsupported schema version" in parse_dead_letter(rows[0].fields).reason


def test_a_delivery_count_alone_never_dead_letters(client, names) -> None:
    """Entries delivered many times by workers that died (no failure observed) are tried
    alone, not dead-lettered unread."""
    ids = add_entries(client, names.trade, 3)
    client.xgroup_create(names.trade, GROUP, id="0")
    client.xreadgroup(GROUP, "killed:1", {names.trade: ">"}, count=10)
    for _ in range(9):
        client.xclaim(names.trade, GROUP, "killed:1", 0, ids)
    handler = Recorder()
    result = drain(
        client, names.trade, GROUP, "w:1", handler, count=10, min_idle_ms=0, max_deliveries=3
    )
    assert result.dead_lettered == 0 and client.xlen(names.dead) == 0
    assert handler.calls == [[i] for i in ids]  # one per call: each could have been poison
    assert sorted(handler.committed) == sorted(ids) and pending(client, names.trade) == 0


def test_handler_can_reject_entries_it_committed_without(client, names) -> None:
    ids = add_entries(client, names.trade, 3)

    def handler(entries: list[Entry]) -> Handled:
        return Handled(rejected={ids[1]: "raw batch refused: CheckViolation"})

    result = drain(client, names.trade, GROUP, "w:1", handler, count=10)
    assert (result.handled, result.dead_lettered, result.acked) == (2, 1, 3)
    ((_, fields),) = client.xrange(names.dead)
    letter = parse_dead_letter(fields)
    assert (letter.source_id, letter.reason) == (ids[1], "raw batch refused: CheckViolation")
    assert pending(client, names.trade) == 0


def test_transient_failure_makes_entries_reclaimable_at_once(client, names) -> None:
    """A retryable error (the predicate form) restores the counts and the idle time: the
    next run retries at once instead of after min_idle_ms."""
    ids = add_entries(client, names.trade, 2)
    down = {"now": True}

    def handler(entries: list[Entry]) -> None:
        if down["now"]:
            raise RuntimeError("database is read-only")

    def retryable(exc: BaseException) -> bool:
        return "read-only" in str(exc)

    first = drain(
        client, names.trade, GROUP, "w:1", handler, min_idle_ms=60_000, retryable=retryable
    )
    assert first.failed == 2 and first.transient and first.dead_lettered == 0
    down["now"] = False
    second = drain(
        client, names.trade, GROUP, "w:2", handler, min_idle_ms=60_000, retryable=retryable
    )
    assert second.reclaimed == 2 and second.handled == 2
    assert client.xack(names.trade, GROUP, *ids) == 0
