"""The simulator follows kalshi-api.md §9 (changes July-October 2026), over real sockets.

Shards (`exchange_index`), the $0.0001 grid with six-decimal dollar strings, removed fields,
series/event fields, one `event_ticker` per `/markets` query, nested error bodies, the new
lifecycle events, the retired `multivariate` channel, error codes up to 28 and the 2026-08 rate
limit tiers.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from app.simulator.truth import load_truth
from app.units import count_to_hundredths, dollars_to_micros
from tests.simulator.conftest import EPOCH_MS, WsClient, ws_connect

pytestmark = pytest.mark.timeout(90)

CENTER = "center_deci_edge_centi_cent"
SIX_DECIMALS = re.compile(r"^\d\.\d{6}$")
REMOVED_MARKET_FIELDS = {
    "response_price_units",
    "fractional_trading_enabled",
    "available_on_brokers",
    "liquidity_dollars",
}


def _all_markets(sim: Any) -> list[dict[str, Any]]:
    markets: list[dict[str, Any]] = []
    cursor = ""
    while True:
        body = sim.get("/markets", limit=1000, cursor=cursor).json()
        markets += body["markets"]
        cursor = body["cursor"]
        if not cursor:
            return markets


def _levels(pairs: list[list[str]]) -> dict[int, int]:
    return {dollars_to_micros(p): count_to_hundredths(s) for p, s in pairs}


def test_rest_objects_follow_section_9(sim_factory):
    sim = sim_factory("--markets", "1200", "--rate", "50", "--seed", "3", truth=False)
    markets = _all_markets(sim)
    assert all(isinstance(m["exchange_index"], int) for m in markets)
    assert {m["exchange_index"] for m in markets} == {0, 1, 2}  # Crypto and Sports are shards
    assert not REMOVED_MARKET_FIELDS & {field for m in markets for field in m}
    assert CENTER in {m["price_level_structure"] for m in markets}

    events = sim.get("/events", limit=200).json()["events"]
    for event in events:
        assert {"last_updated_ts", "fee_type_override", "fee_multiplier_override"} <= set(event)
        assert isinstance(event["exchange_index"], int)
        assert event["product_metadata"]["cadence"] in ("daily", "weekly", "hourly", "monthly")
        assert "available_on_brokers" not in event
    detail = sim.get(f"/events/{events[0]['event_ticker']}").json()["event"]
    assert detail["exchange_index"] == events[0]["exchange_index"]

    body = sim.get("/series").json()
    assert set(body) == {"series"}  # not paginated: no cursor
    assert len(body["series"]) == 6  # 1200 markets, 200 per series
    for series in body["series"]:
        assert "volume" not in series and count_to_hundredths(series["volume_fp"]) >= 0
        assert series["categories"] == [series["category"]]
        assert series["last_updated_ts"].endswith("Z")
        assert isinstance(series["exchange_index"], int)
    one = sim.get(f"/series/{body['series'][0]['ticker']}").json()["series"]
    assert one["ticker"] == body["series"][0]["ticker"] and "volume_fp" in one

    status = sim.get("/exchange/status").json()
    assert status["intra_exchange_transfers_active"] is True
    assert [s["exchange_index"] for s in status["exchange_index_statuses"]] == [0, 1, 2]

    # One event ticker only; a list is a 400 with the nested error body.
    first, second = events[0]["event_ticker"], events[1]["event_ticker"]
    assert {
        m["event_ticker"] for m in sim.get("/markets", event_ticker=first).json()["markets"]
    } == {first}
    refused = sim.get("/markets", event_ticker=f"{first},{second}")
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert set(refused.json()) == {"error"} and set(error) == {"code", "message", "details"}
    assert error["code"] == "bad_request" and "one event ticker" in error["details"]
    missing = sim.get("/markets/KXNOPE-E1-T1")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_flat_error_bodies_on_request(sim_factory):
    sim = sim_factory("--markets", "8", "--rate", "10", "--error-body", "flat", truth=False)
    refused = sim.get("/markets", event_ticker="KXSIMA-E0,KXSIMA-E1")
    assert refused.status_code == 400
    assert set(refused.json()) == {"code", "message"} and refused.json()["code"] == "bad_request"


async def test_the_centi_cent_grid_is_exact_on_every_wire(sim_factory):
    """Markets on `center_deci_edge_centi_cent` (ticks of $0.0001) send six-decimal dollar
    strings everywhere, and every one of them is exact against the truth's micro-dollars."""
    sim = sim_factory(
        "--markets", "200", "--rate", "3000", "--seed", "1", "--epoch-ms", str(EPOCH_MS),
        "--max-events", "9000",
    )  # fmt: skip
    markets = _all_markets(sim)
    center = [
        m for m in markets if m["price_level_structure"] == CENTER and m["status"] == "active"
    ]
    assert len(center) >= 5
    market = center[0]
    assert market["price_ranges"] == [
        {"start": "0.000000", "end": "0.100000", "step": "0.000100"},
        {"start": "0.100000", "end": "0.900000", "step": "0.001000"},
        {"start": "0.900000", "end": "1.000000", "step": "0.000100"},
    ]
    assert SIX_DECIMALS.match(market["yes_bid_dollars"]) and SIX_DECIMALS.match(
        market["no_bid_dollars"]
    )
    tickers = [m["ticker"] for m in center]
    async with ws_connect(sim.ws_url) as ws:
        client = WsClient(ws)
        command = await client.send(
            {
                "cmd": "subscribe",
                "params": {
                    "channels": ["orderbook_delta", "ticker", "trade"],
                    "market_tickers": tickers,
                },
            }
        )
        await client.reply(command)
        state = sim.wait_finished(60)
        await client.collect(1.0)
    books: dict[str, dict[str, dict[int, int]]] = {}
    seen = {"orderbook_snapshot": 0, "orderbook_delta": 0, "ticker": 0, "trade": 0}
    for message in client.messages:
        kind = message.get("type")
        body = message.get("msg")
        if kind == "orderbook_snapshot":
            for key in ("yes_dollars_fp", "no_dollars_fp"):
                assert all(SIX_DECIMALS.match(p) for p, _ in body.get(key, [])), body
            books[body["market_ticker"]] = {
                "yes": _levels(body.get("yes_dollars_fp", [])),
                "no": _levels(body.get("no_dollars_fp", [])),
            }
        elif kind == "orderbook_delta":
            assert SIX_DECIMALS.match(body["price_dollars"]), body
            side = books[body["market_ticker"]][body["side"]]
            price = dollars_to_micros(body["price_dollars"])
            size = side.get(price, 0) + count_to_hundredths(body["delta_fp"])
            if size:
                side[price] = size
            else:
                side.pop(price)
        elif kind == "ticker":
            for key in ("price_dollars", "yes_bid_dollars", "yes_ask_dollars"):
                assert SIX_DECIMALS.match(body[key]), body
        elif kind == "trade":
            assert SIX_DECIMALS.match(body["yes_price_dollars"]), body
            assert SIX_DECIMALS.match(body["no_price_dollars"]), body
        if kind in seen:
            seen[kind] += 1
    assert seen["orderbook_snapshot"] == len(tickers) and seen["orderbook_delta"] >= 20
    assert seen["ticker"] and seen["trade"], seen
    sim.dump()
    truth = load_truth(sim.truth)
    assert truth.final is not None and truth.final.step == state["step"]
    for ticker in tickers:
        assert truth.markets[ticker].price_level_structure == CENTER
        assert books[ticker] == truth.final.books[ticker]
        rest = sim.get(f"/markets/{ticker}/orderbook").json()["orderbook_fp"]
        assert all(SIX_DECIMALS.match(p) for p, _ in rest["yes_dollars"] + rest["no_dollars"])
        assert {"yes": _levels(rest["yes_dollars"]), "no": _levels(rest["no_dollars"])} == (
            truth.final.books[ticker]
        )
    # Sub-cent levels really happen on that grid (ticks of 100 micro-dollars).
    center_set = set(tickers)
    assert any(c.price % 1000 for c in truth.book_changes if c.ticker in center_set), (
        "no level off the deci-cent grid"
    )
    rest_trades = sim.get("/markets/trades", ticker=tickers[0], limit=1000).json()["trades"]
    assert all(SIX_DECIMALS.match(t["yes_price_dollars"]) for t in rest_trades)


