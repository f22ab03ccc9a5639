"""The simulated exchange: order flow, lifecycle and state, on the virtual clock.

One `step()` is one order-flow event (add liquidity, cancel, or trade against the best level)
plus whatever lifecycle transitions have come due by its virtual time (create, open, pause,
resume, close-date change, close, determine, settle; in the current format also metadata,
price-level-structure and event-fee updates, kalshi-api.md §9). Every draw comes from one
`random.Random(seed)` in step order and nothing here reads the wall clock, so a given seed,
epoch, rate and market count always yield the same sequence of state changes: that sequence is
the deterministic part of the ground truth (`exchange.jsonl`).

It never formats WebSocket frames or touches sockets: it reports changes to an
`ExchangeListener` (the WebSocket hub) and to the truth recorder (a ticker change is recorded
with the values `wire.py` says its frame carries).
"""

from __future__ import annotations

import heapq
import random
from array import array
from collections import deque
from typing import Any, Protocol

import orjson

from app.simulator.book import MarketState, best, draw_size, initial_market
from app.simulator.catalog import FEE_TYPES, GRID_CENTER, MARKETS_PER_EVENT, Catalog
from app.simulator.clock import VirtualClock, to_seconds
from app.simulator.recorder import Recorder
from app.simulator.ticks import GRIDS, TickGrid
from app.simulator.trades import TradeLog
from app.simulator.wire import wire_for
from app.units import MICROS_PER_DOLLAR, micros_to_dollars

INITIALIZED, ACTIVE, INACTIVE, CLOSED, DETERMINED, FINALIZED = range(6)
STATUS_NAMES = ("initialized", "active", "inactive", "closed", "determined", "finalized")
RESULT_NAMES = ("", "yes", "no")

MAX_LEVELS_PER_SIDE = 40  # keeps every book (and its snapshot frame) bounded
HOT_MARKETS = 2000  # order flow concentrates on about this many markets ...
HOT_SHARE = 0.95  # ... this share of the time (most real markets are quiet)
PAUSES_PER_MARKET = 0.2  # expected deactivate/activate cycles over a market's life
CLOSE_UPDATES_PER_MARKET = 0.2  # expected close_date_updated events over a market's life
# Current format only (these events did not exist in late 2025), per market life:
METADATA_UPDATES_PER_MARKET = 0.1  # metadata_updated (a new floor strike)
STRUCTURE_UPDATES_PER_MARKET = 0.1  # price_level_structure_updated (onto the $0.0001 grid)
FEE_UPDATES_PER_MARKET = 0.05  # event_fee_update of the market's event
FEE_MULTIPLIERS = (0.5, 1, 2)


class ExchangeListener(Protocol):
    """Who hears about changes as they happen (the WebSocket hub)."""

    def book_delta(
        self, state: MarketState, is_yes: bool, price: int, delta: int, ts_ns: int
    ) -> None: ...

    def trade(self, state: MarketState, number: int, ts_ns: int) -> None: ...

    def ticker(self, state: MarketState, ts_ns: int) -> None: ...

    def lifecycle(
        self, index: int, event_type: str, fields: dict[str, Any], ts_ns: int
    ) -> None: ...

    def event_created(self, event_index: int, ts_ns: int) -> None: ...

    def event_fee_update(self, event_index: int, fields: dict[str, Any], ts_ns: int) -> None: ...


class MarketView:
    """A read-only picture of one market for REST rendering (state or computed on the fly)."""

    __slots__ = (
        "close_ns",
        "dollar_volume",
        "floor_strike",
        "grid_code",
        "index",
        "last_price",
        "no_bid",
        "no_bid_size",
        "open_interest",
        "prev_price",
        "prev_yes_ask",
        "prev_yes_bid",
        "result",
        "status",
        "updated_ns",
        "volume",
        "yes_bid",
        "yes_bid_size",
    )

    index: int
    grid_code: int  # the live price level structure (index into GRIDS)
    floor_strike: int  # the live strike (metadata_updated may move it)
    status: int
    result: int
    close_ns: int
    updated_ns: int
    yes_bid: int
    yes_bid_size: int
    no_bid: int
    no_bid_size: int
    last_price: int
    volume: int
    dollar_volume: int
    open_interest: int
    prev_yes_bid: int
    prev_yes_ask: int
    prev_price: int


