"""The REST client against real HTTP servers on loopback: paging, signing, retries, errors."""

from __future__ import annotations

import pytest

from app.config import KalshiSettings
from app.kalshi.auth import Signer, load_private_key
from app.kalshi.errors import (
    BadRequest,
    ExchangeUnreachable,
    InvalidUrl,
    NotFound,
    RateLimited,
    ServerError,
    Unauthorized,
    WireFormatError,
)
from app.kalshi.orderbook import Level
from app.kalshi.ratelimit import TokenBucket
from app.kalshi.rest import KalshiRest
from tests.conftest import KeyPair, free_port
from tests.kalshi.conftest import HarnessFactory
from tests.kalshi.peers import Received, Reply, verify_kalshi_signature

# Fixed jitter of +10 % (uniform01 = 0.4 -> 1 + 0.25 * 0.4) and base 0.5 s, cap 4 s.
EXPECTED_DELAYS = [0.55, 1.1, 2.2, 4.4, 4.4]


def _market(n: int) -> dict:
    return {"ticker": f"KXSIM-M{n}", "status": "active", "yes_bid_dollars": "0.5600"}


def test_market_pagination_follows_cursors(rest_harness: HarnessFactory) -> None:
    pages = {None: ("c1", [0, 1, 2]), "c1": ("c2", [3, 4]), "c2": ("", [5])}

    def handler(request: Received) -> Reply:
        following, numbers = pages[request.param("cursor")]
        return Reply(body={"markets": [_market(n) for n in numbers], "cursor": following})

    harness = rest_harness(handler)
    markets = list(
        harness.client.iter_markets(
            status="open", series_ticker="KXSIM", event_ticker="E1", limit=3
        )
    )
    assert [m["ticker"] for m in markets] == [f"KXSIM-M{n}" for n in range(6)]
    assert markets[0] == _market(0)  # raw dicts, unchanged
    sent = harness.server.received
    assert [r.param("cursor") for r in sent] == [None, "c1", "c2"]
    assert all(r.path == "/trade-api/v2/markets" for r in sent)
    assert sent[0].param("status") == "open"
    assert sent[0].param("event_ticker") == "E1"
    assert sent[0].param("limit") == "3"
    assert sent[0].param("min_close_ts") is None  # unset filters are not sent
    assert harness.limiter.reserved == [10, 10, 10]


def test_pages_expose_cursors_for_resuming(rest_harness: HarnessFactory) -> None:
    def handler(request: Received) -> Reply:
        cursor = request.param("cursor")
        if cursor == "c1":
            return Reply(body={"trades": [], "cursor": None})
        return Reply(body={"trades": [], "cursor": "c1"})

    harness = rest_harness(handler)
    pages = list(harness.client.trade_pages(cursor="start", ticker="M", is_block_trade=False))
    assert [page.cursor for page in pages] == ["c1", None]
    assert harness.server.received[0].param("cursor") == "start"
    assert harness.server.received[0].param("is_block_trade") == "false"
    assert harness.server.received[0].path == "/trade-api/v2/markets/trades"


def test_a_cursor_that_does_not_advance_is_refused(rest_harness: HarnessFactory) -> None:
    harness = rest_harness(lambda request: Reply(body={"events": [{}], "cursor": "same"}))
    with pytest.raises(WireFormatError, match="same cursor"):
        list(harness.client.iter_events())
    assert len(harness.server.received) == 2


def test_every_request_and_every_retry_is_signed_afresh(
    rest_harness: HarnessFactory, rsa_keypair: KeyPair
) -> None:
    ticks = iter(range(1_700_000_000_000, 1_700_000_000_100))
    signer = Signer(
        rsa_keypair.key_id, load_private_key(rsa_keypair.pkcs8_path), clock_ms=lambda: next(ticks)
    )
    answers = iter([Reply(429, {"error": "too many requests"}), Reply(body={"markets": []})])
    harness = rest_harness(lambda request: next(answers), signer=signer)
    assert list(harness.client.iter_markets(status="open")) == []
    public = rsa_keypair.private_key.public_key()
    sent = harness.server.received
    assert len(sent) == 2
    for request in sent:
        assert request.headers["kalshi-access-key"] == rsa_keypair.key_id
        # The server checks the bare path although the request carried a query string.
        assert request.query
        assert verify_kalshi_signature(public, request.headers, "GET", "/trade-api/v2/markets")
    stamps = [r.headers["kalshi-access-timestamp"] for r in sent]
    assert stamps == ["1700000000000", "1700000000001"]


