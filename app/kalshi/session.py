"""One signed, rate-limited, retried HTTP GET against the Kalshi REST API.

Every attempt (first try and each retry) spends tokens from the `TokenLimiter`, gets freshly
signed headers (the timestamp is part of the signature, kalshi-api.md §2) and, on 429, 5xx or a
connection failure, waits per GEN-10 (`app.kalshi.backoff`) before trying again, at most
`max_retries` times. Other HTTP errors are raised at once as typed `ApiError`s: retrying a 400,
401 or 404 cannot help. Sleep and limiter are injected so tests run without real waiting.
This module knows HTTP only; which endpoints exist is `app.kalshi.rest`.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import orjson
import requests

from app.kalshi.auth import Signer
from app.kalshi.backoff import Backoff
from app.kalshi.errors import (
    ApiError,
    ExchangeUnreachable,
    InvalidUrl,
    WireFormatError,
    api_error_class,
)
from app.kalshi.ratelimit import DEFAULT_COST, TokenLimiter
from app.logs import log_event

log = logging.getLogger("kalshi_data.kalshi.rest")

ParamValue = str | int | bool | Sequence[str]
Params = Mapping[str, ParamValue | None]

USER_AGENT = "kalshi-data/0.1 (+https://github.com/kalshi-data)"


def _is_retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _exception_chain(exc: BaseException) -> list[BaseException]:
    """`exc` and every exception it wraps (requests -> urllib3 -> OSError), outermost first."""
    found: list[BaseException] = []
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop(0)
        if current is None or any(current is seen for seen in found):
            continue
        found.append(current)
        reason = getattr(current, "reason", None)
        nested = [a for a in current.args if isinstance(a, BaseException)]
        pending.extend([current.__cause__, current.__context__, *nested])
        if isinstance(reason, BaseException):
            pending.append(reason)
    return found


def describe_connection_failure(exc: BaseException, timeout_s: float | None = None) -> str:
    """A short human cause for a failed connection: "connection refused", "timed out after 5s"."""
    chain = _exception_chain(exc)
    for cause in chain:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "host name not resolved"
        if isinstance(cause, ConnectionResetError):
            return "connection reset by peer"
        if isinstance(cause, ssl.SSLError):
            return f"TLS error ({cause.reason or cause})"
    if any(isinstance(c, TimeoutError | requests.Timeout) for c in chain):
        return f"timed out after {timeout_s:g}s" if timeout_s else "timed out"
    for cause in reversed(chain):
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
    text = str(chain[-1]) or type(chain[-1]).__name__
    return text if len(text) <= 200 else text[:197] + "..."


class ErrorFields(NamedTuple):
    code: str | None
    message: str | None
    details: str | None


def _field_text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= 500 else text[:497] + "..."


def error_fields(content: bytes, fallback: str | None = None) -> ErrorFields:
    """(code, message, details) of a Kalshi error body, in any of the shapes seen (§1.1, §9):

    * flat, as the spec says: `{"code", "message", "details", "service"}` (all optional);
    * nested, as production sends: `{"error": {"code", "message", "details"}}`;
    * `{"msg": "..."}`, and the 429 body `{"error": "too many requests"}`.

    The message falls back to the details when only those are given; a body that is not JSON
    gives its first 200 characters (or `fallback`, the HTTP reason) as the message.
    """
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        text = content.decode("utf-8", "replace").strip()
        return ErrorFields(None, text[:200] or fallback or None, None)
    if not isinstance(body, Mapping):
        return ErrorFields(None, str(body)[:200], None)
    inner = body.get("error")
    if isinstance(inner, Mapping):
        body = inner
    elif isinstance(inner, str) and inner:
        return ErrorFields(_field_text(body.get("code")), inner, _field_text(body.get("details")))
    code = _field_text(body.get("code"))
    details = _field_text(body.get("details"))
    message = _field_text(body.get("message")) or _field_text(body.get("msg")) or details
    return ErrorFields(code, message, details)


def encode_params(params: Params | None) -> list[tuple[str, str]]:
    """Query parameters as Kalshi expects them: booleans `true`/`false`, lists exploded
    (`tickers=A&tickers=B`), `None` values dropped."""
    pairs: list[tuple[str, str]] = []
    for name, value in (params or {}).items():
        if value is None:
            continue
        if isinstance(value, bool):
            pairs.append((name, "true" if value else "false"))
        elif isinstance(value, str | int):
            pairs.append((name, str(value)))
        else:
            pairs.extend((name, str(item)) for item in value)
    return pairs


class RestSession:
    """A `requests.Session` bound to one Kalshi REST base URL, with signing, budget and retries."""

    def __init__(
        self,
        base_url: str,
        *,
        signer: Signer | None,
        limiter: TokenLimiter,
        timeout_s: float = 10.0,
        max_retries: int = 6,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        http: requests.Session | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidUrl(
                f"invalid Kalshi REST URL {base_url!r}: expected http(s)://host[:port]/trade-api/v2"
            )
        self.base_url = base_url.rstrip("/")
        self.signer = signer
        self.limiter = limiter
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff = backoff or Backoff(0.5, 30.0)
        self._sleep = sleep
        self._http = http or requests.Session()
        self._http.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})

    def close(self) -> None:
        self._http.close()

    def url_for(self, path: str) -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def get(self, path: str, params: Params | None = None, *, cost: float = DEFAULT_COST) -> Any:
        """Decoded JSON of `GET base_url + path`; raises a typed `KalshiError` on failure."""
        return self.request("GET", path, params, cost=cost)

    def request(
        self, method: str, path: str, params: Params | None = None, *, cost: float = DEFAULT_COST
    ) -> Any:
        url = self.url_for(path)
        signed_path = urlsplit(url).path
        query = encode_params(params)
        attempt = 0
        while True:
            try:
                return self._attempt(method, url, signed_path, query, cost, attempt + 1)
            except (ApiError, ExchangeUnreachable) as failure:
                retryable = isinstance(failure, ExchangeUnreachable) or _is_retryable(
                    failure.status
                )
                if not retryable or attempt >= self.max_retries:
                    raise
                delay = self.backoff.delay(attempt)
                log_event(
                    log,
                    "kalshi_rest_retry",
                    logging.WARNING,
                    method=method,
                    path=signed_path,
                    attempt=attempt + 1,
                    delay_s=round(delay, 3),
                    reason=str(failure),
                )
                self._sleep(delay)
                attempt += 1

    def _attempt(
        self,
        method: str,
        url: str,
        signed_path: str,
        query: list[tuple[str, str]],
        cost: float,
        attempts: int,
    ) -> Any:
        wait = self.limiter.reserve(cost)
        if wait > 0:
            self._sleep(wait)
        headers = self.signer.headers(method, signed_path) if self.signer else {}
        try:
            response = self._http.request(
                method, url, params=query, headers=headers, timeout=self.timeout_s
            )
        except requests.RequestException as exc:
            cause = describe_connection_failure(exc, self.timeout_s)
            raise ExchangeUnreachable(self.base_url, cause, attempts=attempts) from exc
        if response.status_code >= 400:
            fields = error_fields(response.content, response.reason)
            error_class = api_error_class(response.status_code)
            raise error_class(
                response.status_code,
                fields.code,
                fields.message,
                details=fields.details,
                method=method,
                url=url,
                attempts=attempts,
            )
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise WireFormatError(
                f"{method} {url} answered HTTP {response.status_code} with non-JSON content"
            ) from exc
