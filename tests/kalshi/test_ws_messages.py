"""Decoding of WebSocket error frames and command replies without a socket."""

from __future__ import annotations

import pytest

from app.kalshi.errors import KalshiError, WireFormatError
from app.kalshi.ws_errors import (
    WS_ERROR_CLASSES,
    WsAlreadySubscribed,
    WsError,
    WsExactlyOneSidRequired,
    WsMarketNotFound,
    WsUnderlyingTickersRequired,
    ws_error_from_frame,
)
from app.kalshi.ws_replies import (
    Subscribed,
    parse_subscribed,
    parse_subscription_list,
    parse_unsubscribed,
    parse_update_ok,
)


def test_error_classes_cover_codes_1_to_29_with_distinct_classes() -> None:
    assert sorted(WS_ERROR_CLASSES) == list(range(1, 30))
    assert len(set(WS_ERROR_CLASSES.values())) == 29
    assert all(
        issubclass(cls, WsError) and issubclass(cls, KalshiError)
        for cls in WS_ERROR_CLASSES.values()
    )
    assert {code for code, cls in WS_ERROR_CLASSES.items() if cls.terminal} == {10, 17, 25}


def test_error_frame_details() -> None:
    error = ws_error_from_frame(
        {
            "id": 9,
            "type": "error",
            "msg": {"code": 16, "msg": "Market not found", "market_ticker": "X"},
        }
    )
    assert isinstance(error, WsMarketNotFound)
    assert (error.command_id, error.market_ticker, error.error_code) == (9, "X", 16)
    assert str(error) == "Kalshi WebSocket error 16: Market not found [X]"


def test_unsolicited_terminal_error_carries_its_sid() -> None:
    error = ws_error_from_frame({"type": "error", "sid": 4, "msg": {"code": 25, "msg": "overflow"}})
    assert error.terminal and error.sid == 4 and error.command_id is None


@pytest.mark.parametrize(
    ("frame", "code", "text"),
    [
        (
            {"type": "error", "msg": {"code": 12, "message": "spelled message"}},
            12,
            "spelled message",
        ),
        ({"type": "error", "msg": {"msg": "no code"}}, 0, "no code"),
        ({"type": "error", "msg": "just a string"}, 0, "just a string"),
        ({"type": "error"}, 0, "(no message)"),
        ({"type": "error", "msg": {"code": "12", "msg": "string code"}}, 0, "string code"),
    ],
)
def test_error_frames_are_decoded_tolerantly(frame: dict, code: int, text: str) -> None:
    error = ws_error_from_frame(frame)
    assert (error.error_code, error.message) == (code, text)
    assert isinstance(error, WsExactlyOneSidRequired) == (code == 12)


def test_reply_variants() -> None:
    assert parse_subscribed(
        {"id": 1, "type": "subscribed", "msg": {"channel": "ticker", "sid": 3}}
    ) == Subscribed("ticker", 3)
    with pytest.raises(WireFormatError, match="without channel and sid"):
        parse_subscribed({"id": 1, "type": "subscribed", "msg": {"channel": "ticker"}})
    assert parse_unsubscribed({"id": 2, "type": "unsubscribed", "sid": 2, "seq": 7}).sids == (2,)
    top_level = parse_update_ok({"id": 3, "type": "ok", "sid": 5, "market_tickers": ["A"]})
    assert (top_level.sid, top_level.seq, top_level.market_tickers) == (5, None, ("A",))
    skipped = parse_update_ok({"id": 3, "type": "ok", "sid": 5, "seq": 9})
    assert skipped.market_tickers is None and skipped.seq == 9
    with pytest.raises(WireFormatError, match="market_tickers"):
        parse_update_ok({"id": 3, "type": "ok", "msg": {"market_tickers": "A"}})
    wrapped = parse_subscription_list(
        {"id": 4, "type": "ok", "msg": {"subscriptions": [{"channel": "trade", "sid": 1}]}}
    )
    assert [(s.channel, s.sid) for s in wrapped] == [("trade", 1)]
    with pytest.raises(WireFormatError, match="without channel/sid"):
        parse_subscription_list({"id": 4, "type": "ok", "msg": [{"sid": 1}]})


def test_official_codes_1_to_28_and_the_retired_6() -> None:
    """kalshi-api.md §9: codes 1-28 official, 28 = "Underlying tickers required", 6 retired."""
    assert set(range(1, 29)) <= set(WS_ERROR_CLASSES)
    error = ws_error_from_frame({"id": 3, "type": "error", "msg": {"code": 28}})
    assert isinstance(error, WsUnderlyingTickersRequired)
    assert (error.error_code, error.message) == (28, "Underlying tickers required")
    assert str(error) == "Kalshi WebSocket error 28: Underlying tickers required"
    retired = ws_error_from_frame(
        {"type": "error", "msg": {"code": 6, "msg": "Already subscribed"}}
    )
    assert isinstance(retired, WsAlreadySubscribed) and retired.retired
    assert {code for code, cls in WS_ERROR_CLASSES.items() if cls.retired} == {6}
    assert all(cls.description != WsError.description for cls in WS_ERROR_CLASSES.values())


@pytest.mark.parametrize("code", [0, 30, 99, 10_000, -1])
def test_unknown_codes_are_a_generic_typed_error(code: int) -> None:
    error = ws_error_from_frame({"id": 1, "type": "error", "msg": {"code": code}})
    assert type(error) is WsError and error.error_code == code
    assert isinstance(error, KalshiError) and not error.terminal
    assert error.message == str({"code": code})  # the raw body is kept as the text
