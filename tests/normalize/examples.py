"""Wire examples: the exact frames of kalshi-api.md §3.5, plus real legacy-era lines.

`REAL_TICKER_2026_02` and `REAL_TRADE_2026_02` are production frames from 2026-02-12 published in
aaronwald/ssmd (ssmd-archiver testdata, the source kalshi-api.md §8 names); they are used as
test vectors for the legacy dual format.
"""

from __future__ import annotations

# --- newest format (kalshi-api.md §3.5) ------------------------------------------------------

SNAPSHOT = """{"type": "orderbook_snapshot", "sid": 2, "seq": 2,
 "msg": {"market_ticker": "FED-23DEC-T3.00",
         "market_id": "9b0f6b43-5b68-4f9f-9f02-9a2d1b8ac1a1",
         "yes_dollars_fp": [["0.0800", "300.00"], ["0.2200", "333.00"]],
         "no_dollars_fp":  [["0.5400", "20.00"],  ["0.5600", "146.00"]]}}"""

EMPTY_SNAPSHOT = (
    '{"type": "orderbook_snapshot", "sid": 2, "seq": 2, "msg": {"market_ticker": '
    '"FED-23DEC-T3.00", "market_id": "9b0f6b43-5b68-4f9f-9f02-9a2d1b8ac1a1"}}'
)

DELTA = """{"type": "orderbook_delta", "sid": 2, "seq": 3,
 "msg": {"market_ticker": "FED-23DEC-T3.00",
         "market_id": "9b0f6b43-5b68-4f9f-9f02-9a2d1b8ac1a1",
         "price_dollars": "0.9600", "delta_fp": "-54.00", "side": "yes",
         "ts": "2022-11-22T20:44:01Z", "ts_ms": 1669149841000,
         "client_order_id": "only-if-your-order", "subaccount": 3}}"""

TICKER = """{"type": "ticker", "sid": 11, "sending_ts_ms": 1669149841123,
 "msg": {"market_id": "9b0f6b43-...", "market_ticker": "FED-23DEC-T3.00",
         "price_dollars": "0.4800", "yes_bid_dollars": "0.4500", "yes_ask_dollars": "0.5300",
         "yes_bid_size_fp": "300.00", "yes_ask_size_fp": "150.00", "last_trade_size_fp": "25.00",
         "volume_fp": "33896.00", "open_interest_fp": "20422.00",
         "dollar_volume": 16948, "dollar_open_interest": 10211,
         "ts": 1669149841, "ts_ms": 1669149841000, "time": "2022-11-22T20:44:01Z"}}"""

TRADE = """{"type": "trade", "sid": 11,
 "msg": {"trade_id": "d91bc706-ee49-470d-82d8-11418bda6fed",
         "market_ticker": "HIGHNY-22DEC23-B53.5",
         "yes_price_dollars": "0.3600", "no_price_dollars": "0.6400", "count_fp": "136.00",
         "taker_side": "no", "taker_outcome_side": "no", "taker_book_side": "ask",
         "is_block_trade": false, "ts": 1669149841, "ts_ms": 1669149841000}}"""

LIFECYCLE_CREATED = """{"type": "market_lifecycle_v2", "sid": 13,
 "msg": {"market_ticker": "KXBTCD-26JAN2310-T105000", "event_type": "created",
         "open_ts": 1737554400, "close_ts": 1737558000,
         "price_level_structure": "linear_cent",
         "price_ranges": [{"start": "0.0000", "end": "1.0000", "step": "0.0100"}],
         "additional_metadata": {"name": "...", "title": "...", "yes_sub_title": "...",
           "no_sub_title": "...",
           "rules_primary": "...", "rules_secondary": "...", "can_close_early": true,
           "event_ticker": "KXBTCD-26JAN2310", "expected_expiration_ts": 1737558000,
           "strike_type": "greater", "floor_strike": 105000, "cap_strike": null,
           "custom_strike": null}}}"""

LIFECYCLE_DETERMINED = (
    '{"type": "market_lifecycle_v2", "sid": 13, "msg": {"market_ticker": '
    '"KXBTCD-26JAN2310-T105000", "event_type": "determined", "result": "yes", '
    '"determination_ts": 1737558060, "settlement_value": "1.0000"}}'
)

EVENT_LIFECYCLE = (
    '{"type": "event_lifecycle", "sid": 13, "msg": {"event_ticker": "KXBTCD-26JAN2310", '
    '"title": "Bitcoin price", "subtitle": "Jan 23", "collateral_return_type": "MECNET", '
    '"series_ticker": "KXBTCD", "strike_date": 1737558000}}'
)

EVENT_FEE_UPDATE = (
    '{"type": "event_fee_update", "sid": 13, "msg": {"event_ticker": "KXBTCD-26JAN2310", '
    '"fee_type_override": "flat", "fee_multiplier_override": null}}'
)

MULTIVARIATE_LIFECYCLE = (
    '{"type": "multivariate_market_lifecycle", "sid": 14, "msg": {"market_ticker": '
    '"KXMVESPORTS-26MAR01-ABC", "event_type": "activated", "is_deactivated": false}}'
)

# --- legacy formats --------------------------------------------------------------------------