def _updates_run(sim_factory: Any, name: str) -> Any:
    return sim_factory(
        "--markets", "40", "--rate", "6000", "--seed", "11", "--epoch-ms", str(EPOCH_MS),
        "--market-lifetime", "1", "--max-events", "24000", name=name,
    )  # fmt: skip


async def test_new_lifecycle_events_are_sent_recorded_and_deterministic(sim_factory):
    sim = _updates_run(sim_factory, "first")
    async with ws_connect(sim.ws_url) as ws:
        client = WsClient(ws)
        command = await client.send(
            {"cmd": "subscribe", "params": {"channels": ["market_lifecycle_v2"]}}
        )
        await client.reply(command)
        sim.wait_finished(60)
        await client.collect(0.5)
    sim.dump()
    twin = _updates_run(sim_factory, "second")
    twin.wait_finished(60)
    twin.dump()
    assert sim.truth is not None and twin.truth is not None
    exchange = (sim.truth / "exchange.jsonl").read_bytes()
    assert exchange == (twin.truth / "exchange.jsonl").read_bytes()  # same seed, same truth

    truth = load_truth(sim.truth)
    kinds = {e.event_type for e in truth.lifecycle}
    assert {"metadata_updated", "price_level_structure_updated"} <= kinds
    assert truth.event_fee_updates
    created = [e for e in truth.lifecycle if e.event_type == "created"]
    assert created and all(isinstance(e.fields["exchange_index"], int) for e in created)

    # What a subscriber got is exactly what the truth records.
    sent = [m for m in client.messages if isinstance(m, dict) and "msg" in m]
    lifecycle = {
        orjson.dumps(m["msg"], option=orjson.OPT_SORT_KEYS)
        for m in sent
        if m["type"] == "market_lifecycle_v2"
    }
    updates = [e for e in truth.lifecycle if e.event_type != "created"]
    expected = {
        orjson.dumps(
            {"market_ticker": e.ticker, "event_type": e.event_type, **e.fields},
            option=orjson.OPT_SORT_KEYS,
        )
        for e in updates
    }
    assert lifecycle and lifecycle <= expected | {
        orjson.dumps(
            {"market_ticker": e.ticker, "event_type": e.event_type, **e.fields},
            option=orjson.OPT_SORT_KEYS,
        )
        for e in created
    }
    fees = [m["msg"] for m in sent if m["type"] == "event_fee_update"]
    assert fees
    recorded = [
        {
            "event_ticker": u.event_ticker,
            "fee_type_override": u.fee_type_override,
            "fee_multiplier_override": u.fee_multiplier_override,
        }
        for u in truth.event_fee_updates
    ]
    assert all(fee in recorded for fee in fees)
    event_msgs = [m["msg"] for m in sent if m["type"] == "event_lifecycle"]
    assert all(isinstance(m["exchange_index"], int) for m in event_msgs)

    # REST shows the updated metadata, structure and fees.
    structure = next(e for e in truth.lifecycle if e.event_type == "price_level_structure_updated")
    market = sim.get(f"/markets/{structure.ticker}").json()["market"]
    assert market["price_level_structure"] == CENTER
    assert truth.markets[structure.ticker].price_level_structure == CENTER
    strikes = {
        e.ticker: e.fields["floor_strike"]
        for e in truth.lifecycle
        if "floor_strike" in e.fields and e.event_type == "metadata_updated"
    }
    ticker, strike = next(iter(strikes.items()))
    market = sim.get(f"/markets/{ticker}").json()["market"]
    assert market["floor_strike"] == strike and market["yes_sub_title"] == f"Above {strike:,}"
    last_fee = truth.event_fee_updates[-1]
    event = sim.get(f"/events/{last_fee.event_ticker}").json()["event"]
    latest = [u for u in truth.event_fee_updates if u.event_ticker == last_fee.event_ticker][-1]
    assert event["fee_type_override"] == latest.fee_type_override
    assert event["fee_multiplier_override"] == latest.fee_multiplier_override


