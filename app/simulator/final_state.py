"""The exchange's full state as `state.jsonl` lines (written at shutdown and on demand).

Line 1 is a header; then one line per market (status, result, live close time, book or null
when order flow never touched it, in which case it still holds its initial book, which
`truth.py` regenerates from the seed); then one line per trade, oldest first.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson

from app.simulator.book import Side
from app.simulator.exchange import RESULT_NAMES, STATUS_NAMES, Exchange


def _side(side: Side) -> bytes:
    return b"[%s]" % b",".join(b"[%d,%d]" % (p, side[p]) for p in sorted(side))


def state_lines(exchange: Exchange, reason: str) -> Iterator[bytes]:
    catalog = exchange.catalog
    header = {
        "kind": "header",
        "reason": reason,
        "wall_ns": time.time_ns(),
        "step": exchange.step_no,
        "virtual_ns": exchange.now_ns,
        "markets": exchange.count,
        "trades": len(exchange.trades),
    }
    yield orjson.dumps(header) + b"\n"
    status, result, close = exchange.status, exchange.result, exchange.close_ns
    states = exchange.states
    for index in range(exchange.count):
        head = (
            b'{"kind":"market","index":%d,"ticker":"%s","status":"%s","result":"%s","close_ns":%d'
            % (
                index,
                catalog.market_ticker(index).encode(),
                STATUS_NAMES[status[index]].encode(),
                RESULT_NAMES[result[index]].encode(),
                close[index],
            )
        )
        state = states.get(index)
        if state is None:
            yield head + b',"book":null}\n'
        else:
            yield (
                head
                + b',"book":{"yes":%s,"no":%s},"last_price":%d,"volume":%d,"open_interest":%d}\n'
                % (
                    _side(state.yes),
                    _side(state.no),
                    state.last_price,
                    state.volume,
                    state.open_interest,
                )
            )
    trades = exchange.trades
    for number in range(len(trades)):
        yield (
            b'{"kind":"trade","number":%d,"trade_id":"%s","ticker":"%s","yes_price":%d,"count":%d,"taker_side":"%s","ts_ns":%d}\n'
            % (
                number,
                trades.trade_id(number).encode(),
                catalog.market_ticker(trades.market[number]).encode(),
                trades.yes_price[number],
                trades.count[number],
                b"yes" if trades.taker_yes[number] else b"no",
                trades.ts_ns[number],
            )
        )
