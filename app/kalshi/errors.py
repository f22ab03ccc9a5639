"""Typed exceptions for the exchange's failure modes, caught where recovery happens.

REST failures map one-to-one onto what a caller does next: `RateLimited` and `ServerError` are
retried by the client itself (and raised only once `max_retries` is spent), `NotFound` means
"skip it" (a delisted market), `Unauthorized` means "stop and page a human", `BadRequest` is our
bug. WebSocket error codes (kalshi-api.md §3.4) live in `app.kalshi.ws_errors`.
"""

from __future__ import annotations


class KalshiError(Exception):
    """Base class for everything the Kalshi client raises."""


class KeyLoadError(KalshiError):
    """The API private (or public) key file is missing, unreadable or not an RSA PEM key."""


class InvalidUrl(KalshiError):
    """A configured REST or WebSocket URL that cannot be used at all (no scheme, no host)."""


class ExchangeUnreachable(KalshiError):
    """No HTTP/WebSocket answer at all: refused, reset, DNS failure, TLS failure or timeout."""

    def __init__(self, url: str, cause: str, *, attempts: int = 1) -> None:
        tries = f" (after {attempts} attempts)" if attempts > 1 else ""
        super().__init__(f"cannot reach {url}: {cause}{tries}")
        self.url = url
        self.cause = cause
        self.attempts = attempts


class WireFormatError(KalshiError):
    """The exchange sent JSON, numbers or times that do not match kalshi-api.md (garbage)."""


class FrameError(WireFormatError, ValueError):
    """A wire field (of a REST object or a WebSocket frame) that cannot be read exactly; the
    message is the reason. The field readers of `app.kalshi.wire` raise it, and the normalizers
    use it for every refused frame (`app.normalize.fields.FrameError` is this class), so its
    message is also the dead-letter reason."""


class ApiError(KalshiError):
    """An HTTP error answer. `code`/`message`/`details` come from Kalshi's error body, whichever
    of its three shapes it used (`app.kalshi.session.error_fields`)."""

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str | None,
        *,
        details: str | None = None,
        method: str = "",
        url: str = "",
        attempts: int = 1,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.method = method
        self.url = url
        self.attempts = attempts
        detail = ": ".join(part for part in (code, message) if part)
        if details and details != message:
            detail = f"{detail} - {details}" if detail else details
        where = f" for {method} {url}" if url else ""
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        text = f"HTTP {status}{where}" + (f" ({detail})" if detail else "") + tries
        super().__init__(text)


class BadRequest(ApiError):
    """400/422: the request itself is wrong (our bug, never retried)."""


class Unauthorized(ApiError):
    """401/403: missing, wrong, expired or under-scoped credentials, or a rejected signature."""


class NotFound(ApiError):
    """404: no such market/event/series (for example a delisted market)."""


class RateLimited(ApiError):
    """429 still returned after every retry: the token budget (kalshi-api.md §4) is exhausted."""


class ServerError(ApiError):
    """5xx still returned after every retry."""


def api_error_class(status: int) -> type[ApiError]:
    """The `ApiError` subclass for an HTTP status (plain `ApiError` for the unusual ones)."""
    if status == 429:
        return RateLimited
    if status >= 500:
        return ServerError
    if status in (401, 403):
        return Unauthorized
    if status == 404:
        return NotFound
    if status in (400, 422):
        return BadRequest
    return ApiError


class WsClosed(KalshiError):
    """The WebSocket closed while a command still waited for its reply, or before it was sent."""

    def __init__(self, code: int | None, reason: str) -> None:
        self.code = code
        self.reason = reason
        what = f"code {code}" if code is not None else "no close frame"
        super().__init__(f"WebSocket closed ({what}{': ' + reason if reason else ''})")


class WsReplyTimeout(KalshiError):
    """A WebSocket command got no reply within its timeout."""


class WsHandshakeRejected(KalshiError):
    """The WebSocket upgrade got an HTTP error answer (401 = bad or missing signature)."""

    def __init__(self, url: str, status: int, body: str = "") -> None:
        self.url = url
        self.status = status
        self.body = body
        hint = " (credentials or signature rejected)" if status in (401, 403) else ""
        super().__init__(f"WebSocket upgrade to {url} refused with HTTP {status}{hint}")
