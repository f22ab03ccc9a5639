"""REST endpoints in the current field format: shapes, paging, filters, errors, rate limits."""

from __future__ import annotations

import time

import pytest

from app.kalshi.wire import rfc3339_to_ns
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
        "linear_cent", "deci_cent", "tapered_deci_cent", "center_deci_edge_centi_cent",
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
        assert response.json()["error"]["code"] == "bad_request"  # nested body by default
    for path in ("/markets/KXNOPE-E1-T1", "/events/KXSIMA-E999999", "/series/KXNOPE", "/nope"):
        response = sim.get(path)
        assert response.status_code == 404, path
        assert set(response.json()["error"]) == {"code", "message", "details"}

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
    cutoff = sim.get("/historical/cutoff").json()
    assert set(cutoff) == {"market_settled_ts", "trades_created_ts", "orders_updated_ts"}
    # by default the cutoff is the epoch: every trade is live, the historical list is empty
    assert rfc3339_to_ns(cutoff["trades_created_ts"]) == EPOCH_MS * 1_000_000
    assert sim.get("/historical/trades", limit=1000).json() == {"trades": [], "cursor": ""}


def _all_trades(sim, path: str, **params) -> tuple[list[dict], int]:
    trades: list[dict] = []
    cursor = ""
    pages = 0
    while True:
        body = sim.get(path, cursor=cursor, **params).json()
        trades += body["trades"]
        pages += 1
        cursor = body["cursor"]
        if not cursor:
            return trades, pages


@pytest.mark.parametrize("wire_format", ["current", "legacy"])
def test_trades_before_the_historical_cutoff_are_only_in_historical_trades(
    sim_factory, wire_format
):
    """`--historical-cutoff-s S`: the cutoff trails the virtual now by S; `/markets/trades`
    serves only the trades at/after it, `/historical/trades` (same params and shape) only the
    older ones, consistently with `/historical/cutoff` (kalshi-api.md §1.11)."""
    sim = sim_factory(
        "--markets", "8", "--rate", "2000", "--seed", "5", "--epoch-ms", str(EPOCH_MS),
        "--max-events", "4000", "--historical-cutoff-s", "0.7", "--format", wire_format,
    )  # fmt: skip
    state = sim.wait_finished()  # the virtual clock stops with the order flow: a fixed cutoff
    sim.dump()
    truth = load_truth(sim.truth)
    body = sim.get("/historical/cutoff").json()
    cutoff_ns = rfc3339_to_ns(body["trades_created_ts"])
    assert cutoff_ns == state["virtual_ns"] - 700_000_000
    assert cutoff_ns % 1_000_000_000  # inside a second: that second is split
    # markets never move (no /historical/markets here): their cutoff stays at the epoch
    assert rfc3339_to_ns(body["market_settled_ts"]) == EPOCH_MS * 1_000_000

    newest_first = list(reversed(truth.trades))
    older = [t.trade_id for t in newest_first if t.ts_ns < cutoff_ns]
    newer = [t.trade_id for t in newest_first if t.ts_ns >= cutoff_ns]
    assert len(older) > 50 and len(newer) > 50
    live, live_pages = _all_trades(sim, "/markets/trades", limit=7)
    historical, historical_pages = _all_trades(sim, "/historical/trades", limit=7)
    assert [t["trade_id"] for t in live] == newer and live_pages == -(-len(newer) // 7)
    assert [t["trade_id"] for t in historical] == older
    assert historical_pages == -(-len(older) // 7)
    assert {frozenset(t) for t in historical} == {frozenset(t) for t in live}  # same shape
    if wire_format == "legacy":
        assert {"count", "yes_price", "no_price"} <= set(historical[0])
        assert "count_fp" not in historical[0]
    else:
        assert {"count_fp", "yes_price_dollars", "taker_book_side"} <= set(historical[0])

    # the cutoff's own second: the part before it historical, the rest live, nothing twice
    second = cutoff_ns // 1_000_000_000
    window = {"min_ts": second, "max_ts": second, "limit": 1000}
    before = sim.get("/historical/trades", **window).json()["trades"]
    after = sim.get("/markets/trades", **window).json()["trades"]
    in_second = [t for t in newest_first if t.ts_ns // 1_000_000_000 == second]
    assert before and after
    assert [t["trade_id"] for t in before + after] == [
        t.trade_id for t in in_second if t.ts_ns < cutoff_ns
    ] + [t.trade_id for t in in_second if t.ts_ns >= cutoff_ns]
    # filters as on the live list
    one = truth.trades[0]
    for_market, _ = _all_trades(sim, "/historical/trades", ticker=one.ticker, limit=3)
    assert [t["trade_id"] for t in for_market] == [
        t.trade_id for t in newest_first if t.ticker == one.ticker and t.ts_ns < cutoff_ns
    ]
    after_cutoff = sim.get("/historical/trades", min_ts=second + 1).json()
    assert after_cutoff == {"trades": [], "cursor": ""}
    assert sim.get("/historical/trades", ticker="KXNOPE-E1-T1").json()["trades"] == []
    # a live cursor is not a historical one, and parameters are checked the same way
    live_cursor = sim.get("/markets/trades", limit=1).json()["cursor"]
    for query in ({"cursor": live_cursor}, {"limit": 1001}, {"min_ts": "x"}):
        response = sim.get("/historical/trades", **query)
        assert response.status_code == 400, query
        assert set(response.json()["error"]) == {"code", "message", "details"}


def test_the_historical_cutoff_follows_the_virtual_clock(sim_factory):
    """Without --max-events the clock runs on, and so does the cutoff; until the clock is S
    seconds past the epoch, the cutoff stays at the epoch."""
    sim = sim_factory(
        "--markets", "4", "--rate", "2000", "--epoch-ms", str(EPOCH_MS),
        "--historical-cutoff-s", "0.3", truth=False,
    )  # fmt: skip

    def cutoff_ns() -> int:
        return rfc3339_to_ns(sim.get("/historical/cutoff").json()["trades_created_ts"])

    first = cutoff_ns()
    assert first >= EPOCH_MS * 1_000_000
    time.sleep(0.6)
    second = cutoff_ns()
    assert second > first and second > EPOCH_MS * 1_000_000
    assert second <= sim.state()["virtual_ns"] - 300_000_000
    lasting = sim_factory("--markets", "4", "--historical-cutoff-s", "3600", truth=False)
    state = lasting.state()
    body = lasting.get("/historical/cutoff").json()
    assert rfc3339_to_ns(body["trades_created_ts"]) == state["epoch_ms"] * 1_000_000


def test_token_bucket_answers_429_with_the_documented_body(sim_factory):
    sim = sim_factory("--markets", "5", "--rate", "10", "--rate-limit", "basic", truth=False)
    responses = [sim.get("/exchange/status") for _ in range(70)]
    codes = [r.status_code for r in responses]
    # Basic: 200 tokens/s, two seconds of burst (§9), 10 tokens a request -> 40 at once.
    assert codes[:38] == [200] * 38
    assert codes.count(429) >= 10
    limited = next(r for r in responses if r.status_code == 429)
    assert limited.json() == {"error": "too many requests"}
    assert "Retry-After" not in limited.headers
    time.sleep(0.3)
    assert sim.get("/exchange/status").status_code == 200
    assert sim.state()["rest_rate_limited"] >= 10