# Real Aug-2025 delta quoted in kalshi-api.md §3.5 (pre-dollars: integer cents and count), in
# its channel envelope.
DELTA_AUG_2025 = (
    '{"type":"orderbook_delta","sid":1,"seq":5,"msg":{"market_ticker":"KXMLBGAME-25AUG12SDSF-SD",'
    '"market_id":"dda5","price":51,"delta":-1,"side":"no","ts":"2025-08-12T21:00:32.539836022Z"}}'
)

# Legacy snapshot variants (kalshi-api.md §3.5): cents arrays beside 3-dp dollar strings with
# integer quantities.
SNAPSHOT_LEGACY = (
    '{"type":"orderbook_snapshot","sid":2,"seq":2,"msg":{"market_ticker":"FED-23DEC-T3.00",'
    '"yes":[[8,300],[22,333]],"yes_dollars":[["0.080",300],["0.220",333]],'
    '"no":[[54,20],[56,146]],"no_dollars":[["0.540",20],["0.560",146]]}}'
)
SNAPSHOT_CENTS_ONLY = (
    '{"type":"orderbook_snapshot","sid":2,"seq":2,"msg":{"market_ticker":"FED-23DEC-T3.00",'
    '"yes":[[22,333],[8,300]],"no":[[56,146]]}}'
)

DELTA_FEB_2026 = (
    '{"type":"orderbook_delta","sid":2,"seq":9,"msg":{"market_ticker":"FED-23DEC-T3.00",'
    '"price":96,"price_dollars":"0.9600","delta":-54,"side":"yes",'
    '"ts":"2026-02-12T12:06:24.123456Z"}}'
)

# kalshi-api.md §3.5 "Real Feb-2026 frame (legacy era)" (trade_id in full, from the source).
REAL_TRADE_2026_02 = (
    '{"type":"trade","sid":2,"seq":10,"msg":{"trade_id":"f851595a-6d92-424e-09f8-0d2669de70ae",'
    '"market_ticker":"KXSOLD-26FEB1217-T79.9999","yes_price":77,"no_price":23,'
    '"yes_price_dollars":"0.7700","no_price_dollars":"0.2300","count":75,"count_fp":"75.00",'
    '"taker_side":"yes","ts":1770897981}}'
)

REAL_TICKER_2026_02 = (
    '{"type":"ticker","sid":1,"msg":{"market_id":"6a958fdf-4723-4333-9531-57111fbc51d3",'
    '"market_ticker":"KXXRP-26FEB1317-B1.3899500","price":14,"yes_bid":4,"yes_ask":95,'
    '"price_dollars":"0.1400","yes_bid_dollars":"0.0400","yes_ask_dollars":"0.9500",'
    '"volume":13446,"volume_fp":"13446.00","open_interest":892,"open_interest_fp":"892.00",'
    '"dollar_volume":6723,"dollar_open_interest":446,"yes_bid_size_fp":"14.00",'
    '"yes_ask_size_fp":"84.00","last_trade_size_fp":"0.00","ts":1770897976,'
    '"Clock":13281241747}}'
)

# Legacy ticker and trade with integer fields only for counts (the simulator's legacy shape).
TICKER_LEGACY_INTS = (
    '{"type":"ticker","sid":3,"msg":{"market_ticker":"KXA-1","price":48,"yes_bid":45,'
    '"yes_ask":53,"price_dollars":"0.4800","yes_bid_dollars":"0.4500",'
    '"yes_ask_dollars":"0.5300","volume":33896,"open_interest":20422,"dollar_volume":16948,'
    '"dollar_open_interest":10211,"ts":1770897976}}'
)
TRADE_LEGACY_CENTS_ONLY = (
    '{"type":"trade","sid":2,"seq":11,"msg":{"trade_id":"t-1","market_ticker":"KXA-1",'
    '"yes_price":36,"no_price":64,"count":136,"taker_side":"no","ts":1755032432}}'
)

CONTROL = (
    '{"id": 1, "type": "subscribed", "msg": {"channel": "orderbook_delta", "sid": 1}}',
    '{"id": 2, "type": "unsubscribed", "sid": 2, "seq": 7}',
    '{"id": 3, "type": "ok", "sid": 456, "seq": 222, "msg": {"market_tickers": ["M-1", "M-2"]}}',
    '{"id": 4, "type": "ok", "msg": [{"channel": "orderbook_delta", "sid": 1}]}',
    '{"id": 5, "type": "error", "msg": {"code": 6, "msg": "Already subscribed"}}',
)

NEWEST_DATA_FRAMES = (
    SNAPSHOT,
    EMPTY_SNAPSHOT,
    DELTA,
    TICKER,
    TRADE,
    LIFECYCLE_CREATED,
    LIFECYCLE_DETERMINED,
    EVENT_LIFECYCLE,
    EVENT_FEE_UPDATE,
    MULTIVARIATE_LIFECYCLE,
)
LEGACY_DATA_FRAMES = (
    DELTA_AUG_2025,
    SNAPSHOT_LEGACY,
    SNAPSHOT_CENTS_ONLY,
    DELTA_FEB_2026,
    REAL_TRADE_2026_02,
    REAL_TICKER_2026_02,
    TICKER_LEGACY_INTS,
    TRADE_LEGACY_CENTS_ONLY,
)
