"""The Kalshi REST endpoints we consume (kalshi-api.md §1), as typed Python calls.

Metadata (markets, events, series) comes back as the plain dicts Kalshi sent, because the
registry stores raw objects and Kalshi adds fields every few weeks. Where units matter (order
books, trades) the answer is parsed exactly into integer units (`Orderbook`, `Trade`).
List endpoints are cursor-paginated iterators; `*_pages` variants yield whole pages with the
cursor that follows them, so a long backfill can checkpoint and resume.

Signing, token budget and retries are `RestSession`'s job; this module only knows paths,
parameters and response shapes. Build one with `KalshiRest.from_settings(settings.kalshi)`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from app.config import KalshiSettings
from app.kalshi.auth import Signer, signer_from_settings
from app.kalshi.backoff import Backoff
from app.kalshi.errors import WireFormatError
from app.kalshi.orderbook import Orderbook, parse_orderbook
from app.kalshi.ratelimit import DEFAULT_COST, TokenBucket, TokenLimiter, affordable_batch_size
from app.kalshi.session import Params, RestSession
from app.kalshi.trade import Trade, parse_trade
from app.kalshi.wire import rfc3339_to_ns

MAX_BATCH_ORDERBOOKS = 100
MAX_EVENT_TICKERS = 10
MARKET_STATUS_FILTERS = frozenset({"unopened", "open", "paused", "closed", "settled"})
EVENT_STATUS_FILTERS = frozenset({"open", "closed", "settled"})

# Which `status` filter each timestamp filter group combines with (kalshi-api.md §1.4).
_TS_GROUPS: dict[str, tuple[tuple[str, ...], frozenset[str | None]]] = {
    "created": (("min_created_ts", "max_created_ts"), frozenset({None, "unopened", "open"})),
    "close": (("min_close_ts", "max_close_ts"), frozenset({None, "closed"})),
    "settled": (("min_settled_ts", "max_settled_ts"), frozenset({None, "settled"})),
    "updated": (("min_updated_ts",), frozenset({None})),
}

MveFilter = Literal["only", "exclude"]
ParamValueArg = str | int | bool | Sequence[str] | None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list endpoint: its items and the cursor of the next page (None = last)."""

    items: list[Any]
    cursor: str | None
    body: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class ExchangeStatus:
    """`GET /exchange/status`."""

    exchange_active: bool
    trading_active: bool
    estimated_resume_time: str | None
    raw: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class HistoricalCutoff:
    """`GET /historical/cutoff`: older data lives only under `/historical/*` (§1.11)."""

    market_settled_ts: str | None
    trades_created_ts: str | None
    orders_updated_ts: str | None
    raw: Mapping[str, Any] = field(repr=False)

    @property
    def market_settled_ns(self) -> int | None:
        return _ns_or_none(self.market_settled_ts, "market_settled_ts")

    @property
    def trades_created_ns(self) -> int | None:
        return _ns_or_none(self.trades_created_ts, "trades_created_ts")


def _ns_or_none(value: str | None, name: str) -> int | None:
    return None if value is None else rfc3339_to_ns(value, f"historical cutoff {name}")


