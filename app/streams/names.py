"""Stream names and routing of a frame to its stream (DESIGN §3, RTR-1, RTR-2).

Names, for gatherer `g`:

| stream | holds |
|---|---|
| `kd:g:book:{p}` | `orderbook_snapshot`, `orderbook_delta`, partition p = book_partition(ticker) |
| `kd:g:trade` | `trade` |
| `kd:g:ticker` | `ticker` (and the removed experimental `ticker_v2`) |
| `kd:g:lifecycle` | `market_lifecycle_v2`, `multivariate_market_lifecycle`, |
|                  | `market_lifecycle`, `event_lifecycle`, `event_fee_update` |
| `kd:g:other` | everything else: replies (`subscribed`, `ok`, `error`...), unknown |
|              | types, unparseable frames, book frames without a market ticker |
| `kd:g:dead` | dead letters: entries a consumer could not decode or handle (see drain.py) |

Book partitions use a *stable* hash so that every process, on every host and after every
restart, sends a ticker to the same partition: `zlib.crc32(ticker.encode("utf-8")) % partitions`
(CRC-32/ISO-HDLC, the zlib/PNG polynomial). Python's `hash()` is salted per process and must
never be used here. Changing the partition count moves tickers between partitions; drain the
book streams first (docs/streams.md).
"""

from __future__ import annotations

import zlib

PREFIX = "kd"

BOOK_TYPES = frozenset({"orderbook_snapshot", "orderbook_delta"})
TRADE_TYPES = frozenset({"trade"})
TICKER_TYPES = frozenset({"ticker", "ticker_v2"})
LIFECYCLE_TYPES = frozenset(
    {
        "market_lifecycle_v2",
        "multivariate_market_lifecycle",
        "market_lifecycle",
        "event_lifecycle",
        "event_fee_update",
    }
)


def dead_stream_for(stream: str) -> str:
    """Where a consumer of `stream` parks entries it cannot decode or handle.

    `kd:g:<anything>` -> `kd:g:dead`; the dead-letter stream itself (and any name outside the
    `kd:` scheme) -> `<stream>:dead`, a last-resort parking lot that nothing reads automatically.
    """
    parts = stream.split(":")
    if len(parts) >= 3 and parts[0] == PREFIX and parts[2] != "dead":
        return f"{PREFIX}:{parts[1]}:dead"
    return f"{stream}:dead"


def book_partition(market_ticker: str, partitions: int) -> int:
    """The book partition of a market: CRC-32 of its UTF-8 ticker modulo `partitions`."""
    if partitions < 1:
        raise ValueError("partitions must be >= 1")
    return zlib.crc32(market_ticker.encode("utf-8")) % partitions


class StreamNames:
    """The stream keys of one gatherer, and the routing of frames onto them."""

    __slots__ = (
        "_books",
        "control",
        "dead",
        "gatherer",
        "lifecycle",
        "other",
        "partitions",
        "prefix",
        "ticker",
        "trade",
    )

    def __init__(self, gatherer: str, partitions: int) -> None:
        if not gatherer or ":" in gatherer:
            raise ValueError(f"invalid gatherer name {gatherer!r}")
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        self.gatherer = gatherer
        self.partitions = partitions
        self.prefix = f"{PREFIX}:{gatherer}"
        self._books = tuple(f"{self.prefix}:book:{p}" for p in range(partitions))
        self.trade = f"{self.prefix}:trade"
        self.ticker = f"{self.prefix}:ticker"
        self.lifecycle = f"{self.prefix}:lifecycle"
        self.other = f"{self.prefix}:other"
        self.dead = f"{self.prefix}:dead"
        # The listener's own records (gaps, sessions), never exchange frames (docs/listener.md).
        self.control = f"{self.prefix}:control"

    def book(self, partition: int) -> str:
        return self._books[partition]

    def book_for(self, market_ticker: str) -> str:
        return self._books[zlib.crc32(market_ticker.encode("utf-8")) % self.partitions]

    def route(self, msg_type: str | None, market_ticker: str | None = None) -> str:
        """The stream for a frame of type (or channel) `msg_type` about `market_ticker`.

        `msg_type` None means the frame could not be parsed; it goes to `other`, where the
        ingest side dead-letters it. A book frame without a ticker goes there too.
        """
        if msg_type in BOOK_TYPES:
            if market_ticker:
                return self.book_for(market_ticker)
            return self.other
        if msg_type in TRADE_TYPES:
            return self.trade
        if msg_type in TICKER_TYPES:
            return self.ticker
        if msg_type in LIFECYCLE_TYPES:
            return self.lifecycle
        return self.other

    @property
    def frames_stored_key(self) -> str:
        """Counter of frames ingest has stored (for `up`'s status line, not for accounting)."""
        return f"{self.prefix}:stats:frames_stored"

    def publisher_key(self, publisher_id: str) -> str:
        """The key holding a publisher's last applied batch number (publish dedup)."""
        return f"{self.prefix}:pub:{publisher_id}"

    @property
    def books(self) -> tuple[str, ...]:
        return self._books

    @property
    def data_streams(self) -> tuple[str, ...]:
        """Every stream the listener writes and the ingest drains read (not the dead letters)."""
        return (*self._books, self.trade, self.ticker, self.lifecycle, self.other)

    @property
    def all_streams(self) -> tuple[str, ...]:
        return (*self.data_streams, self.control, self.dead)
