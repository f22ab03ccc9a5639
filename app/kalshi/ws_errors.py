"""The WebSocket `error` reply codes of kalshi-api.md §3.4, one exception class per code.

An error frame looks like `{"id": 5, "type": "error", "msg": {"code": 6, "msg": "..."}}`; it may
carry `msg.market_ticker` / `msg.market_id` (e.g. code 16) and, for errors about a subscription,
`sid`. `terminal` marks the codes after which the server has dropped the subscription (10 channel
error, 17 internal error, 25 buffer overflow): the caller must resubscribe, not retry the command.
Codes 1-28 are official (kalshi-api.md §9); 6 is retired but still mapped (`retired`). Codes we
do not know yet become a plain `WsError` with the code kept, never a crash, so nothing is lost
when Kalshi adds one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from app.kalshi.errors import KalshiError


class WsError(KalshiError):
    """An `error` reply from the Kalshi WebSocket."""

    code: ClassVar[int] = 0
    terminal: ClassVar[bool] = False
    # Kalshi's wording for the code (kalshi-api.md §3.4), used when a frame carries no text.
    description: ClassVar[str] = "Unknown error code"
    # Codes Kalshi documents as no longer emitted; still decoded (old servers, replays).
    retired: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        command_id: int | None = None,
        sid: int | None = None,
        market_ticker: str | None = None,
        market_id: str | None = None,
    ) -> None:
        self.error_code = type(self).code if code is None else code
        self.message = message
        self.command_id = command_id
        self.sid = sid
        self.market_ticker = market_ticker
        self.market_id = market_id
        # Replies with the same id that arrived before this error (e.g. one channel of a
        # multi-channel subscribe succeeded); set by the WebSocket client.
        self.partial_replies: tuple[Mapping[str, Any], ...] = ()
        about = f" [{market_ticker}]" if market_ticker else ""
        super().__init__(f"Kalshi WebSocket error {self.error_code}: {message}{about}")


class WsUnableToProcess(WsError):
    code = 1
    description = "Unable to process message"


class WsParamsRequired(WsError):
    code = 2
    description = "Params required"


class WsChannelsRequired(WsError):
    code = 3
    description = "Channels required"


class WsSubscriptionIdsRequired(WsError):
    code = 4
    description = "Subscription IDs required"


class WsUnknownCommand(WsError):
    code = 5
    description = "Unknown command"


class WsAlreadySubscribed(WsError):
    """Retired: newer AsyncAPI copies say it is no longer emitted (kalshi-api.md §3.4, §9).
    Still mapped, so an old server or a replayed capture that sends it decodes the same."""

    code = 6
    description = "Already subscribed"
    retired = True


class WsUnknownSubscriptionId(WsError):
    code = 7
    description = "Unknown subscription ID"


class WsUnknownChannel(WsError):
    code = 8
    description = "Unknown channel name"


class WsAuthenticationRequired(WsError):
    code = 9
    description = "Authentication required"


class WsChannelError(WsError):
    """The server dropped the subscription; resubscribe."""

    code = 10
    description = "Channel error"
    terminal = True


class WsInvalidParameter(WsError):
    code = 11
    description = "Invalid parameter"


class WsExactlyOneSidRequired(WsError):
    code = 12
    description = "Exactly one subscription ID is required"


class WsUnsupportedAction(WsError):
    code = 13
    description = "Unsupported action"


class WsMarketTickerRequired(WsError):
    code = 14
    description = "Market Ticker required"


class WsActionRequired(WsError):
    code = 15
    description = "Action required"


class WsMarketNotFound(WsError):
    code = 16
    description = "Market not found"


class WsInternalError(WsError):
    """Kalshi-side failure; the subscription is gone."""

    code = 17
    description = "Internal error"
    terminal = True


class WsCommandTimeout(WsError):
    code = 18
    description = "Command timeout"


class WsShardFactorNotPositive(WsError):
    code = 19
    description = "shard_factor must be > 0"


class WsShardFactorRequired(WsError):
    code = 20
    description = "shard_factor is required when shard_key is set"


class WsShardKeyOutOfRange(WsError):
    code = 21
    description = "shard_key must be >= 0 and < shard_factor"


class WsShardFactorTooLarge(WsError):
    code = 22
    description = "shard_factor must be <= 100"


class WsMatchIdsRequired(WsError):
    code = 23
    description = "Match IDs required"


class WsIndexIdsRequired(WsError):
    code = 24
    description = "Index IDs required"


class WsBufferOverflow(WsError):
    """We read too slowly and Kalshi dropped the subscription (since 2026-05-12)."""

    code = 25
    description = "Subscription buffer overflow"
    terminal = True


class WsMarketLimitExceeded(WsError):
    """Too many markets in one subscription (the cap is undocumented)."""

    code = 26
    description = "Subscription market limit exceeded"


class WsTooManyRequests(WsError):
    """Per-subscription command rate exceeded."""

    code = 27
    description = "Too many requests"


class WsUnderlyingTickersRequired(WsError):
    """`pyth_value` subscribed without `underlying_tickers` (2026-07-23, kalshi-api.md §9)."""

    code = 28
    description = "Underlying tickers required"


class WsInvalidUpdateInterval(WsError):
    """Seen only in a third-party enum (kalshi-api.md §3.4); the official list ends at 28."""

    code = 29
    description = "Invalid update interval"


WS_ERROR_CLASSES: Mapping[int, type[WsError]] = {
    cls.code: cls
    for cls in (
        WsUnableToProcess,
        WsParamsRequired,
        WsChannelsRequired,
        WsSubscriptionIdsRequired,
        WsUnknownCommand,
        WsAlreadySubscribed,
        WsUnknownSubscriptionId,
        WsUnknownChannel,
        WsAuthenticationRequired,
        WsChannelError,
        WsInvalidParameter,
        WsExactlyOneSidRequired,
        WsUnsupportedAction,
        WsMarketTickerRequired,
        WsActionRequired,
        WsMarketNotFound,
        WsInternalError,
        WsCommandTimeout,
        WsShardFactorNotPositive,
        WsShardFactorRequired,
        WsShardKeyOutOfRange,
        WsShardFactorTooLarge,
        WsMatchIdsRequired,
        WsIndexIdsRequired,
        WsBufferOverflow,
        WsMarketLimitExceeded,
        WsTooManyRequests,
        WsUnderlyingTickersRequired,
        WsInvalidUpdateInterval,
    )
}

TERMINAL_CODES = frozenset(code for code, cls in WS_ERROR_CLASSES.items() if cls.terminal)


def _optional_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def ws_error_from_frame(frame: Mapping[str, Any]) -> WsError:
    """The typed exception for a decoded `{"type": "error", ...}` frame.

    Tolerant by design: a missing or non-integer code gives a plain `WsError` with code 0, and
    the message falls back to `message` (some clients saw that spelling) or the raw `msg`.
    """
    body = frame.get("msg")
    details: Mapping[str, Any] = body if isinstance(body, Mapping) else {}
    code = _optional_int(details.get("code"))
    text = details.get("msg", details.get("message"))
    cls = WS_ERROR_CLASSES.get(code, WsError) if code is not None else WsError
    if not isinstance(text, str) or not text:
        if cls is not WsError and not isinstance(body, str):
            text = cls.description
        else:
            text = str(body) if body is not None else "(no message)"
    return cls(
        text,
        code=code if code is not None else 0,
        command_id=_optional_int(frame.get("id")),
        sid=_optional_int(frame.get("sid", details.get("sid"))),
        market_ticker=_optional_str(details.get("market_ticker")),
        market_id=_optional_str(details.get("market_id")),
    )
