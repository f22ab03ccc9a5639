"""REST response objects in the current or the legacy field format.

kalshi-api.md §1. `CurrentViews` renders the newest documented shapes; `LegacyViews` renders the
late-2025 shapes that the official SDK `kalshi_python_sync` 3.2.0 models (its pydantic models
are strict: every required field is present with the right type and enum value). Prices come in
as micro-dollars and counts as hundredths of a contract (DESIGN §4); a market's prices are
written with its grid's decimals (six on the $0.0001 grid, kalshi-api.md §9).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.simulator.book import Side
from app.simulator.catalog import Catalog, EventSpec, MarketSpec, SeriesSpec
from app.simulator.clock import NS_PER_S, rfc3339
from app.simulator.exchange import (
    CLOSED,
    DETERMINED,
    FINALIZED,
    INACTIVE,
    RESULT_NAMES,
    STATUS_NAMES,
    MarketView,
)
from app.simulator.ticks import GRIDS
from app.simulator.trades import TradeLog
from app.units import MICROS_PER_CENT, MICROS_PER_DOLLAR, hundredths_to_count, micros_to_dollars

_WEEK_NS = 7 * 24 * 3600 * NS_PER_S


@dataclass(frozen=True, slots=True)
class EventLive:
    """What `event_fee_update`s changed about an event."""

    fee_type_override: str | None
    fee_multiplier_override: float | None
    updated_ns: int  # its last change (creation, or its last fee update)


_DOLLAR_TEXT: dict[tuple[int, int], str] = {}


def _dollars(micros: int, places: int = 4) -> str:
    """Dollar string of a price, cached: a page renders the same few hundred prices again."""
    text = _DOLLAR_TEXT.get((micros, places))
    if text is None:
        text = micros_to_dollars(micros, places)
        if len(_DOLLAR_TEXT) < 100_000:
            _DOLLAR_TEXT[micros, places] = text
    return text


def _levels(side: Side, depth: int) -> list[int]:
    """Prices of the `depth` best levels (all when depth <= 0), ascending."""
    prices = sorted(side)
    return prices[-depth:] if depth > 0 else prices


class CurrentViews:
    """Newest documented REST shapes."""

    legacy = False

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    # ---- markets -----------------------------------------------------------------------

    def status_name(self, status: int) -> str:
        return STATUS_NAMES[status]

    def _times(self, spec: MarketSpec, view: MarketView) -> dict[str, Any]:
        catalog = self.catalog
        close = view.close_ns
        determined = close + catalog.determine_delay_ns
        return {
            "created_time": rfc3339(spec.created_ns),
            "open_time": rfc3339(spec.open_ns),
            "close_time": rfc3339(close),
            "expected_expiration_time": rfc3339(determined),
            "expiration_time": rfc3339(determined),
            "latest_expiration_time": rfc3339(close + _WEEK_NS),
            "settlement_timer_seconds": catalog.settle_delay_ns // NS_PER_S,
        }

    def _settlement(self, view: MarketView) -> tuple[int | None, str | None]:
        """(settlement value in micros, settlement time) once known."""
        if view.status < DETERMINED:
            return None, None
        value = MICROS_PER_DOLLAR if RESULT_NAMES[view.result] == "yes" else 0
        settled = None
        if view.status == FINALIZED:
            catalog = self.catalog
            at = view.close_ns + catalog.determine_delay_ns + catalog.settle_delay_ns
            settled = rfc3339(at)
        return value, settled

    def market(self, spec: MarketSpec, view: MarketView) -> dict[str, Any]:
        # Removed by §9 and so never sent: response_price_units, fractional_trading_enabled
        # (2026-07-09), liquidity_dollars (2026-10-01).
        grid = GRIDS[view.grid_code]
        places = grid.places
        yes_ask = MICROS_PER_DOLLAR - view.no_bid if view.no_bid else MICROS_PER_DOLLAR
        no_ask = MICROS_PER_DOLLAR - view.yes_bid if view.yes_bid else MICROS_PER_DOLLAR
        settlement_value, settled = self._settlement(view)
        above = f"Above {view.floor_strike:,}"
        return {
            "ticker": spec.ticker,
            "event_ticker": spec.event_ticker,
            "market_type": "binary",
            "title": spec.title,
            "subtitle": above,
            "yes_sub_title": above,
            "no_sub_title": above,
            **self._times(spec, view),
            "updated_time": rfc3339(view.updated_ns),
            "status": self.status_name(view.status),
            "yes_bid_dollars": _dollars(view.yes_bid, places),
            "yes_bid_size_fp": hundredths_to_count(view.yes_bid_size),
            "yes_ask_dollars": _dollars(yes_ask, places),
            "yes_ask_size_fp": hundredths_to_count(view.no_bid_size),
            "no_bid_dollars": _dollars(view.no_bid, places),
            "no_ask_dollars": _dollars(no_ask, places),
            "last_price_dollars": _dollars(view.last_price, places),
            "previous_yes_bid_dollars": _dollars(view.prev_yes_bid, places),
            "previous_yes_ask_dollars": _dollars(view.prev_yes_ask, places),
            "previous_price_dollars": _dollars(view.prev_price, places),
            "volume_fp": hundredths_to_count(view.volume),
            "volume_24h_fp": hundredths_to_count(view.volume),
            "open_interest_fp": hundredths_to_count(view.open_interest),
            "notional_value_dollars": "1.0000",
            "result": RESULT_NAMES[view.result],
            "can_close_early": True,
            "expiration_value": "",
            "settlement_value_dollars": (
                None if settlement_value is None else _dollars(settlement_value, places)
            ),
            "settlement_ts": settled,
            "fee_waiver_expiration_time": None,
            "early_close_condition": "",
            "strike_type": "greater",
            "floor_strike": view.floor_strike,
            "cap_strike": None,
            "functional_strike": None,
            "custom_strike": None,
            "rules_primary": spec.rules_primary,
            "rules_secondary": spec.rules_secondary,
            "mve_collection_ticker": "",
            "mve_selected_legs": [],
            "primary_participant_key": None,
            "price_level_structure": grid.structure,
            "price_ranges": grid.price_ranges(),
            "is_provisional": False,
            "occurrence_datetime": None,
            "exchange_index": spec.exchange_index,
        }

    # ---- order books -------------------------------------------------------------------

    def orderbook(self, yes: Side, no: Side, depth: int, places: int = 4) -> dict[str, Any]:
        return {
            "orderbook_fp": {
                "yes_dollars": [
                    [_dollars(p, places), hundredths_to_count(yes[p])] for p in _levels(yes, depth)
                ],
                "no_dollars": [
                    [_dollars(p, places), hundredths_to_count(no[p])] for p in _levels(no, depth)
                ],
            }
        }

    # ---- trades ------------------------------------------------------------------------

    def trade(self, trades: TradeLog, number: int, places: int = 4) -> dict[str, Any]:
        yes_price = trades.yes_price[number]
        taker_yes = trades.taker_yes[number]
        return {
            "trade_id": trades.trade_id(number),
            "ticker": self.catalog.market_ticker(trades.market[number]),
            "count_fp": hundredths_to_count(trades.count[number]),
            "yes_price_dollars": _dollars(yes_price, places),
            "no_price_dollars": _dollars(MICROS_PER_DOLLAR - yes_price, places),
            "taker_side": "yes" if taker_yes else "no",
            "taker_outcome_side": "yes" if taker_yes else "no",
            "taker_book_side": "bid" if taker_yes else "ask",
            "created_time": rfc3339(trades.ts_ns[number], 6),
            "is_block_trade": False,
        }

    # ---- events and series -------------------------------------------------------------

    def event(self, spec: EventSpec, strike_ns: int, live: EventLive) -> dict[str, Any]:
        # `available_on_brokers` was removed on 2026-09-10 (§9).
        return {
            "event_ticker": spec.event_ticker,
            "series_ticker": spec.series_ticker,
            "title": spec.title,
            "sub_title": spec.sub_title,
            "collateral_return_type": "",
            "mutually_exclusive": False,
            "category": spec.category,
            "strike_date": rfc3339(strike_ns),
            "strike_period": None,
            "product_metadata": {"cadence": spec.frequency},
            "settlement_sources": [
                {"name": "Simulator", "url": "https://example.invalid/simulator"}
            ],
            "fee_type_override": live.fee_type_override,
            "fee_multiplier_override": live.fee_multiplier_override,
            "last_updated_ts": rfc3339(live.updated_ns),
            "exchange_index": spec.exchange_index,
        }

    def series(self, spec: SeriesSpec, volume: int, updated_ns: int) -> dict[str, Any]:
        """`volume` in hundredths of a contract: what the series' markets traded in this run."""
        return {
            "ticker": spec.ticker,
            "frequency": spec.frequency,
            "title": spec.title,
            "category": spec.category,
            "categories": [spec.category],
            "tags": list(spec.tags),
            "settlement_sources": [
                {"name": "Simulator", "url": "https://example.invalid/simulator"}
            ],
            "contract_url": f"https://example.invalid/contracts/{spec.ticker}.pdf",
            "contract_terms_url": f"https://example.invalid/terms/{spec.ticker}.pdf",
            "product_metadata": None,
            "fee_type": spec.fee_type,
            "fee_multiplier": spec.fee_multiplier,
            "additional_prohibitions": [],
            "volume_fp": hundredths_to_count(volume),
            "last_updated_ts": rfc3339(updated_ns),
            "exchange_index": spec.exchange_index,
        }