def test_unsigned_when_no_key(rest_harness: HarnessFactory) -> None:
    harness = rest_harness(lambda r: Reply(body={"exchange_active": True, "trading_active": False}))
    status = harness.client.get_exchange_status()
    assert (status.exchange_active, status.trading_active) == (True, False)
    assert status.estimated_resume_time is None
    assert not any(k.startswith("kalshi-access") for k in harness.server.received[0].headers)


def test_retry_on_429_then_success_with_gen10_delays(rest_harness: HarnessFactory) -> None:
    answers = iter(
        [Reply(429, {"error": "too many requests"})] * 2 + [Reply(body={"market": _market(7)})]
    )
    harness = rest_harness(lambda request: next(answers))
    assert harness.client.get_market("KXSIM-M7") == _market(7)
    assert harness.sleeps == pytest.approx(EXPECTED_DELAYS[:2])
    assert harness.limiter.reserved == [10, 10, 10]  # every attempt spends budget


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_retry_on_5xx_then_success(rest_harness: HarnessFactory, status: int) -> None:
    answers = iter([Reply(status, "<html>bad gateway</html>"), Reply(body={"series": {"t": 1}})])
    harness = rest_harness(lambda request: next(answers))
    assert harness.client.get_series("KXSIM") == {"t": 1}
    assert harness.sleeps == pytest.approx(EXPECTED_DELAYS[:1])


def test_gives_up_after_max_retries_with_rate_limited(rest_harness: HarnessFactory) -> None:
    harness = rest_harness(lambda r: Reply(429, {"error": "too many requests"}), max_retries=4)
    with pytest.raises(RateLimited) as caught:
        harness.client.get_exchange_status()
    assert len(harness.server.received) == 5  # first try + 4 retries
    assert harness.sleeps == pytest.approx(EXPECTED_DELAYS[:4])
    error = caught.value
    assert (error.status, error.message, error.attempts) == (429, "too many requests", 5)
    assert "HTTP 429" in str(error) and "after 5 attempts" in str(error)


def test_gives_up_on_persistent_5xx_with_server_error(rest_harness: HarnessFactory) -> None:
    body = {"code": "internal", "message": "boom", "service": "exchange"}
    harness = rest_harness(lambda r: Reply(503, body), max_retries=1)
    with pytest.raises(ServerError) as caught:
        harness.client.get_historical_cutoff()
    assert (caught.value.status, caught.value.code, caught.value.message) == (
        503,
        "internal",
        "boom",
    )
    assert len(harness.server.received) == 2


@pytest.mark.parametrize(
    ("status", "error_class"),
    [(400, BadRequest), (401, Unauthorized), (403, Unauthorized), (404, NotFound)],
)
def test_client_errors_are_typed_and_never_retried(
    rest_harness: HarnessFactory, status: int, error_class: type
) -> None:
    body = {"code": "some_code", "message": "explained", "details": "more"}
    harness = rest_harness(lambda r: Reply(status, body))
    with pytest.raises(error_class) as caught:
        harness.client.get_market("NOPE")
    assert caught.value.status == status
    assert (caught.value.code, caught.value.message) == ("some_code", "explained")
    assert "/trade-api/v2/markets/NOPE" in str(caught.value)
    assert len(harness.server.received) == 1
    assert harness.sleeps == []


def test_connection_refused_is_exchange_unreachable_after_retries() -> None:
    port = free_port()
    sleeps: list[float] = []
    settings = KalshiSettings(
        rest_url=f"http://127.0.0.1:{port}/trade-api/v2", max_retries=2, backoff_base_s=0.1
    )
    client = KalshiRest.from_settings(settings, sleep=sleeps.append)
    with pytest.raises(ExchangeUnreachable) as caught:
        client.get_exchange_status()
    assert str(caught.value).startswith(
        f"cannot reach http://127.0.0.1:{port}/trade-api/v2: connection refused"
    )
    assert caught.value.attempts == 3
    assert len(sleeps) == 2 and 0.1 <= sleeps[0] <= 0.125 and 0.2 <= sleeps[1] <= 0.25


def test_read_timeout_is_exchange_unreachable(rest_harness: HarnessFactory) -> None:
    harness = rest_harness(lambda r: Reply(body={}, delay_s=1.0), max_retries=0, timeout_s=0.2)
    with pytest.raises(ExchangeUnreachable, match=r"timed out after 0\.2s"):
        harness.client.get_exchange_status()


