"""Order book mappers: `orderbook_snapshot` and `orderbook_delta` frames (kalshi-api.md §3.5).

Books carry bids only: YES bids and NO bids, each level `[price, size]`. Snapshot levels are
stored as parallel arrays sorted by ascending price, whatever order the frame used (the order is
not guaranteed, kalshi-api.md §7 q6); a price listed twice on one side is refused rather than
guessed at. Best bids are computed as the maximum price, never taken from element 0 (WR-4).

`use_yes_price` (kalshi-api.md §3.3, §9): a subscription made with it lists NO-side prices on
the YES scale (a NO bid at $0.30 arrives as 0.70). The listener marks such frames
(`FrameEnvelope.yes_price`) and the mappers convert NO prices back (1 - p, exact in
micro-dollars), so stored rows are the same whichever way the subscription was made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from app.db.rows import OrderbookDeltaRow, OrderbookSnapshotRow
from app.kalshi.errors import WireFormatError
from app.kalshi.orderbook import Orderbook, parse_orderbook
from app.normalize import fields
from app.normalize.envelope import FrameEnvelope, ParsedFrame
from app.normalize.fields import FrameError
from app.normalize.versions import FormatVersion
from app.units import MICROS_PER_DOLLAR

Level = tuple[int, int]


def no_price_from_wire(price: int, envelope: FrameEnvelope) -> int:
    """A NO-side price in our canonical NO scale: `1 - p` when the frame's subscription used
    `use_yes_price` (the wire then carries the YES-scale price), else `p`."""
    return MICROS_PER_DOLLAR - price if envelope.yes_price else price


def _sequenced(frame: ParsedFrame) -> tuple[int, int]:
    if frame.sid is None or frame.seq is None:
        raise FrameError(f"{frame.type} without sid/seq (orderbook frames are sequenced)")
    return frame.sid, frame.seq


def _level_pair(level: object, where: str) -> tuple[object, object]:
    if not isinstance(level, list | tuple) or len(level) != 2:
        raise FrameError(f"{where}: each level must be [price, size], got {level!r:.60}")
    return level[0], level[1]


def _sorted_levels(levels: list[Level], where: str) -> list[Level]:
    seen: dict[int, int] = {}
    for price, size in levels:
        if price < 0 or size < 0:
            raise FrameError(f"{where}: negative price or size at level {price}/{size}")
        if price in seen:
            raise FrameError(f"{where}: price {price} micro-dollars listed twice")
        seen[price] = size
    return sorted(seen.items())


def _side_levels(
    msg: Mapping[str, Any], key: str, read: Callable[[object, object, str], Level]
) -> list[Level] | None:
    """Levels under `key`, or None when the key is absent (an empty side has no key)."""
    value = msg.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise FrameError(f"{key!r} must be a list of levels, got {type(value).__name__}")
    where = repr(key)
    return [read(*_level_pair(level, where), where) for level in value]


def _fixed_point_level(price: object, size: object, where: str) -> Level:
    return fields.dollars_value(price, where), fields.count_value(size, where)


def _legacy_dollar_level(price: object, size: object, where: str) -> Level:
    # Legacy `yes_dollars` levels: a dollar-string price beside an integer (or fp) count.
    quantity = (
        fields.count_value(size, where)
        if isinstance(size, str)
        else fields.contracts_value(size, where)
    )
    return fields.dollars_value(price, where), quantity


def _legacy_cent_level(price: object, size: object, where: str) -> Level:
    return fields.cents_value(price, where), fields.contracts_value(size, where)


def _snapshot_row(
    frame: ParsedFrame, yes: list[Level] | None, no: list[Level] | None
) -> OrderbookSnapshotRow:
    sid, seq = _sequenced(frame)
    msg, env = frame.msg, frame.envelope
    if env.yes_price and no:
        no = [(no_price_from_wire(price, env), size) for price, size in no]
    yes_levels = _sorted_levels(yes or [], "yes side")
    no_levels = _sorted_levels(no or [], "no side")
    exchange_ts = (
        fields.exchange_ms(msg["ts_ms"], "'ts_ms'")
        if msg.get("ts_ms") is not None
        else fields.exchange_ms(frame.sending_ts_ms, "'sending_ts_ms'")
        if frame.sending_ts_ms is not None
        else None
    )
    return OrderbookSnapshotRow(
        gatherer=env.gatherer,
        source="resync" if env.resync else "ws",
        market_ticker=fields.required_text(msg, "market_ticker"),
        market_id=fields.text(msg, "market_id", required=False),
        connection_id=env.connection_id,
        sid=sid,
        seq=seq,
        received_ns=env.received_ns,
        received_at=env.received_at,
        batch_pos=env.batch_pos,
        exchange_ts=exchange_ts,
        yes_prices=tuple(p for p, _ in yes_levels),
        yes_sizes=tuple(s for _, s in yes_levels),
        no_prices=tuple(p for p, _ in no_levels),
        no_sizes=tuple(s for _, s in no_levels),
        best_yes_bid=yes_levels[-1][0] if yes_levels else None,
        best_no_bid=no_levels[-1][0] if no_levels else None,
    )


def snapshot_fixed_point(frame: ParsedFrame) -> OrderbookSnapshotRow:
    """Newest: `yes_dollars_fp` / `no_dollars_fp` = [[price_dollars, count_fp], ...]."""
    fields.refuse_legacy_fields(
        frame.msg,
        {
            "yes": "yes_dollars_fp",
            "yes_dollars": "yes_dollars_fp",
            "no": "no_dollars_fp",
            "no_dollars": "no_dollars_fp",
        },
    )
    yes = _side_levels(frame.msg, "yes_dollars_fp", _fixed_point_level)
    no = _side_levels(frame.msg, "no_dollars_fp", _fixed_point_level)
    return _snapshot_row(frame, yes, no)


def _legacy_side(msg: Mapping[str, Any], side: str) -> list[Level] | None:
    for key, read in (
        (f"{side}_dollars_fp", _fixed_point_level),
        (f"{side}_dollars", _legacy_dollar_level),
        (side, _legacy_cent_level),
    ):
        levels = _side_levels(msg, key, read)
        if levels is not None:
            return levels
    return None


def snapshot_legacy(frame: ParsedFrame) -> OrderbookSnapshotRow:
    """Legacy: `yes_dollars` [["0.080", qty]] preferred (subpenny-exact), else `yes` in cents."""
    return _snapshot_row(frame, _legacy_side(frame.msg, "yes"), _legacy_side(frame.msg, "no"))


def _delta_time(frame: ParsedFrame) -> datetime | None:
    msg = frame.msg
    if msg.get("ts_ms") is not None:
        return fields.exchange_ms(msg["ts_ms"], "'ts_ms'")
    ts = msg.get("ts")
    if ts is None:
        return None
    # Deprecated `ts`: RFC 3339 in Kalshi's docs, Unix seconds in some older captures.
    if isinstance(ts, str):
        return fields.exchange_rfc3339(ts, "'ts'")
    return fields.exchange_s(ts, "'ts'")


def _delta_row(frame: ParsedFrame, price: int, delta: int) -> OrderbookDeltaRow:
    sid, seq = _sequenced(frame)
    msg, env = frame.msg, frame.envelope
    if price < 0:
        raise FrameError(f"negative price {price} micro-dollars")
    side = fields.side(msg, "side")
    assert side is not None
    if side == "no":
        price = no_price_from_wire(price, env)
    return OrderbookDeltaRow(
        gatherer=env.gatherer,
        market_ticker=fields.required_text(msg, "market_ticker"),
        market_id=fields.text(msg, "market_id", required=False),
        connection_id=env.connection_id,
        sid=sid,
        seq=seq,
        received_ns=env.received_ns,
        received_at=env.received_at,
        batch_pos=env.batch_pos,
        exchange_ts=_delta_time(frame),
        side=side,
        price=price,
        delta=delta,
    )


def delta_fixed_point(frame: ParsedFrame) -> OrderbookDeltaRow:
    """Newest: `price_dollars` + signed `delta_fp`; `ts_ms` optional, `ts` deprecated."""
    msg = frame.msg
    fields.refuse_legacy_fields(msg, {"price": "price_dollars", "delta": "delta_fp"})
    price = fields.dollars(msg, "price_dollars", required=True)
    delta = fields.count(msg, "delta_fp", required=True)
    assert price is not None and delta is not None
    return _delta_row(frame, price, delta)


def delta_legacy(frame: ParsedFrame) -> OrderbookDeltaRow:
    """Legacy: `price_dollars` or integer-cent `price`; `delta_fp` or integer `delta`."""
    msg = frame.msg
    price = fields.price_either(msg, "price_dollars", "price", required=True)
    delta = fields.count_either(msg, "delta_fp", "delta", required=True)
    assert price is not None and delta is not None
    return _delta_row(frame, price, delta)


SNAPSHOT = {FormatVersion.LEGACY: snapshot_legacy, FormatVersion.FIXED_POINT: snapshot_fixed_point}
DELTA = {FormatVersion.LEGACY: delta_legacy, FormatVersion.FIXED_POINT: delta_fixed_point}


def rest_snapshot_row(
    market_ticker: str,
    response: Mapping[str, Any],
    *,
    gatherer: str,
    received_ns: int,
    batch_pos: int,
    connection_id: str = "rest",
) -> OrderbookSnapshotRow:
    """A REST order book (kalshi-api.md §1.7) as a `rest` snapshot row (sid 0, seq 0).

    `response` is the body of `GET /markets/{ticker}/orderbook` or one entry of the batch
    endpoint: newest `{"orderbook_fp": {"yes_dollars": [[price, count_fp]], ...}}`, or the old
    `{"orderbook": {"yes": [[cents, qty]], "yes_dollars": [["0.45", qty]], ...}}` where a side
    may be null. It is parsed by the client's `parse_orderbook` (one reader of REST books).
    `received_ns` is when the response arrived. Raises `FrameError` when malformed.
    """
    if not market_ticker or "\x00" in market_ticker:
        raise FrameError("market ticker must be a non-empty string without NUL")
    try:
        book = parse_orderbook(response, market_ticker)
    except WireFormatError as exc:
        raise FrameError(str(exc)) from None
    return snapshot_row_from_orderbook(
        book,
        gatherer=gatherer,
        received_ns=received_ns,
        batch_pos=batch_pos,
        connection_id=connection_id,
    )


def snapshot_row_from_orderbook(
    book: Orderbook,
    *,
    gatherer: str,
    received_ns: int,
    batch_pos: int,
    connection_id: str = "rest",
) -> OrderbookSnapshotRow:
    """An already parsed REST `Orderbook` as a `rest` snapshot row (sid 0, seq 0)."""
    envelope = FrameEnvelope(
        received_ns=received_ns,
        connection_id=connection_id,
        batch_pos=batch_pos,
        gatherer=gatherer,
    )
    row = _snapshot_row(
        ParsedFrame(
            type="rest_orderbook",
            msg={"market_ticker": book.ticker},
            sid=0,
            seq=0,
            sending_ts_ms=None,
            envelope=envelope,
        ),
        list(book.yes),
        list(book.no),
    )
    return row._replace(source="rest")
