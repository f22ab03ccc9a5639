"""The database against what the exchange *did*, not only what it sent us (issue 8).

The frame comparison (`run.py`) proves every frame sent to our sockets was stored exactly; it
cannot see what the exchange did while no socket of ours was subscribed. This check reads the
simulator's own records (`exchange.jsonl` trades and ticker changes, never our normalizer) and
the wall-clock time each was executed (`clock.tsv`), and sorts every event of the capture
period into:

* **captured** — stored, exactly once, with the exchange's values;
* **in hole** — not stored, but inside a hole the gatherer recorded for that channel and
  market (`capture_holes`): a gap it knows about;
* **unexplained** — anything else: not stored and in no hole, stored with other values, stored
  twice, stored but never done by the exchange, or missing from a hole already backfilled.

The capture period starts at the gatherer's first session or hole (its first listener start);
events before it were never claimed. A capture that recorded nothing while the exchange traded
is unexplained as a whole. Read-only; memory is one entry per stored trade and ticker key.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from app.simulator.truth import (
    StepClock,
    TruthError,
    iter_exchange,
    iter_tickers,
    read_clock,
    read_meta,
)
from app.verify.holes import Hole, HoleIndex, capture_start, read_holes

NS_PER_MS = 1_000_000
MAX_EXAMPLES = 5


@dataclass
class ExchangeTable:
    """One table's tally against the exchange."""

    table: str
    exchange: int = 0  # events the exchange executed during capture
    captured: int = 0
    in_hole: int = 0
    unexplained: int = 0
    before_capture: int = 0  # executed before capture started: not claimed
    examples: list[str] = field(default_factory=list)

    def explain(self, text: str) -> None:
        self.unexplained += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(text)

    @property
    def exact(self) -> bool:
        return self.unexplained == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "exchange": self.exchange,
            "captured": self.captured,
            "in_hole": self.in_hole,
            "unexplained": self.unexplained,
            "before_capture": self.before_capture,
            "examples": self.examples,
        }


@dataclass
class ExchangeCheck:
    capture_start_ns: int | None
    holes: int
    tables: list[ExchangeTable]
    problems: list[str] = field(default_factory=list)  # whole-capture failures

    @property
    def exact(self) -> bool:
        return not self.problems and all(t.exact for t in self.tables)

    def as_dict(self) -> dict[str, Any]:
        return {
            "capture_start_ns": self.capture_start_ns,
            "holes": self.holes,
            "exact": self.exact,
            "problems": self.problems,
            "tables": {t.table: t.as_dict() for t in self.tables},
        }


def _where(gatherer: str | None) -> tuple[str, tuple[Any, ...]]:
    return (" WHERE gatherer = %s", (gatherer,)) if gatherer else ("", ())


def _stored_trades(conn: Any, gatherer: str | None) -> dict[str, list[tuple[Any, ...]]]:
    where, params = _where(gatherer)
    stored: dict[str, list[tuple[Any, ...]]] = {}
    with conn.cursor(name="kd_verify_trades") as cur:
        cur.itersize = 5000
        cur.execute(
            "SELECT trade_id, market_ticker, yes_price, size, taker_side, exchange_ms FROM trades"
            + where,
            params,
        )
        for trade_id, *values in cur:
            stored.setdefault(trade_id, []).append(tuple(values))
    return stored


_TICKER_COLUMNS = (
    "market_ticker, exchange_ts, price, yes_bid, yes_ask, yes_bid_size, yes_ask_size,"
    " last_trade_size, volume, open_interest, dollar_volume, dollar_open_interest"
)


def _stored_tickers(conn: Any, gatherer: str | None) -> Counter[tuple[Any, ...]]:
    """Stored ticker changes, each counted as often as the connection that stored it most
    often holds it: two ticker subscriptions each storing one message are one change."""
    where, params = _where(gatherer)
    stored: Counter[tuple[Any, ...]] = Counter()
    with conn.cursor(name="kd_verify_tickers") as cur:
        cur.itersize = 5000
        cur.execute(
            "SELECT market_ticker, (extract(epoch FROM exchange_ts) * 1000)::bigint, price,"
            " yes_bid, yes_ask, yes_bid_size, yes_ask_size, last_trade_size, volume,"
            " open_interest, dollar_volume, dollar_open_interest, max(copies) FROM ("
            f"  SELECT {_TICKER_COLUMNS}, count(*) AS copies FROM tickers{where}"
            f"  GROUP BY connection_id, {_TICKER_COLUMNS}"
            ") AS per_connection GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12",
            params,
        )
        for *key, copies in cur:
            stored[tuple(key)] = copies
    return stored