def test_non_json_success_is_a_wire_format_error(rest_harness: HarnessFactory) -> None:
    harness = rest_harness(lambda r: Reply(body="<html>captive portal</html>"))
    with pytest.raises(WireFormatError, match="non-JSON"):
        harness.client.get_exchange_status()
    harness2 = rest_harness(lambda r: Reply(body={"exchange_active": "yes"}))
    with pytest.raises(WireFormatError, match="exchange_active"):
        harness2.client.get_exchange_status()


def test_single_orderbook_newest_and_depth(rest_harness: HarnessFactory) -> None:
    book = {"orderbook_fp": {"yes_dollars": [["0.4500", "100.00"]], "no_dollars": None}}
    harness = rest_harness(lambda r: Reply(body=book))
    parsed = harness.client.get_orderbook("KXBTCD-26FEB1217-T67749.99", depth=5)
    assert parsed.yes == (Level(450_000, 10_000),) and parsed.no == ()
    request = harness.server.received[0]
    assert request.path == "/trade-api/v2/markets/KXBTCD-26FEB1217-T67749.99/orderbook"
    assert request.param("depth") == "5"


def test_single_orderbook_legacy(rest_harness: HarnessFactory) -> None:
    book = {"orderbook": {"yes": [[45, 100]], "no": None, "yes_dollars": [["0.45", 100]]}}
    harness = rest_harness(lambda r: Reply(body=book))
    parsed = harness.client.get_orderbook("M")
    assert (parsed.wire_format, parsed.yes, parsed.no) == ("legacy", (Level(450_000, 10_000),), ())
    assert harness.server.received[0].param("depth") is None


def test_batch_orderbooks_are_chunked_by_100_and_charged_per_item(
    rest_harness: HarnessFactory,
) -> None:
    def handler(request: Received) -> Reply:
        entries = [
            {"ticker": t, "orderbook_fp": {"yes_dollars": [["0.0100", f"{i}.00"]]}}
            for i, t in enumerate(request.params("tickers"), start=1)
        ]
        return Reply(body={"orderbooks": entries})

    harness = rest_harness(handler)
    tickers = [f"T{n}" for n in range(250)]
    books = harness.client.get_orderbooks([*tickers, "T0"])  # duplicates are asked once
    assert [book.ticker for book in books] == tickers
    assert books[0].yes == (Level(10_000, 100),)
    sent = harness.server.received
    assert [len(r.params("tickers")) for r in sent] == [100, 100, 50]
    assert all(r.path == "/trade-api/v2/markets/orderbooks" for r in sent)
    assert harness.limiter.reserved == [1000, 1000, 500]


def test_batch_size_can_be_smaller_for_low_tiers(rest_harness: HarnessFactory) -> None:
    harness = rest_harness(lambda r: Reply(body={"orderbooks": []}))
    client = KalshiRest(harness.client.session, orderbook_batch_size=20)
    assert client.get_orderbooks([f"T{n}" for n in range(45)]) == []
    assert [len(r.params("tickers")) for r in harness.server.received] == [20, 20, 5]
    assert harness.limiter.reserved == [200, 200, 50]
    with pytest.raises(ValueError):
        KalshiRest(harness.client.session, orderbook_batch_size=101)


def test_trades_are_parsed_exactly_across_pages(rest_harness: HarnessFactory) -> None:
    newest = {
        "trade_id": "a",
        "ticker": "M",
        "count_fp": "1.50",
        "yes_price_dollars": "0.0150",
        "no_price_dollars": "0.9850",
        "taker_outcome_side": "yes",
        "taker_book_side": "bid",
        "created_time": "2026-02-12T12:06:24.5Z",
    }
    legacy = {"trade_id": "b", "ticker": "M", "yes_price": 40, "count": 3, "taker_side": "no"}

    def handler(request: Received) -> Reply:
        if request.param("cursor") is None:
            return Reply(body={"trades": [newest], "cursor": "next"})
        return Reply(body={"trades": [legacy], "cursor": ""})

    harness = rest_harness(handler)
    trades = list(harness.client.iter_trades(ticker="M", min_ts=1, max_ts=2, historical=True))
    assert [(t.trade_id, t.yes_price_micros, t.count_hundredths) for t in trades] == [
        ("a", 15_000, 150),
        ("b", 400_000, 300),
    ]
    assert harness.server.received[0].path == "/trade-api/v2/historical/trades"
    assert harness.server.received[0].param("min_ts") == "1"


