"""Fused normalize + COPY encoding for the hot frame type: a plain current-format book delta.

Book deltas are most of the feed, and building a `ParsedFrame`, an `OrderbookDeltaRow` and then
its COPY text costs several times the server's work per row (docs/benchmarks.md). `delta_line`
goes straight from the parsed JSON to the `orderbook_deltas` COPY line, but only for the shape
it can decide without doubt: every check of `app.normalize.book.delta_fixed_point` plus the COPY
encoder's, in their cheapest form. Anything else (another type, a legacy field, an unknown key,
a value needing escaping or Decimal, an old capture time) returns None and goes through the
general mappers, so the fast path never changes which rows or dead letters a frame produces
(`tests/ingest/test_fast_delta.py` holds the two paths equal).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from app.normalize.envelope import EPOCH, MAX_NS
from app.normalize.fields import EXCHANGE_MS_MAX, EXCHANGE_MS_MIN
from app.normalize.versions import EFFECTIVE_FROM, FormatVersion
from app.units import (
    BIGINT_MAX,
    BIGINT_MIN,
    HUNDREDTHS_PER_CONTRACT,
    MICROS_PER_DOLLAR,
    plain_scaled,
)

# The general mapper's limits: the keys a current-format delta may carry (client_order_id and
# subaccount only on the key's own orders; the mapper ignores them, as we do), Unix ms that fit
# a datetime, plain fixed-point strings short enough for `app.units`' exact fast path.
_DELTA_KEYS = frozenset(
    {
        "market_ticker",
        "market_id",
        "price_dollars",
        "delta_fp",
        "side",
        "ts",
        "ts_ms",
        "client_order_id",
        "subaccount",
    }
)
_NAIVE_EPOCH = datetime(1970, 1, 1)


def _fixed_point_window() -> tuple[int, int]:
    """[first, last] receive ns for which capture time selects the current format."""
    starts = [
        (int((start - EPOCH).total_seconds()) * 10**9, version) for start, version in EFFECTIVE_FROM
    ]
    for index, (start, version) in enumerate(starts):
        if version is FormatVersion.FIXED_POINT:
            end = starts[index + 1][0] - 1 if index + 1 < len(starts) else MAX_NS
            return start, end
    return 1, 0  # no such window: the fast path is never taken by capture time


_FIXED_POINT_FIRST_NS, _FIXED_POINT_LAST_NS = _fixed_point_window()
# Columns in the order `delta_line` writes them: batch constants first.
COLUMNS = (
    "gatherer",
    "connection_id",
    "market_ticker",
    "market_id",
    "sid",
    "seq",
    "received_ns",
    "received_at",
    "batch_pos",
    "exchange_ts",
    "side",
    "price",
    "delta",
)

_second_texts: dict[int, str] = {}
_SECOND_CACHE = 4096


def _second_text(second: int) -> str:
    """'YYYY-MM-DDTHH:MM:SS' of a Unix second; frames of one batch share a few seconds."""
    text = _second_texts.get(second)
    if text is None:
        if len(_second_texts) >= _SECOND_CACHE:
            _second_texts.clear()
        text = (_NAIVE_EPOCH + timedelta(seconds=second)).isoformat()
        _second_texts[second] = text
    return text


def micros_text(micros: int) -> str:
    """A Unix time in microseconds as timestamptz COPY text (ISO 8601, UTC, 6 decimals)."""
    second, fraction = divmod(micros, 1_000_000)
    return f"{_second_text(second)}.{fraction:06d}+00:00"


def _scaled(value: Any, places: int, scale: int) -> int | None:
    """`app.units.plain_scaled` for any JSON value: None unless a plain fixed-point string."""
    return plain_scaled(value, places, scale) if type(value) is str else None


# Memo of wire number -> COPY text of its integer ("" = not for the fast path). The feed repeats
# a small set of prices and sizes, so most frames convert by one dict lookup. Bounded.
_prices: dict[str, str] = {}
_counts: dict[str, str] = {}
_MEMO_LIMIT = 1 << 16


def _number_text(
    memo: dict[str, str], value: str, places: int, scale: int, signed: bool, maximum: int
) -> str:
    # The general mapper's limits (app.normalize.fields): prices 0..1 dollar, counts in bigint.
    scaled = _scaled(value, places, scale)
    fits = scaled is not None and (signed or scaled >= 0) and -maximum - 1 <= scaled <= maximum
    text = str(scaled) if fits else ""
    if len(memo) >= _MEMO_LIMIT:
        memo.clear()
    memo[value] = text
    return text


def is_plain(value: Any) -> bool:
    """A non-empty string that COPY text carries as is (printable: no NUL, tab or newline)."""
    return type(value) is str and value != "" and value.isprintable() and "\\" not in value


def uses_fast_path(received_ns: int, version: FormatVersion | None) -> bool:
    """Whether a frame received at `received_ns` is normalized with the current format."""
    if version is not None:
        return version is FormatVersion.FIXED_POINT
    return _FIXED_POINT_FIRST_NS <= received_ns <= _FIXED_POINT_LAST_NS


def delta_line(
    obj: Any,
    *,
    prefix: str,
    received_ns: int,
    batch_pos: int,
    listener_sid: int | None,
    listener_seq: int | None,
) -> str | None:
    """The `orderbook_deltas` COPY line of one parsed frame, or None for the general path.

    The line's columns are `COLUMNS`. `prefix` is its constant start for one connection,
    ``"<gatherer>\\t<connection id>\\t"``; the caller has checked `uses_fast_path` and that
    both are plain text (`is_plain`). `obj` is the frame's parsed JSON.
    """
    if type(obj) is not dict or obj.get("type") != "orderbook_delta":
        return None
    msg = obj.get("msg")
    if type(msg) is not dict or not msg.keys() <= _DELTA_KEYS:
        return None
    sid = obj.get("sid")
    seq = obj.get("seq")
    if type(sid) is not int or type(seq) is not int:
        return None
    if not (BIGINT_MIN <= sid <= BIGINT_MAX and BIGINT_MIN <= seq <= BIGINT_MAX):
        return None  # the general path dead-letters it
    if (listener_sid is not None and listener_sid != sid) or (
        listener_seq is not None and listener_seq != seq
    ):
        return None
    ticker = msg.get("market_ticker")
    side = msg.get("side")
    if not is_plain(ticker) or (side != "yes" and side != "no"):
        return None
    market_id = msg.get("market_id")
    if market_id is None:
        market_id = "\\N"
    elif not is_plain(market_id):
        return None
    price_wire = msg.get("price_dollars")
    delta_wire = msg.get("delta_fp")
    if type(price_wire) is not str or type(delta_wire) is not str:
        return None
    price = _prices.get(price_wire)
    if price is None:
        price = _number_text(
            _prices, price_wire, 6, MICROS_PER_DOLLAR, signed=False, maximum=MICROS_PER_DOLLAR
        )
    delta = _counts.get(delta_wire)
    if delta is None:
        delta = _number_text(
            _counts, delta_wire, 2, HUNDREDTHS_PER_CONTRACT, signed=True, maximum=BIGINT_MAX
        )
    if not price or not delta:
        return None
    ts_ms = msg.get("ts_ms")
    if ts_ms is None:
        if msg.get("ts") is not None:
            return None  # the deprecated `ts` alone: the general reader parses its forms
        exchange = "\\N"
    elif type(ts_ms) is int and EXCHANGE_MS_MIN <= ts_ms <= EXCHANGE_MS_MAX:
        second, milli = divmod(ts_ms, 1000)
        exchange = f"{_second_texts.get(second) or _second_text(second)}.{milli:03d}000+00:00"
    else:
        return None
    second, fraction = divmod(received_ns // 1000, 1_000_000)
    received = _second_texts.get(second) or _second_text(second)
    return (
        f"{prefix}{ticker}\t{market_id}\t{sid}\t{seq}\t{received_ns}\t{received}.{fraction:06d}"
        f"+00:00\t{batch_pos}\t{exchange}\t{side}\t{price}\t{delta}\n"
    )