async def test_channels_and_error_codes_of_2026_08(sim_factory):
    sim = sim_factory("--markets", "6", "--rate", "50", truth=False)
    async with ws_connect(sim.ws_url) as ws:
        client = WsClient(ws)

        async def answer(params: dict[str, Any]) -> Any:
            return await client.reply(await client.send({"cmd": "subscribe", "params": params}))

        removed = await answer({"channels": ["multivariate"]})
        assert removed["type"] == "error" and removed["msg"]["code"] == 8
        combo = await answer({"channels": ["multivariate_market_lifecycle"]})
        assert combo["type"] == "subscribed"
        assert combo["msg"]["channel"] == "multivariate_market_lifecycle"
        pyth = await answer({"channels": ["pyth_value"]})
        assert pyth["msg"] == {"code": 28, "msg": "Underlying tickers required"}
        pyth = await answer({"channels": ["pyth_value"], "underlying_tickers": ["BTC"]})
        assert pyth["type"] == "subscribed"
        bench = await answer({"channels": ["cfbenchmarks_value"]})
        assert bench["msg"]["code"] == 24


async def test_legacy_format_still_has_the_multivariate_channel(sim_factory):
    sim = sim_factory("--markets", "6", "--rate", "50", "--format", "legacy", truth=False)
    async with ws_connect(sim.ws_url) as ws:
        client = WsClient(ws)
        command = await client.send({"cmd": "subscribe", "params": {"channels": ["multivariate"]}})
        assert (await client.reply(command))["type"] == "subscribed"
    market = sim.get("/markets", limit=1).json()["markets"][0]
    assert "exchange_index" not in market  # a late-2025 shape


