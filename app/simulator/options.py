"""Everything that configures one simulator run, validated once (the CLI builds it)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from app.simulator.faults import PeriodicFaults
from app.simulator.ratelimit import GENEROUS

WS_AUTH_MODES = ("required", "optional")
REST_AUTH_MODES = ("optional", "strict")


@dataclass(frozen=True)
class SimOptions:
    """One simulator run. Same seed + epoch + rate + markets + lifetime + format = same truth."""

    host: str = "127.0.0.1"
    port: int = 8765
    markets: int = 200
    seed: int = 1
    rate: float = 200.0  # order-flow events per second of wall (and virtual) time
    truth_dir: Path | None = None
    legacy: bool = False
    epoch_ms: int | None = None  # virtual start instant; None = wall clock at start
    max_events: int | None = None  # stop the order flow after this many events
    ping_interval_s: float = 10.0
    market_lifetime_s: float = 3600.0  # virtual seconds from a market's open to its close
    # Trades older than this many virtual seconds before the virtual now are served only by
    # `/historical/trades` (kalshi-api.md §1.11); None: the cutoff stays at the epoch.
    historical_cutoff_s: float | None = None
    public_key_path: Path | None = None
    ws_auth: str = "required"  # with a public key: must the WebSocket upgrade be signed?
    rest_auth: str = "optional"  # with a public key: must REST requests be signed?
    rate_limit: int | None = GENEROUS  # REST read tokens per second per client, None = off
    max_buffer_bytes: int = 256 << 20  # per connection, before error 25 and a disconnect
    faults: PeriodicFaults = field(default_factory=PeriodicFaults)

    def problems(self) -> list[str]:
        """Human-readable reasons this configuration cannot run (empty when fine)."""
        found = []
        if not 0 <= self.port <= 65535:
            found.append(f"port must be 0..65535, not {self.port}")
        if self.markets < 1:
            found.append("markets must be at least 1")
        if self.markets > 50_000_000:
            found.append("markets must be at most 50,000,000")
        if not self.rate > 0:
            found.append("rate must be greater than 0")
        if self.max_events is not None and self.max_events < 0:
            found.append("max-events must be 0 or more")
        if not self.ping_interval_s > 0:
            found.append("ping-interval must be greater than 0")
        if not self.market_lifetime_s >= 0.01:
            found.append("market-lifetime must be at least 0.01 seconds")
        if self.historical_cutoff_s is not None and not (
            math.isfinite(self.historical_cutoff_s) and self.historical_cutoff_s >= 0
        ):
            found.append("historical-cutoff-s must be 0 or more seconds")
        if self.ws_auth not in WS_AUTH_MODES:
            found.append(f"ws-auth must be one of {', '.join(WS_AUTH_MODES)}")
        if self.rest_auth not in REST_AUTH_MODES:
            found.append(f"rest-auth must be one of {', '.join(REST_AUTH_MODES)}")
        if self.max_buffer_bytes < 1 << 16:
            found.append("max-buffer must be at least 64 KiB")
        if self.epoch_ms is not None and not 0 <= self.epoch_ms < 253402300800000:
            found.append("epoch-ms must be a Unix time in milliseconds before year 10000")
        return found

    @property
    def historical_lag_ns(self) -> int | None:
        """`historical_cutoff_s` in whole nanoseconds (how far the cutoff trails the clock)."""
        if self.historical_cutoff_s is None:
            return None
        return round(self.historical_cutoff_s * 1_000_000_000)