def _trades(truth: Path) -> Iterator[dict[str, Any]]:
    for record in iter_exchange(truth):
        if record.get("kind") == "trade":
            yield record


def _check_trades(
    truth: Path, clock: StepClock, start: int, holes: HoleIndex, stored: dict[str, list[Any]]
) -> ExchangeTable:
    result = ExchangeTable("trades")
    seen: set[str] = set()
    for trade in _trades(truth):
        trade_id = trade["trade_id"]
        seen.add(trade_id)
        when = clock.executed_between(trade["step"])
        copies = stored.get(trade_id, [])
        if when is None or when[0] < start:
            result.before_capture += 1  # not claimed; stored or not, both are fine
            continue
        result.exchange += 1
        expected = (
            trade["ticker"],
            trade["yes_price"],
            trade["count"],
            trade["taker_side"],
            trade["ts_ns"] // NS_PER_MS,
        )
        if len(copies) > 1:
            result.explain(f"{trade_id}: stored {len(copies)} times")
        elif copies and tuple(copies[0]) != expected:
            result.explain(f"{trade_id}: exchange {list(expected)}, stored {list(copies[0])}")
        elif copies:
            result.captured += 1
        else:
            hole = holes.overlapping("trade", trade["ticker"], *when)
            if hole is None:
                result.explain(f"{trade_id} ({trade['ticker']}) missing, in no recorded hole")
            elif hole.backfilled:
                result.explain(f"{trade_id} ({trade['ticker']}) missing from a backfilled hole")
            else:
                result.in_hole += 1
    for trade_id in stored.keys() - seen:
        result.explain(f"{trade_id}: stored, but the exchange never made it")
    return result


@dataclass
class _Tally:
    """Per content key: events done, done during capture, and of those inside a hole."""

    done: int = 0
    claimed: int = 0
    claimed_in_hole: int = 0
    label: str = ""  # an event of the key outside any hole, for examples


def _tally(
    result: ExchangeTable,
    events: Iterator[tuple[Any, str, int, str]],
    stored: Counter[Any],
    clock: StepClock,
    start: int,
    holes: HoleIndex,
    channel: str,
) -> ExchangeTable:
    """Events (key, market, step, label) identified by content only: copies with one key are
    interchangeable, so stored copies are matched to the events outside holes first."""
    tallies: dict[Any, _Tally] = {}
    for key, ticker, step, label in events:
        tally = tallies.setdefault(key, _Tally())
        tally.done += 1
        when = clock.executed_between(step)
        if when is None or when[0] < start:
            result.before_capture += 1
            continue
        result.exchange += 1
        tally.claimed += 1
        if holes.overlaps(channel, ticker, *when):
            tally.claimed_in_hole += 1
        elif not tally.label:
            tally.label = label
    for key, tally in tallies.items():
        have = stored.get(key, 0)
        captured = min(have, tally.claimed)
        missing = tally.claimed - captured
        in_hole = min(missing, tally.claimed_in_hole)
        result.captured += captured
        result.in_hole += in_hole
        for _ in range(missing - in_hole):
            result.explain(f"{tally.label} missing, in no recorded hole")
    for key, count in stored.items():
        done = tallies[key].done if key in tallies else 0
        if count > done:
            result.explain(f"stored {count}x, done {done}x: {str(key)[:120]}")
    return result