def test_event_and_series_listing(rest_harness: HarnessFactory) -> None:
    def handler(request: Received) -> Reply:
        if request.path.endswith("/events"):
            return Reply(body={"events": [{"event_ticker": "E1"}], "cursor": ""})
        if request.path.endswith("/events/E1"):
            return Reply(body={"event": {"event_ticker": "E1", "markets": []}, "markets": []})
        return Reply(body={"series": [{"ticker": "S1"}, {"ticker": "S2"}]})

    harness = rest_harness(handler)
    events = list(
        harness.client.iter_events(
            status="open", with_nested_markets=True, tickers=["E1", "E2"], min_close_ts=5
        )
    )
    assert events == [{"event_ticker": "E1"}]
    first = harness.server.received[0]
    assert (first.param("with_nested_markets"), first.param("tickers")) == ("true", "E1,E2")
    assert first.param("limit") == "200"
    assert harness.client.get_event("E1", with_nested_markets=True)["event"]["event_ticker"] == "E1"
    assert [s["ticker"] for s in harness.client.iter_series(tags=["a", "b"])] == ["S1", "S2"]
    assert harness.server.received[-1].param("tags") == "a,b"


def test_historical_cutoff(rest_harness: HarnessFactory) -> None:
    body = {
        "market_settled_ts": "2025-11-01T00:00:00Z",
        "trades_created_ts": "2025-11-02T00:00:00Z",
        "orders_updated_ts": None,
    }
    harness = rest_harness(lambda r: Reply(body=body))
    cutoff = harness.client.get_historical_cutoff()
    assert cutoff.trades_created_ts == "2025-11-02T00:00:00Z"
    assert cutoff.market_settled_ns == 1_761_955_200_000_000_000
    assert cutoff.orders_updated_ts is None
    assert harness.server.received[0].path == "/trade-api/v2/historical/cutoff"


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"status": "active"}, "status filter must be one of"),
        ({"limit": 1001}, "limit must be between 1 and 1000"),
        ({"event_ticker": [f"E{n}" for n in range(11)]}, "at most 10 event tickers"),
        ({"event_ticker": "E1,E2"}, "takes one event ticker"),
        ({"min_created_ts": 1, "max_close_ts": 2}, "mutually exclusive"),
        ({"status": "settled", "min_close_ts": 1}, "close timestamp filters do not combine"),
        ({"status": "open", "min_updated_ts": 1}, "do not combine"),
        ({"min_updated_ts": 1, "event_ticker": "E"}, "only with series_ticker and mve_filter"),
        ({"min_updated_ts": 1, "tickers": ["M"]}, "only with series_ticker and mve_filter"),
        ({"min_updated_ts": 1, "mve_filter": "only"}, "only with series_ticker and mve_filter"),
    ],
)
def test_market_filters_kalshi_rejects_are_refused_locally(
    rest_harness: HarnessFactory, filters: dict, message: str
) -> None:
    harness = rest_harness(lambda r: Reply(body={"markets": []}))
    with pytest.raises(ValueError, match=message):
        list(harness.client.iter_markets(**filters))
    assert harness.server.received == []


def test_allowed_timestamp_combinations_are_sent(rest_harness: HarnessFactory) -> None:
    harness = rest_harness(lambda r: Reply(body={"markets": []}))
    list(harness.client.iter_markets(status="settled", min_settled_ts=10, max_settled_ts=20))
    list(harness.client.iter_markets(min_updated_ts=30, mve_filter="exclude"))
    list(harness.client.iter_markets(min_updated_ts=40, series_ticker="KXS"))  # §9
    first, second, third = harness.server.received
    assert (first.param("min_settled_ts"), first.param("max_settled_ts")) == ("10", "20")
    assert (second.param("min_updated_ts"), second.param("mve_filter")) == ("30", "exclude")
    assert (third.param("min_updated_ts"), third.param("series_ticker")) == ("40", "KXS")