@pytest.mark.parametrize(("tier", "tokens"), [("expert", 600), ("prestige", 10_000)])
def test_new_rate_limit_tiers(sim_factory, tier, tokens):
    sim = sim_factory("--markets", "4", "--rate", "10", "--rate-limit", tier)
    assert sim.truth is not None
    meta = orjson.loads((sim.truth / "meta.json").read_bytes())
    assert meta["rate_limit_tokens_per_s"] == tokens
    # One second of budget above Advanced (§9): tokens / 10 default-cost reads at once.
    codes = [sim.get("/exchange/status").status_code for _ in range(tokens // 10 + 40)]
    assert codes[: tokens // 10 - 5] == [200] * (tokens // 10 - 5)
    if tokens < 1000:  # a Prestige bucket refills faster than one client can ask
        assert 429 in codes


async def _subscribed(client: WsClient, params: dict[str, Any]) -> int:
    reply = await client.reply(await client.send({"cmd": "subscribe", "params": params}))
    assert reply["type"] == "subscribed", reply
    return int(reply["msg"]["sid"])


async def test_use_yes_price_reports_no_levels_on_the_yes_scale(sim_factory):
    sim = sim_factory("--markets", "12", "--rate", "3000", "--seed", "4", truth=False)
    tickers = [m["ticker"] for m in sim.get("/markets", limit=4).json()["markets"]]
    async with ws_connect(sim.ws_url) as ws:
        client = WsClient(ws)
        plain = await _subscribed(
            client, {"channels": ["orderbook_delta"], "market_tickers": tickers}
        )
        flipped = await _subscribed(
            client,
            {"channels": ["orderbook_delta"], "market_tickers": tickers, "use_yes_price": True},
        )
        explicit = await _subscribed(
            client,
            {"channels": ["orderbook_delta"], "market_tickers": tickers, "use_yes_price": False},
        )
        await client.collect(1.0)
        bad = await client.reply(
            await client.send(
                {
                    "cmd": "subscribe",
                    "params": {
                        "channels": ["orderbook_delta"],
                        "market_tickers": tickers,
                        "use_yes_price": "yes",
                    },
                }
            )
        )
        assert bad["type"] == "error" and bad["msg"]["code"] == 11
    by_sid: dict[int, list[dict[str, Any]]] = {plain: [], flipped: [], explicit: []}
    for message in client.messages:
        if isinstance(message, dict) and message.get("sid") in by_sid and "seq" in message:
            by_sid[message["sid"]].append(message)
    books = {sid: _rebuild(frames, yes_scale=sid == flipped) for sid, frames in by_sid.items()}
    assert books[plain] == books[flipped] == books[explicit]  # the same books, shown differently
    for message in by_sid[flipped]:
        if message["type"] == "orderbook_snapshot":
            shown = [dollars_to_micros(p) for p, _ in message["msg"].get("no_dollars_fp", [])]
            assert shown == sorted(shown)  # ascending by the price shown
    # Once all three are subscribed every change reaches each of them: the last deltas pair up.
    deltas = {
        sid: [m["msg"] for m in by_sid[sid] if m["type"] == "orderbook_delta"] for sid in by_sid
    }
    count = min(len(d) for d in deltas.values())
    assert count > 20
    no_deltas = 0
    for ours, theirs, same in zip(
        deltas[plain][-count:], deltas[flipped][-count:], deltas[explicit][-count:], strict=True
    ):
        assert same == ours  # use_yes_price false is the default
        if ours["side"] == "no":
            no_deltas += 1
            assert theirs["side"] == "no" and theirs["delta_fp"] == ours["delta_fp"]
            expected = 1_000_000 - dollars_to_micros(ours["price_dollars"])
            assert dollars_to_micros(theirs["price_dollars"]) == expected
        else:
            assert theirs == ours
    assert no_deltas >= 5


def _rebuild(frames: list[dict[str, Any]], yes_scale: bool) -> dict[str, dict[str, dict[int, int]]]:
    """Books from one sid's snapshots and deltas; NO prices of a yes-scale sid mapped back."""

    def no_price(shown: int) -> int:
        return 1_000_000 - shown if yes_scale else shown

    books: dict[str, dict[str, dict[int, int]]] = {}
    for message in frames:
        body = message["msg"]
        if message["type"] == "orderbook_snapshot":
            books[body["market_ticker"]] = {
                "yes": _levels(body.get("yes_dollars_fp", [])),
                "no": {no_price(p): s for p, s in _levels(body.get("no_dollars_fp", [])).items()},
            }
            continue
        price = dollars_to_micros(body["price_dollars"])
        if body["side"] == "no":
            price = no_price(price)
        side = books[body["market_ticker"]][body["side"]]
        size = side.get(price, 0) + count_to_hundredths(body["delta_fp"])
        if size:
            side[price] = size
        else:
            side.pop(price)
    return books


@pytest.mark.parametrize("consumes", [False, True], ids=["position", "consumes"])
async def test_ack_seq_position_or_consumed(sim_factory, consumes):
    flags = ["--ack-consumes-seq"] if consumes else []
    sim = sim_factory("--markets", "12", "--rate", "400", "--seed", "6", *flags, truth=False)
    a, b, c = [m["ticker"] for m in sim.get("/markets", limit=3).json()["markets"]]
    async with ws_connect(sim.ws_url) as ws:
        client = WsClient(ws)
        sid = await _subscribed(client, {"channels": ["orderbook_delta"], "market_tickers": [a, b]})
        await client.collect(0.3)
        commands = [
            {"sid": sid, "action": "add_markets", "market_tickers": [c]},
            {"sids": [sid], "action": "get_snapshot", "market_tickers": [a]},
            {"sid": sid, "action": "delete_markets", "market_tickers": [b]},
        ]
        for params in commands:
            reply = await client.reply(
                await client.send({"cmd": "update_subscription", "params": params})
            )
            assert reply["type"] == "ok"
            await client.collect(0.3)
        gone = await client.reply(
            await client.send({"cmd": "unsubscribe", "params": {"sids": [sid]}})
        )
        assert gone["type"] == "unsubscribed"
    frames = [m for m in client.messages if isinstance(m, dict) and m.get("sid") == sid]
    acks = [m for m in frames if m["type"] in ("ok", "unsubscribed")]
    assert len(acks) == 4 and all("seq" in m for m in acks)
    data = [m for m in frames if m["type"] not in ("ok", "unsubscribed")]
    if consumes:
        # Every ack takes the next seq: one unbroken run across acks and data.
        assert [m["seq"] for m in frames] == list(range(1, len(frames) + 1))
    else:
        # Data alone is unbroken; an ack repeats the last seq sent (0 before any).
        assert [m["seq"] for m in data] == list(range(1, len(data) + 1))
        last = 0
        for message in frames:
            if message in acks:
                assert message["seq"] == last
            else:
                last = message["seq"]
    snapshots = [m for m in data if m["type"] == "orderbook_snapshot"]
    assert [m["msg"]["market_ticker"] for m in snapshots] == [a, b, c, a]
