"""Everything that configures one simulator run, described once (issue 9 item 10).

`SimOptions` is the only description of the simulator's settings: each field carries its
default, its help text and (in a `Flag`) its command-line flag. `app/cli/sim.py` generates the
`kalshi-data sim` flags from it, `app.config.SimulatorSettings` *is* it (the `simulator`
section of the configuration, `KD_SIMULATOR__*`), and `problems()` is the one validation both
use. A new option is one new field here, nothing else.

It must stay cheap to import (the configuration imports it): no sockets, no exchange code.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.simulator.ratelimit import GENEROUS, TIERS, parse_budget

WS_AUTH_MODES = ("required", "optional")
REST_AUTH_MODES = ("optional", "strict")
ERROR_BODIES = ("nested", "flat")


@dataclass(frozen=True)
class Flag:
    """How a `SimOptions` field appears on the command line."""

    flag: str  # e.g. "--markets"
    metavar: str | None = None
    kind: str | None = None  # "dir" | "file": a path flag; None: from the field's type
    text: bool = False  # parsed by the field's validator (e.g. --rate-limit basic)


@dataclass(frozen=True)
class PeriodicFaults:
    """Faults repeated on a schedule; 0 disables one."""

    drop_every_s: float = 0.0
    stall_every_s: float = 0.0
    stall_seconds: float = 1.0
    skip_seq_every: int = 0  # every Nth orderbook_delta of each sid is never sent
    repeat_seq_every: int = 0  # every Nth orderbook_delta of each sid is sent twice
    malformed_every_s: float = 0.0
    unknown_type_every_s: float = 0.0
    rest_429_every: int = 0  # every Nth REST API request gets 429
    rest_5xx_every: int = 0  # every Nth REST API request gets 503

    def describe(self) -> dict[str, float]:
        """The enabled periodic faults (for meta.json)."""
        enabled = {k: v for k, v in asdict(self).items() if v and k != "stall_seconds"}
        if self.stall_every_s:
            enabled["stall_seconds"] = self.stall_seconds
        return enabled


_FAULT_FIELDS = {
    "drop_every_s": "drop-every",
    "stall_every_s": "stall-every",
    "stall_seconds": "stall-seconds",
    "skip_seq_every": "skip-seq-every",
    "repeat_seq_every": "repeat-seq-every",
    "malformed_every_s": "malformed-every",
    "unknown_type_every_s": "unknown-type-every",
    "rest_429_every": "rest-429-every",
    "rest_5xx_every": "rest-5xx-every",
}


class SimOptions(BaseModel):
    """One simulator run. Same seed + epoch + rate + markets + lifetime + format = same truth."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: Annotated[str, Flag("--host")] = Field("127.0.0.1", description="Interface to listen on.")
    port: Annotated[int, Flag("--port")] = Field(8765, description="TCP port, 0 = any free port.")
    markets: Annotated[int, Flag("--markets", "N")] = Field(
        200, description="Markets that exist at start (more are created over time)."
    )
    seed: Annotated[int, Flag("--seed")] = Field(1, description="Seed of catalog and order flow.")
    rate: Annotated[float, Flag("--rate")] = Field(
        200.0, description="Order-flow events per second (wall and virtual time)."
    )
    truth_dir: Annotated[Path | None, Flag("--truth", "DIR", kind="dir")] = Field(
        None, description="Directory for the ground truth (unset: record nothing)."
    )
    format: Annotated[Literal["current", "legacy"], Flag("--format")] = Field(
        "current", description="Field format: newest, or the late-2025 dual format."
    )
    epoch_ms: Annotated[int | None, Flag("--epoch-ms", "MS")] = Field(
        None, description="Virtual start instant (Unix ms); unset: the wall clock at start."
    )
    max_events: Annotated[int | None, Flag("--max-events", "N")] = Field(
        None, description="Stop the order flow after N events (the server keeps serving)."
    )
    ping_interval_s: Annotated[float, Flag("--ping-interval", "S")] = Field(
        10.0, description="Seconds between WebSocket pings."
    )
    market_lifetime_s: Annotated[float, Flag("--market-lifetime", "S")] = Field(
        3600.0, description="Virtual seconds from a market's open to its close (lifecycle pace)."
    )
    # kalshi-api.md §1.11
    historical_cutoff_s: Annotated[float | None, Flag("--historical-cutoff-s", "S")] = Field(
        None,
        description="Trades older than S virtual seconds before the virtual now move to "
        "/historical/trades (unset: the cutoff stays at the epoch, every trade is live).",
    )
    public_key_path: Annotated[Path | None, Flag("--auth-public-key", "PEM", kind="file")] = Field(
        None, description="RSA public key (PEM); when given, signatures are checked."
    )
    ws_auth: Annotated[Literal["required", "optional"], Flag("--ws-auth")] = Field(
        "required", description="With a public key: must the WebSocket upgrade be signed?"
    )
    rest_auth: Annotated[Literal["optional", "strict"], Flag("--rest-auth")] = Field(
        "optional", description="With a public key: strict = unsigned REST requests get 401."
    )
    rate_limit: Annotated[int | None, Flag("--rate-limit", "TIER", text=True)] = Field(
        GENEROUS,
        description=f"REST read budget per client: off, a tier ({', '.join(TIERS)}) or "
        "tokens per second.",
    )
    max_buffer_mb: Annotated[float, Flag("--max-buffer-mb", "MB")] = Field(
        256.0, description="Per-connection send buffer before error 25 and a disconnect."
    )
    error_body: Annotated[Literal["nested", "flat"], Flag("--error-body")] = Field(
        "nested",
        description='Shape of REST 4xx bodies: nested {"error": {"code", "message", '
        '"details"}} (seen in production, kalshi-api.md §9) or the flat {"code", "message"}.',
    )
    ack_consumes_seq: Annotated[bool, Flag("--ack-consumes-seq")] = Field(
        False,
        description="Command acks on a sid (ok, unsubscribed) take the sid's next seq "
        "(kalshi-api.md §3.6, §7.1); off: they report its current seq without consuming one.",
    )
    drop_every_s: Annotated[float, Flag("--drop-every", "S")] = Field(
        0.0, description="Drop every connection every S seconds (0 = off)."
    )
    stall_every_s: Annotated[float, Flag("--stall-every", "S")] = Field(
        0.0, description="Stall every connection every S seconds (0 = off)."
    )
    stall_seconds: Annotated[float, Flag("--stall-seconds", "S")] = Field(
        1.0, description="Length of a periodic stall."
    )
    skip_seq_every: Annotated[int, Flag("--skip-seq-every", "N")] = Field(
        0, description="Never send every Nth orderbook_delta of each sid (0 = off)."
    )
    repeat_seq_every: Annotated[int, Flag("--repeat-seq-every", "N")] = Field(
        0, description="Send every Nth orderbook_delta of each sid twice (0 = off)."
    )
    malformed_every_s: Annotated[float, Flag("--malformed-every", "S")] = Field(
        0.0, description="Send each connection malformed JSON every S seconds (0 = off)."
    )
    unknown_type_every_s: Annotated[float, Flag("--unknown-type-every", "S")] = Field(
        0.0, description="Send each connection an unknown message type every S s (0 = off)."
    )
    rest_429_every: Annotated[int, Flag("--rest-429-every", "N")] = Field(
        0, description="Answer every Nth REST request with 429 (0 = off)."
    )
    rest_5xx_every: Annotated[int, Flag("--rest-5xx-every", "N")] = Field(
        0, description="Answer every Nth REST request with 503 (0 = off)."
    )

    @field_validator("rate_limit", mode="before")
    @classmethod
    def _budget(cls, value: Any) -> Any:
        return parse_budget(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _valid(self) -> SimOptions:
        found = self.problems()
        if found:
            raise ValueError(found[0])
        return self

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
        if self.rate_limit is not None and self.rate_limit < 1:
            found.append("rate limit must be off or at least 1 token per second")
        if not self.max_buffer_mb * (1 << 20) >= 1 << 16:
            found.append("max-buffer must be at least 64 KiB")
        if self.epoch_ms is not None and not 0 <= self.epoch_ms < 253402300800000:
            found.append("epoch-ms must be a Unix time in milliseconds before year 10000")
        for name, flag in _FAULT_FIELDS.items():
            value = getattr(self, name)
            if not value >= 0 or (name == "stall_seconds" and value == 0):
                found.append(f"--{flag} must be positive (0 disables the periodic fault)")
        return found

    # ---- derived -------------------------------------------------------------------------

    @property
    def legacy(self) -> bool:
        return self.format == "legacy"

    @property
    def max_buffer_bytes(self) -> int:
        return int(self.max_buffer_mb * (1 << 20))

    @property
    def faults(self) -> PeriodicFaults:
        return PeriodicFaults(**{name: getattr(self, name) for name in _FAULT_FIELDS})

    @property
    def historical_lag_ns(self) -> int | None:
        """`historical_cutoff_s` in whole nanoseconds (how far the cutoff trails the clock)."""
        if self.historical_cutoff_s is None:
            return None
        return round(self.historical_cutoff_s * 1_000_000_000)


def flag_of(name: str) -> Flag:
    """The command-line description of field `name`."""
    for meta in SimOptions.model_fields[name].metadata:
        if isinstance(meta, Flag):
            return meta
    raise KeyError(name)