def _check_tickers(
    truth: Path, clock: StepClock, start: int, holes: HoleIndex, stored: Counter[tuple[Any, ...]]
) -> ExchangeTable:
    # Legacy ticker frames carry whole seconds only (kalshi-api.md §3.5).
    unit = 1_000 * NS_PER_MS if read_meta(truth).format == "legacy" else NS_PER_MS

    def events() -> Iterator[tuple[Any, str, int, str]]:
        for change in iter_tickers(truth):
            ms = change.ts_ns // unit * (unit // NS_PER_MS)
            key = (change.ticker, ms, *change.values)
            yield key, change.ticker, change.step, f"{change.ticker} ticker at {ms} ms"

    return _tally(ExchangeTable("tickers"), events(), stored, clock, start, holes, "ticker")


_LEGACY_ABSENT = ("price_level_structure", "price_ranges", "settlement_value")


def _payload_key(payload: dict[str, Any]) -> str:
    return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS).decode()


def _stored_lifecycle(conn: Any, gatherer: str | None) -> Counter[str]:
    """Stored `market_lifecycle_v2` messages by canonical payload.

    Counted over all connections (not max per connection as tickers are): a payload has no
    time, so the same event type for a market twice, received on two sessions, is two events.
    """
    where, params = _where(gatherer)
    clause = (where + " AND" if where else " WHERE") + " msg_type = 'market_lifecycle_v2'"
    stored: Counter[str] = Counter()
    with conn.cursor(name="kd_verify_lifecycle") as cur:
        cur.itersize = 5000
        cur.execute(
            f"SELECT payload, count(*) FROM lifecycle_events{clause} GROUP BY payload",
            params,
        )
        for payload, copies in cur:
            stored[_payload_key(payload)] = copies
    return stored


def _check_lifecycle(
    truth: Path, clock: StepClock, start: int, holes: HoleIndex, stored: Counter[str]
) -> ExchangeTable:
    """Market lifecycle events: the message the exchange sends is its record's fields."""
    legacy = read_meta(truth).format == "legacy"

    def events() -> Iterator[tuple[Any, str, int, str]]:
        for record in iter_exchange(truth):
            if record.get("kind") != "lifecycle":
                continue
            fields = {
                k: v
                for k, v in record.items()
                if k not in ("step", "ts_ns", "kind", "ticker", "status")
                and not (legacy and k in _LEGACY_ABSENT)
            }
            key = _payload_key({"market_ticker": record["ticker"], **fields})
            label = f"{record['ticker']} {record['event_type']} (step {record['step']})"
            yield key, record["ticker"], record["step"], label

    table = ExchangeTable("lifecycle_events")
    return _tally(table, events(), stored, clock, start, holes, "market_lifecycle_v2")


def check_against_exchange(
    conn: Any,
    truth: Path,
    gatherer: str | None,
    holes: list[Hole] | None = None,
    *,
    index: HoleIndex | None = None,
    start_ns: int | None = None,
) -> ExchangeCheck:
    """Every trade and ticker change of the capture period: captured, in a hole, or not.

    A production database records no holes or sessions of its own: its caller gives `index`
    (where every gatherer lost the stream) and `start_ns` (when the first one started)."""
    try:
        clock = read_clock(truth)
    except TruthError as exc:
        return ExchangeCheck(None, 0, [], [f"no exchange clock in the truth: {exc}"])
    holes = read_holes(conn, gatherer) if holes is None and index is None else (holes or [])
    start = capture_start(conn, gatherer) if start_ns is None else start_ns
    index = HoleIndex(holes) if index is None else index
    if start is None:
        executed = sum(1 for _ in _trades(truth))
        problem = "nothing was captured: no listener session or hole is recorded"
        tables = [ExchangeTable("trades", exchange=executed, unexplained=executed)]
        return ExchangeCheck(None, len(holes), tables, [problem] if executed else [])
    tables = [
        _check_trades(truth, clock, start, index, _stored_trades(conn, gatherer)),
        _check_tickers(truth, clock, start, index, _stored_tickers(conn, gatherer)),
        _check_lifecycle(truth, clock, start, index, _stored_lifecycle(conn, gatherer)),
    ]
    problems = []
    if tables[0].exchange and not tables[0].captured and not tables[0].in_hole:
        problems.append("the exchange traded while capture ran, and nothing was captured")
    return ExchangeCheck(start, len(holes), tables, problems)