_LEGACY_STATUS = ("initialized", "active", "closed", "closed", "determined", "settled")


def _cents(micros: int) -> int:
    return micros // MICROS_PER_CENT


class LegacyViews(CurrentViews):
    """Late-2025 shapes, exactly what `kalshi_python_sync` 3.2.0 validates."""

    legacy = True

    def status_name(self, status: int) -> str:
        # SDK 3.2.0 knows initialized/active/closed/determined/settled only: a paused market
        # (no trading) is reported as closed, a finalized one as settled.
        return _LEGACY_STATUS[status]

    def market(self, spec: MarketSpec, view: MarketView) -> dict[str, Any]:
        grid = GRIDS[spec.grid_code]
        yes_ask = MICROS_PER_DOLLAR - view.no_bid if view.no_bid else MICROS_PER_DOLLAR
        no_ask = MICROS_PER_DOLLAR - view.yes_bid if view.yes_bid else MICROS_PER_DOLLAR
        settlement_value, _ = self._settlement(view)
        return {
            "ticker": spec.ticker,
            "event_ticker": spec.event_ticker,
            "market_type": "binary",
            "title": spec.title,
            "subtitle": spec.subtitle,
            "yes_sub_title": spec.yes_sub_title,
            "no_sub_title": spec.no_sub_title,
            **self._times(spec, view),
            "status": self.status_name(view.status),
            "response_price_units": "usd_cent",
            "yes_bid": _cents(view.yes_bid),
            "yes_bid_dollars": _dollars(view.yes_bid),
            "yes_ask": _cents(yes_ask),
            "yes_ask_dollars": _dollars(yes_ask),
            "no_bid": _cents(view.no_bid),
            "no_bid_dollars": _dollars(view.no_bid),
            "no_ask": _cents(no_ask),
            "no_ask_dollars": _dollars(no_ask),
            "last_price": _cents(view.last_price),
            "last_price_dollars": _dollars(view.last_price),
            "volume": view.volume // 100,
            "volume_24h": view.volume // 100,
            "result": RESULT_NAMES[view.result],
            "can_close_early": True,
            "open_interest": view.open_interest // 100,
            "notional_value": 100,
            "notional_value_dollars": "1.0000",
            "previous_yes_bid": _cents(view.prev_yes_bid),
            "previous_yes_bid_dollars": _dollars(view.prev_yes_bid),
            "previous_yes_ask": _cents(view.prev_yes_ask),
            "previous_yes_ask_dollars": _dollars(view.prev_yes_ask),
            "previous_price": _cents(view.prev_price),
            "previous_price_dollars": _dollars(view.prev_price),
            "liquidity": 0,
            "liquidity_dollars": "0.0000",
            "settlement_value": None if settlement_value is None else _cents(settlement_value),
            "settlement_value_dollars": (
                None if settlement_value is None else _dollars(settlement_value)
            ),
            "expiration_value": "",
            "category": self.catalog.series(spec.event_index % self.catalog.series_count).category,
            "risk_limit_cents": 0,
            "fee_waiver_expiration_time": None,
            "early_close_condition": "",
            "tick_size": 1,
            "strike_type": "greater",
            "floor_strike": spec.floor_strike,
            "cap_strike": None,
            "functional_strike": None,
            "custom_strike": None,
            "rules_primary": spec.rules_primary,
            "rules_secondary": spec.rules_secondary,
            "mve_collection_ticker": "",
            "mve_selected_legs": [],
            "primary_participant_key": None,
            "price_level_structure": grid.structure,
            "price_ranges": grid.price_ranges(),
        }

    def orderbook(self, yes: Side, no: Side, depth: int, places: int = 4) -> dict[str, Any]:
        yes_prices, no_prices = _levels(yes, depth), _levels(no, depth)
        return {
            "orderbook": {
                # Pre-2026 books reported an empty side as null (kalshi-api.md §1.7).
                "yes": [[_cents(p), yes[p] // 100] for p in yes_prices] or None,
                "no": [[_cents(p), no[p] // 100] for p in no_prices] or None,
                "yes_dollars": [[_dollars(p), hundredths_to_count(yes[p])] for p in yes_prices],
                "no_dollars": [[_dollars(p), hundredths_to_count(no[p])] for p in no_prices],
            }
        }

    def trade(self, trades: TradeLog, number: int, places: int = 4) -> dict[str, Any]:
        yes_price = trades.yes_price[number]
        return {
            "trade_id": trades.trade_id(number),
            "ticker": self.catalog.market_ticker(trades.market[number]),
            "price": _cents(yes_price),
            "count": trades.count[number] // 100,
            "yes_price": _cents(yes_price),
            "no_price": _cents(MICROS_PER_DOLLAR - yes_price),
            "yes_price_dollars": _dollars(yes_price),
            "no_price_dollars": _dollars(MICROS_PER_DOLLAR - yes_price),
            "taker_side": "yes" if trades.taker_yes[number] else "no",
            "created_time": rfc3339(trades.ts_ns[number], 6),
        }

    def event(self, spec: EventSpec, strike_ns: int, live: EventLive) -> dict[str, Any]:
        body = super().event(spec, strike_ns, live)
        for newer in (  # added to events on 2026-06-18 and later
            "settlement_sources",
            "fee_type_override",
            "fee_multiplier_override",
            "last_updated_ts",
            "exchange_index",
        ):
            del body[newer]
        body["available_on_brokers"] = True
        body["product_metadata"] = None
        return body

    def series(self, spec: SeriesSpec, volume: int, updated_ns: int) -> dict[str, Any]:
        body = super().series(spec, volume, updated_ns)
        for newer in ("categories", "volume_fp", "last_updated_ts", "exchange_index"):
            del body[newer]
        return body


def views_for(catalog: Catalog) -> CurrentViews:
    return LegacyViews(catalog) if catalog.legacy else CurrentViews(catalog)


# The statuses that REST `status=` filters select (kalshi-api.md §1.4 vocabulary).
STATUS_FILTERS: dict[str, tuple[int, ...]] = {
    "unopened": (0,),
    "open": (1,),
    "paused": (INACTIVE,),
    "closed": (CLOSED, DETERMINED),
    "settled": (FINALIZED,),
}