class Exchange:
    """State of every market plus the seeded process that changes it."""

    def __init__(
        self,
        catalog: Catalog,
        clock: VirtualClock,
        recorder: Recorder,
        listener: ExchangeListener,
        trades: TradeLog,
        max_events: int | None = None,
    ) -> None:
        self.catalog = catalog
        self.clock = clock
        self.recorder = recorder
        self.listener = listener
        self.max_events = max_events
        self.seed = catalog.seed
        self.whole_only = catalog.legacy
        self.rng = random.Random(catalog.seed)
        self.step_no = 0
        self.now_ns = clock.epoch_ns
        n = catalog.initial_markets
        self.count = n
        self.status = bytearray([ACTIVE]) * n
        self.result = bytearray(n)
        self.close_ns = array("q", (catalog.scheduled_times(i)[2] for i in range(n)))
        self.updated_ns = array("q", (catalog.scheduled_times(i)[0] for i in range(n)))
        self.states: dict[int, MarketState] = {}
        self.trades = trades
        # What a ticker frame of this format carries; recorded with every ticker change.
        self._ticker_values = wire_for(catalog.legacy).ticker_values
        self._hot_stride = max(1, n // HOT_MARKETS)
        life_s = catalog.lifetime_ns / 1e9
        per_step = (n / life_s) / clock.rate  # market births per step in steady state
        self._p_pause = PAUSES_PER_MARKET * per_step
        self._p_close_update = self._p_pause + CLOSE_UPDATES_PER_MARKET * per_step
        extra = 0.0 if catalog.legacy else per_step
        self._p_metadata = self._p_close_update + METADATA_UPDATES_PER_MARKET * extra
        self._p_structure = self._p_metadata + STRUCTURE_UPDATES_PER_MARKET * extra
        self._p_fee = self._p_structure + FEE_UPDATES_PER_MARKET * extra
        # What those updates changed (everything else about a market is in the catalog).
        self.grid_codes: dict[int, int] = {}  # market -> refined grid code
        self.floor_strikes: dict[int, int] = {}  # market -> updated floor strike
        self.event_fees: dict[int, tuple[str | None, float | None]] = {}  # event -> overrides
        self.event_updated_ns: dict[int, int] = {}  # event -> last fee update
        self.series_volume = [0] * catalog.series_count  # hundredths traded in this run
        self._pause_ns = max(1, catalog.lifetime_ns // 50)
        self._postpone_ns = max(1, catalog.lifetime_ns // 10)
        # Lifecycle queues; see catalog.py for why closes come in index order.
        self._next_open = n  # new markets open in creation order
        self._next_close = 0  # markets close in index order unless postponed
        self._postponed: list[tuple[int, int]] = []  # (close_ns, index)
        self._paused: list[tuple[int, int]] = []  # (resume_ns, index)
        self._to_determine: deque[tuple[int, int]] = deque()
        self._to_settle: deque[tuple[int, int]] = deque()
        self._next_due = 0
        self._refresh_due()

    # ---- reads -------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.max_events is not None and self.step_no >= self.max_events

    def exists(self, index: int | None) -> bool:
        return index is not None and 0 <= index < self.count

    def event_count(self) -> int:
        return self.catalog.events_for_markets(self.count)

    def grid_code(self, index: int) -> int:
        """The market's live price level structure (its catalog grid unless updated)."""
        code = self.grid_codes.get(index)
        return self.catalog.grid_code(index) if code is None else code

    def grid(self, index: int) -> TickGrid:
        return GRIDS[self.grid_code(index)]

    def floor_strike(self, index: int) -> int:
        strike = self.floor_strikes.get(index)
        return self.catalog.market(index).floor_strike if strike is None else strike

    def book(self, index: int) -> tuple[dict[int, int], dict[int, int]]:
        """The current (yes, no) bids of a market; do not mutate the result."""
        state = self.states.get(index)
        if state is not None:
            return state.yes, state.no
        yes, no, _, _, _ = initial_market(
            self.seed, index, self.catalog.grid(index), self.whole_only
        )
        return yes, no

    def view(self, index: int) -> MarketView:
        view = MarketView()
        view.index = index
        view.grid_code = self.grid_code(index)
        view.floor_strike = self.floor_strike(index)
        view.status = self.status[index]
        view.result = self.result[index]
        view.close_ns = self.close_ns[index]
        view.updated_ns = self.updated_ns[index]
        state = self.states.get(index)
        if state is not None:
            yes, no = state.yes, state.no
            view.last_price, view.volume = state.last_price, state.volume
            view.dollar_volume, view.open_interest = state.dollar_volume, state.open_interest
            view.prev_yes_bid, view.prev_yes_ask = state.prev_yes_bid, state.prev_yes_ask
            view.prev_price = state.prev_price
        else:
            grid = self.catalog.grid(index)
            yes, no, last, volume, oi = initial_market(self.seed, index, grid, self.whole_only)
            view.last_price, view.volume, view.open_interest = last, volume, oi
            view.dollar_volume = volume * last
            view.prev_yes_bid = best(yes)
            view.prev_yes_ask = MICROS_PER_DOLLAR - best(no) if no else 0
            view.prev_price = last
        view.yes_bid = best(yes)
        view.yes_bid_size = yes.get(view.yes_bid, 0)
        view.no_bid = best(no)
        view.no_bid_size = no.get(view.no_bid, 0)
        return view

    def state(self, index: int) -> MarketState:
        """The live state of a market, created from its initial picture on first use."""
        state = self.states.get(index)
        if state is None:
            state = MarketState(
                self.seed,
                index,
                self.catalog.market_ticker(index),
                self.catalog.market_id(index),
                self.catalog.grid(index),  # the initial book is on the creation grid
                self.whole_only,
            )
            state.grid = self.grid(index)
            self.states[index] = state
        return state

    def peek_state(self, index: int) -> MarketState:
        """The live state if the market was touched, else a throwaway copy of its initial one."""
        state = self.states.get(index)
        if state is not None:
            return state
        state = MarketState(
            self.seed,
            index,
            self.catalog.market_ticker(index),
            self.catalog.market_id(index),
            self.catalog.grid(index),
            self.whole_only,
        )
        state.grid = self.grid(index)
        return state

    def status_counts(self) -> dict[str, int]:
        return {name: self.status.count(code) for code, name in enumerate(STATUS_NAMES)}

    # ---- the process -------------------------------------------------------------------

    def run(self, steps: int) -> int:
        """Run up to `steps` steps (fewer if max_events is reached); returns how many ran."""
        if self.max_events is not None:
            steps = min(steps, self.max_events - self.step_no)
        for _ in range(max(0, steps)):
            self.step()
        return max(0, steps)

    def step(self) -> None:
        ts = self.clock.at(self.step_no)
        self.now_ns = ts
        if ts >= self._next_due:
            self._run_lifecycle(ts)
        rng = self.rng
        roll = rng.random()
        if roll < self._p_close_update:
            self._lifecycle_action(ts, pause=roll < self._p_pause)
        elif roll < self._p_fee:
            if roll < self._p_metadata:
                self._metadata_update(ts)
            elif roll < self._p_structure:
                self._structure_update(ts)
            else:
                self._fee_update(ts)
        else:
            index = self._pick_market()
            if index >= 0:
                self._order_flow(self.state(index), ts)
        self.step_no += 1

    def _pick_market(self) -> int:
        """An active market, mostly from the hot set, or -1 when none could be found."""
        low, high = self._next_close, self._next_open
        width = high - low
        if width <= 0:
            return -1
        rng, status, stride = self.rng, self.status, self._hot_stride
        for _ in range(4):
            index = low + int(rng.random() * width)
            if stride > 1 and rng.random() < HOT_SHARE:
                index -= index % stride
                if index < low:
                    index += stride
                if index >= high:
                    continue
            if status[index] == ACTIVE:
                return index
        return -1

    def _order_flow(self, state: MarketState, ts: int) -> None:
        rng = self.rng
        yes, no = state.yes, state.no
        roll = rng.random()
        if roll < 0.45 or len(yes) + len(no) < 4:
            self._add(state, rng.random() < 0.5, ts)
        elif roll < 0.8:
            self._cancel(state, rng.random() < 0.5, ts)
        else:
            self._trade(state, rng.random() < 0.5, ts)

    def _add(self, state: MarketState, is_yes: bool, ts: int) -> None:
        own, other = (state.yes, state.no) if is_yes else (state.no, state.yes)
        if len(own) >= MAX_LEVELS_PER_SIDE:
            self._cancel(state, is_yes, ts)
            return
        grid = state.grid
        cap = grid.highest_below(MICROS_PER_DOLLAR - (max(other) if other else 0))
        if cap < 0:
            return
        top = grid.index[max(own)] if own else cap - 2
        target = min(cap, top + int(self.rng.random() * 9) - 6)
        price = grid.prices[max(0, target)]
        size = draw_size(self.rng.getrandbits(32), self.whole_only)
        new_size = own.get(price, 0) + size
        own[price] = new_size
        self._delta(state, is_yes, price, size, new_size, ts, b"add")

    def _cancel(self, state: MarketState, is_yes: bool, ts: int) -> None:
        own = state.yes if is_yes else state.no
        if not own:
            is_yes = not is_yes
            own = state.yes if is_yes else state.no
            if not own:
                return
        rng = self.rng
        levels = list(own)
        price = levels[int(rng.random() * len(levels))]
        size = own[price]
        if rng.random() < 0.4:
            amount = size
        elif self.whole_only:
            amount = max(100, int(size * rng.random()) // 100 * 100)
        else:
            amount = max(1, int(size * rng.random()))
        new_size = size - amount
        if new_size:
            own[price] = new_size
        else:
            del own[price]
        self._delta(state, is_yes, price, -amount, new_size, ts, b"cancel")

    def _trade(self, state: MarketState, taker_yes: bool, ts: int) -> None:
        # A YES taker lifts the best YES ask, which is the best NO bid (and vice versa).
        maker = state.no if taker_yes else state.yes
        if not maker:
            taker_yes = not taker_yes
            maker = state.no if taker_yes else state.yes
            if not maker:
                return
        rng = self.rng
        price = max(maker)
        size = maker[price]
        count = min(size, draw_size(rng.getrandbits(32), self.whole_only))
        id_bits = rng.getrandbits(128)
        new_size = size - count
        if new_size:
            maker[price] = new_size
        else:
            del maker[price]
        yes_price = MICROS_PER_DOLLAR - price if taker_yes else price
        state.volume += count
        state.open_interest += count
        state.last_price = yes_price
        state.last_trade_size = count
        state.dollar_volume += yes_price * count
        self.series_volume[(state.index // MARKETS_PER_EVENT) % self.catalog.series_count] += count
        number = self.trades.append(id_bits, state.index, yes_price, count, taker_yes, ts)
        self._delta(state, not taker_yes, price, -count, new_size, ts, b"trade", ticker=False)
        recorder = self.recorder
        if recorder.enabled:
            recorder.exchange(
                b'{"step":%d,"ts_ns":%d,"kind":"trade","ticker":"%s","trade_id":"%s",'
                b'"yes_price":%d,"count":%d,"taker_side":"%s"}\n'
                % (
                    self.step_no,
                    ts,
                    state.ticker.encode(),
                    self.trades.trade_id(number).encode(),
                    yes_price,
                    count,
                    b"yes" if taker_yes else b"no",
                )
            )
        self.listener.trade(state, number, ts)
        state.refresh_top()
        self._ticker(state, ts)

    def _delta(
        self,
        state: MarketState,
        is_yes: bool,
        price: int,
        delta: int,
        new_size: int,
        ts: int,
        cause: bytes,
        ticker: bool = True,
    ) -> None:
        recorder = self.recorder
        if recorder.enabled:
            recorder.exchange(
                b'{"step":%d,"ts_ns":%d,"kind":"delta","ticker":"%s","side":"%s","price":%d,'
                b'"delta":%d,"size":%d,"cause":"%s"}\n'
                % (
                    self.step_no,
                    ts,
                    state.ticker.encode(),
                    b"yes" if is_yes else b"no",
                    price,
                    delta,
                    new_size,
                    cause,
                )
            )
        self.listener.book_delta(state, is_yes, price, delta, ts)
        if ticker and state.refresh_top():
            self._ticker(state, ts)

    def _ticker(self, state: MarketState, ts: int) -> None:
        """A ticker change: recorded whether or not anyone subscribed, then broadcast."""
        recorder = self.recorder
        if recorder.enabled:
            recorder.exchange(
                b'{"step":%d,"ts_ns":%d,"kind":"ticker","ticker":"%s",%s}\n'
                % (self.step_no, ts, state.ticker.encode(), self._ticker_values(state))
            )
        self.listener.ticker(state, ts)

    # ---- lifecycle ---------------------------------------------------------------------

    def _lifecycle_action(self, ts: int, pause: bool) -> None:
        index = self._pick_market()
        if index < 0:
            return
        if pause:
            self._set_status(index, INACTIVE, ts)
            heapq.heappush(self._paused, (ts + self._pause_ns, index))
            self._lifecycle(index, "deactivated", {"is_deactivated": True}, ts)
        else:
            close = self.close_ns[index] + self._postpone_ns
            self.close_ns[index] = close
            self.updated_ns[index] = ts
            if index < self._next_close:
                heapq.heappush(self._postponed, (close, index))
            self._lifecycle(index, "close_date_updated", {"close_ts": to_seconds(close)}, ts)
        self._refresh_due()

    def _metadata_update(self, ts: int) -> None:
        """`metadata_updated`: the market's strike moves (kalshi-api.md §3.5)."""
        index = self._pick_market()
        if index < 0:
            return
        strike = self.floor_strike(index) + 5 * (1 + int(self.rng.random() * 10))
        self.floor_strikes[index] = strike
        self.updated_ns[index] = ts
        fields = {
            "floor_strike": strike,
            "cap_strike": None,
            "strike_type": "greater",
            "custom_strike": None,
            "yes_sub_title": f"Above {strike:,}",
        }
        self._lifecycle(index, "metadata_updated", fields, ts)

    def _structure_update(self, ts: int) -> None:
        """`price_level_structure_updated`: a market moves onto the $0.0001 grid.

        That grid refines every other one, so every resting level stays valid (§9).
        """
        index = self._pick_market()
        if index < 0 or self.grid_code(index) == GRID_CENTER:
            return
        self.grid_codes[index] = GRID_CENTER
        grid = GRIDS[GRID_CENTER]
        state = self.states.get(index)
        if state is not None:
            state.grid = grid
        self.updated_ns[index] = ts
        fields = {"price_level_structure": grid.structure, "price_ranges": grid.price_ranges()}
        self._lifecycle(index, "price_level_structure_updated", fields, ts)

    def _fee_update(self, ts: int) -> None:
        """`event_fee_update` of the event of an active market (kalshi-api.md §3.5)."""
        index = self._pick_market()
        if index < 0:
            return
        event = index // MARKETS_PER_EVENT
        rng = self.rng
        choice = int(rng.random() * (len(FEE_TYPES) + 1))
        fee_type = FEE_TYPES[choice] if choice < len(FEE_TYPES) else None
        multiplier = FEE_MULTIPLIERS[int(rng.random() * len(FEE_MULTIPLIERS))]
        override = None if fee_type is None else multiplier
        self.event_fees[event] = (fee_type, override)
        self.event_updated_ns[event] = ts
        fields = {
            "event_ticker": self.catalog.event_ticker(event),
            "fee_type_override": fee_type,
            "fee_multiplier_override": override,
        }
        self._record(b"event_fee_update", fields, ts)
        self.listener.event_fee_update(event, fields, ts)

    def _refresh_due(self) -> None:
        catalog = self.catalog
        due = catalog.creation_ns(self.count)
        if self._next_open < self.count:
            due = min(due, catalog.scheduled_times(self._next_open)[1])
        if self._next_close < self.count:
            due = min(due, catalog.scheduled_times(self._next_close)[2])
        for queue in (self._postponed, self._paused, self._to_determine, self._to_settle):
            if queue:
                due = min(due, queue[0][0])
        self._next_due = due

    def _run_lifecycle(self, now: int) -> None:
        """Apply every lifecycle transition due at or before `now`, earliest first."""
        catalog = self.catalog
        while True:
            kind, due = "create", catalog.creation_ns(self.count)
            if self._next_open < self.count:
                t = catalog.scheduled_times(self._next_open)[1]
                if t < due:
                    kind, due = "open", t
            if self._next_close < self.count:
                t = catalog.scheduled_times(self._next_close)[2]
                if t < due:
                    kind, due = "close", t
            for name, queue in (
                ("postponed", self._postponed),
                ("resume", self._paused),
                ("determine", self._to_determine),
                ("settle", self._to_settle),
            ):
                if queue and queue[0][0] < due:
                    kind, due = name, queue[0][0]
            if due > now:
                break
            self._apply(kind, due)
        self._refresh_due()

    def _apply(self, kind: str, due: int) -> None:
        if kind == "create":
            self._create(due)
        elif kind == "open":
            index = self._next_open
            self._next_open += 1
            self._set_status(index, ACTIVE, due)
            self._lifecycle(index, "activated", {"is_deactivated": False}, due)
        elif kind == "close":
            index = self._next_close
            self._next_close += 1
            if self.close_ns[index] > due:  # postponed: close later, from the heap
                heapq.heappush(self._postponed, (self.close_ns[index], index))
            else:
                self._close(index, due)
        elif kind == "postponed":
            close, index = heapq.heappop(self._postponed)
            if self.close_ns[index] == close and self.status[index] < CLOSED:
                self._close(index, due)
        elif kind == "resume":
            _, index = heapq.heappop(self._paused)
            if self.status[index] == INACTIVE:
                self._set_status(index, ACTIVE, due)
                self._lifecycle(index, "activated", {"is_deactivated": False}, due)
        elif kind == "determine":
            _, index = self._to_determine.popleft()
            outcome = 1 if self.rng.random() < 0.5 else 2
            self.result[index] = outcome
            self._set_status(index, DETERMINED, due)
            self._to_settle.append((due + self.catalog.settle_delay_ns, index))
            fields = {
                "result": RESULT_NAMES[outcome],
                "determination_ts": to_seconds(due),
                "settlement_value": micros_to_dollars(MICROS_PER_DOLLAR if outcome == 1 else 0),
            }
            self._lifecycle(index, "determined", fields, due)
        elif kind == "settle":
            _, index = self._to_settle.popleft()
            self._set_status(index, FINALIZED, due)
            self._lifecycle(index, "settled", {"settled_ts": to_seconds(due)}, due)

    def _create(self, due: int) -> None:
        index = self.count
        catalog = self.catalog
        created, opened, close = catalog.scheduled_times(index)
        self.count += 1
        self.status.append(INITIALIZED)
        self.result.append(0)
        self.close_ns.append(close)
        self.updated_ns.append(created)
        if index % MARKETS_PER_EVENT == 0:
            event = index // MARKETS_PER_EVENT
            self._record(b"event_created", {"event_ticker": catalog.event_ticker(event)}, due)
            self.listener.event_created(event, due)
        spec = catalog.market(index)
        grid = GRIDS[spec.grid_code]
        fields: dict[str, Any] = {
            "open_ts": to_seconds(opened),
            "close_ts": to_seconds(close),
            "price_level_structure": grid.structure,
            "price_ranges": grid.price_ranges(),
            "additional_metadata": {
                "name": spec.title,
                "title": spec.title,
                "yes_sub_title": spec.yes_sub_title,
                "no_sub_title": spec.no_sub_title,
                "rules_primary": spec.rules_primary,
                "rules_secondary": spec.rules_secondary,
                "can_close_early": True,
                "event_ticker": spec.event_ticker,
                "expected_expiration_ts": to_seconds(close + catalog.determine_delay_ns),
                "strike_type": "greater",
                "floor_strike": spec.floor_strike,
                "cap_strike": None,
                "custom_strike": None,
            },
        }
        if not catalog.legacy:
            fields["exchange_index"] = spec.exchange_index  # optional on `created` (§9)
        self._lifecycle(index, "created", fields, due)

    def _close(self, index: int, due: int) -> None:
        # Books are frozen at close, not cancelled: the exchange simply stops changing them.
        self._set_status(index, CLOSED, due)
        self._record(
            b"status", {"ticker": self.catalog.market_ticker(index), "status": "closed"}, due
        )
        self._to_determine.append((due + self.catalog.determine_delay_ns, index))

    def _set_status(self, index: int, status: int, ts: int) -> None:
        self.status[index] = status
        self.updated_ns[index] = ts

    def _lifecycle(self, index: int, event_type: str, fields: dict[str, Any], ts: int) -> None:
        ticker = self.catalog.market_ticker(index)
        record = {
            "ticker": ticker,
            "event_type": event_type,
            "status": STATUS_NAMES[self.status[index]],
            **fields,
        }
        self._record(b"lifecycle", record, ts)
        self.listener.lifecycle(index, event_type, fields, ts)

    def _record(self, kind: bytes, fields: dict[str, Any], ts: int) -> None:
        if self.recorder.enabled:
            self.recorder.exchange(
                b'{"step":%d,"ts_ns":%d,"kind":"%s",%s\n'
                % (self.step_no, ts, kind, orjson.dumps(fields)[1:])
            )
