"""Markets the exchange refused with code 16 ("market not found"), retried per market.

The registry names a market; the exchange says it does not know it (a market not yet live on
the WebSocket, a stale registry, an exchange hiccup). Dropping it for the life of the process
would lose it silently, so each refused market waits out its own exponential backoff and is
asked for again, alone (one refused market must not hold up a command for 499 others). A
registry refresh makes every refused market due at once. Pure: the caller passes the clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass
class Rejection:
    ticker: str
    first_ns: int  # wall time of the first refusal (for logs and the record)
    refusals: int  # times the exchange refused it in a row
    retry_at: float  # monotonic time of the next attempt


class RejectedMarkets:
    """The refused markets of one connection manager and when to ask for each again."""

    def __init__(self, base_s: float, max_s: float) -> None:
        self._base_s = base_s
        self._max_s = max_s
        self._by_ticker: dict[str, Rejection] = {}
        self.total = 0  # refusals ever, for the counter metric

    def __len__(self) -> int:
        return len(self._by_ticker)

    def __contains__(self, ticker: object) -> bool:
        return ticker in self._by_ticker

    def get(self, ticker: str) -> Rejection | None:
        return self._by_ticker.get(ticker)

    def refuse(self, ticker: str, now: float, now_ns: int) -> Rejection:
        """Record one more refusal; the wait doubles each time, up to `max_s`."""
        self.total += 1
        entry = self._by_ticker.get(ticker)
        if entry is None:
            entry = self._by_ticker[ticker] = Rejection(ticker, now_ns, 0, now)
        entry.refusals += 1
        entry.retry_at = now + min(self._max_s, self._base_s * 2 ** (entry.refusals - 1))
        return entry

    def waiting(self, now: float) -> set[str]:
        """Refused markets whose next attempt has not come yet."""
        return {t for t, entry in self._by_ticker.items() if entry.retry_at > now}

    def due(self, now: float) -> list[str]:
        return sorted(t for t, entry in self._by_ticker.items() if entry.retry_at <= now)

    def accepted(self, tickers: Iterable[str]) -> list[str]:
        """The exchange took these after all; returns those that had been refused."""
        return [t for t in tickers if self._by_ticker.pop(t, None) is not None]

    def forget(self, tickers: Iterable[str]) -> None:
        """Markets no longer wanted (left the registry)."""
        for ticker in tickers:
            self._by_ticker.pop(ticker, None)

    def retry_all(self, now: float) -> int:
        """Make every refused market due now (a registry refresh); returns how many."""
        for entry in self._by_ticker.values():
            entry.retry_at = now
        return len(self._by_ticker)
