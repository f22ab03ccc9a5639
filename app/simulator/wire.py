"""WebSocket message bodies (the `msg` object) in the current or the legacy field format.

kalshi-api.md §3.5. `CurrentWire` is the newest shape (`*_dollars` strings, `*_fp` counts,
`ts_ms`); `LegacyWire` is the late-2025 dual shape (integer cents and counts beside the dollar
strings). Bodies are built as bytes by hand because this is the simulator's hot path: one body
is built per change and shared by every subscription that carries it; the envelope with
`sid`/`seq` is added by the hub.

Prices are written with the market's grid's decimals (`TickGrid.places`: 4, or 6 on the
$0.0001 grid of kalshi-api.md §9).
"""

from __future__ import annotations

from typing import Any

import orjson

from app.simulator.book import MarketState, Side
from app.simulator.clock import NS_PER_MS, NS_PER_S, rfc3339
from app.simulator.trades import TradeLog
from app.units import MICROS_PER_CENT, MICROS_PER_DOLLAR, micros_to_dollars

_DOLLARS: dict[tuple[int, int], bytes] = {}


def dollars(micros: int, places: int = 4) -> bytes:
    """`"0.5600"` (or, with 6 places, `"0.560000"`) price bytes, cached (a grid has at most a
    few thousand prices)."""
    text = _DOLLARS.get((micros, places))
    if text is None:
        text = _DOLLARS[micros, places] = micros_to_dollars(micros, places).encode()
    return text


def count_fp(hundredths: int) -> bytes:
    """`"136.00"` style count bytes (hundredths of a contract, may be negative)."""
    if hundredths < 0:
        whole, frac = divmod(-hundredths, 100)
        return b"-%d.%02d" % (whole, frac)
    whole, frac = divmod(hundredths, 100)
    return b"%d.%02d" % (whole, frac)


def _levels_fp(side: Side, places: int) -> bytes:
    return b"[%s]" % b",".join(
        b'["%s","%s"]' % (dollars(p, places), count_fp(side[p])) for p in sorted(side)
    )


