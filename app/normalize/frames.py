"""`normalize_frame`: one raw WebSocket frame + its envelope -> rows, or a dead-letter verdict.

Pure: no I/O, no clock, no globals beyond the mapper tables. It never raises on bad input:
malformed JSON, an unknown message type, a missing or mistyped field, a value that cannot be
stored exactly all become a `DeadLetterRow` carrying the reason and the raw bytes. Every frame,
good or bad, also yields its `RawFrameRow` facts (identity, type, market, exact bytes); the
bytes themselves are stored by the ingest path as whole stream entries (`raw_batches`).
Command replies (`subscribed`, `ok`, `error`, ...) are `control`: raw frame only, no rows.

Mapper choice (docs/normalize.md): the declared `version`, else the format in effect at the
frame's capture time (`app.normalize.versions`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from app.db.rows import DeadLetterRow, RawFrameRow, Row
from app.normalize import book, fields, lifecycle, tickers, trades
from app.normalize.envelope import FrameEnvelope, ParsedFrame
from app.normalize.fields import FrameError
from app.normalize.versions import FormatVersion, version_for_capture_time

Mapper = Callable[[ParsedFrame], Row]

MAPPERS: Mapping[str, Mapping[FormatVersion, Mapper]] = {
    "orderbook_snapshot": book.SNAPSHOT,
    "orderbook_delta": book.DELTA,
    "trade": trades.TRADE,
    "ticker": tickers.TICKER,
    "market_lifecycle_v2": lifecycle.MARKET,
    "multivariate_market_lifecycle": lifecycle.MARKET,
    "market_lifecycle": lifecycle.MARKET,
    "event_lifecycle": lifecycle.EVENT,
    "event_fee_update": lifecycle.EVENT,
}
CONTROL_TYPES = frozenset({"subscribed", "unsubscribed", "ok", "error"})
DEAD_LETTER_STAGE = "normalize"
_MAX_REASON = 500


class Verdict(StrEnum):
    ROWS = "rows"
    CONTROL = "control"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class Normalized:
    """The outcome for one frame. `rows` holds the typed rows (one for data frames)."""

    verdict: Verdict
    version: FormatVersion
    raw_frame: RawFrameRow
    rows: tuple[Row, ...] = ()
    dead_letter: DeadLetterRow | None = None

    @property
    def reason(self) -> str | None:
        return self.dead_letter.reason if self.dead_letter else None

    def all_rows(self) -> tuple[Row, ...]:
        """The rows to store for this frame: typed rows, dead letter (the raw bytes are stored
        with their whole stream entry, `raw_batches`)."""
        return (*self.rows, self.dead_letter) if self.dead_letter else self.rows


def batch_rows(results: Iterable[Normalized]) -> list[Row]:
    """All rows of a batch, ready for `app.db.copy.write_rows`."""
    return [row for result in results for row in result.all_rows()]


def _as_bytes(raw: str | bytes) -> bytes:
    if isinstance(raw, bytes | bytearray | memoryview):
        return bytes(raw)
    return raw.encode("utf-8", "surrogatepass")


def _int_field(obj: Mapping[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return fields.bigint(value, f"envelope {key!r}")  # sid/seq are bigint columns
    raise FrameError(f"envelope {key!r} must be an integer, got {value!r:.60}")


def _verdict_field(frame_value: int | None, listener: int | None, name: str) -> int | None:
    if frame_value is not None and listener is not None and frame_value != listener:
        raise FrameError(
            f"listener verdict {name}={listener} disagrees with the frame's {name}={frame_value}"
        )
    return frame_value if frame_value is not None else listener


class _Peek:
    """What could be read before failing (for the raw-frame and dead-letter rows)."""

    __slots__ = ("market_ticker", "msg_type", "seq", "sid")

    def __init__(self, envelope: FrameEnvelope) -> None:
        self.msg_type: str | None = None
        self.market_ticker: str | None = None
        self.sid = envelope.sid
        self.seq = envelope.seq


def _parse(data: bytes, envelope: FrameEnvelope, peek: _Peek) -> ParsedFrame:
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise FrameError(f"malformed JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise FrameError(f"frame is not a JSON object but {type(obj).__name__}")
    msg_type = obj.get("type")
    if not isinstance(msg_type, str) or not msg_type or "\x00" in msg_type:
        raise FrameError("frame has no 'type' string")
    peek.msg_type = msg_type
    msg = obj.get("msg")
    if isinstance(msg, dict):
        ticker = msg.get("market_ticker")
        if isinstance(ticker, str) and ticker and "\x00" not in ticker:
            peek.market_ticker = ticker
    sid = _verdict_field(_int_field(obj, "sid"), envelope.sid, "sid")
    seq = _verdict_field(_int_field(obj, "seq"), envelope.seq, "seq")
    peek.sid, peek.seq = sid, seq
    return ParsedFrame(
        type=msg_type,
        msg=msg if isinstance(msg, dict) else {},
        sid=sid,
        seq=seq,
        sending_ts_ms=_int_field(obj, "sending_ts_ms"),
        envelope=envelope,
    )


def _raw_row(envelope: FrameEnvelope, peek: _Peek, data: bytes) -> RawFrameRow:
    return RawFrameRow(
        gatherer=envelope.gatherer,
        connection_id=envelope.connection_id,
        received_ns=envelope.received_ns,
        received_at=envelope.received_at,
        batch_pos=envelope.batch_pos,
        sid=peek.sid,
        seq=peek.seq,
        gap=envelope.gap,
        msg_type=peek.msg_type,
        market_ticker=peek.market_ticker,
        raw=data,
    )


def frame_facts(raw: str | bytes, envelope: FrameEnvelope) -> RawFrameRow:
    """What can be read of one frame without mapping it: type, market, sid/seq, exact bytes.

    Equal to `normalize_frame(raw, envelope).raw_frame`, at the cost of the JSON parse only.
    """
    data = _as_bytes(raw)
    peek = _Peek(envelope)
    with contextlib.suppress(FrameError):  # a bad frame's facts are what could be read
        _parse(data, envelope, peek)
    return _raw_row(envelope, peek, data)


def normalize_frame(
    raw: str | bytes, envelope: FrameEnvelope, *, version: FormatVersion | None = None
) -> Normalized:
    """Map one frame. Never raises for bad frames (see the module docstring)."""
    chosen = version if version is not None else version_for_capture_time(envelope.received_ns)
    data = _as_bytes(raw)
    peek = _Peek(envelope)
    rows: tuple[Row, ...] = ()
    reason: str | None = None
    verdict = Verdict.ROWS
    try:
        frame = _parse(data, envelope, peek)
        if frame.type in CONTROL_TYPES:
            verdict = Verdict.CONTROL
        else:
            mappers = MAPPERS.get(frame.type)
            if mappers is None:
                raise FrameError(f"unsupported message type {frame.type!r}")
            if not isinstance(frame.msg, dict) or not frame.msg:
                raise FrameError(f"{frame.type} frame without a 'msg' object")
            rows = (mappers[chosen](frame),)
    except FrameError as exc:
        reason = str(exc)
    except Exception as exc:  # a normalizer bug must not block the batch: dead-letter it
        reason = f"normalizer error {type(exc).__name__}: {exc}"
    raw_row = _raw_row(envelope, peek, data)
    if reason is None:
        return Normalized(verdict, chosen, raw_row, rows)
    if len(reason) > _MAX_REASON:
        reason = reason[: _MAX_REASON - 3] + "..."
    dead = DeadLetterRow(
        gatherer=envelope.gatherer,
        connection_id=envelope.connection_id,
        received_ns=envelope.received_ns,
        received_at=envelope.received_at,
        batch_pos=envelope.batch_pos,
        sid=peek.sid,
        seq=peek.seq,
        msg_type=peek.msg_type,
        stage=DEAD_LETTER_STAGE,
        reason=reason.replace("\x00", "\\x00"),
        stream=envelope.stream,
        entry_id=envelope.entry_id,
        raw=data,
    )
    return Normalized(Verdict.DEAD, chosen, raw_row, dead_letter=dead)
