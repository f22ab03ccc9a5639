"""Per-sid sequence tracking (kalshi-api.md §3.6, CM-12 without its design flaws).

`seq` counts per subscription (sid) across all of its markets; a snapshot consumes one. The
tracker only judges: it never drops a frame. Pure and O(1) per frame; memory is one int per sid.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Verdict(Enum):
    OK = "ok"
    FIRST = "first"  # first seq seen on a sid nobody announced (no expectation)
    GAP = "gap"  # seq > expected: expected..seq-1 were never received
    DUPLICATE = "duplicate"  # seq <= last: a repeat or out-of-order frame (forwarded anyway)


@dataclass(frozen=True, slots=True)
class SeqCheck:
    verdict: Verdict
    expected: int | None  # what the tracker expected (None for FIRST)


class SequenceTracker:
    """Last seq per sid of one WebSocket session."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[int, int] = {}

    def start(self, sid: int) -> None:
        """A new subscription: its first sequenced frame must carry seq 1."""
        self._last[sid] = 0

    def forget(self, sid: int) -> None:
        self._last.pop(sid, None)

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
            return SeqCheck(Verdict.GAP, expected)
        return SeqCheck(Verdict.DUPLICATE, expected)