def _levels_legacy(side: Side) -> tuple[bytes, bytes]:
    prices = sorted(side)
    cents = b",".join(b"[%d,%d]" % (p // MICROS_PER_CENT, side[p] // 100) for p in prices)
    dollar = b",".join(b'["%s",%d]' % (dollars(p), side[p] // 100) for p in prices)
    return b"[%s]" % cents, b"[%s]" % dollar


def _ticker_derived(state: MarketState) -> tuple[int, int, int]:
    """(yes ask in micro-dollars, dollar volume, dollar open interest in whole dollars).

    Shared by the frames and the truth records so both always carry the same numbers.
    """
    yes_ask = MICROS_PER_DOLLAR - state.no_top if state.no_top else MICROS_PER_DOLLAR
    return (
        yes_ask,
        state.dollar_volume // (MICROS_PER_DOLLAR * 100),
        state.open_interest * state.last_price // (MICROS_PER_DOLLAR * 100),
    )


class CurrentWire:
    """Newest field format (after the 2026-03-12 removal of legacy integers)."""

    legacy = False
    trade_has_seq = False

    def delta(self, state: MarketState, is_yes: bool, price: int, delta: int, ts_ns: int) -> bytes:
        return b'{%s,"price_dollars":"%s","delta_fp":"%s","side":"%s","ts":"%s","ts_ms":%d}' % (
            state.msg_head,
            dollars(price, state.grid.places),
            count_fp(delta),
            b"yes" if is_yes else b"no",
            rfc3339(ts_ns, 6).encode(),
            ts_ns // NS_PER_MS,
        )

    def snapshot(self, head: bytes, yes: Side, no: Side, places: int = 4) -> bytes:
        parts = [head]
        # kalshi-api.md §3.5: a side's key is absent when that side is empty.
        if yes:
            parts.append(b'"yes_dollars_fp":' + _levels_fp(yes, places))
        if no:
            parts.append(b'"no_dollars_fp":' + _levels_fp(no, places))
        return b"{%s}" % b",".join(parts)

    def ticker(self, state: MarketState, ts_ns: int) -> bytes:
        yes_ask, dollar_volume, dollar_open_interest = _ticker_derived(state)
        places = state.grid.places
        return (
            b'{%s,"price_dollars":"%s","yes_bid_dollars":"%s","yes_ask_dollars":"%s",'
            b'"yes_bid_size_fp":"%s","yes_ask_size_fp":"%s","last_trade_size_fp":"%s",'
            b'"volume_fp":"%s","open_interest_fp":"%s","dollar_volume":%d,'
            b'"dollar_open_interest":%d,"ts":%d,"ts_ms":%d,"time":"%s"}'
            % (
                state.msg_head,
                dollars(state.last_price, places),
                dollars(state.yes_top, places),
                dollars(yes_ask, places),
                count_fp(state.yes_top_size),
                count_fp(state.no_top_size),
                count_fp(state.last_trade_size),
                count_fp(state.volume),
                count_fp(state.open_interest),
                dollar_volume,
                dollar_open_interest,
                ts_ns // NS_PER_S,
                ts_ns // NS_PER_MS,
                rfc3339(ts_ns, 6).encode(),
            )
        )

    def ticker_values(self, state: MarketState) -> bytes:
        """The values `ticker()` carries, as the JSON members of a truth record.

        Integer database units (micro-dollars, hundredths, whole dollars as sent), named like
        `TickerRow`'s fields, so a normalized ticker row compares with the record directly.
        """
        yes_ask, dollar_volume, dollar_open_interest = _ticker_derived(state)
        return (
            b'"price":%d,"yes_bid":%d,"yes_ask":%d,"yes_bid_size":%d,"yes_ask_size":%d,'
            b'"last_trade_size":%d,"volume":%d,"open_interest":%d,"dollar_volume":%d,'
            b'"dollar_open_interest":%d'
            % (
                state.last_price,
                state.yes_top,
                yes_ask,
                state.yes_top_size,
                state.no_top_size,
                state.last_trade_size,
                state.volume,
                state.open_interest,
                dollar_volume,
                dollar_open_interest,
            )
        )

    def trade(self, trades: TradeLog, number: int, ticker: bytes, places: int = 4) -> bytes:
        yes_price = trades.yes_price[number]
        taker_yes = trades.taker_yes[number]
        ts_ns = trades.ts_ns[number]
        return (
            b'{"trade_id":"%s","market_ticker":"%s","yes_price_dollars":"%s",'
            b'"no_price_dollars":"%s","count_fp":"%s","taker_side":"%s",'
            b'"taker_outcome_side":"%s","taker_book_side":"%s","is_block_trade":false,'
            b'"ts":%d,"ts_ms":%d}'
            % (
                trades.trade_id(number).encode(),
                ticker,
                dollars(yes_price, places),
                dollars(MICROS_PER_DOLLAR - yes_price, places),
                count_fp(trades.count[number]),
                b"yes" if taker_yes else b"no",
                b"yes" if taker_yes else b"no",
                b"bid" if taker_yes else b"ask",
                ts_ns // NS_PER_S,
                ts_ns // NS_PER_MS,
            )
        )

    def lifecycle(self, ticker: str, event_type: str, fields: dict[str, Any]) -> bytes:
        return orjson.dumps({"market_ticker": ticker, "event_type": event_type, **fields})

    def event_lifecycle(self, fields: dict[str, Any]) -> bytes:
        return orjson.dumps(fields)


class LegacyWire(CurrentWire):
    """Late-2025 dual format: integer cents/counts beside `*_dollars` (before 2026-03-12)."""

    legacy = True
    # Real Feb-2026 trade frames carried a per-sid `seq` (kalshi-api.md §3.5).
    trade_has_seq = True

    def delta(self, state: MarketState, is_yes: bool, price: int, delta: int, ts_ns: int) -> bytes:
        return (
            b'{%s,"price":%d,"price_dollars":"%s","delta":%d,"delta_fp":"%s","side":"%s",'
            b'"ts":"%s"}'
            % (
                state.msg_head,
                price // MICROS_PER_CENT,
                dollars(price),
                delta // 100,
                count_fp(delta),
                b"yes" if is_yes else b"no",
                rfc3339(ts_ns, 6).encode(),
            )
        )

    def snapshot(self, head: bytes, yes: Side, no: Side, places: int = 4) -> bytes:
        parts = [head]  # legacy markets are all on the cent grid: 4 places
        if yes:
            cents, dollar = _levels_legacy(yes)
            parts += [b'"yes":' + cents, b'"yes_dollars":' + dollar]
        if no:
            cents, dollar = _levels_legacy(no)
            parts += [b'"no":' + cents, b'"no_dollars":' + dollar]
        return b"{%s}" % b",".join(parts)

    def ticker(self, state: MarketState, ts_ns: int) -> bytes:
        yes_ask, dollar_volume, dollar_open_interest = _ticker_derived(state)
        return (
            b'{%s,"price":%d,"yes_bid":%d,"yes_ask":%d,"price_dollars":"%s",'
            b'"yes_bid_dollars":"%s","yes_ask_dollars":"%s","volume":%d,"open_interest":%d,'
            b'"dollar_volume":%d,"dollar_open_interest":%d,"ts":%d}'
            % (
                state.msg_head,
                state.last_price // MICROS_PER_CENT,
                state.yes_top // MICROS_PER_CENT,
                yes_ask // MICROS_PER_CENT,
                dollars(state.last_price),
                dollars(state.yes_top),
                dollars(yes_ask),
                state.volume // 100,
                state.open_interest // 100,
                dollar_volume,
                dollar_open_interest,
                ts_ns // NS_PER_S,
            )
        )

    def ticker_values(self, state: MarketState) -> bytes:
        # No sizes on the legacy wire; volume and open interest are whole contracts there.
        yes_ask, dollar_volume, dollar_open_interest = _ticker_derived(state)
        return (
            b'"price":%d,"yes_bid":%d,"yes_ask":%d,"yes_bid_size":null,"yes_ask_size":null,'
            b'"last_trade_size":null,"volume":%d,"open_interest":%d,"dollar_volume":%d,'
            b'"dollar_open_interest":%d'
            % (
                state.last_price,
                state.yes_top,
                yes_ask,
                state.volume // 100 * 100,
                state.open_interest // 100 * 100,
                dollar_volume,
                dollar_open_interest,
            )
        )

    def trade(self, trades: TradeLog, number: int, ticker: bytes, places: int = 4) -> bytes:
        yes_price = trades.yes_price[number]
        return (
            b'{"trade_id":"%s","market_ticker":"%s","yes_price":%d,"no_price":%d,'
            b'"yes_price_dollars":"%s","no_price_dollars":"%s","count":%d,"taker_side":"%s",'
            b'"ts":%d}'
            % (
                trades.trade_id(number).encode(),
                ticker,
                yes_price // MICROS_PER_CENT,
                (MICROS_PER_DOLLAR - yes_price) // MICROS_PER_CENT,
                dollars(yes_price),
                dollars(MICROS_PER_DOLLAR - yes_price),
                trades.count[number] // 100,
                b"yes" if trades.taker_yes[number] else b"no",
                trades.ts_ns[number] // NS_PER_S,
            )
        )

    def lifecycle(self, ticker: str, event_type: str, fields: dict[str, Any]) -> bytes:
        # Fields that appeared in 2026 (price_level_structure/price_ranges on 2026-03-12,
        # settlement_value on 2026-02-26) did not exist in the legacy format.
        legacy = {
            k: v
            for k, v in fields.items()
            if k not in ("price_level_structure", "price_ranges", "settlement_value")
        }  # (the exchange adds nothing newer than these to legacy-format events)
        return orjson.dumps({"market_ticker": ticker, "event_type": event_type, **legacy})


def wire_for(legacy: bool) -> CurrentWire:
    return LegacyWire() if legacy else CurrentWire()
