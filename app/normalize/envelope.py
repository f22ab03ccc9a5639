"""What the listener knows about a frame besides its text (DESIGN §3 stream envelope)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The largest instant `datetime` (and so PostgreSQL via our rows) can hold: 9999-12-31.
MAX_NS = 253_402_300_799_999_999_999


# The last conversion: a frame's receive time is converted several times in a row (version
# choice, raw frame row, typed row). One tuple, replaced whole, so readers never see a torn pair.
_last: tuple[int, datetime] = (0, EPOCH)


def datetime_from_ns(ns: int) -> datetime:
    """UTC datetime of a Unix time in ns, truncated to the microsecond timestamptz keeps."""
    global _last
    last = _last
    if last[0] == ns and type(ns) is int:
        return last[1]
    result = EPOCH + timedelta(microseconds=ns // 1000)
    if type(ns) is int:
        _last = (ns, result)
    return result


@dataclass(frozen=True, slots=True)
class FrameEnvelope:
    """The stream entry's facts about one frame.

    `received_ns` is the listener's local receive time (Unix ns), `connection_id` the
    WebSocket session (unique per session), `batch_pos` the frame's position in its stream
    entry; `sid`/`seq`/`gap` are the listener's sequence verdict (None when it did not parse
    them). `resync` marks an orderbook snapshot the listener requested to repair a gap.
    `yes_price` marks a frame of a subscription made with `use_yes_price: true` (kalshi-api.md
    §3.3): its book frames list NO levels on the YES price scale, which the book mappers undo.
    `stream`/`entry_id` say where the frame was read from (kept on dead letters).

    A bad envelope is a bug in our own code, so construction raises instead of dead-lettering.
    """

    received_ns: int
    connection_id: str
    batch_pos: int
    gatherer: str
    sid: int | None = None
    seq: int | None = None
    gap: bool = False
    resync: bool = False
    stream: str | None = None
    entry_id: str | None = None
    yes_price: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.received_ns, bool) or not isinstance(self.received_ns, int):
            raise TypeError("received_ns must be an int (Unix nanoseconds)")
        if not 0 <= self.received_ns <= MAX_NS:
            raise ValueError(f"received_ns out of range: {self.received_ns}")
        if not isinstance(self.batch_pos, int) or self.batch_pos < 0:
            raise ValueError(f"batch_pos must be a non-negative int, got {self.batch_pos!r}")
        if not self.connection_id or "\x00" in self.connection_id:
            raise ValueError("connection_id must be a non-empty string without NUL")
        if not self.gatherer or "\x00" in self.gatherer:
            raise ValueError("gatherer must be a non-empty string without NUL")

    @property
    def received_at(self) -> datetime:
        return datetime_from_ns(self.received_ns)


@dataclass(frozen=True, slots=True)
class ParsedFrame:
    """A frame whose JSON parsed into the WebSocket envelope shape; what mappers receive.

    `sid`/`seq` are the frame's own values, or the listener's verdict where the frame has none.
    """

    type: str
    msg: Mapping[str, Any]
    sid: int | None
    seq: int | None
    sending_ts_ms: int | None
    envelope: FrameEnvelope
