"""REST market-data endpoints under `/trade-api/v2` (kalshi-api.md §1).

Handlers validate their query parameters strictly (a bad value is HTTP 400 with an error body,
`error_response`), page with opaque cursors, and render bodies through `views` in the
configured field format. Pagination walks markets (and events) in creation order, so pages stay
stable while new markets are appended at the end.

Trades are split at the historical cutoff as Kalshi splits them (kalshi-api.md §1.11): those
created before `trades_created_ts` are served only by `/historical/trades`, the rest only by
`/markets/trades`, so a client that ignores the cutoff misses trades here as it would there.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson
from aiohttp import web

from app.simulator.catalog import EXCHANGE_INDEX, MARKETS_PER_EVENT
from app.simulator.clock import NS_PER_S, rfc3339
from app.simulator.exchange import CLOSED, FINALIZED, Exchange
from app.simulator.views import STATUS_FILTERS, CurrentViews, EventLive

API_PREFIX = "/trade-api/v2"
MAX_BATCH_ORDERBOOKS = 100
MAX_TICKER_LENGTH = 200


class BadRequest(Exception):
    """A query the endpoint refuses (HTTP 400)."""


class NotFound(Exception):
    """A ticker or path that does not exist (HTTP 404)."""


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


# The `message` of a nested error body; its `details` says what exactly was wrong.
_SUMMARIES = {
    400: "invalid parameters",
    401: "authentication failed",
    404: "not found",
    405: "method not allowed",
}


def error_response(status: int, code: str, message: str, nested: bool = False) -> web.Response:
    """An error body: flat `{"code", "message"}` (the spec's shape), or, with `nested`, the
    `{"error": {"code", "message", "details"}}` seen in production (kalshi-api.md §9)."""
    if nested:
        summary = _SUMMARIES.get(status, message)
        return json_response(
            {"error": {"code": code, "message": summary, "details": message}}, status
        )
    return json_response({"code": code, "message": message}, status)


def encode_cursor(kind: str, position: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{position}".encode()).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise BadRequest("invalid cursor") from exc
    prefix, _, number = text.partition(":")
    if prefix != kind or not number.isdigit():
        raise BadRequest("invalid cursor")
    return int(number)


class Query:
    """Typed access to one request's query string."""

    def __init__(self, request: web.Request) -> None:
        self.raw = request.query

    def text(self, name: str) -> str | None:
        value = self.raw.get(name)
        return value if value else None

    def integer(self, name: str, low: int | None = None, high: int | None = None) -> int | None:
        value = self.raw.get(name)
        if value is None or value == "":
            return None
        try:
            number = int(value)
        except ValueError as exc:
            raise BadRequest(f"{name} must be an integer") from exc
        if (low is not None and number < low) or (high is not None and number > high):
            raise BadRequest(f"{name} must be between {low} and {high}")
        return number

    def limit(self, default: int, maximum: int) -> int:
        value = self.integer("limit", 0, maximum)
        return value if value else default

    def flag(self, name: str) -> bool:
        value = self.raw.get(name, "").lower()
        if value in ("", "false", "0"):
            return False
        if value in ("true", "1"):
            return True
        raise BadRequest(f"{name} must be true or false")

    def csv(self, name: str) -> list[str]:
        items: list[str] = []
        for value in self.raw.getall(name, []):
            items.extend(part for part in value.split(",") if part)
        return items


class RestApi:
    """The market-data handlers."""

    def __init__(
        self, exchange: Exchange, views: CurrentViews, historical_lag_ns: int | None = None
    ) -> None:
        self.exchange = exchange
        self.catalog = exchange.catalog
        self.views = views
        # How far the trades cutoff trails the virtual now; None: it stays at the epoch.
        self.historical_lag_ns = historical_lag_ns

    def routes(self) -> list[web.RouteDef]:
        p = API_PREFIX
        return [
            web.get(f"{p}/markets", self.markets),
            web.get(f"{p}/markets/trades", self.trades),
            web.get(f"{p}/markets/orderbooks", self.orderbooks),
            web.get(f"{p}/markets/{{ticker}}", self.market),
            web.get(f"{p}/markets/{{ticker}}/orderbook", self.orderbook),
            web.get(f"{p}/events", self.events),
            web.get(f"{p}/events/{{event_ticker}}", self.event),
            web.get(f"{p}/series", self.series_list),
            web.get(f"{p}/series/{{series_ticker}}", self.series),
            web.get(f"{p}/exchange/status", self.exchange_status),
            web.get(f"{p}/historical/cutoff", self.historical_cutoff),
            web.get(f"{p}/historical/trades", self.historical_trades),
        ]

    # ---- lookups -----------------------------------------------------------------------

    def _market_index(self, ticker: str) -> int:
        index = self.catalog.market_index(ticker)
        if index is None or not self.exchange.exists(index):
            raise NotFound(f"market {ticker} not found")
        return index

    def _event_index(self, event_ticker: str) -> int:
        event = self.catalog.event_index(event_ticker)
        if event is None or event >= self.exchange.event_count():
            raise NotFound(f"event {event_ticker} not found")
        return event

    def _render_market(self, index: int) -> dict[str, Any]:
        return self.views.market(self.catalog.market(index), self.exchange.view(index))

    def _event_markets(self, event: int) -> range:
        first = event * MARKETS_PER_EVENT
        return range(first, min(first + MARKETS_PER_EVENT, self.exchange.count))

    # ---- markets -----------------------------------------------------------------------

    async def markets(self, request: web.Request) -> web.Response:
        query = Query(request)
        limit = query.limit(100, 1000)
        start = decode_cursor("m", query.text("cursor")) or 0
        status_name = query.text("status")
        statuses: tuple[int, ...] | None = None
        if status_name is not None:
            if status_name not in STATUS_FILTERS:
                raise BadRequest(f"status must be one of {', '.join(STATUS_FILTERS)}")
            statuses = STATUS_FILTERS[status_name]
        window = self._time_window(query, status_name)
        candidates = self._market_candidates(query, start)
        predicate = self._market_predicate(statuses, window)
        chosen, next_start = _take_page(
            candidates, predicate, limit, self._fast_status(statuses, window, query, start)
        )
        return json_response(
            {
                "markets": [self._render_market(i) for i in chosen],
                "cursor": encode_cursor("m", next_start) if next_start is not None else "",
            }
        )

    def _time_window(
        self, query: Query, status: str | None
    ) -> tuple[str, int | None, int | None] | None:
        """The one timestamp filter in use: (kind, min ns, max ns), checked for compatibility."""
        groups = {
            "created": (("unopened", "open"), "min_created_ts", "max_created_ts"),
            "close": (("closed",), "min_close_ts", "max_close_ts"),
            "settled": (("settled",), "min_settled_ts", "max_settled_ts"),
        }
        used = []
        for kind, (allowed, low_name, high_name) in groups.items():
            low, high = query.integer(low_name, 0), query.integer(high_name, 0)
            if low is not None or high is not None:
                if status is not None and status not in allowed:
                    raise BadRequest(
                        f"{low_name}/{high_name} cannot be combined with status={status}"
                    )
                used.append(
                    (
                        kind,
                        None if low is None else low * NS_PER_S,
                        None if high is None else (high + 1) * NS_PER_S - 1,
                    )
                )
        if len(used) > 1:
            raise BadRequest("timestamp filters are mutually exclusive")
        return used[0] if used else None

    def _market_candidates(self, query: Query, start: int) -> Iterable[int]:
        count = self.exchange.count
        tickers = query.csv("tickers")
        events = query.csv("event_ticker")
        if len(events) > 1 or len(query.raw.getall("event_ticker", [])) > 1:
            # One event only since the 2026-03-03 docs (kalshi-api.md §9).
            raise BadRequest("event_ticker takes exactly one event ticker")
        series_ticker = query.text("series_ticker")
        sets: list[set[int]] = []
        if tickers:
            found = set()
            for ticker in tickers:
                index = self.catalog.market_index(ticker)
                if index is not None and index < count:
                    found.add(index)
            sets.append(found)
        if events:
            found = set()
            for event_ticker in events:
                event = self.catalog.event_index(event_ticker)
                if event is not None:
                    found.update(self._event_markets(event))
            sets.append(found)
        if series_ticker is not None:
            series = self.catalog.series_index(series_ticker)
            step = self.catalog.series_count
            if series is None:
                return ()
            if not sets:
                return self._series_markets(series, step, start)
            sets.append({i for s in sets for i in s if (i // MARKETS_PER_EVENT) % step == series})
        if sets:
            common = set.intersection(*sets)
            return sorted(i for i in common if i >= start)
        return range(start, count)

    def _series_markets(self, series: int, step: int, start: int) -> Iterator[int]:
        count = self.exchange.count
        event = start // MARKETS_PER_EVENT
        event += (series - event) % step
        while event * MARKETS_PER_EVENT < count:
            for index in self._event_markets(event):
                if index >= start:
                    yield index
            event += step

    def _market_predicate(
        self, statuses: tuple[int, ...] | None, window: tuple[str, int | None, int | None] | None
    ) -> Callable[[int], bool] | None:
        if statuses is None and window is None:
            return None
        status = self.exchange.status
        catalog = self.catalog
        exchange = self.exchange
        low = high = None
        kind = ""
        if window is not None:
            kind, low, high = window
        settle_after = catalog.determine_delay_ns + catalog.settle_delay_ns

        def keep(index: int) -> bool:
            if statuses is not None and status[index] not in statuses:
                return False
            if not kind:
                return True
            if kind == "created":
                if status[index] >= CLOSED:
                    return False
                at = catalog.scheduled_times(index)[0]
            elif kind == "close":
                if status[index] < CLOSED:
                    return False
                at = exchange.close_ns[index]
            else:
                if status[index] != FINALIZED:
                    return False
                at = exchange.close_ns[index] + settle_after
            return (low is None or at >= low) and (high is None or at <= high)

        return keep

    def _fast_status(
        self,
        statuses: tuple[int, ...] | None,
        window: tuple[str, int | None, int | None] | None,
        query: Query,
        start: int,
    ) -> Iterator[int] | None:
        """A C-speed scan (bytearray.find) for the common `status=` only query."""
        if statuses is None or window is not None:
            return None
        if query.csv("tickers") or query.csv("event_ticker") or query.text("series_ticker"):
            return None
        return _find_statuses(self.exchange.status, statuses, start)

    async def market(self, request: web.Request) -> web.Response:
        index = self._market_index(request.match_info["ticker"])
        return json_response({"market": self._render_market(index)})

    # ---- order books -------------------------------------------------------------------

    async def orderbook(self, request: web.Request) -> web.Response:
        index = self._market_index(request.match_info["ticker"])
        depth = Query(request).integer("depth", None, 100) or 0
        yes, no = self.exchange.book(index)
        places = self.exchange.grid(index).places
        return json_response(self.views.orderbook(yes, no, depth, places))

    async def orderbooks(self, request: web.Request) -> web.Response:
        tickers = Query(request).csv("tickers")
        if not 1 <= len(tickers) <= MAX_BATCH_ORDERBOOKS:
            raise BadRequest(f"tickers must name 1 to {MAX_BATCH_ORDERBOOKS} markets")
        books = []
        for ticker in tickers:
            if len(ticker) > MAX_TICKER_LENGTH:
                raise BadRequest(f"tickers must be at most {MAX_TICKER_LENGTH} characters")
            index = self._market_index(ticker)
            yes, no = self.exchange.book(index)
            places = self.exchange.grid(index).places
            books.append({"ticker": ticker, **self.views.orderbook(yes, no, 0, places)})
        return json_response({"orderbooks": books})

    # ---- trades ------------------------------------------------------------------------

    def trades_cutoff_ns(self) -> int:
        """The virtual instant before which trades are historical (`trades_created_ts`).

        It trails the virtual clock by the configured lag and never precedes the epoch: nothing
        the simulator made is older, so by default every trade is in the live window.
        """
        epoch_ns = self.exchange.clock.epoch_ns
        if self.historical_lag_ns is None:
            return epoch_ns
        return max(epoch_ns, self.exchange.now_ns - self.historical_lag_ns)

    async def trades(self, request: web.Request) -> web.Response:
        return self._trades_page(request, historical=False)

    async def historical_trades(self, request: web.Request) -> web.Response:
        return self._trades_page(request, historical=True)

    def _trades_page(self, request: web.Request, *, historical: bool) -> web.Response:
        """One page of `/markets/trades` (at/after the cutoff) or `/historical/trades` (before
        it): same parameters and shape (§1.8), newest first. The cutoff is read per page, so
        a trade the moving cutoff passes during paging leaves the live list for the other."""
        query = Query(request)
        limit = query.limit(100, 1000)
        kind = "h" if historical else "t"
        before = decode_cursor(kind, query.text("cursor"))
        ticker = query.text("ticker")
        market = None
        if ticker is not None:
            market = self.catalog.market_index(ticker)
            if market is None or not self.exchange.exists(market):
                return json_response({"trades": [], "cursor": ""})
        min_ts, max_ts = query.integer("min_ts", 0), query.integer("max_ts", 0)
        low_ns = None if min_ts is None else min_ts * NS_PER_S
        high_ns = None if max_ts is None else (max_ts + 1) * NS_PER_S - 1
        cutoff_ns = self.trades_cutoff_ns()
        if historical:
            high_ns = cutoff_ns - 1 if high_ns is None else min(high_ns, cutoff_ns - 1)
        else:
            low_ns = cutoff_ns if low_ns is None else max(low_ns, cutoff_ns)
        trades = self.exchange.trades
        numbers, next_before = trades.page(market, low_ns, high_ns, before, limit)
        return json_response(
            {
                "trades": [
                    self.views.trade(trades, n, self.exchange.grid(trades.market[n]).places)
                    for n in numbers
                ],
                "cursor": encode_cursor(kind, next_before) if next_before is not None else "",
            }
        )

    # ---- events ------------------------------------------------------------------------

    def _event_status(self, event: int) -> str:
        statuses = [self.exchange.status[i] for i in self._event_markets(event)]
        if any(s < CLOSED for s in statuses):
            return "open"
        return "settled" if all(s == FINALIZED for s in statuses) else "closed"

    def _render_event(self, event: int, nested: bool) -> dict[str, Any]:
        created_ns, _, strike_ns = self.catalog.scheduled_times(event * MARKETS_PER_EVENT)
        fee_type, multiplier = self.exchange.event_fees.get(event, (None, None))
        updated_ns = self.exchange.event_updated_ns.get(event, created_ns)
        live = EventLive(fee_type, multiplier, updated_ns)
        body = self.views.event(self.catalog.event(event), strike_ns, live)
        if nested:
            body["markets"] = [self._render_market(i) for i in self._event_markets(event)]
        return body

    async def events(self, request: web.Request) -> web.Response:
        query = Query(request)
        limit = query.limit(200, 200)
        start = decode_cursor("e", query.text("cursor")) or 0
        nested = query.flag("with_nested_markets")
        milestones = query.flag("with_milestones")
        status = query.text("status")
        if status is not None and status not in ("open", "closed", "settled"):
            raise BadRequest("status must be one of open, closed, settled")
        min_close = query.integer("min_close_ts", 0)
        series_ticker = query.text("series_ticker")
        event_count = self.exchange.event_count()
        candidates: Iterable[int]
        tickers = query.csv("tickers")
        if tickers:
            found = {self.catalog.event_index(t) for t in tickers}
            candidates = sorted(e for e in found if e is not None and start <= e < event_count)
        elif series_ticker is not None:
            series = self.catalog.series_index(series_ticker)
            step = self.catalog.series_count
            first = start + (series - start) % step if series is not None else event_count
            candidates = range(first, event_count, step)
        else:
            candidates = range(start, event_count)
        if series_ticker is not None and tickers:
            series = self.catalog.series_index(series_ticker)
            candidates = [e for e in candidates if e % self.catalog.series_count == series]

        def keep(event: int) -> bool:
            if status is not None and self._event_status(event) != status:
                return False
            if min_close is not None:
                close_after = min_close * NS_PER_S
                markets = self._event_markets(event)
                return any(self.exchange.close_ns[i] > close_after for i in markets)
            return True

        predicate = keep if status is not None or min_close is not None else None
        chosen, next_start = _take_page(candidates, predicate, limit, None)
        body: dict[str, Any] = {"events": [self._render_event(e, nested) for e in chosen]}
        if milestones:
            body["milestones"] = []
        body["cursor"] = encode_cursor("e", next_start) if next_start is not None else ""
        return json_response(body)

    async def event(self, request: web.Request) -> web.Response:
        event = self._event_index(request.match_info["event_ticker"])
        nested = Query(request).flag("with_nested_markets")
        markets = [self._render_market(i) for i in self._event_markets(event)]
        body = self._render_event(event, False)
        if nested:
            body["markets"] = markets
        return json_response({"event": body, "markets": markets})

    # ---- series ------------------------------------------------------------------------

    def _render_series(self, series: int) -> dict[str, Any]:
        # A series' metadata never changes here: last updated when the exchange started.
        volume = self.exchange.series_volume[series]
        return self.views.series(self.catalog.series(series), volume, self.catalog.epoch_ns)

    async def series_list(self, request: web.Request) -> web.Response:
        """Every matching series in one answer: `/series` is not paginated (§9)."""
        query = Query(request)
        category = query.text("category")
        tags = set(query.csv("tags"))
        result = []
        for s in range(self.catalog.series_count):
            spec = self.catalog.series(s)
            if category is not None and spec.category != category:
                continue
            if tags and not tags.intersection(spec.tags):
                continue
            result.append(self._render_series(s))
        return json_response({"series": result})

    async def series(self, request: web.Request) -> web.Response:
        ticker = request.match_info["series_ticker"]
        series = self.catalog.series_index(ticker)
        if series is None:
            raise NotFound(f"series {ticker} not found")
        return json_response({"series": self._render_series(series)})

    # ---- exchange ----------------------------------------------------------------------

    async def exchange_status(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = {
            "exchange_active": True,
            "trading_active": True,
            "exchange_estimated_resume_time": None,
        }
        if not self.views.legacy:  # exchange shards, kalshi-api.md §9
            body["intra_exchange_transfers_active"] = True
            body["exchange_index_statuses"] = [
                {"exchange_index": index, "exchange_active": True, "trading_active": True}
                for index in sorted({0, *EXCHANGE_INDEX.values()})
            ]
        return json_response(body)

    async def historical_cutoff(self, request: web.Request) -> web.Response:
        # Only trades move to the historical partition here: `/historical/markets` is not
        # simulated, so every market stays in `/markets` and its cutoff stays at the epoch.
        epoch = rfc3339(self.exchange.clock.epoch_ns)
        cutoff_ns = self.trades_cutoff_ns()
        # nanoseconds only when needed: the trades split is exact to the nanosecond
        places = 0 if cutoff_ns % NS_PER_S == 0 else 9
        return json_response(
            {
                "market_settled_ts": epoch,
                "trades_created_ts": rfc3339(cutoff_ns, places),
                "orders_updated_ts": epoch,
            }
        )


def _find_statuses(status: bytearray, codes: tuple[int, ...], start: int) -> Iterator[int]:
    """Indexes with one of `codes`, ascending, found with bytearray.find."""
    positions = {code: status.find(code, start) for code in codes}
    while True:
        live = [p for p in positions.values() if p >= 0]
        if not live:
            return
        index = min(live)
        yield index
        for code, position in positions.items():
            if position == index:
                positions[code] = status.find(code, index + 1)


def _take_page(
    candidates: Iterable[int],
    predicate: Callable[[int], bool] | None,
    limit: int,
    fast: Iterator[int] | None,
) -> tuple[list[int], int | None]:
    """Up to `limit` matches and, when another match exists, the position to resume from."""
    if fast is not None:
        source: Iterable[int] = fast
    elif predicate is None:
        if isinstance(candidates, range):
            chosen = list(candidates[: limit + 1])
            if len(chosen) > limit:
                return chosen[:limit], chosen[limit]
            return chosen, None
        source = candidates
    else:
        source = (i for i in candidates if predicate(i))
    chosen = []
    for index in source:
        if len(chosen) == limit:
            return chosen, index
        chosen.append(index)
    return chosen, None
