"""Per-sid sequence tracking (kalshi-api.md §3.6, CM-12 without its design flaws).

`seq` counts per subscription (sid) across all of its markets; a snapshot consumes one. The
tracker only judges: it never drops a frame. Pure and O(1) per frame in sequence (a gap costs
its skipped seqs); memory is one int per sid plus at most MAX_MISSING skipped seqs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

MAX_MISSING = 4096  # skipped seqs remembered per sid


class Verdict(Enum):
    OK = "ok"
    FIRST = "first"  # first seq seen on a sid nobody announced (no expectation)
    GAP = "gap"  # seq > expected: expected..seq-1 were never received
    DUPLICATE = "duplicate"  # seq <= last and already delivered: a repeat (forwarded anyway)
    LATE = "late"  # a seq a gap skipped, arriving after all: an original, not a repeat


@dataclass(frozen=True, slots=True)
class SeqCheck:
    verdict: Verdict
    expected: int | None  # what the tracker expected (None for FIRST)


class SequenceTracker:
    """Last seq per sid of one WebSocket session."""

    __slots__ = ("_last", "_missing")

    def __init__(self) -> None:
        self._last: dict[int, int] = {}
        # Seqs recent gaps skipped, per sid (at most MAX_MISSING): a frame with one of them is a
        # late original, never to be taken for a repeat and kept raw only.
        self._missing: dict[int, set[int]] = {}

    def start(self, sid: int) -> None:
        """A new subscription: its first sequenced frame must carry seq 1."""
        self._last[sid] = 0
        self._missing.pop(sid, None)

    def forget(self, sid: int) -> None:
        self._last.pop(sid, None)
        self._missing.pop(sid, None)

    def expected(self, sid: int) -> int | None:
        last = self._last.get(sid)
        return None if last is None else last + 1

    def check(self, sid: int, seq: int) -> SeqCheck:
        last = self._last.get(sid)
        if last is None:
            self._last[sid] = seq
            return SeqCheck(Verdict.FIRST, None)
        expected = last + 1
        if seq == expected:
            self._last[sid] = seq
            return SeqCheck(Verdict.OK, expected)
        if seq > expected:
            self._last[sid] = seq
            missing = self._missing.setdefault(sid, set())
            missing.update(range(max(expected, seq - MAX_MISSING), seq))
            if len(missing) > MAX_MISSING:  # the oldest skipped seqs are the least likely
                self._missing[sid] = set(sorted(missing)[-MAX_MISSING:])
            return SeqCheck(Verdict.GAP, expected)
        skipped = self._missing.get(sid)
        if skipped and seq in skipped:
            skipped.discard(seq)
            return SeqCheck(Verdict.LATE, expected)
        return SeqCheck(Verdict.DUPLICATE, expected)
