"""Public trades parsed exactly (kalshi-api.md §1.8 REST, §3.5 `trade` WS message body).

Newest fields win over legacy ones when both are present: `yes_price_dollars` over `yes_price`
(cents), `count_fp` over `count` (whole contracts), `taker_outcome_side`/`taker_book_side` over
the deprecated `taker_side`. A missing NO price is derived as 1 - YES. The exchange time is taken
from `created_time` (REST, RFC3339), else `ts_ms`, else `ts` (Unix seconds, WS legacy).
The decoded object is kept as `raw` so nothing the parser ignores is lost.

`trade_values` is the one reader of a trade's prices and count (which field wins, how each is
read); `parse_trade` and the normalizers' `rest_trade_row` both use it and differ only in what
they refuse (issue 9 item 10).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from app.kalshi.errors import FrameError, WireFormatError
from app.kalshi.wire import count_either, price_either, rfc3339_to_ns, unix_time_ns
from app.units import MICROS_PER_DOLLAR

OutcomeSide = Literal["yes", "no"]
BookSide = Literal["bid", "ask"]
TradeFormat = Literal["fp", "legacy"]

_BOOK_SIDE_OF: dict[str, BookSide] = {"yes": "bid", "no": "ask"}


@dataclass(frozen=True, slots=True)
class Trade:
    """One executed trade in exact integer units."""

    trade_id: str
    ticker: str
    yes_price_micros: int
    no_price_micros: int
    count_hundredths: int
    taker_outcome_side: OutcomeSide | None
    taker_book_side: BookSide | None
    created_ns: int | None
    is_block_trade: bool | None
    wire_format: TradeFormat
    raw: Mapping[str, Any] = field(compare=False, repr=False)


def _first_present(obj: Mapping[str, Any], *names: str) -> tuple[str, Any] | None:
    for name in names:
        if obj.get(name) is not None:
            return name, obj[name]
    return None


class TradeValues(NamedTuple):
    """A trade's prices (micro-dollars) and size (count, hundredths) as sent; None if absent.
    `exact` says the newest fields (`yes_price_dollars` and `count_fp`) were the ones read."""

    yes_price: int | None
    no_price: int | None
    size: int | None
    exact: bool


def trade_values(obj: Mapping[str, Any]) -> TradeValues:
    """The prices and count of a REST trade object or WS `trade` body, in either format: the
    newest strings when present, else the legacy integer cents and contracts (§1.8). Raises
    `FrameError` naming the field for a value that cannot be read exactly (floats, text in an
    integer field, more precision than we store, a price outside 0..1 dollar)."""
    yes = price_either(obj, "yes_price_dollars", "yes_price", required=False)
    no = price_either(obj, "no_price_dollars", "no_price", required=False)
    count = count_either(obj, "count_fp", "count", required=False)
    exact = obj.get("yes_price_dollars") not in (None, "") and obj.get("count_fp") is not None
    return TradeValues(yes, no, count, exact)


def _created_ns(obj: Mapping[str, Any], what: str) -> int | None:
    if isinstance(obj.get("created_time"), str):
        return rfc3339_to_ns(obj["created_time"], f"{what}.created_time")
    for name, scale in (("ts_ms", 1_000_000), ("ts", 1_000_000_000)):
        value = obj.get(name)
        if value is not None:
            return unix_time_ns(value, f"{what}.{name}", scale)
    return None


def _outcome_side(obj: Mapping[str, Any], what: str) -> OutcomeSide | None:
    found = _first_present(obj, "taker_outcome_side", "taker_side")
    if found is None:
        return None
    name, value = found
    if value == "yes":
        return "yes"
    if value == "no":
        return "no"
    raise WireFormatError(f"{what}.{name}: expected 'yes' or 'no', got {value!r}")


def _book_side(obj: Mapping[str, Any], outcome: OutcomeSide | None, what: str) -> BookSide | None:
    value = obj.get("taker_book_side")
    if value is None:
        return _BOOK_SIDE_OF[outcome] if outcome else None
    if value == "bid":
        return "bid"
    if value == "ask":
        return "ask"
    raise WireFormatError(f"{what}.taker_book_side: expected 'bid' or 'ask', got {value!r}")


def parse_trade(obj: Mapping[str, Any]) -> Trade:
    """A `Trade` from one REST trade object or the `msg` of a WS `trade` frame."""
    if not isinstance(obj, Mapping):
        raise WireFormatError(f"trade: expected a JSON object, got {obj!r}")
    trade_id = obj.get("trade_id")
    if not isinstance(trade_id, str) or not trade_id:
        raise WireFormatError(f"trade: missing trade_id in {dict(obj)!r}")
    what = f"trade {trade_id}"
    ticker = obj.get("ticker", obj.get("market_ticker"))
    if not isinstance(ticker, str) or not ticker:
        raise WireFormatError(f"{what}: missing ticker")

    try:
        values = trade_values(obj)
    except FrameError as exc:
        raise FrameError(f"{what}: {exc}") from None
    if values.yes_price is None:
        raise WireFormatError(f"{what}: no yes_price_dollars or yes_price")
    if values.size is None:
        raise WireFormatError(f"{what}: no count_fp or count")
    if values.size <= 0:
        raise WireFormatError(f"{what}: trade size must be positive, got {values.size}")
    no_micros = MICROS_PER_DOLLAR - values.yes_price if values.no_price is None else values.no_price

    block = obj.get("is_block_trade")
    if block is not None and not isinstance(block, bool):
        raise WireFormatError(f"{what}.is_block_trade: expected a boolean, got {block!r}")
    outcome = _outcome_side(obj, what)
    return Trade(
        trade_id=trade_id,
        ticker=ticker,
        yes_price_micros=values.yes_price,
        no_price_micros=no_micros,
        count_hundredths=values.size,
        taker_outcome_side=outcome,
        taker_book_side=_book_side(obj, outcome, what),
        created_ns=_created_ns(obj, what),
        is_block_trade=block,
        wire_format="fp" if values.exact else "legacy",
        raw=obj,
    )