def _object(body: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise WireFormatError(f"{what}: expected a JSON object, got {type(body).__name__}")
    return body


def _member(body: Any, key: str, what: str) -> Mapping[str, Any]:
    value = _object(body, what).get(key)
    if not isinstance(value, Mapping):
        raise WireFormatError(f"{what}: no {key!r} object in the response")
    return value


def _comma_list(value: str | Sequence[str] | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return ",".join(value)


def _one_event_ticker(value: str | Sequence[str] | None) -> str | None:
    """The single event ticker `GET /markets?event_ticker=` takes (kalshi-api.md §9: one
    ticker only since 2026-03-03); a list of several, or a comma list, is refused."""
    if value is not None and not isinstance(value, str):
        if len(value) != 1:
            raise ValueError(
                "GET /markets takes one event ticker; iter_markets walks several one at a time"
            )
        value = value[0]
    if value is not None and "," in value:
        raise ValueError(f"GET /markets takes one event ticker, got {value!r}")
    return value or None


def _param(value: ParamValueArg) -> ParamValueArg:
    return _comma_list(value) if isinstance(value, list | tuple) else value


def _segment(value: str) -> str:
    """A ticker as one URL path segment (tickers may contain '.', never '/')."""
    return quote(value, safe="")


def _optional_str(value: Any, name: str, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise WireFormatError(f"{what}: {name} should be a string or null, got {value!r}")


def _check_limit(limit: int, maximum: int) -> None:
    if not 1 <= limit <= maximum:
        raise ValueError(f"limit must be between 1 and {maximum}, got {limit}")


class KalshiRest:
    """Kalshi REST API client. Use one per thread (a `requests.Session` is not meant to be
    shared); threads of one key share its budget by passing the same `limiter`."""

    def __init__(
        self,
        session: RestSession,
        *,
        orderbook_batch_size: int = MAX_BATCH_ORDERBOOKS,
        batch_item_cost: float = DEFAULT_COST,
    ) -> None:
        if not 1 <= orderbook_batch_size <= MAX_BATCH_ORDERBOOKS:
            raise ValueError(f"orderbook_batch_size must be 1..{MAX_BATCH_ORDERBOOKS}")
        self.session = session
        self.orderbook_batch_size = orderbook_batch_size
        self.batch_item_cost = batch_item_cost

    @classmethod
    def from_settings(
        cls,
        settings: KalshiSettings,
        *,
        rest_url: str | None = None,
        signer: Signer | Literal["settings"] | None = "settings",
        limiter: TokenLimiter | None = None,
        max_retries: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> KalshiRest:
        """A client for the configured exchange.

        The key is loaded from `settings.private_key_path` (raising `KeyLoadError` if it cannot
        be) unless `signer` is given. `limiter` defaults to an in-process bucket for
        `settings.tier`; pass a shared one to split one key's budget between clients. Batch
        order-book requests are sized so one request fits the tier's full bucket.
        """
        session = RestSession(
            rest_url or settings.rest_url,
            signer=signer_from_settings(settings) if signer == "settings" else signer,
            limiter=limiter or TokenBucket.for_tier(settings.tier),
            timeout_s=settings.request_timeout_s,
            max_retries=settings.max_retries if max_retries is None else max_retries,
            backoff=Backoff(settings.backoff_base_s, settings.backoff_max_s),
            sleep=sleep,
        )
        batch = affordable_batch_size(settings.tier, MAX_BATCH_ORDERBOOKS)
        return cls(session, orderbook_batch_size=batch)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> KalshiRest:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- generic --------------------------------------------------------------------------

    def get_json(
        self, path: str, params: Params | None = None, *, cost: float = DEFAULT_COST
    ) -> Any:
        """Any GET endpoint (path relative to the base URL, e.g. `/exchange/schedule`)."""
        return self.session.get(path, params, cost=cost)

    def pages(
        self, path: str, key: str, params: Params | None = None, *, cursor: str | None = None
    ) -> Iterator[Page]:
        """Every page of a cursor-paginated list, starting at `cursor` (None = first page).

        Stops on an empty or absent cursor (§1.3). A server handing back the cursor it was
        given would loop forever, so that is refused as a wire-format error.
        """
        what = f"GET {path}"
        base = dict(params or {})
        while True:
            body = _object(self.session.get(path, {**base, "cursor": cursor or None}), what)
            items = body.get(key)
            if items is None:
                items = []
            if not isinstance(items, list):
                raise WireFormatError(f"{what}: {key!r} should be a list")
            following = body.get("cursor") or None
            if following is not None and not isinstance(following, str):
                raise WireFormatError(f"{what}: cursor should be a string, got {following!r}")
            yield Page(items, following, body)
            if following is None:
                return
            if following == cursor:
                raise WireFormatError(f"{what}: the server returned the same cursor again")
            cursor = following

    # -- exchange -------------------------------------------------------------------------

    def get_exchange_status(self) -> ExchangeStatus:
        body = _object(self.session.get("/exchange/status"), "GET /exchange/status")
        active, trading = body.get("exchange_active"), body.get("trading_active")
        if not isinstance(active, bool) or not isinstance(trading, bool):
            raise WireFormatError("GET /exchange/status: exchange_active/trading_active missing")
        resume = _optional_str(
            body.get("exchange_estimated_resume_time"),
            "exchange_estimated_resume_time",
            "GET /exchange/status",
        )
        return ExchangeStatus(active, trading, resume, body)

    def get_historical_cutoff(self) -> HistoricalCutoff:
        what = "GET /historical/cutoff"
        body = _object(self.session.get("/historical/cutoff"), what)
        return HistoricalCutoff(
            _optional_str(body.get("market_settled_ts"), "market_settled_ts", what),
            _optional_str(body.get("trades_created_ts"), "trades_created_ts", what),
            _optional_str(body.get("orders_updated_ts"), "orders_updated_ts", what),
            body,
        )

    # -- markets --------------------------------------------------------------------------

    def get_market(self, ticker: str) -> dict[str, Any]:
        path = f"/markets/{_segment(ticker)}"
        return dict(_member(self.session.get(path), "market", f"GET {path}"))

    def market_pages(
        self,
        *,
        limit: int = 1000,
        cursor: str | None = None,
        event_ticker: str | Sequence[str] | None = None,
        series_ticker: str | None = None,
        status: str | None = None,
        tickers: str | Sequence[str] | None = None,
        min_created_ts: int | None = None,
        max_created_ts: int | None = None,
        min_close_ts: int | None = None,
        max_close_ts: int | None = None,
        min_settled_ts: int | None = None,
        max_settled_ts: int | None = None,
        min_updated_ts: int | None = None,
        mve_filter: MveFilter | None = None,
    ) -> Iterator[Page]:
        """Pages of `GET /markets` with every filter of kalshi-api.md §1.4 and §9.

        Filter combinations Kalshi rejects are refused here with `ValueError` (status values
        other than unopened/open/paused/closed/settled, more than one event ticker, two
        timestamp groups at once, a timestamp group with a status it does not combine with,
        `min_updated_ts` with anything but `series_ticker` and `mve_filter=exclude`).
        `iter_markets` accepts several event tickers and walks them one at a time.
        """
        _check_limit(limit, 1000)
        if status is not None and status not in MARKET_STATUS_FILTERS:
            raise ValueError(f"status filter must be one of {sorted(MARKET_STATUS_FILTERS)}")
        event = _one_event_ticker(event_ticker)
        stamps = {
            "min_created_ts": min_created_ts,
            "max_created_ts": max_created_ts,
            "min_close_ts": min_close_ts,
            "max_close_ts": max_close_ts,
            "min_settled_ts": min_settled_ts,
            "max_settled_ts": max_settled_ts,
            "min_updated_ts": min_updated_ts,
        }
        used = [
            group
            for group, (names, _) in _TS_GROUPS.items()
            if any(stamps[name] is not None for name in names)
        ]
        if len(used) > 1:
            raise ValueError(f"timestamp filters are mutually exclusive, got {used}")
        if used and status not in _TS_GROUPS[used[0]][1]:
            raise ValueError(f"{used[0]} timestamp filters do not combine with status={status}")
        if min_updated_ts is not None and (event or tickers):
            raise ValueError(
                "min_updated_ts combines only with series_ticker and mve_filter=exclude"
            )
        if min_updated_ts is not None and mve_filter not in (None, "exclude"):
            raise ValueError(
                "min_updated_ts combines only with series_ticker and mve_filter=exclude"
            )
        params: dict[str, Any] = {
            "limit": limit,
            "event_ticker": event,
            "series_ticker": series_ticker,
            "status": status,
            "tickers": _comma_list(tickers),
            "mve_filter": mve_filter,
            **stamps,
        }
        return self.pages("/markets", "markets", params, cursor=cursor)

    def iter_markets(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every market matching the filters of `market_pages`, as raw dicts.

        `event_ticker` may be a list here: `GET /markets` takes one event ticker (§9), so each
        is walked in turn (at most `MAX_EVENT_TICKERS` per call, as before).
        """
        events = filters.pop("event_ticker", None)
        if events is None or isinstance(events, str):
            walks: list[str | None] = [events]
        else:
            walks = list(dict.fromkeys(events))
            if len(walks) > MAX_EVENT_TICKERS:
                raise ValueError(f"at most {MAX_EVENT_TICKERS} event tickers per call")
        for event in walks:
            for page in self.market_pages(event_ticker=event, **filters):
                yield from page.items

    def historical_market_pages(
        self,
        *,
        limit: int = 1000,
        cursor: str | None = None,
        **filters: ParamValueArg,
    ) -> Iterator[Page]:
        """Pages of `GET /historical/markets` (markets settled before the cutoff, §1.11)."""
        _check_limit(limit, 1000)
        params = {"limit": limit, **{k: _param(v) for k, v in filters.items()}}
        return self.pages("/historical/markets", "markets", params, cursor=cursor)

    def get_historical_market(self, ticker: str) -> dict[str, Any]:
        path = f"/historical/markets/{_segment(ticker)}"
        return dict(_member(self.session.get(path), "market", f"GET {path}"))

    # -- events and series ----------------------------------------------------------------

    def get_event(self, event_ticker: str, *, with_nested_markets: bool = False) -> dict[str, Any]:
        """`GET /events/{ticker}` as sent: `{"event": {...}, "markets": [...]}`.

        With `with_nested_markets` the markets are inside `event["markets"]` (the top-level
        list is deprecated, §1.6).
        """
        path = f"/events/{_segment(event_ticker)}"
        params = {"with_nested_markets": with_nested_markets or None}
        body = _object(self.session.get(path, params), f"GET {path}")
        _member(body, "event", f"GET {path}")
        return dict(body)

    def event_pages(
        self,
        *,
        limit: int = 200,
        cursor: str | None = None,
        with_nested_markets: bool | None = None,
        with_milestones: bool | None = None,
        status: str | None = None,
        series_ticker: str | None = None,
        min_close_ts: int | None = None,
        min_updated_ts: int | None = None,
        tickers: str | Sequence[str] | None = None,
    ) -> Iterator[Page]:
        """Pages of `GET /events` with every filter of kalshi-api.md §1.6 and §9 (limit <= 200;
        `min_updated_ts` = events whose metadata changed after that Unix second)."""
        _check_limit(limit, 200)
        if status is not None and status not in EVENT_STATUS_FILTERS:
            raise ValueError(f"event status filter must be one of {sorted(EVENT_STATUS_FILTERS)}")
        params: dict[str, Any] = {
            "limit": limit,
            "with_nested_markets": with_nested_markets,
            "with_milestones": with_milestones,
            "status": status,
            "series_ticker": series_ticker,
            "min_close_ts": min_close_ts,
            "min_updated_ts": min_updated_ts,
            "tickers": _comma_list(tickers),
        }
        return self.pages("/events", "events", params, cursor=cursor)

    def iter_events(self, **filters: Any) -> Iterator[dict[str, Any]]:
        for page in self.event_pages(**filters):
            yield from page.items

    def get_series(self, series_ticker: str) -> dict[str, Any]:
        path = f"/series/{_segment(series_ticker)}"
        return dict(_member(self.session.get(path), "series", f"GET {path}"))

    def series_pages(
        self,
        *,
        category: str | None = None,
        tags: str | Sequence[str] | None = None,
        include_product_metadata: bool | None = None,
        include_volume: bool | None = None,
        min_updated_ts: int | None = None,
    ) -> Iterator[Page]:
        """`GET /series` as one page: the endpoint is not paginated (kalshi-api.md §9), so no
        cursor is sent or followed. `min_updated_ts` (Unix seconds) lists series changed since."""
        params: dict[str, Any] = {
            "category": category,
            "tags": _comma_list(tags),
            "include_product_metadata": include_product_metadata,
            "include_volume": include_volume,
            "min_updated_ts": min_updated_ts,
        }
        body = _object(self.session.get("/series", params), "GET /series")
        items = body.get("series")
        if items is None:
            items = []
        if not isinstance(items, list):
            raise WireFormatError("GET /series: 'series' should be a list")
        yield Page(items, None, body)

    def iter_series(self, **filters: Any) -> Iterator[dict[str, Any]]:
        for page in self.series_pages(**filters):
            yield from page.items

    # -- order books ----------------------------------------------------------------------

    def get_orderbook(self, ticker: str, *, depth: int = 0) -> Orderbook:
        """One market's book (`depth` 0 = all levels, 1-100 = top N per side)."""
        if not 0 <= depth <= 100:
            raise ValueError(f"depth must be between 0 and 100, got {depth}")
        path = f"/markets/{_segment(ticker)}/orderbook"
        body = self.session.get(path, {"depth": depth or None})
        return parse_orderbook(_object(body, f"GET {path}"), ticker)

    def get_orderbooks(self, tickers: Sequence[str]) -> list[Orderbook]:
        """Books of many markets via `GET /markets/orderbooks`, `orderbook_batch_size` (at most
        100) tickers per request.

        Each request costs `batch_item_cost` per ticker (every batch item is billed like a
        single call, §4). Books come back in the order Kalshi sends them; a ticker Kalshi
        leaves out is simply absent from the result.
        """
        unique = list(dict.fromkeys(tickers))
        books: list[Orderbook] = []
        size = self.orderbook_batch_size
        for start in range(0, len(unique), size):
            chunk = unique[start : start + size]
            body = self.session.get(
                "/markets/orderbooks", {"tickers": chunk}, cost=self.batch_item_cost * len(chunk)
            )
            entries = _object(body, "GET /markets/orderbooks").get("orderbooks")
            if not isinstance(entries, list):
                raise WireFormatError("GET /markets/orderbooks: no 'orderbooks' list")
            for entry in entries:
                ticker = entry.get("ticker") if isinstance(entry, Mapping) else None
                if not isinstance(ticker, str):
                    raise WireFormatError(
                        f"GET /markets/orderbooks: entry without ticker: {entry!r}"
                    )
                books.append(parse_orderbook(entry, ticker))
        return books

    # -- trades ---------------------------------------------------------------------------

    def trade_pages(
        self,
        *,
        limit: int = 1000,
        cursor: str | None = None,
        ticker: str | None = None,
        min_ts: int | None = None,
        max_ts: int | None = None,
        is_block_trade: bool | None = None,
        historical: bool = False,
    ) -> Iterator[Page]:
        """Raw pages of `GET /markets/trades` (or `/historical/trades`), newest trade first."""
        _check_limit(limit, 1000)
        params: dict[str, Any] = {
            "limit": limit,
            "ticker": ticker,
            "min_ts": min_ts,
            "max_ts": max_ts,
            "is_block_trade": is_block_trade,
        }
        path = "/historical/trades" if historical else "/markets/trades"
        return self.pages(path, "trades", params, cursor=cursor)

    def iter_trades(self, **filters: Any) -> Iterator[Trade]:
        """Every trade matching the filters of `trade_pages`, parsed exactly."""
        for page in self.trade_pages(**filters):
            for item in page.items:
                yield parse_trade(item)
