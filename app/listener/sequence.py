"""Per-sid sequence position (kalshi-api.md §3.6, CM-12 without its design flaws).

`seq` counts per subscription (sid) across all of its markets; a snapshot consumes one. A
position only judges: it never drops a frame. Pure and O(1) per frame in sequence (a gap costs
its skipped seqs); memory is one int plus at most MAX_MISSING skipped seqs.

Command acks (`ok`, `unsubscribed`) carry a `seq` too, and whether it *consumes* one is an open
protocol question (kalshi-api.md §7.1). `AckSeqRule` reads an ack's seq either way: as the
sid's current position (nothing consumed) or as a consumed seq, and in `auto` learns which from
the first ack that can only mean one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

MAX_MISSING = 4096  # skipped seqs remembered per sid

ACK_SEQ_MODES = ("auto", "position", "consumes")


class Verdict(Enum):
    OK = "ok"
    FIRST = "first"  # first seq seen on a sid nobody announced (no expectation)
    GAP = "gap"  # seq > expected: expected..seq-1 were never received
    DUPLICATE = "duplicate"  # seq <= last and already delivered: a repeat (forwarded anyway)
    LATE = "late"  # a seq a gap skipped, arriving after all: an original, not a repeat
    ACK = "ack"  # a command ack whose seq fits the position (consumed or just reported)


@dataclass(frozen=True, slots=True)
class SeqCheck:
    verdict: Verdict
    expected: int | None  # what the position expected (None for FIRST)


class SeqPosition:
    """The last seq of one sid, and the seqs its recent gaps skipped."""

    __slots__ = ("_missing", "last")

    def __init__(self, last: int | None = 0) -> None:
        # 0: a new subscription, whose first sequenced frame must carry seq 1; None: a sid
        # nobody announced, whose first seq sets the position.
        self.last = last
        # Seqs recent gaps skipped (at most MAX_MISSING): a frame with one of them is a late
        # original, never to be taken for a repeat and kept raw only.
        self._missing: set[int] = set()

    @property
    def expected(self) -> int | None:
        return None if self.last is None else self.last + 1

    def check(self, seq: int) -> SeqCheck:
        last = self.last
        if last is None:
            self.last = seq
            return SeqCheck(Verdict.FIRST, None)
        expected = last + 1
        if seq == expected:
            self.last = seq
            return SeqCheck(Verdict.OK, expected)
        if seq > expected:
            self._skip(expected, seq)
            self.last = seq
            return SeqCheck(Verdict.GAP, expected)
        if seq in self._missing:
            self._missing.discard(seq)
            return SeqCheck(Verdict.LATE, expected)
        return SeqCheck(Verdict.DUPLICATE, expected)

    def ack(self, seq: int, consumes: bool) -> SeqCheck:
        """Judge a command ack's seq: `consumes` says whether acks take a seq of their own."""
        last = self.last
        if last is None:
            self.last = seq
            return SeqCheck(Verdict.FIRST, None)
        # The seq the ack reports when nothing was lost: the next one, or the current one.
        fits = last + 1 if consumes else last
        if seq == fits:
            self.last = seq
            return SeqCheck(Verdict.ACK, last + 1)
        if seq > fits:
            # Data frames up to the ack's seq (exclusive when it consumed one) never came.
            self._skip(last + 1, seq if consumes else seq + 1)
            self.last = seq
            return SeqCheck(Verdict.GAP, last + 1)
        return SeqCheck(Verdict.ACK, last + 1)  # an older position: nothing to learn from it

    def _skip(self, first: int, stop: int) -> None:
        """Remember seqs first..stop-1 as never received."""
        self._missing.update(range(max(first, stop - MAX_MISSING), stop))
        if len(self._missing) > MAX_MISSING:  # the oldest skipped seqs are the least likely
            self._missing = set(sorted(self._missing)[-MAX_MISSING:])


class AckSeqRule:
    """What an ack's seq means: `position` (reports the current seq), `consumes` (takes the
    next one), or `auto`: `position` once an ack reports the current seq (impossible if acks
    consumed), until then `consumes` (so a consuming exchange never looks like a gap)."""

    __slots__ = ("learned", "mode")

    def __init__(self, mode: str = "auto") -> None:
        if mode not in ACK_SEQ_MODES:
            raise ValueError(f"ack seq mode must be one of {', '.join(ACK_SEQ_MODES)}")
        self.mode = mode
        self.learned: str | None = None if mode == "auto" else mode

    @property
    def consumes(self) -> bool:
        return self.learned != "position"

    def judge(self, position: SeqPosition, seq: int) -> SeqCheck:
        if self.learned is None and position.last is not None and seq == position.last:
            self.learned = "position"
        return position.ack(seq, self.consumes)
