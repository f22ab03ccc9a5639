"""REST endpoints in the current field format: shapes, paging, filters, errors, rate limits."""

from __future__ import annotations

import time

import pytest

from app.simulator.truth import load_truth
from app.units import count_to_hundredths, dollars_to_micros
from tests.simulator.conftest import EPOCH_MS

pytestmark = pytest.mark.timeout(60)

CURRENT_STATUSES = {"initialized", "active", "inactive", "closed", "determined", "finalized"}


def _all_markets(sim, **params) -> tuple[list[dict], int]:
    markets: list[dict] = []
    cursor = ""
    pages = 0
    while True:
        body = sim.get("/markets", cursor=cursor, **params).json()
        markets += body["markets"]
        pages += 1
        cursor = body["cursor"]
        if not cursor:
            return markets, pages


def test_markets_books_trades_events_in_current_format(sim_factory):
    sim = sim_factory(
        "--markets", "40", "--rate", "5000", "--seed", "17", "--epoch-ms", str(EPOCH_MS),
        "--market-lifetime", "0.5", "--max-events", "4000",
    )  # fmt: skip
    state = sim.wait_finished()
    markets, pages = _all_markets(sim, limit=7)
    assert len(markets) == state["markets"]["count"] and pages == -(-len(markets) // 7)
    assert len({m["ticker"] for m in markets}) == len(markets)
    market = markets[0]
    assert market["status"] in CURRENT_STATUSES
    fields = set(market)
    assert {"yes_bid_dollars", "yes_bid_size_fp", "volume_fp", "price_ranges"} <= fields
    assert not {"yes_bid", "volume", "response_price_units", "tick_size"} & fields
    assert {m["price_level_structure"] for m in markets} <= {
        "linear_cent", "deci_cent", "tapered_deci_cent",
    }  # fmt: skip

    by_status = {}
    for name, expected in (
        ("open", {"active"}),
        ("unopened", {"initialized"}),
        ("closed", {"closed", "determined"}),
        ("settled", {"finalized"}),
    ):
        found, _ = _all_markets(sim, status=name, limit=5)
        assert {m["status"] for m in found} <= expected
        by_status[name] = found
    assert by_status["open"] and by_status["settled"]
    paused = [m for m in markets if m["status"] == "inactive"]
    assert len(_all_markets(sim, status="paused")[0]) == len(paused)

    event = markets[5]["event_ticker"]
    in_event = sim.get("/markets", event_ticker=event).json()["markets"]
    assert in_event and {m["event_ticker"] for m in in_event} == {event}
    two = [markets[3]["ticker"], markets[9]["ticker"]]
    assert [
        m["ticker"] for m in sim.get("/markets", tickers=",".join(two)).json()["markets"]
    ] == two
    series = sim.get("/markets", series_ticker="KXSIMA", limit=1000).json()["markets"]
    assert len(series) == len(markets)  # 40 markets -> one series
    created = [
        int(time.mktime(time.strptime(m["created_time"], "%Y-%m-%dT%H:%M:%SZ"))) for m in markets
    ]
    assert created == sorted(created)

    for query in (
        {"limit": 5000},
        {"limit": "abc"},
        {"cursor": "garbage!"},
        {"status": "bogus"},
        {"status": "open", "min_close_ts": 1},
        {"min_created_ts": 1, "min_close_ts": 1},
    ):
        response = sim.get("/markets", **query)
        assert response.status_code == 400, query
        assert set(response.json()) == {"code", "message"}
    for path in ("/markets/KXNOPE-E1-T1", "/events/KXSIMA-E999999", "/series/KXNOPE", "/nope"):
        response = sim.get(path)
        assert response.status_code == 404, path
        assert set(response.json()) == {"code", "message"}

    sim.dump()
    truth = load_truth(sim.truth)
    assert truth.final is not None
    ticker = next(t for t, b in truth.final.books.items() if len(b["yes"]) >= 3)
    book = sim.get(f"/markets/{ticker}/orderbook").json()["orderbook_fp"]
    assert {dollars_to_micros(p): count_to_hundredths(s) for p, s in book["yes_dollars"]} == (
        truth.final.books[ticker]["yes"]
    )
    top = sim.get(f"/markets/{ticker}/orderbook", depth=2).json()["orderbook_fp"]["yes_dollars"]
    best = sorted(truth.final.books[ticker]["yes"])[-2:]
    assert [dollars_to_micros(p) for p, _ in top] == best
    assert sim.get(f"/markets/{ticker}/orderbook", depth=101).status_code == 400

    pair = [ticker, markets[0]["ticker"]]
    batch = sim.http.get(f"{sim.api}/markets/orderbooks", params=[("tickers", t) for t in pair])
    assert [b["ticker"] for b in batch.json()["orderbooks"]] == pair
    assert all("orderbook_fp" in b for b in batch.json()["orderbooks"])
    too_many = [("tickers", markets[i % len(markets)]["ticker"]) for i in range(101)]
    assert sim.http.get(f"{sim.api}/markets/orderbooks", params=too_many).status_code == 400
    missing = sim.http.get(f"{sim.api}/markets/orderbooks", params=[("tickers", "KXNOPE-E1-T1")])
    assert missing.status_code == 404

    trades = truth.trades
    one = trades[len(trades) // 2]
    for_market = sim.get("/markets/trades", ticker=one.ticker, limit=1000).json()["trades"]
    assert [t["trade_id"] for t in for_market] == [
        t.trade_id for t in reversed(trades) if t.ticker == one.ticker
    ]
    assert {"count_fp", "yes_price_dollars", "taker_outcome_side", "taker_book_side"} <= set(
        for_market[0]
    )
    second = one.ts_ns // 1_000_000_000
    window = sim.get("/markets/trades", min_ts=second, max_ts=second, limit=1000).json()["trades"]
    assert window and all(
        t["created_time"].startswith(time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        for t in window
    )

    events = sim.get("/events", limit=3, with_nested_markets="true").json()
    assert len(events["events"]) == 3 and events["cursor"]
    assert all(len(e["markets"]) >= 1 for e in events["events"])
    assert sim.get("/events", limit=201).status_code == 400
    detail = sim.get(f"/events/{events['events'][0]['event_ticker']}").json()
    assert detail["event"]["event_ticker"] == events["events"][0]["event_ticker"]
    assert detail["markets"]
    assert sim.get("/series").json()["series"][0]["ticker"] == "KXSIMA"
    assert sim.get("/series/KXSIMA").json()["series"]["fee_type"] in (
        "quadratic", "quadratic_with_maker_fees", "flat",
    )  # fmt: skip
    assert sim.get("/exchange/status").json()["trading_active"] is True
    assert set(sim.get("/historical/cutoff").json()) == {
        "market_settled_ts", "trades_created_ts", "orders_updated_ts",
    }  # fmt: skip


def test_token_bucket_answers_429_with_the_documented_body(sim_factory):
    sim = sim_factory("--markets", "5", "--rate", "10", "--rate-limit", "basic", truth=False)
    responses = [sim.get("/exchange/status") for _ in range(40)]
    codes = [r.status_code for r in responses]
    # Basic: 200 tokens/s, one second of burst, 10 tokens a request -> about 20 at once.
    assert codes[:15] == [200] * 15
    assert codes.count(429) >= 10
    limited = next(r for r in responses if r.status_code == 429)
    assert limited.json() == {"error": "too many requests"}
    assert "Retry-After" not in limited.headers
    time.sleep(0.3)
    assert sim.get("/exchange/status").status_code == 200
    assert sim.state()["rest_rate_limited"] >= 10
