"""The one typed configuration object (DESIGN §9).

Values come from, highest priority first: `KD_*` environment variables (nested with `__`, e.g.
`KD_KALSHI__KEY_ID`), the YAML file given with `--config`, then the defaults below. Settings are
read once at process start and passed in; nothing else in the code reads `os.environ`.
Secrets are never values here: the Kalshi private key is a *path*, and database passwords come
from the URL in the environment or from `database_password_file`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from app.db.tables import GATHERER_RETENTION_DAYS, PRODUCTION_RETENTION_DAYS, TABLES
from app.simulator.options import SimOptions

KALSHI_PROD_REST = "https://external-api.kalshi.com/trade-api/v2"
KALSHI_PROD_WS = "wss://external-api-ws.kalshi.com/trade-api/ws/v2"
KALSHI_DEMO_REST = "https://external-api.demo.kalshi.co/trade-api/v2"
KALSHI_DEMO_WS = "wss://external-api-ws.demo.kalshi.co/trade-api/ws/v2"

Tier = Literal["basic", "advanced", "expert", "premier", "paragon", "prime", "prestige"]


class ConfigError(Exception):
    """The configuration file or environment is unreadable or invalid."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KalshiSettings(_Section):
    """How to reach the exchange. With no key configured, `up` runs against the simulator."""

    rest_url: str = KALSHI_PROD_REST
    ws_url: str = KALSHI_PROD_WS
    key_id: str | None = None
    private_key_path: Path | None = None
    tier: Tier = "basic"
    request_timeout_s: float = Field(10.0, gt=0)
    max_retries: int = Field(6, ge=0)
    backoff_base_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)

    @field_validator("private_key_path")
    @classmethod
    def _expand_home(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @property
    def has_credentials(self) -> bool:
        return bool(self.key_id and self.private_key_path)


class SimulatorSettings(SimOptions):
    """The built-in exchange simulator (used when no Kalshi key is configured).

    Its fields, defaults and validation are `SimOptions`' (the one description of the simulator's
    settings, from which `kalshi-data sim` also generates its flags; docs/simulator.md).
    """

    model_config = ConfigDict(extra="forbid", frozen=False)


StatusFilter = Literal["unopened", "open", "paused", "closed", "settled"]


class RegistrySettings(_Section):
    """The market registry: REST sync, reconcile, subscription set (docs/registry.md)."""

    page_size: int = Field(1000, ge=1, le=1000, description="GET /markets page size [REG-14]")
    event_page_size: int = Field(200, ge=1, le=200, description="GET /events page size")
    sync_statuses: tuple[StatusFilter, ...] = Field(
        ("unopened", "open", "paused", "closed", "settled"),
        description="status filters walked by a full sync, in this order [REG-4]",
    )
    settled_lookback_s: float | None = Field(
        86_400.0,
        gt=0,
        description="full sync reads settled markets settled within this window; None = the "
        "whole live partition (settled before the historical cutoff are gone anyway)",
    )
    catch_up: bool = Field(
        True,
        description="after the status walks, re-read markets updated since the sync started "
        "(min_updated_ts) so a market that changed status mid-walk is not missed",
    )
    reconcile_interval_s: float = Field(300.0, gt=0, description="beat period [REG-10, §6]")
    reconcile_overlap_s: float = Field(
        120.0, ge=0, description="watermark overlap: clock skew and late updated_time bumps"
    )
    subscription_refresh_s: float = Field(
        30.0, gt=0, description="beat period of the full subscription-set refresh"
    )
    subscribed_statuses: tuple[str, ...] = Field(
        ("initialized", "active", "inactive"),
        description="market statuses the listener subscribes (before open, open, paused)",
    )
    close_grace_s: float = Field(
        60.0,
        ge=0,
        description="a subscribed market whose close_time passed longer ago than this leaves "
        "the set even before REST or a lifecycle event reports it closed",
    )
    fetch_created: bool = Field(
        True, description="GET /markets/{ticker} for a `created` lifecycle event [REG-8]"
    )
    change_stream_maxlen: int = Field(
        10_000,
        ge=100,
        description="approximate length cap of the change stream; listeners that fall "
        "further behind reload the full set",
    )
    lock_timeout_s: float = Field(
        120.0, gt=0, description="Redis lock lease serializing change-feed writers"
    )


MIB = 1024 * 1024
GIB = 1024 * MIB

FsyncPolicy = Literal["always", "interval", "never"]


class StreamSettings(_Section):
    """Redis Streams: batching, backpressure, journal, drains (docs/streams.md)."""

    # -- layout --------------------------------------------------------------------------------
    book_partitions: int = Field(8, ge=1, le=4096, description="book streams per gatherer")
    group: str = Field("writers", min_length=1, description="consumer group of the ingest side")

    # -- batching (listener) -------------------------------------------------------------------
    batch_frames: int = Field(500, ge=1, description="seal a stream's batch at this many frames")
    batch_interval_ms: float = Field(50.0, gt=0, description="...or this long after its 1st frame")
    max_buffered_bytes: int = Field(
        64 * MIB, ge=64 * 1024, description="memory bound of all unsent batches; beyond, spill"
    )
    max_call_batches: int = Field(64, ge=1, description="batches per XADD script call")
    max_call_bytes: int = Field(8 * MIB, ge=1024, description="bytes per XADD script call")
    redis_timeout_s: float = Field(5.0, gt=0, description="a Redis call slower than this fails")

    # -- backpressure (listener) ---------------------------------------------------------------
    high_water_entries: int = Field(
        20_000,
        ge=0,
        description="spill when a stream's slowest consumer group has this many unread "
        "entries (0 = off)",
    )
    high_water_memory_bytes: int = Field(
        2 * GIB, ge=0, description="spill when Redis used_memory passes this (0 = off)"
    )
    low_water_ratio: float = Field(
        0.8, gt=0, le=1, description="replay resumes below ratio x high-water (hysteresis)"
    )
    memory_check_interval_s: float = Field(1.0, gt=0)
    recovery_probe_min_s: float = Field(0.1, gt=0, description="first retry after a failure")
    recovery_probe_max_s: float = Field(5.0, gt=0, description="retry backoff cap")
    publisher_key_ttl_s: int = Field(
        7 * 24 * 3600, ge=60, description="life of the per-publisher dedup key in Redis"
    )

    # -- journal (listener) --------------------------------------------------------------------
    journal_dir: Path = Field(Path("var/journal"), description="base directory of spill journals")
    journal_segment_bytes: int = Field(64 * MIB, ge=4096)
    journal_max_bytes: int = Field(8 * GIB, ge=4096, description="disk bound of one journal")
    journal_fsync: FsyncPolicy = "interval"
    journal_fsync_interval_s: float = Field(1.0, gt=0)

    # -- drains (ingest) -----------------------------------------------------------------------
    drain_budget_s: float = Field(5.0, gt=0, description="one drain run stops after this long")
    drain_count: int = Field(10, ge=1, description="entries (batches) per handler transaction")
    min_idle_ms: int = Field(60_000, ge=0, description="reclaim pending entries idle this long")
    max_deliveries: int = Field(5, ge=1, description="dead-letter an entry delivered more often")
    janitor_idle_ms: int = Field(3_600_000, ge=0, description="delete idle empty consumers")
    trim_retain_ms: int = Field(0, ge=0, description="also keep acked entries this young")
    trim_approximate: bool = Field(True, description="XTRIM MINID ~ (whole nodes only)")
    trim_interval_s: float = Field(60.0, gt=0, description="beat period of the trim job [§6]")
    drain_interval_s: float = Field(
        1.0, gt=0, le=60, description="beat period of each data stream's drain task [§3]"
    )
    dead_letter_interval_s: float = Field(
        10.0, gt=0, le=600, description="beat period of the dead-letter stream's drain task"
    )
    janitor_interval_s: float = Field(
        600.0, gt=0, description="beat period of the idle-consumer janitor"
    )

    # -- the ingest database session and its faults (docs/ingest.md "Database faults") ----------
    db_statement_timeout_ms: int = Field(
        20_000, ge=0, description="statement_timeout of ingest sessions (0 = none)"
    )
    db_keepalives_idle_s: int = Field(30, ge=1, description="TCP keepalive: idle before probes")
    db_keepalives_interval_s: int = Field(10, ge=1, description="TCP keepalive: between probes")
    db_keepalives_count: int = Field(3, ge=1, description="TCP keepalive: lost probes = dead")
    db_retry_min_s: float = Field(1.0, gt=0, description="pause after a first database fault")
    db_retry_max_s: float = Field(60.0, gt=0, description="cap of the doubling pause")

    @model_validator(mode="after")
    def _db_retry_bounds(self) -> StreamSettings:
        if self.db_retry_max_s < self.db_retry_min_s:
            raise ValueError("streams.db_retry_max_s must be >= streams.db_retry_min_s")
        return self

    @property
    def low_water_entries(self) -> int:
        return int(self.high_water_entries * self.low_water_ratio)

    @property
    def low_water_memory_bytes(self) -> int:
        return int(self.high_water_memory_bytes * self.low_water_ratio)


# Combo (KXMVE*) markets' lifecycle only comes on `multivariate_market_lifecycle` (kalshi-api.md
# §3.5, §9): it shares the lifecycle connection, a quiet one.
DEFAULT_GLOBAL_CONNECTIONS: tuple[tuple[str, ...], ...] = (
    ("trade",),
    ("ticker",),
    ("market_lifecycle_v2", "multivariate_market_lifecycle"),
)


class ListenerSettings(_Section):
    """How the listener spreads subscriptions over connections and keeps them alive."""

    ws_url: str | None = Field(None, description="WebSocket URL; None = kalshi.ws_url")
    rest_url: str | None = Field(None, description="REST URL for the fallback market list")
    markets_per_connection: int = Field(
        250, ge=1, le=500_000, description="orderbook markets per connection [CM-2, CM-19]"
    )
    global_connections: tuple[tuple[str, ...], ...] = Field(
        DEFAULT_GLOBAL_CONNECTIONS,
        description="one connection per entry, subscribing these channels for all markets "
        "[CM-1]; a firehose (ticker) cannot starve lifecycle with error 25",
    )
    command_batch: int = Field(
        500, ge=1, description="tickers per subscribe / update_subscription command [CM-4]"
    )
    connect_timeout_s: float = Field(10.0, gt=0, description="upgrade timeout [CM-9, CM-13]")
    reply_timeout_s: float = Field(10.0, gt=0, description="command reply timeout [CM-7]")
    ping_interval_s: float | None = Field(
        20.0, gt=0, description="client pings; no pong within this closes the socket [CM-14]"
    )
    staleness_timeout_s: float = Field(
        30.0, gt=0, description="no frame for this long -> probe, then reconnect [CM-14]"
    )
    backoff_base_s: float = Field(1.0, gt=0, description="first reconnect delay [CM-16]")
    backoff_max_s: float = Field(60.0, gt=0, description="reconnect delay cap [CM-16]")
    healthy_after_s: float = Field(
        10.0, ge=0, description="a session this long resets the backoff to its base [CM-16]"
    )
    registry_block_ms: int = Field(1000, ge=1, description="change-feed read wait")
    use_rest_fallback: bool = Field(
        True, description="registry set empty -> subscribe REST `status=open` markets"
    )
    journal_subdir: str = Field(
        "listener-{gatherer}", description="journal directory under streams.journal_dir"
    )
    stats_log_interval_s: float = Field(30.0, gt=0, description="cadence of listener_stats logs")
    shutdown_timeout_s: float = Field(10.0, gt=0, description="publisher flush bound on exit")
    snapshot_timeout_s: float = Field(
        10.0,
        gt=0,
        description="a get_snapshot whose snapshots have not all arrived by then is asked again",
    )
    snapshot_retries: int = Field(
        2, ge=0, description="get_snapshot re-asks before the book subscription is made afresh"
    )
    hole_lead_s: float = Field(
        2.0,
        ge=0,
        description="a capture hole starts this long before the last frame read: the frames "
        "the exchange sent just before a break may still have been on the way [docs/holes.md]",
    )
    heartbeat_interval_s: float = Field(
        1.0,
        gt=0,
        description="how often the listener records in Redis what a successor needs to close "
        "its sessions and holes if it dies [docs/holes.md]",
    )
    use_yes_price: bool = Field(
        False,
        description="sent explicitly on every orderbook subscription (Kalshi plans to flip its "
        "default): true reports NO levels on the YES price scale; stored rows are the same",
    )
    ack_seq: Literal["auto", "position", "consumes"] = Field(
        "auto",
        description="what a command ack's seq means: the sid's current position, a seq of its "
        "own, or auto (position once an ack shows it, else consumes) [kalshi-api.md §7.1]",
    )
    refused_retry_base_s: float = Field(
        30.0, gt=0, description="first retry of a market the exchange refused with code 16"
    )
    refused_retry_max_s: float = Field(
        1800.0, gt=0, description="retry interval cap for a market that stays refused"
    )

    @field_validator("global_connections")
    @classmethod
    def _non_empty_groups(cls, value: tuple[tuple[str, ...], ...]) -> tuple[tuple[str, ...], ...]:
        for group in value:
            if not group:
                raise ValueError("each global connection needs at least one channel")
            if "orderbook_delta" in group:
                raise ValueError("orderbook_delta needs tickers; it is sharded, not global")
        return value


DatabaseRole = Literal["gatherer", "production"]

_ROLE_RETENTION_DAYS = {
    "gatherer": GATHERER_RETENTION_DAYS,
    "production": PRODUCTION_RETENTION_DAYS,
}


class PartitionSettings(_Section):
    """Daily partitions ahead and retention of the time-series tables (docs/ingest.md).

    The retention defaults come from `app.db.tables` for the database's `role` (gatherer: a
    buffer of days, STO-3..STO-5; production: STO-14); `retention_days` overrides single tables.
    """

    role: DatabaseRole = Field(
        "gatherer", description="which retention defaults apply: the gatherer buffer or production"
    )
    retention_days: dict[str, int | None] = Field(
        default_factory=dict,
        description="per-table override of the role's retention in days; null = keep forever",
    )
    days_ahead: int = Field(7, ge=1, le=366, description="daily partitions created ahead")
    days_back: int = Field(1, ge=0, le=366, description="...and behind (late, replayed rows)")
    ensure_interval_s: float = Field(
        3600.0, gt=0, description="beat period of the create-ahead job [§6]"
    )
    drop_expired_interval_s: float = Field(
        3600.0, gt=0, description="beat period of the retention job [§6, STO-23]"
    )
    lock_timeout_ms: int = Field(
        5000,
        ge=1,
        description="lock_timeout of partition DDL, so it never queues ingest writes for long",
    )

    @field_validator("retention_days", mode="before")
    @classmethod
    def _forever_words(cls, value: Any) -> Any:
        # an environment variable cannot hold YAML's null: accept the words for it
        if isinstance(value, dict):
            return {
                key: None if isinstance(days, str) and days.lower() in {"null", "none"} else days
                for key, days in value.items()
            }
        return value

    @field_validator("retention_days")
    @classmethod
    def _known_tables(cls, value: dict[str, int | None]) -> dict[str, int | None]:
        partitioned = sorted(name for name, spec in TABLES.items() if spec.partitioned)
        for table, days in value.items():
            if table not in partitioned:
                raise ValueError(
                    f"unknown time-series table {table!r}; known: {', '.join(partitioned)}"
                )
            if days is not None and days < 0:
                raise ValueError(f"retention of {table} must be >= 0 days or null, got {days}")
        return value

    @model_validator(mode="after")
    def _retention_covers_days_back(self) -> PartitionSettings:
        # a partition created behind and dropped as expired would be churned every hour
        for table, days in self.retention().items():
            if days is not None and days < self.days_back:
                raise ValueError(
                    f"retention of {table} ({days} d) is shorter than days_back "
                    f"({self.days_back}): its partitions would be dropped and re-created"
                )
        return self

    def retention(self) -> dict[str, int | None]:
        """Retention days of every time-series table: the role's defaults plus overrides."""
        return {**_ROLE_RETENTION_DAYS[self.role], **self.retention_days}


class BackfillSettings(_Section):
    """Trade backfill of capture holes from REST (docs/backfill.md; REC-1, REC-10)."""

    interval_s: float = Field(60.0, gt=0, description="beat period of the backfill job [§6]")
    holes_per_run: int = Field(
        20, ge=1, description="at most this many holes (oldest first) per run, so a run is short"
    )
    margin_s: float = Field(
        3.0,
        ge=0,
        le=3600,
        description="widen each hole by this on both sides: exchange time and our receive "
        "time differ by the latency",
    )
    settle_s: float = Field(
        2.0,
        ge=0,
        description="backfill a hole only once its end plus the margin is this far in the "
        "past, so the exchange's trade list has everything in the window",
    )
    ticker_query_max: int = Field(
        10,
        ge=0,
        description="a hole listing at most this many markets is fetched with one `ticker=` "
        "query per market; more (or every market) with one unfiltered query",
    )
    page_limit: int = Field(1000, ge=1, le=1000, description="trades per REST page (§1.3)")
    max_attempts: int = Field(
        5, ge=1, description="a hole whose fetch failed this many times is marked failed"
    )


class CoverageSettings(_Section):
    """The beat job that keeps the `coverage` table fresh (docs/coverage.md)."""

    interval_s: float = Field(
        300.0, gt=0, description="beat period of the coverage refresh job `kd.coverage.refresh`"
    )
    lookback_hours: int = Field(
        3,
        ge=0,
        le=24 * 31,
        description="each run refreshes the current UTC hour and this many whole hours before "
        "it, so a hole closed or backfilled late still changes its hours",
    )


class GathererDatabase(_Section):
    """One gatherer's database, as the deduplicator reads it."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="the gatherer's name")
    database_url: str = Field(description="its database (a read-only user is enough)")


class DedupSettings(_Section):
    """The deduplicator: every gatherer's database in, production out (docs/dedup.md)."""

    production_url: str | None = Field(
        None, description="the production database; None: this deployment runs no deduplicator"
    )
    gatherers: tuple[GathererDatabase, ...] = Field(
        (), description="the gatherer databases merged into production [DED-1]"
    )
    batch_rows: int = Field(
        50_000, ge=1, description="rows read per (gatherer, table) batch and transaction [DED-5]"
    )
    max_run_s: float = Field(
        50.0, gt=0, description="a run stops starting batches after this long; the next goes on"
    )
    interval_s: float = Field(60.0, gt=0, description="beat period of `kd.dedup.run` [DESIGN §6]")
    book_lateness_s: float = Field(
        120.0, ge=0, description="order books: a window is merged once its end is this old"
    )
    book_window_s: float = Field(
        300.0, gt=0, description="order books: the longest window one production transaction takes"
    )
    stream_silence_s: float = Field(
        120.0,
        gt=0,
        description="an open stream with no row for this long is whole only to its last row",
    )

    @field_validator("gatherers")
    @classmethod
    def _unique_names(cls, value: tuple[GathererDatabase, ...]) -> tuple[GathererDatabase, ...]:
        names = [g.name for g in value]
        if len(set(names)) != len(names):
            raise ValueError("dedup.gatherers names must be unique")
        return value


BeatEntries = Literal["auto", "gatherer", "dedup"]


class BeatSettings(_Section):
    """Which entries a beat process schedules, so one host can run a beat per role
    (`kalshi-data up --gatherers N`: one per gatherer and one for the deduplicator)."""

    entries: BeatEntries = Field(
        "auto",
        description="auto: the gatherer's drains and jobs, plus kd.dedup.run where "
        "dedup.production_url is set; gatherer: drains and jobs only; dedup: kd.dedup.run only",
    )


Port = Annotated[int, Field(ge=0, le=65535)]
ProcessKind = Literal["listener", "ingest", "jobs", "beat", "dedup"]

PROCESS_KINDS: tuple[ProcessKind, ...] = ("listener", "ingest", "jobs", "beat", "dedup")

DEFAULT_PORTS: dict[ProcessKind, int] = {
    "listener": 9311,
    "ingest": 9312,
    "jobs": 9313,
    "beat": 9314,
    "dedup": 9315,
}


class MetricsSettings(_Section):
    """Where each process serves /metrics; loopback unless configured (docs/metrics.md)."""

    enabled: bool = Field(True, description="serve /metrics at all")
    host: str = Field("127.0.0.1", description="bind address; 0.0.0.0 only when configured")
    ports: dict[ProcessKind, Port] = Field(
        default_factory=lambda: dict(DEFAULT_PORTS),
        description="port of each process kind's /metrics (Celery kinds: the exporter)",
    )
    multiproc_dir: Path = Field(
        Path("var/metrics"),
        description="base of PROMETHEUS_MULTIPROC_DIR; each Celery kind uses <base>/<kind>",
    )
    stream_refresh_s: float = Field(
        5.0, gt=0, description="period of the Redis stream gauges refresh (exporter loop)"
    )

    def port_for(self, kind: ProcessKind) -> int:
        return self.ports.get(kind, DEFAULT_PORTS[kind])

    def multiproc_dir_for(self, kind: ProcessKind) -> Path:
        return self.multiproc_dir / kind


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "text"


class Settings(BaseSettings):
    """Everything configurable about one kalshi-data process."""

    model_config = SettingsConfigDict(
        env_prefix="KD_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    gatherer: str = Field("g1", pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    database_url: str = "postgresql://postgres@localhost:5432/kalshi_data"
    redis_url: str = "redis://localhost:6379/0"
    kalshi: KalshiSettings = KalshiSettings()
    simulator: SimulatorSettings = SimulatorSettings()
    registry: RegistrySettings = RegistrySettings()
    streams: StreamSettings = StreamSettings()
    listener: ListenerSettings = ListenerSettings()
    partitions: PartitionSettings = PartitionSettings()
    backfill: BackfillSettings = BackfillSettings()
    coverage: CoverageSettings = CoverageSettings()
    dedup: DedupSettings = DedupSettings()
    beat: BeatSettings = BeatSettings()
    metrics: MetricsSettings = MetricsSettings()
    logging: LoggingSettings = LoggingSettings()


class _YamlSource(PydanticBaseSettingsSource):
    """Values from the `--config` YAML file, below environment variables in priority."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping, not {type(data).__name__}")
    return data


def _describe(exc: ValidationError, origin: str) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(root)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"invalid configuration in {origin}: {where}: {first['msg']}{more}"


def load_settings(config_path: Path | str | None = None) -> Settings:
    """Read the YAML file (if any) and `KD_*` environment into one validated `Settings`."""
    data = _read_yaml(Path(config_path)) if config_path else {}
    origin = str(config_path) if config_path else "KD_* environment"

    class _FileSettings(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, env_settings, _YamlSource(settings_cls, data))

    try:
        loaded = _FileSettings()
    except ValidationError as exc:
        raise ConfigError(_describe(exc, f"{origin} or KD_* environment")) from exc
    return Settings.model_validate(loaded.model_dump())