def test_several_event_tickers_are_walked_one_at_a_time(rest_harness: HarnessFactory) -> None:
    """`GET /markets?event_ticker=` takes one ticker (kalshi-api.md §9): never a comma list."""

    def handler(request: Received) -> Reply:
        event = request.param("event_ticker")
        return Reply(body={"markets": [{"ticker": f"{event}-M"}], "cursor": ""})

    harness = rest_harness(handler)
    markets = list(harness.client.iter_markets(event_ticker=["E1", "E2", "E1"], status="open"))
    assert [m["ticker"] for m in markets] == ["E1-M", "E2-M"]
    sent = harness.server.received
    assert [r.param("event_ticker") for r in sent] == ["E1", "E2"]
    assert all(r.param("status") == "open" for r in sent)
    with pytest.raises(ValueError, match="one event ticker"):
        list(harness.client.market_pages(event_ticker=["E1", "E2"]))
    (page,) = harness.client.market_pages(event_ticker=["E3"])
    assert page.items == [{"ticker": "E3-M"}]


def test_events_and_series_accept_min_updated_ts(rest_harness: HarnessFactory) -> None:
    def handler(request: Received) -> Reply:
        if request.path.endswith("/events"):
            return Reply(body={"events": [], "cursor": ""})
        return Reply(body={"series": [{"ticker": "S1"}], "cursor": "ignored"})

    harness = rest_harness(handler)
    list(harness.client.iter_events(min_updated_ts=50, series_ticker="KXS"))
    # `/series` is not paginated: one request, even if a cursor shows up
    pages = list(harness.client.series_pages(min_updated_ts=60))
    assert [(p.items, p.cursor) for p in pages] == [([{"ticker": "S1"}], None)]
    events, series = harness.server.received
    assert (events.param("min_updated_ts"), events.param("series_ticker")) == ("50", "KXS")
    assert (series.param("min_updated_ts"), series.param("cursor")) == ("60", None)


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (  # the spec's flat shape
            {"code": "bad_param", "message": "limit too big", "details": "max 1000",
             "service": "exchange"},
            ("bad_param", "limit too big", "max 1000"),
        ),
        (  # production's nested shape
            {"error": {"code": "not_found", "message": "no such market", "details": "NOPE"}},
            ("not_found", "no such market", "NOPE"),
        ),
        ({"msg": "something broke"}, (None, "something broke", None)),
        ({"error": "too many requests"}, (None, "too many requests", None)),
        ({"details": "only details"}, (None, "only details", "only details")),
        ({"error": {"code": 42, "details": {"field": "limit"}}}, ("42", '{"field":"limit"}',
                                                                  '{"field":"limit"}')),
        ([1, 2], (None, "[1, 2]", None)),
    ],
)  # fmt: skip
def test_error_bodies_in_every_shape(
    rest_harness: HarnessFactory, body: object, fields: tuple[str | None, ...]
) -> None:
    harness = rest_harness(lambda r: Reply(400, body))
    with pytest.raises(BadRequest) as caught:
        harness.client.get_market("NOPE")
    error = caught.value
    assert (error.code, error.message, error.details) == fields
    assert error.message is None or error.message in str(error)


def test_from_settings_uses_the_tier_bucket_and_settings(rsa_keypair: KeyPair) -> None:
    settings = KalshiSettings(
        rest_url="http://example.invalid/trade-api/v2/",
        key_id="kid",
        private_key_path=rsa_keypair.pkcs1_path,
        tier="premier",
        max_retries=2,
        request_timeout_s=3.0,
    )
    client = KalshiRest.from_settings(settings)
    session = client.session
    assert session.base_url == "http://example.invalid/trade-api/v2"
    assert session.signer is not None and session.signer.key_id == "kid"
    assert isinstance(session.limiter, TokenBucket) and session.limiter.rate_per_s == 1000
    assert (session.max_retries, session.timeout_s) == (2, 3.0)
    assert client.orderbook_batch_size == 100  # premier: 1,000 tokens cover 100 items
    basic = KalshiRest.from_settings(KalshiSettings(tier="basic"))
    assert basic.orderbook_batch_size == 40  # 400 tokens: a bigger batch could never pass
    assert KalshiRest.from_settings(KalshiSettings(tier="advanced")).orderbook_batch_size == 60
    assert KalshiRest.from_settings(settings, signer=None).session.signer is None
    client.close()


@pytest.mark.parametrize("url", ["localhost:8000/trade-api/v2", "ftp://host/x", "https://", ""])
def test_unusable_urls_are_refused_before_any_request(url: str) -> None:
    with pytest.raises(InvalidUrl, match="invalid Kalshi REST URL"):
        KalshiRest.from_settings(KalshiSettings(), rest_url=url or "nohost")
