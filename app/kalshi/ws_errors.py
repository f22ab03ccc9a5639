"""The WebSocket `error` reply codes of kalshi-api.md §3.4, one exception class per code.

An error frame looks like `{"id": 5, "type": "error", "msg": {"code": 6, "msg": "..."}}`; it may
carry `msg.market_ticker` / `msg.market_id` (e.g. code 16) and, for errors about a subscription,
`sid`. `terminal` marks the codes after which the server has dropped the subscription (10 channel
error, 17 internal error, 25 buffer overflow): the caller must resubscribe, not retry the command.
Codes we do not know yet become a plain `WsError` with the code kept, so nothing is lost when
Kalshi adds one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from app.kalshi.errors import KalshiError


class WsError(KalshiError):
    """An `error` reply from the Kalshi WebSocket."""

    code: ClassVar[int] = 0
    terminal: ClassVar[bool] = False

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


class WsParamsRequired(WsError):
    code = 2


class WsChannelsRequired(WsError):
    code = 3


class WsSubscriptionIdsRequired(WsError):
    code = 4


class WsUnknownCommand(WsError):
    code = 5


class WsAlreadySubscribed(WsError):
    code = 6


class WsUnknownSubscriptionId(WsError):
    code = 7


class WsUnknownChannel(WsError):
    code = 8


class WsAuthenticationRequired(WsError):
    code = 9


class WsChannelError(WsError):
    """The server dropped the subscription; resubscribe."""

    code = 10
    terminal = True


class WsInvalidParameter(WsError):
    code = 11


class WsExactlyOneSidRequired(WsError):
    code = 12


class WsUnsupportedAction(WsError):
    code = 13


class WsMarketTickerRequired(WsError):
    code = 14


class WsActionRequired(WsError):
    code = 15


class WsMarketNotFound(WsError):
    code = 16


class WsInternalError(WsError):
    """Kalshi-side failure; the subscription is gone."""

    code = 17
    terminal = True


class WsCommandTimeout(WsError):
    code = 18


class WsShardFactorNotPositive(WsError):
    code = 19


class WsShardFactorRequired(WsError):
    code = 20


class WsShardKeyOutOfRange(WsError):
    code = 21


class WsShardFactorTooLarge(WsError):
    code = 22


class WsMatchIdsRequired(WsError):
    code = 23


class WsIndexIdsRequired(WsError):
    code = 24


class WsBufferOverflow(WsError):
    """We read too slowly and Kalshi dropped the subscription (since 2026-05-12)."""

    code = 25
    terminal = True


class WsMarketLimitExceeded(WsError):
    """Too many markets in one subscription (the cap is undocumented)."""

    code = 26


class WsTooManyRequests(WsError):
    """Per-subscription command rate exceeded."""

    code = 27


class WsUnderlyingTickersRequired(WsError):
    code = 28


class WsInvalidUpdateInterval(WsError):
    code = 29


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
    if not isinstance(text, str):
        text = str(body) if body is not None else "(no message)"
    cls = WS_ERROR_CLASSES.get(code, WsError) if code is not None else WsError
    return cls(
        text,
        code=code if code is not None else 0,
        command_id=_optional_int(frame.get("id")),
        sid=_optional_int(frame.get("sid", details.get("sid"))),
        market_ticker=_optional_str(details.get("market_ticker")),
        market_id=_optional_str(details.get("market_id")),
    )
