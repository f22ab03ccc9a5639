"""Gap recovery of one order book subscription, as a pure state machine (docs/listener.md).

A sequence gap on a book sid means any of its markets may have lost a delta, so every one needs
a fresh snapshot. The machine only decides; the connection manager does the I/O it asks for:

    IDLE --gap--> OWED --asked--> ASKED --all snapshots in--> IDLE (gaps recovered)
                   ^                |
                   +----timeout-----+  (asked again up to `retries` times, then RESUBSCRIBE)

A subscription made afresh (after a failed recovery or a reconnect) inherits the open gaps
with `carry`: its subscribe snapshots repair them, nothing has to be asked.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

GET_SNAPSHOT = "get_snapshot"


@dataclass(frozen=True, slots=True)
class Settled:
    """Every snapshot owed came: these gap records are repaired, by `mode`."""

    gaps: list[dict[str, Any]]
    mode: str


@dataclass(frozen=True, slots=True)
class Action:
    """What the manager must do now for this subscription."""

    kind: str  # "none", "ask" (get_snapshot `markets`) or "resubscribe"
    markets: tuple[str, ...] = ()
    overdue: bool = False  # an earlier request went unanswered for the timeout


NOTHING = Action("none")


@dataclass
class BookRecovery:
    """Open gaps of one book sid and the snapshots that will repair them."""

    gaps: list[dict[str, Any]] = field(default_factory=list)
    mode: str = GET_SNAPSHOT  # how the open gaps get repaired (the gap_recovered `recovery`)
    pending: set[str] = field(default_factory=set)  # markets still owing a snapshot
    owed: bool = False  # a get_snapshot must be sent
    asked_at: float | None = None  # monotonic time of the last get_snapshot
    requests: int = 0  # get_snapshot requests sent for the open gaps

    @property
    def active(self) -> bool:
        return bool(self.pending)

    def gap(self, record: dict[str, Any], markets: Iterable[str]) -> None:
        """A gap on the sid: every market needs a fresh snapshot, asked for at once."""
        if not self.gaps:
            self.mode = GET_SNAPSHOT
        self.gaps.append(record)
        self.pending = set(markets)
        self.owed = bool(self.pending)

    def carry(self, gaps: list[dict[str, Any]], mode: str, markets: Iterable[str]) -> None:
        """A fresh subscription inherits `gaps`: its own subscribe snapshots repair them."""
        self.gaps.extend(gaps)
        self.mode = mode
        self.pending = set(markets)
        self.owed = False

    def snapshot(self, ticker: str) -> tuple[bool, Settled | None]:
        """A snapshot of `ticker` came: (it answers our get_snapshot, gaps now repaired)."""
        if ticker not in self.pending:
            return False, None
        self.pending.discard(ticker)
        return self.mode == GET_SNAPSHOT, self._settle_if_done()

    def forget(self, tickers: Iterable[str]) -> Settled | None:
        """Markets that left the subscription owe nothing any more."""
        if not self.pending:
            return None
        self.pending.difference_update(tickers)
        return self._settle_if_done()

    def next_action(self, now: float, timeout_s: float, retries: int) -> Action:
        """Ask for snapshots when owed or when the last request timed out (up to `retries`
        times again); after that, give up on get_snapshot and make the subscription afresh."""
        if not self.pending:
            return NOTHING
        if self.owed:
            return Action("ask", tuple(sorted(self.pending)))
        if self.asked_at is None or now - self.asked_at < timeout_s:
            return NOTHING
        if self.requests <= retries:
            return Action("ask", tuple(sorted(self.pending)), overdue=True)
        return Action("resubscribe", overdue=True)

    def asked(self, now: float) -> None:
        self.owed = False
        self.asked_at = now
        self.requests += 1

    def take_gaps(self) -> list[dict[str, Any]]:
        """The open gaps, handed to the next subscription; this one is left idle."""
        gaps, self.gaps = self.gaps, []
        self._reset()
        return gaps

    def _settle_if_done(self) -> Settled | None:
        if self.pending:
            return None
        settled = Settled(self.gaps, self.mode) if self.gaps else None
        self.gaps = []
        self._reset()
        return settled

    def _reset(self) -> None:
        self.pending = set()
        self.owed = False
        self.asked_at = None
        self.requests = 0
        self.mode = GET_SNAPSHOT
