"""Public trades parsed exactly (kalshi-api.md §1.8 REST, §3.5 `trade` WS message body).

Newest fields win over legacy ones when both are present: `yes_price_dollars` over `yes_price`
(cents), `count_fp` over `count` (whole contracts), `taker_outcome_side`/`taker_book_side` over
the deprecated `taker_side`. A missing NO price is derived as 1 - YES. The exchange time is taken
from `created_time` (REST, RFC3339), else `ts_ms`, else `ts` (Unix seconds, WS legacy).
The decoded object is kept as `raw` so nothing the parser ignores is lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from app.kalshi.errors import WireFormatError
from app.kalshi.wire import count_hundredths, price_micros, rfc3339_to_ns
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


def _price(obj: Mapping[str, Any], dollars: str, cents: str, what: str) -> tuple[int, bool] | None:
    """(micros, came-from-newest-field) for a price, or None when neither field is there."""
    found = _first_present(obj, dollars, cents)
    if found is None:
        return None
    name, value = found
    micros = price_micros(value, f"{what}.{name}")
    if not 0 <= micros <= MICROS_PER_DOLLAR:
        raise WireFormatError(f"{what}.{name}: {value!r} is outside 0..1 dollar")
    return micros, name == dollars


def _created_ns(obj: Mapping[str, Any], what: str) -> int | None:
    if isinstance(obj.get("created_time"), str):
        return rfc3339_to_ns(obj["created_time"], f"{what}.created_time")
    for name, scale in (("ts_ms", 1_000_000), ("ts", 1_000_000_000)):
        value = obj.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise WireFormatError(f"{what}.{name}: expected an integer, got {value!r}")
        return value * scale
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

    yes = _price(obj, "yes_price_dollars", "yes_price", what)
    if yes is None:
        raise WireFormatError(f"{what}: no yes_price_dollars or yes_price")
    no = _price(obj, "no_price_dollars", "no_price", what)
    no_micros = MICROS_PER_DOLLAR - yes[0] if no is None else no[0]

    count_field = _first_present(obj, "count_fp", "count")
    if count_field is None:
        raise WireFormatError(f"{what}: no count_fp or count")
    count = count_hundredths(count_field[1], f"{what}.{count_field[0]}")
    if count <= 0:
        raise WireFormatError(f"{what}.{count_field[0]}: trade size must be positive")

    block = obj.get("is_block_trade")
    if block is not None and not isinstance(block, bool):
        raise WireFormatError(f"{what}.is_block_trade: expected a boolean, got {block!r}")
    outcome = _outcome_side(obj, what)
    newest = yes[1] and count_field[0] == "count_fp"
    return Trade(
        trade_id=trade_id,
        ticker=ticker,
        yes_price_micros=yes[0],
        no_price_micros=no_micros,
        count_hundredths=count,
        taker_outcome_side=outcome,
        taker_book_side=_book_side(obj, outcome, what),
        created_ns=_created_ns(obj, what),
        is_block_trade=block,
        wire_format="fp" if newest else "legacy",
        raw=obj,
    )
